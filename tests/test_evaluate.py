"""Dynamic evaluation (issue 18 §3), the formulas on a hand-built day — known invalid rows (two
required fields missing, two unmapped codes), two events the platform refused, one late event, a
daemon down for 30 minutes with one restart, a two-hour platform outage, no backup, OS packages
of known age — scored as computed by hand. The same on real data (the synthetic hospital through
the daemon and the reference platform) is in test_evaluate_synthetic.py."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_helpers import ARTIFACTS, CHROMIUM, chromium
from cdc_util import dpkg_dir
from click.testing import CliRunner

from cdcsync import __version__
from cdcsync.cli import main
from cdcsync.config import Settings
from cdcsync.ops.backup_view import backup_state
from cdcsync.ops.evaluate import daemon_uptime, evaluate_day, local_mapping_version, value_domains_component
from cdcsync.surveil.pack import load_pack
from tests.latency_seed import seed_latency

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
    rows = [(dt.datetime(2024, 5, 6, 19, 59), acked - dt.timedelta(seconds=2))] * 9
    rows.append((dt.datetime(2024, 5, 6, 18, 0), acked - dt.timedelta(seconds=3)))
    seed_latency(conn, "national", "visit", D, rows, acked)
    conn.execute("INSERT INTO cdcsync.daemon_run (run_id, started_at, last_seen_at, stopped_at, version) VALUES"
                 " ('r1', %s, %s, %s, 't'), ('r2', %s, %s, %s, 't')",
                 (_at(0), _at(10), _at(10), _at(10, 30), _at(1, 0, D + dt.timedelta(days=1)),
                  _at(1, 0, D + dt.timedelta(days=1))))
    conn.execute("INSERT INTO cdcsync.stream_daily (destination, day, observed_s, healthy_s, backlog_max_bytes)"
                 " VALUES ('national', %s, %s, %s, 123456)", (D, 23.5 * 3600, 21.5 * 3600))


def settings(dsn: str, tmp: Path | None = None, dpkg: Path | None = None) -> Settings:
    data: dict[str, Any] = {"org_code": "TESTORG01", "database": {"dsn": dsn},
                            "destinations": [{"name": "national", "kind": "jsonl", "path": "/dev/null"}]}
    if tmp is not None:
        data["state_dir"] = str(tmp / "state")
    if dpkg is not None:
        data["ops"] = {"evaluation": {"dpkg_info_dir": str(dpkg)}}
    return Settings.model_validate(data)


def test_scores_match_hand_computed_values(migrated_db: str, tmp_path: Path) -> None:
    end = _at(0, 0, D + dt.timedelta(days=1))
    dpkg = dpkg_dir(tmp_path, end, {"libssl3:amd64.list": 400, "openssl.list": 30,
                                    "postgresql-15.list": 227.5, "libpq5:amd64.list": 300})
    st = settings(migrated_db, tmp_path, dpkg)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        build(conn)
        (e,) = evaluate_day(conn, st, D, now=_at(12, 0, D + dt.timedelta(days=2)))
    s = e.scores()
    # 正确性: passed validation 90 delivered + 2 refused = 92 of 96 captured; platform took 90 of 92;
    # required fields missing in 2 of 96; no NNDRS cards that day (left out). Weights 0.4/0.3/0.1.
    correctness = 100 * (0.4 * 92 / 96 + 0.3 * 90 / 92 + 0.1 * 94 / 96) / 0.8
    assert s["correctness"] == round(correctness, 1) == 96.8
    assert s["timeliness"] == 90.0  # 9 of 10 within the realtime limit; cases not yet measured
    # 稳定性: daemon up 23.5 h of 24, stream healthy 21.5 h (2 h outage), no backup at all (0),
    # one restart (-5). Weights 0.4/0.4/0.2.
    assert s["stability"] == round(100 * (0.4 * 23.5 / 24 + 0.4 * 21.5 / 24 + 0.2 * 0) - 5, 1) == 70.0
    # 适应性: nothing announced; OpenSSL updated 30 days before (1.0), PostgreSQL 227.5 days
    # before: (365 - 227.5) / (365 - 90) = 0.5; the package score is the worse group.
    assert s["adaptability"] == 50.0
    assert s["overall"] == round((96.8 + 90.0 + 70.0 + 50.0) / 4, 1)
    stab = next(d for d in e.dimensions if d.name == "stability")
    assert "最长中断 30.0 分钟，重启 1 次" in stab.components[0].detail
    assert stab.components[2].value == 0.0 and "没有完成的备份" in stab.components[2].detail
    adapt = {c.name: c for c in next(d for d in e.dimensions if d.name == "adaptability").components}
    assert adapt["os_packages"].detail == ("OpenSSL 更新于 2024-04-07（30 天前），"
                                           "PostgreSQL 更新于 2023-09-22（227 天前）")
    assert adapt["software"].value is None and adapt["value_domains"].value is None
    assert adapt["rule_pack"].value is None and f"本机 {load_pack().version}" in adapt["rule_pack"].detail

    # The platform announces versions: ours is the latest software and code tables, a rule pack
    # other than the one configured (the shipped default). (0.3 * 1 + 0.3 * 1 + 0.1 * 0 + 0.3 * 0.5) / 1.0
    mine = local_mapping_version(st)
    assert mine is not None
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("INSERT INTO cdcsync.platform_notice (destination, announced) VALUES ('national', %s)",
                     (json.dumps({"software": __version__, "mapping_version": mine, "rule_pack_version": "rp-2"}),))
        (e,) = evaluate_day(conn, st, D, now=_at(12, 0, D + dt.timedelta(days=2)))
        assert e.scores()["adaptability"] == 75.0
        conn.execute("UPDATE cdcsync.platform_notice SET announced = announced || %s::jsonb",
                     (json.dumps({"rule_pack_version": load_pack().version}),))
        (e,) = evaluate_day(conn, st, D, now=_at(12, 0, D + dt.timedelta(days=2)))
    assert e.scores()["adaptability"] == 85.0  # (0.3 + 0.3 + 0.1 + 0.3 * 0.5) / 1.0
    # Code tables older than the announced ones score 0, with the days behind.
    older = value_domains_component("abc@2024-01-01", "def@2024-03-01", 0.3)
    assert older.value == 0.0 and "落后 60 天" in older.detail
    assert value_domains_component("abc@2024-03-02", "def@2024-03-01", 0.3).value == 1.0


def test_pending_cases_handled_before_due(migrated_db: str, tmp_path: Path) -> None:
    """Three early-warning cases due on the day: closed in time, closed late, still open."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        build(conn)
        cases = (("已排除", _at(10), _at(9), "非传染病"), ("已排除", _at(11), _at(12), "迟报"),
                 ("待确认", _at(15), None, None))
        for status, due, closed, reason in cases:
            conn.execute("INSERT INTO cdcsync.surveil_case (status, kind, disease_code, disease_name, disease_class,"
                         " org_code, patient_id, signal_at, due_at, closed_at, close_reason, pack_version) VALUES"
                         " (%s, 'suspected', '0100', '测试病', '乙', 'TESTORG01', 'p1', %s, %s, %s, %s, 'rp-1')",
                         (status, due - dt.timedelta(hours=2), due, closed, reason))
        (e,) = evaluate_day(conn, settings(migrated_db, tmp_path), D, now=_at(12, 0, D + dt.timedelta(days=2)))
    tim = next(d for d in e.dimensions if d.name == "timeliness")
    assert tim.components[1].value == 1 / 3 and tim.components[1].detail == "按时处理 1 / 到期 3"
    assert tim.score == round(100 * (0.8 * 9 / 10 + 0.2 / 3), 1) == 78.7


