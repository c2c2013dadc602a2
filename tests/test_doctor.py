"""``cdcsync doctor``: a failing case for every check (PostgreSQL version, wrong wal_level and too
few slots/senders, missing REPLICATION, a non-UTF8 database, a publication that does not match
the spec, an inactive slot holding WAL and a lost slot, free disk, clock offset against the
platform's Date header, expired and expiring certificates, bad key mode, unreachable platform,
mapping gaps, a port taken, no backup), a platform that answers the signed no-op, and the exit
codes 0/1/2 of the CLI."""

from __future__ import annotations

import email.utils
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from cdc_util import NewCluster, cli_cmd, lose_slot, prepare_db, settings_for, wait_for
from sm2_ca import SM2CA, make_csr

from cdcsync.config import Settings
from cdcsync.crypto.keys import write_keypair
from cdcsync.db.cluster import LocalCluster
from cdcsync.ops.doctor import FAILURE, OK, SKIPPED, WARNING, Finding, exit_code, run_doctor, version_finding
from cdcsync.source.slots import slot_name

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
def replica_cluster(new_cluster: NewCluster) -> LocalCluster:
    """A second small cluster with the settings a careless install has."""
    return new_cluster({"wal_level": "replica", "max_replication_slots": "1", "max_wal_senders": "1"})


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


# --------------------------------------------------------------------------- more failing cases

def test_postgresql_version_thresholds(migrated_db: str, tmp_path: Path) -> None:
    assert version_finding(120016).level == FAILURE and "升级" in version_finding(120016).fix
    assert version_finding(140010).level == WARNING
    real = by_check(run_doctor(doctor_settings(migrated_db, tmp_path)))["pg_version"]
    assert real.level == OK and real.detail.startswith("server_version_num = 1")


def test_publication_not_matching_the_spec(migrated_db: str, tmp_path: Path) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("ALTER PUBLICATION cdcsync_emr DROP TABLE emr.patient")
    f = by_check(run_doctor(doctor_settings(migrated_db, tmp_path)))["publication"]
    assert f.level == WARNING and "emr.patient" in f.detail and "db init" in f.fix
    with psycopg.connect(migrated_db, autocommit=True) as conn:  # an old install: the whole schema
        conn.execute("DROP PUBLICATION cdcsync_emr")
        conn.execute("CREATE PUBLICATION cdcsync_emr FOR TABLES IN SCHEMA emr")
    f = by_check(run_doctor(doctor_settings(migrated_db, tmp_path)))["publication"]
    assert f.level == FAILURE and "整个模式" in f.detail


def test_inactive_slot_holding_wal(migrated_db: str, tmp_path: Path) -> None:
    def held(conn: psycopg.Connection[Any]) -> int:
        (n,) = conn.execute("SELECT pg_current_wal_lsn() - restart_lsn FROM pg_replication_slots"
                            " WHERE slot_name = %s", (slot_name("t"),)).fetchone()  # type: ignore[misc]
        return int(n) >> 20

    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot_name("t"),))
        conn.execute("CREATE TABLE public.filler AS SELECT (SELECT string_agg(md5(random()::text || g || i), '')"
                     " FROM generate_series(1, 30) i) b FROM generate_series(1, 4000) g")  # ~4 MB of WAL
        # test clusters run with synchronous_commit off: pg_current_wal_lsn() (what the doctor reads)
        # reaches the filler's WAL only when the WAL writer has written it
        (inserted,) = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()  # type: ignore[misc]
        wait_for(lambda: conn.execute("SELECT pg_current_wal_lsn() >= %s::pg_lsn", (inserted,)).fetchone()[0],  # type: ignore[index]
                 10, "the WAL writer to write the filler's WAL")
        before = held(conn)
        f = by_check(run_doctor(doctor_settings(migrated_db, tmp_path)))["slot:t"]
        after = held(conn)  # the cluster's other databases write WAL too: it only grows
    assert f.level == WARNING and "未在使用" in f.detail and "cdcsync slots drop" in f.fix, f
    mb = int(f.detail.split("保留 WAL ")[1].split(" MB")[0])
    assert before >= 2 and before <= mb <= after, (before, mb, after)


