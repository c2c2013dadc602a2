"""Every path that sends rows goes through the one validation stage, with one origin for the ids.

Real PostgreSQL (tests/conftest.py), the synthetic hospital with its deliberate invalid rows, the
production entry points (``cdcsync.engine.daemon.drain``, ``cdcsync snapshot``, ``cdcsync quarantine
retry``) into a JSONL file or, over real HTTPS with SM2/SM4, the reference platform.

* ``cdcsync snapshot --table patient`` sends what the daemon's snapshot sends (national codes
  plus ``*_local``) and quarantines exactly the rows the daemon quarantined;
* a DSN without ``dbname`` gives the same origin on the stream, both snapshots and the retry;
* the platform's batches carry the spec and mapping versions of their events;
* a quarantined delete is sent again as that delete by ``quarantine retry``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.config import Settings
from cdcsync.crypto.keys import write_keypair
from cdcsync.engine.daemon import build_pipeline, drain
from cdcsync.engine.pipeline import DatabaseMismatch
from cdcsync.event import dumps
from cdcsync.mapping.domains import default_mappings_dir
from cdcsync.spec import load_spec
from cdcsync.synth.hospital import GenResult, Hospital, load_codes
from cdcsync.synth.load import load_bulk
from cdcsync.upstream_sim.runner import SimHandle, start_in_process
from cdcsync.validate.compiler import beijing_now
from cdcsync.validate.reload import RulesHolder

ORG = "12110000400000000X"
SPEC = load_spec()
NATIONAL_SEX = {"0", "1", "2", "9"}


def _write_config(tmp: Path, dsn: str, dest: dict[str, Any]) -> tuple[Settings, Path, Path]:
    mapdir = tmp / "mappings"
    shutil.copytree(default_mappings_dir(), mapdir)
    data = {
        "org_code": ORG,
        "mappings_dir": str(mapdir),
        "state_dir": str(tmp / "state"),
        "database": {"dsn": dsn},
        "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5, "batch_max_events": 200},
        "destinations": [dest],
    }
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return Settings.model_validate(data), cfg, mapdir


def _load_hospital(dsn: str, mapdir: Path, patients: int, invalid_ratio: float) -> tuple[Hospital, GenResult]:
    """Base rows and one day of the synthetic hospital, three days ago; the hospital for more days."""
    now = beijing_now()
    day = now.date() - dt.timedelta(days=3)
    hosp = Hospital(load_codes(mapdir), ORG, day, seed=3, patients=patients, invalid_ratio=invalid_ratio, now=now)
    res = GenResult()
    res.add_group(hosp.base_group(dt.datetime.combine(day, dt.time()) - dt.timedelta(days=30)))
    first = hosp.day(day)
    for g in first.groups:
        res.add_group(g)
    for kind, keys in first.invalid.items():
        res.invalid[kind].extend(keys)
    _load(dsn, res)
    return hosp, res


def _load(dsn: str, res: GenResult) -> None:
    with psycopg.connect(dsn) as conn:
        load_bulk(conn, SPEC, res.rows, res.updates)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _key(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(json.loads(dumps(row[c])) for c in SPEC.table(table).primary_key)


def _quarantine(dsn: str, table: str | None = None) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT event_id, table_name, primary_key, rule_id, op, status, raw_row"
                           " FROM cdcsync.quarantine WHERE %s::text IS NULL OR table_name = %s"
                           " ORDER BY event_id", (table, table)).fetchall()


def _cli(cfg: Path, *args: str) -> Any:
    result = CliRunner().invoke(main, ["-c", str(cfg), *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _fix_sex_mapping(mapdir: Path) -> None:
    """Map every unknown local sex code the synthetic hospital uses to 9 (未说明的性别)."""
    path = mapdir / "local" / "example" / "sex.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for code in ("男", "W", "Z"):
        doc["map"].setdefault(code, "9")
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


# ----------------------------------------------------------------------------- point 1


def test_cli_snapshot_validates_and_maps_like_the_daemon(migrated_db: str, tmp_path: Path) -> None:
    events_file = tmp_path / "national.jsonl"
    settings, cfg, mapdir = _write_config(tmp_path, migrated_db,
                                          {"name": "national", "kind": "jsonl", "path": str(events_file)})
    _, res = _load_hospital(migrated_db, mapdir, patients=60, invalid_ratio=0.1)
    bad_patients = {k for kind in ("bad_id_check_digit", "unknown_local_code")
                    for t, k in res.invalid[kind] if t == "patient"}
    assert bad_patients, "the synthetic day must hold invalid patients"

    drain(settings)  # the daemon's initial snapshot
    daemon_events = _read_jsonl(events_file)
    daemon_rows = {_key("patient", e["after"]): e["after"] for e in daemon_events
                   if e["source"]["table"] == "patient"}
    daemon_held = {(tuple(q["primary_key"].values()), q["rule_id"]) for q in _quarantine(migrated_db, "patient")}
    assert {k for k, _ in daemon_held} == bad_patients
    seen_ids = {q["event_id"] for q in _quarantine(migrated_db)}

    out = _cli(cfg, "snapshot", "--destination", "national", "--table", "patient")
    assert f"投递 {len(daemon_rows)} 条" in out.output and f"{len(bad_patients)} 条未通过校验已隔离" in out.output

    cli_events = _read_jsonl(events_file)[len(daemon_events):]
    assert {e["op"] for e in cli_events} == {"r"} and {e["source"]["table"] for e in cli_events} == {"patient"}
    cli_rows = {_key("patient", e["after"]): e["after"] for e in cli_events}
    # Row by row the same content as the daemon sent: national sex code plus the local one.
    assert cli_rows == daemon_rows
    assert all(r["sex_code"] in NATIONAL_SEX and "sex_code_local" in r for r in cli_rows.values())
    assert all(e["source"]["mapping_version"] and e["source"]["spec_version"] == SPEC.version for e in cli_events)
    # The invalid rows were held again (under the ad-hoc snapshot's ids), with the same rules.
    cli_held = {(tuple(q["primary_key"].values()), q["rule_id"])
                for q in _quarantine(migrated_db, "patient") if q["event_id"] not in seen_ids}
    assert cli_held == daemon_held


# ----------------------------------------------------------------------------- point 4


def _dsn_without_dbname(dsn: str) -> tuple[str, str]:
    parts = dict(p.split("=", 1) for p in dsn.split())
    name = parts.pop("dbname")
    return " ".join(f"{k}={v}" for k, v in parts.items()), name


def test_dsn_without_dbname_gives_one_origin_on_every_path(migrated_db: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, dbname = _dsn_without_dbname(migrated_db)
    monkeypatch.setenv("PGDATABASE", dbname)  # libpq's choice when the DSN names no database
    events_file = tmp_path / "national.jsonl"
    settings, cfg, mapdir = _write_config(tmp_path, dsn, {"name": "national", "kind": "jsonl",
                                                          "path": str(events_file)})
    assert settings.database.dbname == dbname
    hosp, _ = _load_hospital(migrated_db, mapdir, patients=30, invalid_ratio=0.1)
    drain(settings)  # daemon: initial snapshot
    later = GenResult()
    for g in hosp.day(beijing_now().date() - dt.timedelta(days=2)).groups:
        later.add_group(g)
    _load(migrated_db, later)
    drain(settings)  # daemon: replication stream
    _cli(cfg, "snapshot", "--destination", "national", "--table", "patient")  # CLI: ad-hoc snapshot
    _fix_sex_mapping(mapdir)
    retried = json.loads(_cli(cfg, "quarantine", "retry", "--json").output)  # quarantine retry

    events = _read_jsonl(events_file)
    paths = {("snapshot" if e["source"]["snapshot"] else "stream") for e in events}
    assert paths == {"snapshot", "stream"} and retried["released"]
    origin = f"{ORG}.{dbname}:"
    assert {e["id"].split(":", 1)[0] + ":" for e in events} == {origin}
    assert {e["source"]["db"] for e in events} == {dbname}
    assert {q["event_id"].split(":", 1)[0] + ":" for q in _quarantine(migrated_db)} == {origin}
    released = [e for e in events if e["id"] in set(retried["released"])]
    assert len(released) == len(retried["released"]) and {e["source"]["db"] for e in released} == {dbname}


def test_a_connection_to_another_database_than_the_ids_name_is_refused(migrated_db: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A service file can choose the database behind libpq's back: the session stops with a clear
    message instead of sending ids that name another database."""
    dsn, dbname = _dsn_without_dbname(migrated_db)
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[mirror]\ndbname={dbname}\n", encoding="utf-8")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    monkeypatch.delenv("PGDATABASE", raising=False)
    settings, _, _ = _write_config(tmp_path, f"service=mirror {dsn}", {"name": "national", "kind": "jsonl",
                                                                      "path": str(tmp_path / "e.jsonl")})
    pipe = build_pipeline(settings, settings.destinations[0], RulesHolder.load())
    with pytest.raises(DatabaseMismatch, match="dbname"):
        pipe.snapshot_once()
    assert not (tmp_path / "e.jsonl").exists() or not _read_jsonl(tmp_path / "e.jsonl")


