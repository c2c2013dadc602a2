"""End to end against real PostgreSQL: the synthetic hospital with its deliberate invalid rows,
streamed (initial snapshot, then the replication stream) through the validation stage into a
JSONL destination. Every invalid row is held in the quarantine with the right rule, every valid
row reaches the sink, the counts add up exactly; after the mapping is fixed, ``quarantine retry``
delivers the held rows under their original event ids. No patient value reaches a log line or
the output of ``validate`` / ``quarantine list|show``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.config import Settings
from cdcsync.engine.daemon import build_pipeline
from cdcsync.engine.pipeline import HEARTBEAT_PREFIX, Pipeline, run_pipeline_forever
from cdcsync.event import dumps
from cdcsync.mapping.domains import default_mappings_dir
from cdcsync.quarantine.cli import COMMANDS
from cdcsync.spec import load_spec
from cdcsync.synth.hospital import INVALID_KINDS, GenResult, Hospital, load_codes
from cdcsync.synth.load import load_bulk
from cdcsync.validate.compiler import beijing_now
from cdcsync.validate.reload import RulesHolder

ORG = "12110000400000000X"
EXPECTED_RULE = {
    "bad_id_check_digit": "PT001",
    "unknown_local_code": "MAP001",
    "vital_out_of_range": "VS001",
    "birth_after_visit": "VT001",
    "discharge_before_admission": "DC001",
}
SPEC = load_spec()

for _cmd in COMMANDS:  # until the lead registers them on main
    main.commands.setdefault(_cmd.name or "", _cmd)


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return int(hi, 16) << 32 | int(lo, 16)


def drain(settings: Settings, holder: RulesHolder) -> Pipeline:
    """Run the destination until everything committed before the call is acknowledged."""
    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_logical_emit_message(false, %s, 'drain')::text", (HEARTBEAT_PREFIX,)).fetchone()
    assert row is not None
    target = _lsn(row[0])
    pipe = build_pipeline(settings, settings.destinations[0], holder, threading.Event())
    pipe.catch_up = lambda _p, pos: pos >= target
    t = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    t.start()
    t.join(180)
    if t.is_alive():
        pipe.stop.set()
        t.join(30)
        pytest.fail("the stream did not catch up within 180 s")
    return pipe


def _result(groups: list[Any]) -> GenResult:
    res = GenResult()
    for g in groups:
        res.add_group(g)
    return res


def _pii_values(res: GenResult) -> set[str]:
    """Patient values that must never be printed: every pii field of every generated row."""
    values: set[str] = set()
    for table, rows in res.rows.items():
        pii = [f.name for f in SPEC.table(table).pii_fields if f.type in ("varchar", "text")]
        for r in rows:
            for name in pii:
                v = r.get(name)
                if isinstance(v, str) and len(v) >= 2 and name != "content":
                    values.add(v)
    return values


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _pk(table: str, row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """Table and key values as JSON renders them (events carry dates as text)."""
    return table, tuple(json.loads(dumps(row[c])) for c in SPEC.table(table).primary_key)


@pytest.fixture
def hospital_db(migrated_db: str, tmp_path: Path) -> dict[str, Any]:
    mapdir = tmp_path / "mappings"
    shutil.copytree(default_mappings_dir(), mapdir)
    data = {
        "org_code": ORG,
        "mappings_dir": str(mapdir),
        "state_dir": str(tmp_path / "state"),
        "database": {"dsn": migrated_db},
        "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5, "batch_max_events": 500},
        "destinations": [{"name": "national", "kind": "jsonl", "path": str(tmp_path / "national.jsonl")}],
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return {"settings": Settings.model_validate(data), "cfg": cfg, "mapdir": mapdir, "dsn": migrated_db,
            "events": tmp_path / "national.jsonl"}


def _quarantined_by_day(dsn: str) -> tuple[dict[tuple[str, dt.date], int], dict[tuple[str, dt.date], int]]:
    """Per (table, business date): the rows counted quarantined in ``delivery_stats``, and those
    kept in the quarantine and not released (held or discarded: a discarded row was never delivered)."""
    with psycopg.connect(dsn) as conn:
        counted = conn.execute("SELECT table_name, business_date, sum(quarantined) FROM cdcsync.delivery_stats"
                               " WHERE destination = 'national' GROUP BY 1, 2 HAVING sum(quarantined) > 0").fetchall()
        kept = conn.execute("SELECT table_name, business_date, count(*) FROM cdcsync.quarantine"
                            " WHERE destination = 'national' AND status <> 'released' GROUP BY 1, 2").fetchall()
    return ({(str(t), d): int(n) for t, d, n in counted}, {(str(t), d): int(n) for t, d, n in kept})


def test_stream_quarantine_retry(hospital_db: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings: Settings = hospital_db["settings"]
    dsn: str = hospital_db["dsn"]
    now = beijing_now()
    day1 = now.date() - dt.timedelta(days=4)

    hosp = Hospital(load_codes(hospital_db["mapdir"]), ORG, day1, seed=7, patients=150, invalid_ratio=0.1,
                    now=now)
    first = hosp.day(day1)
    part1 = _result([hosp.base_group(dt.datetime.combine(day1, dt.time()) - dt.timedelta(days=30)), *first.groups])
    later = [hosp.day(day1 + dt.timedelta(days=i)) for i in (1, 2)]
    part2 = _result([g for d in later for g in d.groups])
    invalid: dict[tuple[str, tuple[Any, ...]], str] = {}
    for day in (first, *later):
        for kind, keys in day.invalid.items():
            for key in keys:
                invalid[key] = kind
    assert set(Counter(invalid.values())) == set(INVALID_KINDS), "the day must hold every kind of fault"

    holder = RulesHolder.load(hospital_db["mapdir"], "example")
    with psycopg.connect(dsn) as conn:
        load_bulk(conn, SPEC, part1.rows, part1.updates)
        n_snapshot = sum(conn.execute(f"SELECT count(*) FROM emr.{t}").fetchone()[0]  # type: ignore[index]
                         for t in SPEC.table_names)
    drain(settings, holder)  # initial snapshot (op r)
    with psycopg.connect(dsn) as conn:
        load_bulk(conn, SPEC, part2.rows, part2.updates)
    drain(settings, holder)  # replication stream (c, u)
    n_changes = n_snapshot + sum(len(r) for r in part2.rows.values()) + len(part2.updates)

    events = _read_jsonl(hospital_db["events"])
    assert len({e["id"] for e in events}) == len(events)
    with psycopg.connect(dsn) as conn:
        held = conn.execute("SELECT table_name, primary_key, rule_id, field, event_id FROM cdcsync.quarantine"
                            " WHERE destination = 'national' AND status = 'held'").fetchall()
        delivered, quarantined = conn.execute(
            "SELECT sum(delivered), sum(quarantined) FROM cdcsync.delivery_stats WHERE destination = 'national'"
        ).fetchone()  # type: ignore[misc]

    # Counts add up exactly: every change is either delivered or quarantined, never both.
    assert len(events) + len(held) == n_changes
    assert (delivered, quarantined) == (len(events), len(held))
    # ... and per day: each held row keeps the business date the engine counted it on.
    counted, kept = _quarantined_by_day(dsn)
    assert counted == kept
    assert not {e["id"] for e in events} & {h[4] for h in held}

    # Every invalid row is held with the right rule; nothing valid is held.
    held_rules: dict[tuple[str, tuple[Any, ...]], set[str]] = {}
    for table, pk, rule, _field, _eid in held:
        key = (table, tuple(pk[c] for c in SPEC.table(table).primary_key))
        held_rules.setdefault(key, set()).add(rule)
    assert set(held_rules) == set(invalid)
    for key, kind in invalid.items():
        assert held_rules[key] == {EXPECTED_RULE[kind]}, (key, kind, held_rules[key])

    # Every valid row reaches the sink, mapped: national code in <field>, local in <field>_local.
    delivered_keys = {_pk(e["source"]["table"], e["after"]) for e in events if e["after"]}
    for part in (part1, part2):
        for table, rows in part.rows.items():
            for r in rows:
                key = _pk(table, r)
                assert (key in delivered_keys) != (key in invalid), key
    ops = Counter(e["op"] for e in events)
    assert ops["r"] > 0 and ops["c"] > 0 and ops["u"] > 0
    sample = next(e for e in events if e["source"]["table"] == "patient")
    assert sample["after"]["sex_code"] in {"0", "1", "2", "9"} and "sex_code_local" in sample["after"]
    if "mapping_version" in sample or "mapping_version" in sample["source"]:
        assert holder.version in json.dumps(sample)

    # --- go-live check names exactly the unknown local codes -----------------------------------
    runner = CliRunner()
    cli = runner.invoke(main, ["-c", str(hospital_db["cfg"]), "mappings", "check", "--json"])
    assert cli.exit_code == 1, cli.output
    report = json.loads(cli.output)
    gaps = {(u["domain"], u["table"], u["field"]): u["local_code"] for u in report["unmapped"]}
    assert set(gaps) == {("sex", "patient", "sex_code"), ("department", "visit", "dept_code")}

    # --- fix the mapping, correct one row, delete another, retry ------------------------------
    for domain, national in (("sex", "9"), ("department", None)):
        path = hospital_db["mapdir"] / "local" / "example" / f"{domain}.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        local = next(v for (d, _t, _f), v in gaps.items() if d == domain)
        doc["map"][local] = national or next(iter(doc["map"].values()))
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    vitals = sorted(k for k, kind in invalid.items() if kind == "vital_out_of_range")
    fixed_vital, gone_vital = vitals[0], vitals[1]
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE emr.vital_sign SET temperature = 36.8 WHERE org_code = %s AND vital_sign_id = %s",
                     fixed_vital[1])
        conn.execute("DELETE FROM emr.vital_sign WHERE org_code = %s AND vital_sign_id = %s", gone_vital[1])

    cli = runner.invoke(main, ["-c", str(hospital_db["cfg"]), "quarantine", "retry", "--json"])
    assert cli.exit_code == 0, cli.output
    outcome = json.loads(cli.output)
    by_id = {h[4]: (h[0], tuple(h[1][c] for c in SPEC.table(h[0]).primary_key)) for h in held}
    released_keys = {by_id[i] for i in outcome["released"]}
    expected_release = {k for k, kind in invalid.items() if kind == "unknown_local_code"} | {fixed_vital}
    assert released_keys == expected_release
    assert {by_id[i] for i in outcome["discarded"]} == {gone_vital}
    assert {by_id[i] for i in outcome["still_held"]} == set(invalid) - expected_release - {gone_vital}

    # Delivered under the original ids; stats moved from quarantined to delivered.
    after = _read_jsonl(hospital_db["events"])
    new = after[len(events):]
    assert sorted(e["id"] for e in new) == sorted(outcome["released"])
    fixed = [e for e in new if e["source"]["table"] == "patient"]
    assert fixed and all(e["after"]["sex_code"] == "9" for e in fixed)
    with psycopg.connect(dsn) as conn:
        original = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT event_id, op, tx_id FROM cdcsync.quarantine WHERE status = 'released'").fetchall()}
    # ... in the envelope the stream would have sent: the original op and transaction.
    assert all(op in ("c", "u", "r") for op, _ in original.values())
    assert {e["id"]: (e["op"], e["source"]["tx_id"]) for e in new} == original
    with psycopg.connect(dsn) as conn:
        statuses: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM cdcsync.quarantine GROUP BY 1").fetchall())
        attempts: dict[str, int] = dict(
            conn.execute("SELECT status, min(attempts) FROM cdcsync.quarantine GROUP BY 1").fetchall())
        d2, q2 = conn.execute("SELECT sum(delivered), sum(quarantined) FROM cdcsync.delivery_stats"
                              " WHERE destination = 'national'").fetchone()  # type: ignore[misc]
    assert statuses["released"] == len(outcome["released"])
    assert statuses["discarded"] == len(outcome["discarded"])
    assert attempts["held"] == 2
    assert d2 == delivered + len(outcome["released"]) and q2 == quarantined - len(outcome["released"])
    assert d2 + q2 == n_changes
    # The released rows' statistics moved on the days they had been counted on.
    counted, kept = _quarantined_by_day(dsn)
    assert counted == kept

    # A second retry changes nothing that was released.
    cli = runner.invoke(main, ["-c", str(hospital_db["cfg"]), "quarantine", "retry", "--json"])
    assert json.loads(cli.output)["released"] == []

    # --- nothing printed or logged carries a patient value -------------------------------------
    outputs = [caplog.text]
    patient_held = next(i for i in outcome["still_held"] if by_id[i][0] == "patient")
    for args in (["quarantine", "list", "--status", "all", "--limit", "1000"], ["validate"],
                 ["validate", "--json"], ["mappings", "check"],
                 ["quarantine", "show", by_id_tail(patient_held)]):
        cli = runner.invoke(main, ["-c", str(hospital_db["cfg"]), *args])
        assert cli.exception is None or isinstance(cli.exception, SystemExit), cli.output
        outputs.append(cli.output)
    assert "***" in outputs[-1]  # show masks the pii fields of the raw row
    text = "\n".join(outputs)
    secrets = _pii_values(part1) | _pii_values(part2)
    assert len(secrets) > 100
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, f"{len(leaked)} patient values printed, e.g. field values of length {len(leaked[0])}"

    # validate finds exactly the rows that are still invalid in the mirror
    cli = runner.invoke(main, ["-c", str(hospital_db["cfg"]), "validate", "--json"])
    summary = json.loads(cli.output)
    assert cli.exit_code == 1
    failing = {t["table"]: t["failed"] for t in summary["tables"] if t["failed"]}
    still = Counter(k[0] for k in set(invalid) - expected_release - {gone_vital})
    assert failing == dict(still)


def by_id_tail(event_id: str) -> str:
    """``show`` accepts the tail of an event id."""
    return event_id.split(":", 1)[1]
