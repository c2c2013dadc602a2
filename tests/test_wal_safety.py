"""WAL safety (issue 12, point 6): slot wal_status/safe_wal_size, max_slot_wal_keep_size and the
pg_wal volume in status, 8883 and the status page; a lost slot stops only its destination with
the recovery named; ``slots drop`` + the daemon's new snapshot delivers every row and every
delete, including rows deleted while the slot was lost.

The lost-slot test runs on its own cluster (``initdb --wal-segsize=1``, a 2 MB
``max_slot_wal_keep_size``) so a few MB of WAL lose the slot and no other test is disturbed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from cdcsync.api.server import start_servers
from cdcsync.cli import main
from cdcsync.config import Settings
from cdcsync.crypto.keys import write_keypair
from cdcsync.db.cluster import LocalCluster, throwaway_cluster
from cdcsync.engine.checkpoint import LATEST_KEYS_CTE
from cdcsync.engine.status import collect_status
from cdcsync.upstream_sim.runner import SimHandle, start_subprocess
from tests.api_helpers import ORG, local_api, now_beijing, patient
from tests.cdc_util import LOOPBACK_API, cli_cmd, lose_slot, prepare_db, read_events, start_daemon, wait_for

REPO = Path(__file__).resolve().parents[1]
COLS = list(patient("x"))


def insert_patients(conn: psycopg.Connection[Any], ids: range) -> None:
    now = now_beijing()
    rows = [patient(f"P{i:05d}", phone=f"1380000{i:04d}", update_time=now, collect_time=now) for i in ids]
    conn.cursor().executemany(
        f"INSERT INTO emr.patient ({', '.join(COLS)}) VALUES ({', '.join(['%s'] * len(COLS))})",
        [[r[c] for c in COLS] for r in rows])


def mirror_phones(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return dict(conn.execute("SELECT patient_id, phone FROM emr.patient").fetchall())


def fold_patients(events: list[dict[str, Any]]) -> dict[str, str]:
    """Replay the events as received (first occurrence of each id) into {patient_id: phone}."""
    state: dict[str, str] = {}
    seen: set[str] = set()
    for ev in events:
        if ev["id"] in seen or ev["source"]["table"] != "patient":
            continue
        seen.add(ev["id"])
        if ev["op"] in ("c", "u", "r"):
            if ev["op"] == "u" and ev["before"]["patient_id"] != ev["after"]["patient_id"]:
                state.pop(ev["before"]["patient_id"], None)
            state[ev["after"]["patient_id"]] = ev["after"]["phone"]
        elif ev["op"] == "d":
            state.pop(ev["before"]["patient_id"], None)
    return state


def platform_events(sim: SimHandle) -> list[dict[str, Any]]:
    """Every event the platform stored, in the order it received them."""
    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    try:
        return [json.loads(p) for (p,) in db.execute("SELECT payload FROM events ORDER BY rowid")]
    finally:
        db.close()


# -- status on the shared cluster: max_slot_wal_keep_size = -1 (PostgreSQL's default) ----------


def test_status_and_db_init_report_wal_safety(migrated_db: str, tmp_path: Path) -> None:
    data = {"org_code": ORG, "state_dir": str(tmp_path / "state"), "database": {"dsn": migrated_db},
            "destinations": [{"name": "t", "kind": "jsonl", "path": str(tmp_path / "t.jsonl")}]}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    settings = Settings.model_validate(data)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('cdcsync_t', 'pgoutput')")

    st = collect_status(settings)
    d = st["destinations"][0]
    assert d["wal_status"] == "reserved"
    assert d["safe_wal_size"] is None  # unlimited: PostgreSQL never invalidates the slot
    assert d["stopped_reason"] is None and d["wal_warnings"] == []
    wal = st["wal"]
    assert wal["max_slot_wal_keep_size_mb"] == -1 and wal["unlimited"] is True
    assert [w["code"] for w in wal["warnings"]] == ["wal_keep_unlimited"]
    # The test cluster runs on this machine and we are its superuser: the volume is verifiable.
    assert wal["volume"]["path"].endswith("pg_wal") and wal["volume"]["free_bytes"] > 0
    assert wal["pg_wal_bytes"] > 0

    text = subprocess.run(cli_cmd(cfg, "status"), capture_output=True, text=True, check=True, cwd=str(REPO),
                          timeout=60).stdout
    assert "WAL 状态 reserved  距离失效 不限" in text
    assert "max_slot_wal_keep_size -1（不限）" in text
    assert "警告：max_slot_wal_keep_size = -1（不限）" in text
    as_json = json.loads(subprocess.run(cli_cmd(cfg, "status", "--json"), capture_output=True, text=True,
                                        check=True, cwd=str(REPO), timeout=60).stdout)
    assert as_json["destinations"][0]["wal_status"] == "reserved"
    assert as_json["wal"]["warnings"][0]["code"] == "wal_keep_unlimited"

    out = CliRunner().invoke(main, ["db", "init", "--dsn", migrated_db])
    assert out.exit_code == 0, out.output
    assert "max_slot_wal_keep_size = -1（不限）" in out.output
    assert "警告：max_slot_wal_keep_size = -1（不限）" in out.output


def test_wal_volume_is_unknown_without_privileges(migrated_db: str, pg_cluster: LocalCluster) -> None:
    """A role that may not see data_directory gets "未知", not some other volume's figure."""
    from cdcsync.source.walsafety import wal_volume

    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wal_plain')"
                     " THEN CREATE ROLE wal_plain LOGIN; END IF; END $$")
    plain = migrated_db.replace(f"user={pg_cluster.superuser}", "user=wal_plain")
    with psycopg.connect(plain, autocommit=True) as conn:
        vol = wal_volume(conn)
    assert vol["free_bytes"] is None and vol["path"] is None and vol["note"].startswith("未知")


