"""``cdcsync doctor``: a failing case for the checks (wrong wal_level, missing REPLICATION, a
non-UTF8 database, bad key mode, unreachable platform, a port taken, no backup), and a platform
that answers the signed no-op."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cdc_util import cli_cmd, prepare_db, settings_for

from cdcsync.config import Settings
from cdcsync.crypto.keys import write_keypair
from cdcsync.db.cluster import LocalCluster
from cdcsync.ops.doctor import FAILURE, OK, Finding, exit_code, run_doctor

REPO = Path(__file__).resolve().parents[1]


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def doctor_settings(dsn: str, tmp: Path, **extra: Any) -> Settings:
    settings, _ = settings_for(dsn, tmp)
    return Settings.model_validate(settings.model_dump(mode="json") | extra)


def test_healthy_database_checks_pass(migrated_db: str, tmp_path: Path) -> None:
    prepare_db(migrated_db)
    found = by_check(run_doctor(doctor_settings(migrated_db, tmp_path)))
    for check in ("wal_level", "replication_role", "server_encoding", "publication", "max_replication_slots"):
        assert found[check].level == OK, found[check]
    assert found["backup"].level == FAILURE  # no backup yet
    assert all(f.explain for f in found.values())
    assert found["backup"].fix


def test_missing_replication_attribute(migrated_db: str, pg_cluster: LocalCluster, tmp_path: Path) -> None:
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS doctor_norepl")
        conn.execute("CREATE ROLE doctor_norepl LOGIN")
    dsn = migrated_db.replace("user=postgres", "user=doctor_norepl")
    try:
        f = by_check(run_doctor(doctor_settings(dsn, tmp_path)))["replication_role"]
        assert f.level == FAILURE and "REPLICATION" in f.detail and "ALTER ROLE doctor_norepl REPLICATION" in f.fix
    finally:
        with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
            conn.execute("DROP OWNED BY doctor_norepl")
            conn.execute("DROP ROLE doctor_norepl")


def test_non_utf8_database(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    name = f"doctor_ascii_{os.getpid()}"
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    try:
        f = by_check(run_doctor(doctor_settings(pg_cluster.dsn(name), tmp_path)))["server_encoding"]
        assert f.level == FAILURE and "SQL_ASCII" in f.detail
    finally:
        with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name}")


@pytest.fixture
def replica_cluster() -> Iterator[LocalCluster]:
    """A second small cluster with the settings a careless install has."""
    base = Path(tempfile.mkdtemp(prefix="cdcsync-doctor-"))
    os.chmod(base, 0o755)
    cluster = LocalCluster(base / "pg", fsync=False)
    cluster.init()
    with open(cluster.datadir / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
        fh.write("wal_level = replica\nmax_replication_slots = 1\nmax_wal_senders = 1\n")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def test_wrong_wal_level_and_too_few_slots(replica_cluster: LocalCluster, tmp_path: Path) -> None:
    found = by_check(run_doctor(doctor_settings(replica_cluster.dsn(), tmp_path)))
    assert found["wal_level"].level == FAILURE and "replica" in found["wal_level"].detail
    assert "wal_level = logical" in found["wal_level"].fix
    assert found["max_replication_slots"].level != OK
    assert found["max_wal_senders"].level != OK
    assert found["max_slot_wal_keep_size"].level != OK  # -1: unlimited


def _http_dest(tmp: Path, url: str, platform_pub: Path, key_mode: int = 0o600) -> dict[str, Any]:
    key, _pub, _ = write_keypair(tmp / "keys", "hospital", force=True)
    key.chmod(key_mode)
    return {"name": "national", "kind": "http", "url": url, "insecure_http": url.startswith("http:"),
            "hospital_key": str(key), "platform_public_key": str(platform_pub)}


def test_bad_key_mode_and_unreachable_platform(migrated_db: str, tmp_path: Path) -> None:
    _, platform_pub, _ = write_keypair(tmp_path / "platform", "platform")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    dest = _http_dest(tmp_path, f"http://127.0.0.1:{closed}", platform_pub, key_mode=0o644)
    found = by_check(run_doctor(doctor_settings(migrated_db, tmp_path, destinations=[dest])))
    key = found["key:national.hospital_key"]
    assert key.level == FAILURE and "chmod 600" in key.fix
    assert found["platform:national"].level == FAILURE


def test_platform_answers_the_signed_noop(migrated_db: str, tmp_path: Path) -> None:
    from cdcsync.upstream_sim.runner import start_in_process

    key, pub, _ = write_keypair(tmp_path / "keys", "hospital")
    sim = start_in_process(tmp_path / "sim", hospital_pubs=[pub], tls=False)
    try:
        dest = {"name": "national", "kind": "http", "url": sim.url, "insecure_http": True,
                "hospital_key": str(key), "platform_public_key": str(sim.platform_pub)}
        found = by_check(run_doctor(doctor_settings(migrated_db, tmp_path, destinations=[dest])))
        assert found["platform:national"].level == OK, found["platform:national"]
        assert "签名应答" in found["platform:national"].detail
        assert found["clock:national"].level == OK
        assert sim.state is not None and sim.state.counters["pings"] == 1
    finally:
        sim.stop()


def test_port_taken_by_another_program(migrated_db: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        api = {"data": {"host": "127.0.0.1", "port": port}, "monitor": {"enabled": False}, "web": {"enabled": False}}
        found = by_check(run_doctor(doctor_settings(migrated_db, tmp_path, api=api)))
    assert found[f"port:{port}"].level == FAILURE and "ss -ltnp" in found[f"port:{port}"].fix


def test_cli_json_and_exit_code(migrated_db: str, tmp_path: Path) -> None:
    prepare_db(migrated_db)
    _, cfg = settings_for(migrated_db, tmp_path)
    done = subprocess.run(cli_cmd(cfg, "doctor", "--json"), capture_output=True, text=True, cwd=REPO, timeout=120)
    data = json.loads(done.stdout)
    assert done.returncode == data["exit_code"] == 2  # no backup: a failure
    assert exit_code([Finding("x", "x", OK, "", "")]) == 0
    table = subprocess.run(cli_cmd(cfg, "doctor"), capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "[失败] 最近一次备份" in table.stdout and "处理：" in table.stdout