# ----------------------------------------------------------------------------- points 2 and 8


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[SimHandle, Path]]:
    key, pub, _ = write_keypair(tmp_path / "keys", "hospital")
    with start_in_process(tmp_path / "sim", hospital_pubs=[pub]) as sim:
        yield sim, key


def _platform_events(sim: SimHandle, table: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    try:
        rows = db.execute("SELECT payload FROM events WHERE table_name = ? ORDER BY rowid", (table,)).fetchall()
    finally:
        db.close()
    return [json.loads(p) for (p,) in rows]


def _platform_batches(sim: SimHandle) -> list[tuple[str, str, set[tuple[str | None, str | None]]]]:
    """(batch id, header spec_version, header mapping_version, versions found in its events)."""
    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    try:
        heads = db.execute("SELECT batch_id, spec_version, mapping_version FROM batches").fetchall()
        events = db.execute("SELECT batch_id, payload FROM events").fetchall()
    finally:
        db.close()
    found: dict[str, set[tuple[str | None, str | None]]] = {}
    for bid, payload in events:
        src = json.loads(payload)["source"]
        found.setdefault(bid, set()).add((src["spec_version"], src["mapping_version"]))
    return [(s, m, found.get(b, set())) for b, s, m in heads]


def test_platform_gets_versions_and_retried_deletes(migrated_db: str, tmp_path: Path,
                                                    platform: tuple[SimHandle, Path]) -> None:
    sim, key = platform
    dest = {"name": "national", "kind": "http", "url": sim.url, "ca_bundle": str(sim.ca_bundle),
            "hospital_key": str(key), "platform_public_key": str(sim.platform_pub),
            "retry_initial_s": 0.05, "retry_max_s": 0.5, "timeout_s": 10}
    settings, cfg, mapdir = _write_config(tmp_path, migrated_db, dest)
    _, res = _load_hospital(migrated_db, mapdir, patients=30, invalid_ratio=0.0)
    drain(settings)

    # Point 2: every batch names the versions its events were validated and mapped with.
    version = RulesHolder.load(mapdir, "example").version
    assert {(s, m) for s, m, _ in _platform_batches(sim)} == {(SPEC.version, version)}
    assert all(found == {(s, m)} for s, m, found in _platform_batches(sim))

    # Point 8: deletes the platform refuses are quarantined with their before-image ...
    patients = sorted(res.rows["patient"], key=lambda r: r["patient_id"])
    gone, back = patients[:3], patients[3]
    assert sim.state is not None
    sim.state.faults.reject_tables = frozenset({"patient"})
    with psycopg.connect(migrated_db) as conn:
        for r in [*gone, back]:
            conn.execute("DELETE FROM emr.patient WHERE org_code = %s AND patient_id = %s",
                         (r["org_code"], r["patient_id"]))
    drain(settings)
    held = {tuple(q["primary_key"].values()): q for q in _quarantine(migrated_db, "patient")}
    keys = {(r["org_code"], r["patient_id"]) for r in [*gone, back]}
    assert set(held) == keys and {q["op"] for q in held.values()} == {"d"}
    sim.state.faults.reject_tables = frozenset()
    # ... one of them comes back (inserted again): its delete is superseded, not resent.
    cols = list(back)
    with psycopg.connect(migrated_db) as conn:
        conn.execute(f"INSERT INTO emr.patient ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                     [back[c] for c in cols])
    drain(settings)

    outcome = json.loads(_cli(cfg, "quarantine", "retry", "--json").output)
    back_key = (back["org_code"], back["patient_id"])
    assert sorted(outcome["released"]) == sorted(q["event_id"] for k, q in held.items() if k != back_key)
    assert outcome["discarded"] == [held[back_key]["event_id"]]
    after = {tuple(q["primary_key"].values()): q for q in _quarantine(migrated_db, "patient")}
    assert after[back_key]["rule_id"] == "GONE002" and after[back_key]["status"] == "discarded"

    # Row by row at the platform: each deleted patient's delete arrived under its quarantined id
    # with the before-image the snapshot had sent (mapped: national sex code and the local one).
    received = _platform_events(sim, "patient")
    snapshot = {_key("patient", e["after"]): e["after"] for e in received if e["op"] == "r"}
    deletes = {_key("patient", e["before"]): e for e in received if e["op"] == "d"}
    assert set(deletes) == {(r["org_code"], r["patient_id"]) for r in gone}
    for k, e in deletes.items():
        assert e["id"] == held[k]["event_id"] and e["after"] is None
        assert e["before"] == snapshot[k]
        assert e["before"]["sex_code"] in NATIONAL_SEX and "sex_code_local" in e["before"]
    # Folded in arrival order, the platform holds exactly the patients of the mirror.
    state: dict[tuple[Any, ...], dict[str, Any]] = {}
    for e in received:
        if e["op"] == "d":
            state.pop(_key("patient", e["before"]), None)
        else:
            state[_key("patient", e["after"])] = e["after"]
    with psycopg.connect(migrated_db) as conn:
        mirror = {(o, p) for o, p in conn.execute("SELECT org_code, patient_id FROM emr.patient").fetchall()}
    assert set(state) == mirror
    # Every batch since (the refused deletes', the retry's) carried the versions too (a batch the
    # platform refused whole stored no event).
    assert {(s, m) for s, m, _ in _platform_batches(sim)} == {(SPEC.version, version)}
    assert all(found <= {(s, m)} for s, m, found in _platform_batches(sim))
