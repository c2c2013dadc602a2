"""Dynamic evaluation on real data: the synthetic hospital (with its deliberate invalid rows) loaded
into the mirror, streamed by the daemon to the reference platform, which goes down for a while;
a verified backup; OS packages of known age. The day's scores are compared with values computed
by hand from independent sources: the generator's list of invalid rows, the events the platform
stored (with its receipt times), the test's own clock for the outage, the spec's timeliness
classes. Formulas: docs/evaluation.md."""

from __future__ import annotations

import datetime as dt
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from api_helpers import patient
from cdc_util import LOOPBACK_API, REPO, cli_cmd, dpkg_dir, wait_for

from cdcsync import __version__
from cdcsync.config import Settings
from cdcsync.crypto.keys import write_keypair
from cdcsync.engine.accounting import TIMELINESS_LIMITS
from cdcsync.mapping.domains import default_mappings_dir
from cdcsync.ops.backup.run import take_backup
from cdcsync.ops.backup.verify import verify_backup
from cdcsync.ops.evaluate import evaluate_day
from cdcsync.spec import load_spec
from cdcsync.synth.hospital import generate, load_codes
from cdcsync.synth.load import load_bulk
from cdcsync.upstream_sim.runner import SimHandle, start_in_process
from cdcsync.validate.compiler import beijing_now

ORG = "12110000400000000X"
SPEC = load_spec()
BJ = dt.timezone(dt.timedelta(hours=8))
TICK = 0.3  # ops.heartbeat.interval_s: the stream-health bookkeeping's resolution


def _stored(sim: SimHandle) -> list[tuple[dict[str, Any], dt.datetime]]:
    """(event, receipt time as naive Beijing time) of everything the platform stored."""
    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    try:
        rows = db.execute("SELECT payload, received_at FROM events ORDER BY rowid").fetchall()
    finally:
        db.close()
    return [(json.loads(p), dt.datetime.fromisoformat(r).astimezone(BJ).replace(tzinfo=None)) for p, r in rows]


def _business(ev: dict[str, Any], today: dt.date) -> tuple[dt.date, dt.datetime | None]:
    """The event's business date and time as the spec defines them (the commit day without one)."""
    t = SPEC.table(ev["source"]["table"])
    row = ev["after"] or ev["before"] or {}
    value = row.get(t.business_date_field)
    day = dt.date.fromisoformat(str(value)[:10]) if value else today
    when = row.get(t.business_time)
    at = dt.datetime.fromisoformat(str(when)) if when and len(str(when)) > 10 else None
    return day, at.replace(tzinfo=None) if at is not None else None


