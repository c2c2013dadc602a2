"""Minimum necessary (issue 12, point 3): only the dataset spec's tables and columns leave the
hospital. The publication holds exactly the spec's tables (``db init`` narrows an old schema-wide
one and follows spec changes); columns the spec does not name are left out of every event and
counted in ``status``; a table a vendor adds to ``emr`` never streams.

Real PostgreSQL, a real daemon subprocess, a JSONL destination and an HTTPS reference platform.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.crypto.keys import write_keypair
from cdcsync.db.migrate import PUBLICATION, apply_migrations
from cdcsync.event import Change, Event
from cdcsync.spec import load_spec
from cdcsync.synth.hospital import generate, load_codes
from cdcsync.synth.load import load_bulk
from cdcsync.upstream_sim.runner import start_subprocess
from cdcsync.validate.reload import RulesHolder
from cdcsync.validate.stage import ValidationStage
from tests.cdc_util import LOOPBACK_API, REPO, cli_cmd, read_events
from tests.cdc_util import wait_for as _wait

ORG = "12110000400000000X"
SPEC = load_spec()
SECRET = "SECRET-VENDOR"  # in every value of the columns and table that must never leave


def _published(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {f"{s}.{t}" for s, t in conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (PUBLICATION,))}


def _spec_tables(spec: Any = SPEC) -> set[str]:
    return {f"emr.{t}" for t in spec.table_names}


def test_db_init_narrows_a_schema_wide_publication_and_follows_spec_changes(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:  # what earlier versions left behind
        conn.execute("CREATE SCHEMA emr")
        conn.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLES IN SCHEMA emr")
        conn.execute("CREATE TABLE emr.vendor_staging (id int PRIMARY KEY, id_number text)")
    first = CliRunner().invoke(main, ["db", "init", "--dsn", fresh_db])
    assert first.exit_code == 0, first.output
    assert "emr.vendor_staging" in first.output and "移除" in first.output
    assert _published(fresh_db) == _spec_tables()
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_publication_namespace").fetchone() == (0,)
    again = CliRunner().invoke(main, ["db", "init", "--dsn", fresh_db])
    assert again.exit_code == 0 and "未做任何更改" in again.output, again.output

    # A spec upgrade that drops a table, then one that brings it back: db init follows both.
    smaller = dataclasses.replace(SPEC, tables=SPEC.tables[:-1])
    res = apply_migrations(fresh_db, REPO / "sql", spec=smaller)
    assert res.unpublished == [f"emr.{SPEC.tables[-1].name}"] and not res.published
    assert _published(fresh_db) == _spec_tables(smaller)
    res = apply_migrations(fresh_db, REPO / "sql")
    assert res.published == [f"emr.{SPEC.tables[-1].name}"] and not res.unpublished
    assert _published(fresh_db) == _spec_tables()


def test_daemon_refuses_a_schema_wide_publication(migrated_db: str, tmp_path: Path) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute(f"DROP PUBLICATION {PUBLICATION}")
        conn.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLES IN SCHEMA emr")
    cfg = _config(tmp_path, migrated_db, [{"name": "f", "kind": "jsonl", "path": str(tmp_path / "f.jsonl")}])
    res = CliRunner().invoke(main, ["-c", str(cfg), "run"])
    assert res.exit_code == 2, res.output
    assert "cdcsync db init" in res.output and "Traceback" not in res.output


def _change(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, ordinal: int) -> Change:
    return Change(op, "emr", "patient", before, after, 0x1000 + ordinal, 7,  # type: ignore[arg-type]
                  dt.datetime(2026, 11, 25, 8, tzinfo=dt.UTC), ordinal)


def test_stage_leaves_unnamed_columns_out_of_every_image(caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    now = dt.datetime.now()
    row = next(r for r in generate(load_codes(), ORG, now.date() - dt.timedelta(days=1), patients=3,
                                   now=now, invalid_ratio=0.0).rows["patient"])
    row = {f: row.get(f) for f in SPEC.table("patient").field_names}  # the decoder's shape
    stage = ValidationStage(RulesHolder.load(), ORG, "emr")
    with caplog.at_level(logging.WARNING):
        assert isinstance(stage(_change("c", None, row, 0)), Event)  # exact: nothing counted
        extra = {**row, "vendor_note": SECRET}
        outs = [stage(_change("c", None, extra, 1)), stage(_change("u", extra, extra, 2)),
                stage(_change("d", extra, None, 3))]
        # A column renamed (same count): the stage looks at each table's full column set again
        # every second; in between the compiled checker leaves the column out all the same.
        renamed = {k if k != "health_card_no" else "card_no_v2": v for k, v in row.items()}
        outs.append(stage(_change("r", None, renamed, 4)))
        clock = time.monotonic() + 5
        monkeypatch.setattr("cdcsync.validate.stage._monotonic", lambda: clock)
        outs.append(stage(_change("r", None, renamed, 5)))
    for out in outs:
        assert isinstance(out, Event), out
        for image in (out.before, out.after):
            assert image is None or not {"vendor_note", "card_no_v2"} & set(image)
            assert SECRET not in json.dumps(image, default=str)
    assert stage.dropped.peek() == {("patient", "vendor_note"): 3, ("patient", "card_no_v2"): 1}
    warnings = [r.getMessage() for r in caplog.records if "not in the dataset spec" in r.getMessage()]
    assert len([w for w in warnings if "emr.patient.vendor_note" in w]) == 1
    assert SECRET not in caplog.text


# --- end to end ------------------------------------------------------------------------------


def _config(tmp: Path, dsn: str, dests: list[dict[str, Any]]) -> Path:
    data = {"org_code": ORG, "state_dir": str(tmp / "state"), "database": {"dsn": dsn},
            "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5},
            "destinations": dests, "api": LOOPBACK_API}
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    return cfg


def _sim_payloads(data_dir: Path) -> list[bytes]:
    import sqlite3

    db = sqlite3.connect(data_dir / "received.sqlite")
    try:
        rows = db.execute("SELECT payload FROM events").fetchall()
        return [p if isinstance(p, bytes) else str(p).encode() for (p,) in rows]
    finally:
        db.close()


def test_extra_column_and_vendor_table_never_leave(migrated_db: str, tmp_path: Path) -> None:
    dsn = migrated_db
    now = dt.datetime.now()
    patients = generate(load_codes(), ORG, now.date() - dt.timedelta(days=1), patients=30, now=now,
                        invalid_ratio=0.0).rows["patient"]
    first, second = patients[:15], patients[15:]
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A vendor adds a column to a spec table and a staging table with identity data to emr.
        conn.execute("ALTER TABLE emr.patient ADD COLUMN vendor_note text")
        conn.execute("CREATE TABLE emr.vendor_staging (id int PRIMARY KEY, id_number text, name text)")
        conn.execute("INSERT INTO emr.vendor_staging SELECT g, %s || g, %s FROM generate_series(1, 20) g",
                     (SECRET, SECRET))
        load_bulk(conn, SPEC, {"patient": first})
        conn.execute("UPDATE emr.patient SET vendor_note = %s || patient_id", (SECRET,))
    init = CliRunner().invoke(main, ["db", "init", "--dsn", dsn])  # as an admin would after the vendor's change
    assert init.exit_code == 0 and "vendor_staging" not in init.output, init.output

    hk, hp, _ = write_keypair(tmp_path / "keys", "hospital")
    sim = start_subprocess(tmp_path / "sim", hospital_pubs=[hp], log_file=tmp_path / "sim.log")
    jsonl = tmp_path / "file.jsonl"
    cfg = _config(tmp_path, dsn, [
        {"name": "file", "kind": "jsonl", "path": str(jsonl)},
        {"name": "national", "kind": "http", "url": sim.url, "ca_bundle": str(sim.ca_bundle),
         "hospital_key": str(hk), "platform_public_key": str(sim.platform_pub), "retry_initial_s": 0.1,
         "retry_max_s": 1.0, "timeout_s": 10}])
    log_path = tmp_path / "daemon.log"
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen(cli_cmd(cfg, "run"), stdout=fh, stderr=subprocess.STDOUT, cwd=str(REPO),
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            _wait(lambda: conn.execute("SELECT count(*) FROM cdcsync.checkpoint WHERE snapshot_done")
                  .fetchone() == (2,), 60, "both snapshots")  # the snapshot carried `first`
            # Streamed: inserts with the column set, updates of it, a delete, the vendor table.
            extra = [dict(r, vendor_note=f"{SECRET}{i}") for i, r in enumerate(second)]
            cols = [*SPEC.table("patient").field_names, "vendor_note"]
            with conn.transaction():
                conn.cursor().executemany(
                    f"INSERT INTO emr.patient ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                    [[r.get(c) for c in cols] for r in extra])
            conn.execute("UPDATE emr.patient SET vendor_note = vendor_note || '!' WHERE patient_id = %s",
                         (first[0]["patient_id"],))
            conn.execute("DELETE FROM emr.patient WHERE patient_id = %s", (first[1]["patient_id"],))
            conn.execute("INSERT INTO emr.vendor_staging VALUES (99, %s, %s)", (SECRET, SECRET))
            conn.execute("UPDATE emr.vendor_staging SET name = %s", (SECRET + "2",))
        expected = len(first) + len(second) + 2  # every row once, plus the update and the delete

        def delivered() -> tuple[int, int]:
            file_n = sum(1 for e in read_events(jsonl) if e["source"]["table"] == "patient")
            return file_n, int(sim.stats()["tables"].get("patient", 0))

        _wait(lambda: min(delivered()) >= expected, 60, "every patient change at both destinations")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        sim.stop()

    file_bytes = jsonl.read_bytes()
    for where, blobs in (("jsonl", [file_bytes]), ("https", _sim_payloads(sim.data_dir))):
        for blob in blobs:
            assert SECRET.encode() not in blob and b"vendor_note" not in blob, where
            assert b"vendor_staging" not in blob, where
    events = read_events(jsonl)
    assert {e["source"]["table"] for e in events} == {"patient"}
    assert delivered_ops(events) == {"r": len(first), "c": len(second), "u": 1, "d": 1}

    res = CliRunner().invoke(main, ["-c", str(cfg), "status", "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    for d in st["destinations"]:
        assert d["dropped_columns"]["patient"]["vendor_note"] >= expected, d  # once per row (update: once)
    assert st["minimum_necessary"]["tables_not_published"] == ["vendor_staging"]
    assert st["minimum_necessary"]["columns_not_sent"] == {"patient": ["vendor_note"]}
    text = CliRunner().invoke(main, ["-c", str(cfg), "status"]).output
    assert "vendor_staging" in text and "vendor_note" in text

    log = log_path.read_text(encoding="utf-8", errors="replace")
    assert SECRET not in log
    assert log.count("emr.patient.vendor_note") == 1, log
    with psycopg.connect(dsn) as conn:
        raw = conn.execute("SELECT coalesce(string_agg(raw_row::text, ''), '') FROM cdcsync.quarantine").fetchone()
    assert raw is not None and SECRET not in raw[0]


def delivered_ops(events: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        out[e["op"]] = out.get(e["op"], 0) + 1
    return out
