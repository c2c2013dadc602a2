"""Backups: taken from a populated mirror, verified by a test restore, restored into a fresh
cluster with equal row counts; corruption detected; retention; the timer unit; the status."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cdc_util import PROBE_DDL, NewCluster, prepare_db, settings_for

from cdcsync.config import Settings
from cdcsync.db.cluster import LocalCluster
from cdcsync.ops.backup.catalog import Backup, BackupError, Manifest, latest_verified_backup, list_backups
from cdcsync.ops.backup.figures import table_figures
from cdcsync.ops.backup.health import FAILED, MISSING, UNVERIFIED, backup_status
from cdcsync.ops.backup.pgtools import Account, bindir
from cdcsync.ops.backup.restore import advance_wal, restore_database
from cdcsync.ops.backup.retention import to_keep
from cdcsync.ops.backup.run import take_backup
from cdcsync.ops.backup.verify import verify_backup

REPO = Path(__file__).resolve().parents[1]


def populate(dsn: str, n: int = 500) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PROBE_DDL)
        conn.execute(
            "INSERT INTO emr.cdc_probe (id, i4, amount, name, day, at_tstz, blob, doc, tags)"
            " SELECT g, g * 7, g / 3.0, '患者' || g, date '2026-01-01' + g,"
            " timestamptz '2026-01-01 08:00+08' + g * interval '1 h',"
            " decode(md5(g::text), 'hex'), jsonb_build_object('k', g), ARRAY['a' || g] FROM generate_series(1, %s) g",
            (n,))
        conn.execute("INSERT INTO cdcsync.checkpoint (destination, slot_name, snapshot_done)"
                     " VALUES ('t', 'cdcsync_t', true)")


def backup_settings(dsn: str, tmp: Path, **backup: Any) -> tuple[Settings, Path]:
    settings, cfg = settings_for(dsn, tmp)
    key = tmp / "backup.key"
    if not key.exists():
        key.write_text(os.urandom(16).hex())
        key.chmod(0o600)
    hospital_key = tmp / "keys" / "hospital.key"
    hospital_key.parent.mkdir(exist_ok=True)
    hospital_key.write_text("-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n")
    hospital_key.chmod(0o600)
    (tmp / "keys" / "platform.pub").write_text("public\n")
    data = settings.model_dump(mode="json")
    data["backup"] = {"dir": str(tmp / "backups"), "key_file": str(key), "extra_paths": [str(tmp / "keys")],
                      "verify_sample_rows": 50, **backup}
    return Settings.model_validate(data), cfg


@pytest.fixture
def mirror(migrated_db: str) -> str:
    prepare_db(migrated_db)
    populate(migrated_db)
    return migrated_db


@pytest.fixture
def fresh_cluster(new_cluster: NewCluster) -> LocalCluster:
    """An initialised, stopped cluster to restore into."""
    return new_cluster(start=False)


def counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {k: v["rows"] for k, v in table_figures(conn, 0).items()}


def test_logical_backup_verified_and_restored_into_a_fresh_cluster(
        mirror: str, tmp_path: Path, fresh_cluster: LocalCluster) -> None:
    settings, cfg = backup_settings(mirror, tmp_path)
    backup = take_backup(settings, "logical", cfg)
    m = backup.manifest
    assert m.status == "ok" and m.snapshot_lsn and m.start_lsn and m.end_lsn
    assert {"database.dump", "globals.sql", "files.tar.gz", "secrets.tar.sm4"} <= set(m.files)
    assert all(len(f["sm3"]) == 64 and f["size"] > 0 for f in m.files.values())
    assert m.source["emr.cdc_probe"]["rows"] == 500 and len(m.source["emr.cdc_probe"]["sample"]) == 50
    # the private key is only in the encrypted part
    assert str(tmp_path / "keys" / "hospital.key") in m.archived["secrets"]
    assert str(tmp_path / "keys" / "platform.pub") in m.archived["files"]
    assert b"not a real key" not in (backup.path / "secrets.tar.sm4").read_bytes()

    result = verify_backup(settings, backup)
    assert result["status"] == "ok", result["problems"]
    assert [s["step"] for s in result["steps"]] == ["digests", "test_restore"]
    assert latest_verified_backup(settings, dt.timedelta(hours=1)) is not None

    # A fresh cluster starts its WAL near zero: refused until its position is moved past the backup.
    target = Account(fresh_cluster.dsn("emr"))
    fresh_cluster.start()
    with pytest.raises(BackupError, match="advance-wal"):
        restore_database(backup, target, bindir(settings))
    fresh_cluster.stop()
    advance_wal(list_backups(settings.backup.dir)[-1], bindir(settings), fresh_cluster.datadir)  # type: ignore[arg-type]
    fresh_cluster.start()
    done = restore_database(backup, target, bindir(settings), with_globals=True)
    assert done["streams"] == {"t": "snapshot"}  # no daemon streamed: a new initial snapshot
    assert counts(target.dsn) == counts(mirror)
    assert counts(target.dsn)["emr.cdc_probe"] == 500

    # the archive comes back, the private key decrypted with the backup key
    from cdcsync.ops.backup.files import extract_files

    out = tmp_path / "restored-files"
    extract_files(backup.path, backup.id, out, settings.backup.key_file)
    restored_key = out / str(tmp_path / "keys" / "hospital.key").lstrip("/")
    assert "not a real key" in restored_key.read_text()
    assert restored_key.stat().st_mode & 0o077 == 0


def test_corrupted_backup_file_is_detected(mirror: str, tmp_path: Path) -> None:
    settings, cfg = backup_settings(mirror, tmp_path)
    backup = take_backup(settings, "logical", cfg)
    dump = backup.path / "database.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    result = verify_backup(settings, backup)
    assert result["status"] == "failed"
    assert any("database.dump" in p and "SM3" in p for p in result["problems"])
    st = backup_status(settings)
    assert st["alert"]["code"] == UNVERIFIED
    assert latest_verified_backup(settings) is None


def test_live_database_is_not_overwritten_without_force_and_confirmation(mirror: str, tmp_path: Path) -> None:
    settings, cfg = backup_settings(mirror, tmp_path)
    backup = take_backup(settings, "logical", cfg)
    target = Account(mirror)
    with pytest.raises(BackupError, match="--force"):
        restore_database(backup, target, bindir(settings))
    with pytest.raises(BackupError, match="再次确认"):
        restore_database(backup, target, bindir(settings), force=True, confirm="wrong")
    with psycopg.connect(mirror, autocommit=True) as conn:
        conn.execute("DELETE FROM emr.cdc_probe WHERE id > 100")
    name = target.dbname
    restore_database(backup, target, bindir(settings), force=True, confirm=name)
    assert counts(mirror)["emr.cdc_probe"] == 500


def test_physical_backup_checked_by_pg_verifybackup(mirror: str, tmp_path: Path) -> None:
    settings, cfg = backup_settings(mirror, tmp_path)
    backup = take_backup(settings, "physical", cfg)
    assert backup.manifest.physical["start_lsn"] and backup.manifest.physical["end_lsn"]
    assert {"physical/base.tar.gz", "physical/pg_wal.tar.gz", "physical/backup_manifest"} <= set(backup.manifest.files)
    result = verify_backup(settings, backup)
    assert result["status"] == "ok", result["problems"]
    # a damaged file inside the base backup, with the digests rewritten to match: pg_verifybackup finds it
    import tarfile

    base = backup.path / "physical" / "base.tar.gz"
    work = tmp_path / "rewrite"
    with tarfile.open(base) as tar:
        tar.extractall(work, filter="tar")
    (work / "PG_VERSION").write_text("99\n")
    with tarfile.open(base, "w:gz") as tar:
        for p in sorted(work.iterdir()):
            tar.add(p, arcname=p.name)
    from cdcsync.ops.backup.catalog import load_backup, write_manifest
    from cdcsync.ops.backup.run import digest_files

    manifest = backup.manifest
    digest_files(backup.path, manifest)
    write_manifest(backup.path, manifest)
    result = verify_backup(settings, load_backup(backup.path))
    assert result["status"] == "failed"
    assert any("pg_verifybackup" in p and "PG_VERSION" in p for p in result["problems"]), result["problems"]


def test_failed_and_missing_backups_are_alerts(migrated_db: str, tmp_path: Path) -> None:
    settings, cfg = backup_settings(migrated_db, tmp_path)
    assert backup_status(settings)["alert"]["code"] == MISSING
    broken = Settings.model_validate(settings.model_dump(mode="json") | {
        "database": {"dsn": "host=127.0.0.1 port=1 dbname=nowhere user=x connect_timeout=2"}})
    with pytest.raises(Exception):  # noqa: B017 - whatever the cause, it is recorded
        take_backup(broken, "logical", cfg)
    st = backup_status(settings)
    assert st["alert"]["code"] == FAILED and st["last"]["status"] == "failed"


def _fake(tmp: Path, at: dt.datetime, verified: bool = True) -> Backup:
    m = Manifest(id=at.strftime("%Y%m%dT%H%M%SZ"), kind="logical", started_at=at.isoformat(),
                 finished_at=at.isoformat(), status="ok")
    return Backup(tmp, m, {"status": "ok" if verified else "failed"})


def test_retention_keeps_daily_and_weekly(tmp_path: Path) -> None:
    start = dt.datetime(2026, 1, 1, 2, 30, tzinfo=dt.UTC)
    backups = [_fake(tmp_path, start + dt.timedelta(days=d, hours=h)) for d in range(60) for h in (0, 6)]
    backups.append(_fake(tmp_path, start + dt.timedelta(days=60), verified=False))
    keep = to_keep(backups, keep_daily=7, keep_weekly=4)
    bj = dt.timezone(dt.timedelta(hours=8))
    good = [b for b in backups if b.verified]
    daily = {b.id for b in good[-14:][1::2]}  # two a day: the later one of each of the last 7 days
    weekly = {}
    for b in good:  # the newest of each ISO week (Beijing time), the last 4 weeks
        weekly[dt.datetime.fromisoformat(b.manifest.started_at).astimezone(bj).isocalendar()[:2]] = b.id
    last_weeks = {weekly[w] for w in sorted(weekly)[-4:]}
    assert keep == daily | last_weeks | {backups[-1].id}
    assert backups[-1].id in keep  # the newest (failed) attempt stays as evidence


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_backup_timer_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit_dir = REPO / "scripts" / "systemd"
    cdcsync = Path(sys.executable).with_name("cdcsync")
    service = (unit_dir / "cdcsync-backup.service").read_text(encoding="utf-8")
    (tmp_path / "cdcsync-backup.service").write_text(service.replace("/opt/cdcsync/venv/bin/cdcsync", str(cdcsync)))
    shutil.copy(unit_dir / "cdcsync-backup.timer", tmp_path)
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "cdcsync-backup.timer"),
                           str(tmp_path / "cdcsync-backup.service")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    timer = (unit_dir / "cdcsync-backup.timer").read_text(encoding="utf-8")
    assert "OnCalendar=" in timer and "Persistent=true" in timer
    assert "backup run" in service and "Type=oneshot" in service


def _run_pipe(settings: Settings, until: Any = None, dest_name: str = "t",
              passthrough: bool = True) -> tuple[Any, Any]:
    import threading

    from cdcsync.engine.daemon import build_pipeline
    from cdcsync.engine.pipeline import PassThroughTransform, run_pipeline_forever
    from cdcsync.validate.reload import RulesHolder

    dest = settings.destination(dest_name)
    pipe = build_pipeline(settings, dest, RulesHolder.load())
    if passthrough:
        pipe._transform = PassThroughTransform.for_settings(settings)  # probe table: not in the spec
    if until is not None:
        pipe.catch_up = until
    t = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    t.start()
    return pipe, t


def _drain(settings: Settings, dsn: str, dest_name: str = "t", passthrough: bool = True) -> None:
    from cdcsync.engine.pipeline import HEARTBEAT_PREFIX

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_logical_emit_message(false, %s, 'drain')::text", (HEARTBEAT_PREFIX,)).fetchone()
    from cdcsync.event import str_to_lsn

    target = str_to_lsn(str(row[0])) if row else 0
    pipe, t = _run_pipe(settings, lambda _p, pos: pos >= target, dest_name, passthrough)
    t.join(60)
    assert not t.is_alive(), "pipeline did not catch up"


def test_restore_resumes_the_stream_without_resending_or_losing(
        mirror: str, tmp_path: Path, fresh_cluster: LocalCluster) -> None:
    from cdc_util import read_events

    settings, cfg = backup_settings(mirror, tmp_path)
    with psycopg.connect(mirror, autocommit=True) as conn:
        conn.execute("DELETE FROM cdcsync.checkpoint")
    _drain(settings, mirror)  # initial snapshot: 500 rows delivered
    events = tmp_path / "events.jsonl"
    assert len(read_events(events)) == 500
    pipe, t = _run_pipe(settings)  # the daemon runs while the backup is taken
    try:
        with psycopg.connect(mirror, autocommit=True) as conn:
            conn.execute("UPDATE emr.cdc_probe SET name = 'x' WHERE id <= 10")
        backup = take_backup(settings, "logical", cfg)
    finally:
        pipe.stop.set()
        t.join(30)
    assert backup.manifest.streams_caught_up == {"t": True}
    before = read_events(events)
    fresh_cluster.start()
    fresh_cluster.stop()
    advance_wal(backup, bindir(settings), fresh_cluster.datadir)
    fresh_cluster.start()
    target = Account(fresh_cluster.dsn(backup.manifest.database))
    done = restore_database(backup, target, bindir(settings), with_globals=True)
    assert done["streams"] == {"t": "resumed"}
    restored = Settings.model_validate(settings.model_dump(mode="json") | {"database": {"dsn": target.dsn}})
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO emr.cdc_probe (id, name) VALUES (1001, 'new'), (1002, 'new')")
    _drain(restored, target.dsn)
    after = read_events(events)[len(before):]
    assert sorted(e["after"]["id"] for e in after) == [1001, 1002]  # nothing re-sent, nothing lost
    ids = [e["id"] for e in read_events(events)]
    assert len(ids) == len(set(ids))  # no id the platform already holds


def _platform_events(sim: Any) -> list[dict[str, Any]]:
    """Every event the reference platform stored, in the order it received them."""
    import json
    import sqlite3

    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    try:
        return [json.loads(p) for (p,) in db.execute("SELECT payload FROM events ORDER BY rowid")]
    finally:
        db.close()


def _fold(events: list[dict[str, Any]]) -> dict[str, str]:
    """The platform's view of emr.patient: {patient_id: phone}, replaying its events in order."""
    state: dict[str, str] = {}
    for ev in events:
        if ev["op"] == "d":
            state.pop(ev["before"]["patient_id"], None)
        else:
            state[ev["after"]["patient_id"]] = ev["after"]["phone"]
    return state


