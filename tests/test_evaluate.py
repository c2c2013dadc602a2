"""Dynamic evaluation (issue 18 §3): a hand-built day — known invalid rows (two required fields
missing, two unmapped codes), two events the platform refused, one late event, a daemon down for
30 minutes with one restart, a two-hour platform outage — scored as computed by hand."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.config import Settings
from cdcsync.ops.evaluate import daemon_uptime, evaluate_day
from cdcsync.recon.latency import LatencyRow, record_latency

D = dt.date(2024, 5, 6)
BJ = dt.timezone(dt.timedelta(hours=8))


def _at(h: int, m: int = 0, day: dt.date = D) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(h, m), BJ)


def build(conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
    conn.execute("INSERT INTO cdcsync.delivery_stats (destination, table_name, business_date, delivered)"
                 " VALUES ('national', 'visit', %s, 90)", (D,))
    for i, rule in enumerate(["REQ001", "REQ001", "MAP001", "MAP001", "PLT422", "sink.rejected"]):
        conn.execute("INSERT INTO cdcsync.quarantine (event_id, destination, table_name, primary_key, lsn, rule_id,"
                     " message, first_seen) VALUES (%s, 'national', 'visit', '{}', '0/1', %s, 'x', %s)",
                     (f"e{i}", rule, _at(9)))
    acked = dt.datetime(2024, 5, 6, 12, 0, tzinfo=dt.UTC)
    rows = [LatencyRow("visit", D, dt.datetime(2024, 5, 6, 19, 59), acked - dt.timedelta(seconds=2))] * 9
    rows.append(LatencyRow("visit", D, dt.datetime(2024, 5, 6, 18, 0), acked - dt.timedelta(seconds=3)))
    record_latency(conn, "national", rows, acked_at=acked)
    conn.execute("INSERT INTO cdcsync.daemon_run (run_id, started_at, last_seen_at, stopped_at, version) VALUES"
                 " ('r1', %s, %s, %s, 't'), ('r2', %s, %s, %s, 't')",
                 (_at(0), _at(10), _at(10), _at(10, 30), _at(1, 0, D + dt.timedelta(days=1)),
                  _at(1, 0, D + dt.timedelta(days=1))))
    conn.execute("INSERT INTO cdcsync.stream_daily (destination, day, observed_s, healthy_s, backlog_max_bytes)"
                 " VALUES ('national', %s, %s, %s, 123456)", (D, 23.5 * 3600, 21.5 * 3600))


def settings(dsn: str) -> Settings:
    return Settings.model_validate({"org_code": "TESTORG01", "database": {"dsn": dsn},
                                    "destinations": [{"name": "national", "kind": "jsonl", "path": "/dev/null"}]})


def test_scores_match_hand_computed_values(migrated_db: str) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        build(conn)
        (e,) = evaluate_day(conn, settings(migrated_db), D, now=_at(12, 0, D + dt.timedelta(days=2)))
    s = e.scores()
    # 正确性: passed validation 90 delivered + 2 refused = 92 of 96 captured; platform took 90 of 92;
    # required fields missing in 2 of 96; no NNDRS cards that day (left out). Weights 0.4/0.3/0.1.
    correctness = 100 * (0.4 * 92 / 96 + 0.3 * 90 / 92 + 0.1 * 94 / 96) / 0.8
    assert s["correctness"] == round(correctness, 1) == 96.8
    assert s["timeliness"] == 90.0  # 9 of 10 within the realtime limit; cases not yet measured
    # 稳定性: daemon up 23.5 h of 24, stream healthy 21.5 h (2 h outage), one restart (-5).
    assert s["stability"] == round(100 * (0.4 * 23.5 / 24 + 0.4 * 21.5 / 24) / 0.8 - 5, 1) == 88.8
    assert s["adaptability"] is None  # no platform announcement
    assert s["overall"] == round((96.8 + 90.0 + 88.8) / 3, 1)
    stab = next(d for d in e.dimensions if d.name == "stability")
    assert "最长中断 30.0 分钟，重启 1 次" in stab.components[0].detail


def test_daemon_uptime_ignores_time_before_the_first_run() -> None:
    start, end = _at(0), _at(0, 0, D + dt.timedelta(days=1))
    share, longest, restarts = daemon_uptime([(_at(12), end)], _at(12), start, end)
    assert (share, longest, restarts) == (1.0, 0.0, 0)


def test_cli_saves_history(migrated_db: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"org_code": "TESTORG01", "database": {"dsn": migrated_db},
                               "destinations": [{"name": "national", "kind": "jsonl", "path": "/dev/null",
                                                 }]}), encoding="utf-8")
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        build(conn)
    r = CliRunner().invoke(main, ["-c", str(cfg), "evaluate", "--date", D.isoformat(), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc[0]["scores"]["timeliness"] == 90.0
    r = CliRunner().invoke(main, ["-c", str(cfg), "evaluate", "--date", D.isoformat()])
    assert "正确性 96.8" in r.output and "待处理病例按时处理：尚未测量" in r.output
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        assert conn.execute("SELECT timeliness FROM cdcsync.evaluation_daily WHERE day = %s", (D,)).fetchone() == (90,)


def test_status_shows_todays_scores(migrated_db: str) -> None:
    from cdcsync.api.web_app import _evaluation_text
    from cdcsync.engine.status import collect_status
    from cdcsync.ops.evaluate import evaluate_today

    st = settings(migrated_db)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        got = evaluate_today(conn, st)
    today = collect_status(st)["evaluation_today"]
    assert [r["destination"] for r in today] == ["national"] and got["destinations"]["national"]
    assert _evaluation_text(today).startswith("national：正确性 ")


def test_html_report_has_inline_charts(migrated_db: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"org_code": "TESTORG01", "database": {"dsn": migrated_db},
                               "destinations": [{"name": "national", "kind": "jsonl", "path": "/dev/null"}]}),
                   encoding="utf-8")
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        build(conn)
    r = CliRunner().invoke(main, ["-c", str(cfg), "evaluate", "--month", "2024-05"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["-c", str(cfg), "evaluate", "--date", D.isoformat(), "--format", "html"])
    assert r.exit_code == 0, r.output
    html = r.output
    assert "<svg" in html and 'data-dimension="timeliness"' in html
    assert "<script" not in html and "src=" not in html and "href=" not in html  # nothing fetched