@pytest.fixture
def mirror_with_backup(migrated_db: str, tmp_path: Path) -> tuple[Settings, Any]:
    from cdc_util import prepare_db, settings_for

    from cdcsync.ops.backup.run import take_backup
    from cdcsync.ops.backup.verify import verify_backup

    prepare_db(migrated_db)
    base, cfg = settings_for(migrated_db, tmp_path)
    st = Settings.model_validate(base.model_dump(mode="json") | {
        "backup": {"dir": str(tmp_path / "backups"), "include_secrets": False}})
    backup = take_backup(st, "logical", cfg)
    assert verify_backup(st, backup)["status"] == "ok"
    return st, backup


def test_backup_component_from_the_catalogue(mirror_with_backup: tuple[Settings, Any]) -> None:
    """Backups done and verified, read from the backup catalogue: verified 1, unverified 0.5."""
    st, backup = mirror_with_backup
    state = backup_state(st)
    end = backup.finished + dt.timedelta(hours=1)
    assert state.covers(end)[0] == 1.0
    assert state.covers(backup.finished + dt.timedelta(hours=st.backup.max_age_hours + 1))[0] == 0.0
    (backup.path / "verify.json").unlink()
    assert backup_state(st).covers(end) == (0.5, backup_state(st).covers(end)[1])
    assert "未通过试恢复校验" in backup_state(st).covers(end)[1]


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


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed")
def test_html_report_in_headless_chromium(migrated_db: str, tmp_path: Path) -> None:
    """The report as a browser renders it: the table and the 30-day chart (inline SVG) of each
    destination, with 30 days of history, nothing fetched."""
    cfg = tmp_path / "c.yaml"
    dpkg = dpkg_dir(tmp_path, _at(0, 0, D + dt.timedelta(days=1)), {"openssl.list": 30, "postgresql-15.list": 60})
    cfg.write_text(json.dumps({"org_code": "TESTORG01", "database": {"dsn": migrated_db},
                               "state_dir": str(tmp_path / "state"),
                               "ops": {"evaluation": {"dpkg_info_dir": str(dpkg)}},
                               "destinations": [{"name": "national", "kind": "jsonl", "path": "/dev/null"}]}),
                   encoding="utf-8")
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        build(conn)
    assert CliRunner().invoke(main, ["-c", str(cfg), "evaluate", "--month", "2024-05"]).exit_code == 0
    r = CliRunner().invoke(main, ["-c", str(cfg), "evaluate", "--date", D.isoformat(), "--format", "html"])
    assert r.exit_code == 0, r.output
    page = tmp_path / "report.html"
    page.write_text(r.output, encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "evaluation.png"
    shot.unlink(missing_ok=True)
    dom = chromium(page.as_uri(), tmp_path / "chrome", "--dump-dom").stdout
    chromium(page.as_uri(), tmp_path / "chrome2", f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 5000
    assert "<h1>前置软件动态评价</h1>" in dom and "2024-05-06 目的地 national：综合" in dom
    assert dom.count("<svg") == 1 and "近30天得分" in dom
    # May evaluated; the chart ends on the 6th. The daemon first ran on the 6th: one point for
    # correctness, timeliness, stability; the OS packages were on record from April on: six.
    points = {k: len(v.split()) for k, v in re.findall(r'data-dimension="(\w+)" points="([^"]+)"', dom)}
    assert points == {"correctness": 1, "timeliness": 1, "stability": 1, "adaptability": 6}
    for label in ("正确性", "及时性", "稳定性", "适应性", "备份并验证", "操作系统安全更新"):
        assert label in dom