def test_lost_slot(new_cluster: NewCluster, tmp_path: Path) -> None:
    cluster = new_cluster({"max_slot_wal_keep_size": "'2MB'"}, initdb_args=("--wal-segsize=1",))
    dsn = cluster.create_database("emr")
    prepare_db(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot_name("t"),))
        lose_slot(conn, slot_name("t"))
    f = by_check(run_doctor(doctor_settings(dsn, tmp_path)))["slot:t"]
    assert f.level == FAILURE and "失效" in f.detail and f"slots drop {slot_name('t')}" in f.fix


def test_free_disk_below_the_configured_threshold(migrated_db: str, tmp_path: Path) -> None:
    settings = doctor_settings(migrated_db, tmp_path)
    ok = by_check(run_doctor(settings.model_copy(update={"stream": settings.stream.model_copy(
        update={"wal_free_warn_mb": 1})})))
    assert ok["disk_state_dir"].level == OK and ok["disk_pg_wal"].level in (OK, SKIPPED)
    stream = settings.stream.model_dump() | {"wal_free_warn_mb": 1_000_000_000}  # a petabyte: always short
    found = by_check(run_doctor(doctor_settings(migrated_db, tmp_path, stream=stream)))
    assert found["disk_state_dir"].level == FAILURE and "扩容" in found["disk_state_dir"].fix
    assert found["disk_pg_wal"].level in (FAILURE, SKIPPED)
    if ok["disk_pg_wal"].level == OK:  # the superuser sees the pg_wal volume
        assert found["disk_pg_wal"].level == FAILURE