def _phones(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT patient_id, phone FROM emr.patient"))  # type: ignore[arg-type]


def _insert_patients(dsn: str, ids: range) -> None:
    from api_helpers import now_beijing, patient

    now = now_beijing()
    rows = [patient(f"P{i:05d}", phone=f"1380000{i:04d}", update_time=now, collect_time=now) for i in ids]
    cols = list(rows[0])
    with psycopg.connect(dsn, autocommit=True) as conn:
        marks = ", ".join(["%s"] * len(cols))
        conn.cursor().executemany(f"INSERT INTO emr.patient ({', '.join(cols)}) VALUES ({marks})",
                                  [[r[c] for c in cols] for r in rows])


def test_restore_with_a_new_snapshot_resends_only_duplicates(
        migrated_db: str, tmp_path: Path, fresh_cluster: LocalCluster) -> None:
    """A destination not confirmed past the dump takes a new snapshot after the restore; rows the
    platform already holds unchanged go out under the ids it holds them by: duplicates it drops."""
    import yaml
    from api_helpers import ORG

    from cdcsync.crypto.keys import write_keypair
    from cdcsync.upstream_sim.runner import start_in_process

    prepare_db(migrated_db)
    key, pub, _ = write_keypair(tmp_path / "hospital", "hospital")
    sim = start_in_process(tmp_path / "sim", hospital_pubs=[pub], tls=False)
    try:
        base, cfg = backup_settings(migrated_db, tmp_path)
        data = base.model_dump(mode="json") | {"org_code": ORG}
        data["destinations"] = [{"name": "national", "kind": "http", "url": sim.url, "insecure_http": True,
                                 "hospital_key": str(key), "platform_public_key": str(sim.platform_pub),
                                 "retry_initial_s": 0.1, "retry_max_s": 0.5, "timeout_s": 5}]
        cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        settings = Settings.model_validate(data)
        _insert_patients(migrated_db, range(0, 200))
        _drain(settings, migrated_db, "national", passthrough=False)  # the initial snapshot: 200 rows
        with psycopg.connect(migrated_db, autocommit=True) as conn:  # then streamed changes
            conn.execute("UPDATE emr.patient SET phone = '1390000' || substr(patient_id, 3)"
                         " WHERE patient_id < 'P00020'")
            conn.execute("DELETE FROM emr.patient WHERE patient_id BETWEEN 'P00190' AND 'P00194'")
        _insert_patients(migrated_db, range(200, 210))
        _drain(settings, migrated_db, "national", passthrough=False)
        held = _platform_events(sim)
        assert len(held) == 200 + 20 + 5 + 10
        assert _fold(held) == _phones(migrated_db)

        backup = take_backup(settings, "logical", cfg)  # no daemon running: not confirmed past the dump
        assert backup.manifest.streams_caught_up == {"national": False}
        fresh_cluster.start()
        fresh_cluster.stop()
        advance_wal(backup, bindir(settings), fresh_cluster.datadir)
        fresh_cluster.start()
        target = Account(fresh_cluster.dsn(backup.manifest.database))
        done = restore_database(backup, target, bindir(settings), with_globals=True)
        assert done["streams"] == {"national": "snapshot"}

        # The documented path: start cdcsync on the restored database; it takes the new snapshot.
        restored = Settings.model_validate(data | {"database": {"dsn": target.dsn}})
        assert sim.state is not None
        dupes = sim.state.counters["duplicates"]
        _drain(restored, target.dsn, "national", passthrough=False)
        rows = _phones(target.dsn)
        assert len(rows) == 205
        assert sim.state.counters["duplicates"] - dupes == 205  # every row re-sent as a duplicate
        after = _platform_events(sim)
        assert after == held  # nothing new stored
        # Row by row: the platform holds each row's current version once, and it equals the mirror.
        for pid, phone in rows.items():
            versions = [e for e in after if e["op"] != "d" and e["after"]["patient_id"] == pid
                        and e["after"]["phone"] == phone]
            assert len(versions) == 1, (pid, versions)
        assert _fold(after) == rows

        # Streaming goes on from the restored database: a new row is a new event.
        _insert_patients(target.dsn, range(300, 301))
        _drain(restored, target.dsn, "national", passthrough=False)
        assert [e["after"]["patient_id"] for e in _platform_events(sim)[len(held):]] == ["P00300"]
    finally:
        sim.stop()