# -- a lost slot, on a dedicated small-WAL cluster ------------------------------------------------


@pytest.fixture
def small_wal_cluster() -> Iterator[LocalCluster]:
    cluster = throwaway_cluster("cdcsync-wal-", initdb_args=("--wal-segsize=1",))
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '2MB'")
            conn.execute("SELECT pg_reload_conf()")
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(cluster.datadir.parent, ignore_errors=True)


def test_lost_slot_stops_one_destination_and_recovery_delivers_rows_and_deletes(
        small_wal_cluster: LocalCluster, tmp_path: Path) -> None:
    dsn = small_wal_cluster.create_database("walsafety")
    prepare_db(dsn)
    hk, hp, _ = write_keypair(tmp_path / "keys", "hospital")
    national = start_subprocess(tmp_path / "national", hospital_pubs=[hp], log_file=tmp_path / "national.log")
    token = tmp_path / "monitor.token"
    token.write_text("wal-token\n", encoding="utf-8")
    token.chmod(0o600)
    data: dict[str, Any] = {
        "org_code": ORG, "state_dir": str(tmp_path / "state"), "database": {"dsn": dsn},
        "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 1},
        "destinations": [
            {"name": "national", "kind": "http", "url": national.url, "ca_bundle": str(national.ca_bundle),
             "hospital_key": str(hk), "platform_public_key": str(national.platform_pub),
             "retry_initial_s": 0.1, "retry_max_s": 0.5, "timeout_s": 5},
            {"name": "archive", "kind": "jsonl", "path": str(tmp_path / "archive.jsonl")},
        ],
        "api": LOOPBACK_API,
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    settings = Settings.model_validate(data)
    log_path = tmp_path / "daemon.log"
    with psycopg.connect(dsn, autocommit=True) as conn:
        insert_patients(conn, range(0, 120))
    daemon = start_daemon(cfg, log_path)
    servers = None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            wait_for(lambda: len(fold_patients(platform_events(national))) == 120, 60, "the initial snapshot")
            # Streamed while the platform is up: an update and deletes the platform receives.
            conn.execute("UPDATE emr.patient SET phone = '13900000001' WHERE patient_id = 'P00001'")
            conn.execute("DELETE FROM emr.patient WHERE patient_id IN ('P00002', 'P00003')")
            wait_for(lambda: fold_patients(platform_events(national)) == mirror_phones(conn), 30,
                     "the platform to follow the stream")
            # The acknowledged deletes leave the destination's key set (checkpointed with them).
            wait_for(lambda: conn.execute(
                LATEST_KEYS_CTE + " SELECT count(*) FROM latest", {"d": "national", "t": None}).fetchone() == (118,),
                30, "the delivered key set to follow the acknowledged deletes")

            # The platform goes down; rows it holds are deleted, others inserted and updated.
            national.stop()
            conn.execute("DELETE FROM emr.patient WHERE patient_id BETWEEN 'P00010' AND 'P00029'")
            insert_patients(conn, range(200, 230))
            conn.execute("DELETE FROM emr.patient WHERE patient_id IN ('P00200', 'P00201')")  # never delivered
            conn.execute("UPDATE emr.patient SET phone = '13900000002' WHERE patient_id = 'P00040'")
            lose_slot(conn, "cdcsync_national", keep_up="cdcsync_archive")

            # One clear message, in the log and in status; the archive destination keeps running.
            wait_for(lambda: "cdcsync slots drop cdcsync_national" in log_path.read_text("utf-8"), 60,
                     "the daemon to stop the national destination")
            log_text = log_path.read_text("utf-8")
            assert log_text.count("目的地 national 已停止：复制槽 cdcsync_national 已失效") == 1
            insert_patients(conn, range(300, 301))
            wait_for(lambda: any(e["after"] and e["after"]["patient_id"] == "P00300"
                                 for e in read_events(tmp_path / "archive.jsonl")), 30,
                     "the archive destination to keep streaming")
            st = collect_status(settings)
            nat = next(d for d in st["destinations"] if d["destination"] == "national")
            assert nat["wal_status"] == "lost" and not nat["active"]
            assert "cdcsync slots drop cdcsync_national" in nat["stopped_reason"]
            assert "cdcsync snapshot --destination national" in nat["stopped_reason"]
            assert [w["code"] for w in nat["wal_warnings"]] == ["slot_lost"]
            assert "wal_keep_small" in [w["code"] for w in st["wal"]["warnings"]]
            arch = next(d for d in st["destinations"] if d["destination"] == "archive")
            assert arch["active"] and arch["stopped_reason"] is None
            text = subprocess.run(cli_cmd(cfg, "status"), capture_output=True, text=True, check=True,
                                  cwd=str(REPO), timeout=60).stdout
            assert "错误：目的地 national 已停止" in text

            # 8883 (JSON and gauges) and the status page say the same.
            servers = start_servers(settings, api=local_api(("monitor", "web"), monitor_token_file=token))
            auth = {"Authorization": "Bearer wal-token"}
            base = f"http://127.0.0.1:{servers.ports['monitor']}"
            mon = httpx.get(f"{base}/api/v1/status", headers=auth, timeout=30).json()
            assert next(d for d in mon["destinations"] if d["destination"] == "national")["wal_status"] == "lost"
            assert mon["wal"]["max_slot_wal_keep_size_mb"] == 2
            metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(
                httpx.get(f"{base}/metrics", headers=auth, timeout=30).text) for s in fam.samples}
            assert metrics[("cdcsync_slot_wal_status", (("destination", "national"), ("wal_status", "lost")))] == 1
            assert metrics[("cdcsync_slot_wal_status", (("destination", "archive"), ("wal_status", "lost")))] == 0
            assert metrics[("cdcsync_max_slot_wal_keep_size_bytes", ())] == 2 * 1024 * 1024
            assert metrics[("cdcsync_wal_warnings", (("destination", "national"), ("level", "error")))] == 1
            page = httpx.get(f"http://127.0.0.1:{servers.ports['web']}/status.html", timeout=30).text
            assert "已停止：复制槽失效" in page and "cdcsync slots drop cdcsync_national" in page

            # Rows deleted while the slot is lost (the platform holds them).
            conn.execute("DELETE FROM emr.patient WHERE patient_id IN ('P00050', 'P00051', 'P00052')")

            # The documented recovery: the platform is back, slots drop; the running daemon
            # takes a new snapshot that also deletes what is gone.
            national = start_subprocess(tmp_path / "national", hospital_pubs=[hp], port=national.port,
                                        log_file=tmp_path / "national.log")
            drop = subprocess.run(cli_cmd(cfg, "slots", "drop", "cdcsync_national", "--yes"), capture_output=True,
                                  text=True, cwd=str(REPO), timeout=60)
            assert drop.returncode == 0, drop.stderr
            sim = national
            wait_for(lambda: fold_patients(platform_events(sim)) == mirror_phones(conn), 90,
                     "the re-snapshot to bring the platform to the mirror's state")
            expected = mirror_phones(conn)
            got = fold_patients(platform_events(sim))
            assert got == expected  # row by row: every key and its current phone
            for gone in ["P00010", "P00029", "P00050", "P00051", "P00052", "P00200", "P00002"]:
                assert gone not in got
            assert got["P00040"] == "13900000002" and got["P00229"] == "13800000229"
            deletes = [e for e in platform_events(sim) if e["op"] == "d" and e["source"].get("snapshot")]
            # exactly the rows the platform held that vanished while the slot was lost
            assert {e["before"]["patient_id"] for e in deletes} == (
                {f"P{i:05d}" for i in range(10, 30)} | {"P00050", "P00051", "P00052"})

            # Streaming resumed: a new change after the recovery reaches the platform.
            wait_for(lambda: next(d for d in collect_status(settings)["destinations"]
                                  if d["destination"] == "national")["wal_status"] == "reserved", 30,
                     "the new slot")
            insert_patients(conn, range(400, 401))
            wait_for(lambda: "P00400" in fold_patients(platform_events(sim)), 30, "streaming after the recovery")
    finally:
        if servers is not None:
            servers.stop()
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        national.stop()