class _SkewedPlatform(http.server.BaseHTTPRequestHandler):
    """Answers every request 404 with a Date header ``skew`` seconds off the real clock."""

    skew = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(404)
        self.send_header("content-length", "0")
        self.end_headers()

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + self.skew, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("skew", "level", "word"), [(-600.0, FAILURE, "快"), (90.0, WARNING, "慢")])
def test_clock_offset_against_the_platform_date(migrated_db: str, tmp_path: Path, skew: float, level: str,
                                                word: str) -> None:
    _, platform_pub, _ = write_keypair(tmp_path / "platform", "platform")
    handler = type("Skewed", (_SkewedPlatform,), {"skew": skew})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dest = _http_dest(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", platform_pub)
        found = by_check(run_doctor(doctor_settings(migrated_db, tmp_path, destinations=[dest])))
    finally:
        server.shutdown()
        server.server_close()
    assert found["platform:national"].level == FAILURE and "HTTP 404" in found["platform:national"].detail
    clock = found["clock:national"]
    assert clock.level == level and f"本机比平台{word}" in clock.detail and "NTP" in clock.fix
    assert abs(int(clock.detail.split()[-2]) - abs(skew)) <= 2


def test_expired_and_expiring_certificates(migrated_db: str, tmp_path: Path) -> None:
    ca = SM2CA(tmp_path / "ca", "Doctor Test CA")
    _, platform_pub, _ = write_keypair(tmp_path / "platform", "platform")
    dest = _http_dest(tmp_path, "http://127.0.0.1:9", platform_pub)
    csr = make_csr(Path(dest["hospital_key"]), tmp_path / "hospital.csr", "TESTORG01")
    for cert, level, words in ((ca.issue_expired(csr, tmp_path / "expired.pem"), FAILURE, "已于 2020-02-01 过期"),
                               (ca.issue(csr, tmp_path / "soon.pem", days=10), WARNING, "剩余 9 天")):
        found = by_check(run_doctor(doctor_settings(migrated_db, tmp_path, destinations=[
            dest | {"hospital_certificate": str(cert)}])))
        f = found["certificates"]
        assert f.level == level and words in f.detail and str(cert) in f.detail, f
        assert "申请新证书" in f.fix


def test_mapping_coverage_gaps(migrated_db: str, tmp_path: Path) -> None:
    from cdcsync.mapping.domains import default_mappings_dir

    root = tmp_path / "mappings"
    shutil.copytree(default_mappings_dir(), root)
    assert by_check(run_doctor(doctor_settings(migrated_db, tmp_path, mappings_dir=str(root))))["mappings"].level == OK
    (root / "local" / "example" / "blood_type.yaml").unlink()
    f = by_check(run_doctor(doctor_settings(migrated_db, tmp_path, mappings_dir=str(root))))["mappings"]
    assert f.level == WARNING and "blood_type" in f.detail and "mappings check" in f.fix
    path = root / "local" / "example" / "marital_status.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["map"]["WH"] = "77"  # a national code that does not exist
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    f = by_check(run_doctor(doctor_settings(migrated_db, tmp_path, mappings_dir=str(root))))["mappings"]
    assert f.level == FAILURE and "1 条对照指向不存在的国家代码" in f.detail


def test_cli_exit_codes_ok_warning_failure(new_cluster: NewCluster, tmp_path: Path) -> None:
    """0 on a well-set cluster with a verified backup, 1 once a setting is only a warning, 2 once
    a check fails."""
    from cdcsync.ops.backup.run import take_backup
    from cdcsync.ops.backup.verify import verify_backup

    cluster = new_cluster({"max_slot_wal_keep_size": "'10GB'"})
    dsn = cluster.create_database("emr")
    prepare_db(dsn)
    data = doctor_settings(dsn, tmp_path).model_dump(mode="json")
    data["stream"]["wal_free_warn_mb"] = 1
    data["destinations"][0]["enabled"] = False  # no slot yet would be a warning
    data["backup"] = {"dir": str(tmp_path / "backups"), "include_secrets": False}
    cfg = tmp_path / "doctor.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    settings = Settings.model_validate(data)
    assert verify_backup(settings, take_backup(settings, "logical", cfg))["status"] == "ok"

    def doctor() -> tuple[int, dict[str, Any]]:
        done = subprocess.run(cli_cmd(cfg, "doctor", "--json"), capture_output=True, text=True, cwd=REPO, timeout=120)
        return done.returncode, json.loads(done.stdout)

    code, out = doctor()
    assert code == out["exit_code"] == 0, [f for f in out["findings"] if f["level"] not in (OK, SKIPPED)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = -1")
        conn.execute("SELECT pg_reload_conf()")
    code, out = doctor()
    assert code == out["exit_code"] == 1
    assert [f["check"] for f in out["findings"] if f["level"] != OK and f["level"] != SKIPPED] == [
        "max_slot_wal_keep_size"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER PUBLICATION cdcsync_emr DROP TABLE emr.patient")
        conn.execute("ALTER SYSTEM SET wal_level = replica")
    cluster.restart()
    code, out = doctor()
    assert code == out["exit_code"] == 2
    assert {f["check"] for f in out["findings"] if f["level"] == FAILURE} == {"wal_level"}


def test_the_rules_consumer_slot_is_counted_when_it_is_on(new_cluster: NewCluster, tmp_path: Path) -> None:
    """Exactly enough slots and senders for the destinations (+ snapshot, backup): OK while the
    rules consumer is off, a warning once it is on (it streams from a slot of its own)."""
    off = doctor_settings("dbname=postgres", tmp_path, surveil={"enabled": False})
    n = max(1, len(off.enabled_destinations))
    cluster = new_cluster({"max_replication_slots": str(n + 2), "max_wal_senders": str(n + 3)})
    dsn = cluster.dsn()
    found = by_check(run_doctor(doctor_settings(dsn, tmp_path, surveil={"enabled": False})))
    for check in ("max_replication_slots", "max_wal_senders"):
        assert found[check].level == OK, found[check]
        assert "规则消费者" not in found[check].explain
    unset = by_check(run_doctor(doctor_settings(dsn, tmp_path)))  # unset, and no case tables here: off
    assert unset["max_replication_slots"].level == OK
    found = by_check(run_doctor(doctor_settings(dsn, tmp_path, surveil={"enabled": True})))
    for check, need in (("max_replication_slots", n + 3), ("max_wal_senders", n + 4)):
        assert found[check].level == WARNING, found[check]
        assert f"建议 ≥ {need}" in found[check].detail and "监测预警规则消费者一个" in found[check].explain