def test_scores_on_the_synthetic_hospital_with_an_outage(migrated_db: str, tmp_path: Path) -> None:
    now = beijing_now()
    today = now.date()
    res = generate(load_codes(default_mappings_dir()), ORG, today, patients=40, invalid_ratio=0.15, now=now)
    invalid = sum(res.invalid_counts.values())
    assert invalid > 10
    with psycopg.connect(migrated_db) as conn:
        load_bulk(conn, SPEC, res.rows, res.updates)

    key, pub, _ = write_keypair(tmp_path / "keys", "hospital")
    sim = start_in_process(tmp_path / "sim", hospital_pubs=[pub], tls=False, announced={"software": __version__})
    end = dt.datetime.now(dt.UTC)
    dpkg = dpkg_dir(tmp_path, end, {"openssl.list": 10, "postgresql-15.list": 145})  # 1.0 and (365-145)/275 = 0.8
    data: dict[str, Any] = {
        "org_code": ORG, "state_dir": str(tmp_path / "state"), "database": {"dsn": migrated_db},
        "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 1},
        "destinations": [{"name": "national", "kind": "http", "url": sim.url, "insecure_http": True,
                          "hospital_key": str(key), "platform_public_key": str(sim.platform_pub),
                          "retry_initial_s": 0.1, "retry_max_s": 0.3, "timeout_s": 5}],
        "api": LOOPBACK_API,
        "backup": {"dir": str(tmp_path / "backups"), "include_secrets": False},
        "ops": {"heartbeat": {"interval_s": TICK}, "evaluation": {"dpkg_info_dir": str(dpkg), "refresh_s": 3600}},
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    settings = Settings.model_validate(data)
    assert sim.state is not None
    log = open(tmp_path / "daemon.log", "ab")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(cli_cmd(cfg, "run"), stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    try:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            def settled() -> bool:
                row = conn.execute("SELECT snapshot_done FROM cdcsync.checkpoint").fetchone()
                return bool(row and row[0])

            wait_for(settled, 120, "the initial snapshot")
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.quarantine").fetchone() == (invalid,),
                     30, "the invalid rows in the quarantine")
            # The platform goes down; new rows make the stream try, fail, and retry.
            sim.state.faults.outage = (time.monotonic() - sim.state.started, 3600.0)
            down_at = time.monotonic()
            stamp = beijing_now().isoformat(timespec="seconds")
            rows = [patient(f"NEW{i}", update_time=stamp, collect_time=stamp) for i in range(5)]
            cols = list(rows[0])
            conn.cursor().executemany(
                f"INSERT INTO emr.patient ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                [[r[c] for c in cols] for r in rows])
            wait_for(lambda: sim.state is not None and sim.state.counters["refused.outage"] > 0, 30, "a failed send")
            time.sleep(3.0)  # the outage lasts a few ticks (the test's clock measures it)
            sim.state.faults.outage = None
            wait_for(lambda: sum(1 for e, _ in _stored(sim) if (e["after"] or {}).get("patient_id", "")
                                 .startswith("NEW")) == 5, 30, "the rows held back by the outage")
            up_at = time.monotonic()
            # The nightly backup, taken and verified while the daemon runs.
            backup = take_backup(settings, "logical", cfg)
            assert verify_backup(settings, backup)["status"] == "ok"
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        sim.stop()

    with psycopg.connect(migrated_db, autocommit=True) as conn:
        started, stopped = conn.execute("SELECT started_at, stopped_at FROM cdcsync.daemon_run").fetchone()  # type: ignore[misc]
        (e,) = evaluate_day(conn, settings, today, now=stopped)
        healthy, observed = conn.execute("SELECT healthy_s, observed_s FROM cdcsync.stream_daily").fetchone()  # type: ignore[misc]
    got = {d.name: {c.name: c.value for c in d.components} for d in e.dimensions}
    scores = e.scores()

    # 正确性, by hand: every invalid row held (generator's list), nothing refused by the platform,
    # no required field missing; delivered = the platform's events of business date today.
    events = [(ev, at) for ev, at in _stored(sim)]
    todays = [(ev, at) for ev, at in events if _business(ev, today)[0] == today]
    delivered = len(todays)
    captured = delivered + invalid
    assert got["correctness"]["validation"] == delivered / captured
    assert got["correctness"]["platform"] == 1.0 and got["correctness"]["completeness"] == 1 - 0 / captured
    assert got["correctness"]["cards"] is None
    assert scores["correctness"] == round(100 * (0.4 * delivered / captured + 0.3 + 0.1) / 0.8, 1)

    # 及时性, by hand: each of today's events against its table's limit, from its business time to
    # the platform's receipt (the hospital's acknowledgement follows within milliseconds: events
    # within 5 s of their limit may count either way).
    within = ambiguous = 0
    for ev, at in todays:
        _, business = _business(ev, today)
        if business is None:
            within += 1  # no business time: the commit-to-acknowledgement delay, seconds
            continue
        limit = TIMELINESS_LIMITS[SPEC.table(ev["source"]["table"]).timeliness]
        delay = (at - business).total_seconds()
        if abs(delay - limit) <= 5:
            ambiguous += 1
        elif delay <= limit:
            within += 1
    share = got["timeliness"]["events"]
    assert share is not None and within / delivered <= share <= (within + ambiguous) / delivered
    assert got["timeliness"]["cases"] is None  # no early-warning case fell due

    # 稳定性, by hand: the daemon ran the whole window (evaluated at its clean stop); the stream was
    # unhealthy for the outage the test measured (from the failed sends to the rows' arrival),
    # within a few bookkeeping ticks; a verified backup (1); no restart.
    window = (stopped - started).total_seconds()
    outage = up_at - down_at
    assert got["stability"]["daemon_uptime"] == 1.0
    expected_stream = (window - outage) / window
    assert abs(got["stability"]["stream_uptime"] - expected_stream) <= 4 * TICK / window + 1 / window, (
        healthy, observed, window, outage)
    assert got["stability"]["backup"] == 1.0
    assert abs(scores["stability"] - 100 * (0.4 + 0.4 * expected_stream + 0.2)) <= 100 * 0.4 * (5 * TICK / window)

    # 适应性, by hand: the platform announced our software version (1); code tables and rule pack
    # not announced (left out); OpenSSL 10 days old (1.0), PostgreSQL 145 days: (365-145)/275 = 0.8.
    assert got["adaptability"] == {"software": 1.0, "value_domains": None, "rule_pack": None,
                                   "os_packages": pytest.approx((365 - 145) / 275, abs=1e-4)}
    assert scores["adaptability"] == round(100 * (0.3 * 1.0 + 0.3 * 0.8) / 0.6, 1) == 90.0
