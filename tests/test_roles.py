"""Least privilege (sql/200_roles.sql): the HIS, data-API and daemon group roles do what they need, not more.

Each test creates a LOGIN role that is a member of one group role (as an admin would), connects as
it over TCP and tries what that account must and must not be able to do.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import make_conninfo

from cdcsync.cli import main
from cdcsync.db.cluster import throwaway_cluster
from cdcsync.db.migrate import apply_migrations
from cdcsync.db.roles import ROLES
from cdcsync.settings.database import DatabaseSettings
from tests.api_helpers import local_api, patient, running_api
from tests.api_helpers import settings_for as api_settings_for

REPO = Path(__file__).resolve().parents[1]
_n = itertools.count()
DENIED = psycopg.errors.InsufficientPrivilege


@contextmanager
def login(dsn: str, group: str, *attrs: str) -> Iterator[str]:
    """A LOGIN role holding ``group``; yields its DSN, drops it afterwards."""
    name = f"t_{group}_{os.getpid()}_{next(_n)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN {' '.join(attrs)} IN ROLE {group}")
    try:
        yield make_conninfo(dsn, user=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'")
            conn.execute(f"DROP ROLE {name}")


def refused(dsn: str, statement: str) -> bool:
    with psycopg.connect(dsn) as conn:
        try:
            conn.execute(statement)
        except DENIED:
            return True
    return False


def insert_patient(conn: psycopg.Connection, pid: str) -> None:
    rec = patient(pid)
    cols = list(rec)
    conn.execute(f"INSERT INTO emr.patient ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                 [rec[c] for c in cols])


def test_migrations_create_nologin_group_roles_and_db_init_reports_them(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute(
            "SELECT rolname, rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles"
            " WHERE rolname = ANY(%s) ORDER BY 1", (list(ROLES),)).fetchall()
    assert [r[0] for r in rows] == sorted(ROLES)
    assert not any(r[1] for r in rows), "group roles must not log in"
    assert all(r[2] and "cdcsync" in r[2] for r in rows)
    with login(migrated_db, "cdcsync_daemon") as _:
        out = CliRunner().invoke(main, ["db", "init", "--dsn", migrated_db])
    assert out.exit_code == 0, out.output
    for role in ROLES:
        assert f"角色 {role}" in out.output
    assert "没有 REPLICATION 属性" in out.output  # the daemon login above lacks it


def test_his_role_writes_emr_and_cannot_touch_cdcsync(migrated_db: str) -> None:
    with login(migrated_db, "cdcsync_his") as his:
        with psycopg.connect(his) as conn:
            insert_patient(conn, "H1")
            conn.execute("UPDATE emr.patient SET name = '李四' WHERE patient_id = 'H1'")
            assert conn.execute("SELECT name FROM emr.patient WHERE patient_id = 'H1'").fetchall() == [("李四",)]
            insert_patient(conn, "H2")
            conn.execute("DELETE FROM emr.patient WHERE patient_id = 'H2'")
        for statement in (
            "SELECT * FROM cdcsync.checkpoint",
            "UPDATE cdcsync.checkpoint SET acked_lsn = '0/0'",
            "SELECT * FROM cdcsync.api_key",
            "UPDATE cdcsync.api_key SET revoked_at = NULL",
            "SELECT * FROM cdcsync.quarantine",
            "SELECT * FROM recon.code_map",
            "CREATE TABLE emr.his_own (id int)",
            "TRUNCATE emr.patient",
        ):
            assert refused(his, statement), statement
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("SELECT patient_id FROM emr.patient").fetchall() == [("H1",)]


def test_tables_of_later_migrations_are_covered(migrated_db: str) -> None:
    # A later migration run by the same admin: default privileges grant it without a new GRANT.
    with psycopg.connect(migrated_db) as conn:
        conn.execute("CREATE TABLE emr.later (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE cdcsync.later_state (id int PRIMARY KEY)")
    with login(migrated_db, "cdcsync_his") as his, psycopg.connect(his) as conn:
        conn.execute("INSERT INTO emr.later VALUES (1)")
    with login(migrated_db, "cdcsync_daemon") as daemon:
        with psycopg.connect(daemon) as conn:
            assert conn.execute("SELECT id FROM emr.later").fetchall() == [(1,)]
            conn.execute("INSERT INTO cdcsync.later_state VALUES (1)")
        assert refused(daemon, "INSERT INTO emr.later VALUES (2)")


def test_api_role_serves_the_data_api_and_nothing_more(migrated_db: str) -> None:
    with login(migrated_db, "cdcsync_api") as api_dsn:
        cfg = local_api(("data",), database=DatabaseSettings(dsn=api_dsn))
        with running_api(migrated_db, cfg) as a:
            url = f"{a.url}/api/v1/data/patient"
            headers = {"Authorization": f"Bearer {a.good_key}"}
            r = httpx.post(url, json={"records": [patient("P1"), patient("P2")]}, headers=headers, timeout=30)
            assert r.status_code == 200, r.text
            r = httpx.request("DELETE", url, json={"keys": [{"org_code": patient("P2")["org_code"],
                                                             "patient_id": "P2"}]}, headers=headers, timeout=30)
            assert r.status_code == 200, r.text
            bad = httpx.post(url, json={"records": [patient("P3")]}, headers={"Authorization": "Bearer nope"},
                             timeout=30)
            assert bad.status_code == 401
        with psycopg.connect(migrated_db) as conn:
            assert conn.execute("SELECT patient_id FROM emr.patient").fetchall() == [("P1",)]
            assert conn.execute("SELECT last_used_at IS NOT NULL FROM cdcsync.api_key WHERE name = 'his'"
                                ).fetchone() == (True,)
        for statement in (
            "SELECT * FROM cdcsync.checkpoint",
            "SELECT * FROM cdcsync.quarantine",
            "UPDATE cdcsync.api_key SET scope_tables = '{*}'",
            "UPDATE cdcsync.api_key SET revoked_at = NULL",
            "INSERT INTO cdcsync.api_key (name, key_id, salt, key_hash) VALUES ('x', 'x', '', '')",
            "DELETE FROM cdcsync.api_key",
            "SELECT * FROM recon.code_map",
        ):
            assert refused(api_dsn, statement), statement


def test_daemon_role_streams_and_cannot_write_emr_or_read_keys(migrated_db: str, tmp_path: Path) -> None:
    from cdcsync.engine.daemon import drain
    from tests.cdc_util import read_events

    with psycopg.connect(migrated_db) as conn:
        insert_patient(conn, "D1")
    with login(migrated_db, "cdcsync_daemon", "REPLICATION") as daemon:
        settings = api_settings_for(daemon, tmp_path / "state",
                                    destinations=[{"name": "t", "kind": "jsonl", "path": str(tmp_path / "ev.jsonl")}])
        drain(settings)  # slot + snapshot
        with psycopg.connect(migrated_db) as conn:
            insert_patient(conn, "D2")
        drain(settings)  # streamed
        for statement in ("INSERT INTO emr.patient (patient_id) VALUES ('x')", "DELETE FROM emr.patient",
                          "SELECT * FROM cdcsync.api_key"):
            assert refused(daemon, statement), statement
    events = [e for e in read_events(tmp_path / "ev.jsonl") if e["source"]["table"] == "patient"]
    assert sorted(e["after"]["patient_id"] for e in events) == ["D1", "D2"]


def test_key_management_with_the_daemon_login_is_one_clear_line(migrated_db: str, tmp_path: Path) -> None:
    from tests.cdc_util import settings_for

    with login(migrated_db, "cdcsync_daemon", "REPLICATION") as daemon:
        _, cfg = settings_for(daemon, tmp_path)
        out = CliRunner().invoke(main, ["-c", str(cfg), "api-keys", "add", "lis", "--tables", "*", "--ops", "upsert"])
    assert out.exit_code == 2, out.output
    assert "数据库账号权限不足" in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_migrating_user_without_createrole_is_told_and_nothing_fails() -> None:
    """A fresh cluster (the group roles do not exist yet): an owner without CREATEROLE migrates,
    is told which roles are missing; a superuser's db init then creates and grants them."""
    cluster = throwaway_cluster("cdcsync-roles-")
    try:
        admin = cluster.create_database("emr")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE ROLE migrator LOGIN")
            conn.execute("GRANT CREATE ON DATABASE emr TO migrator")
            # The publication lists the spec's tables, which the owner may publish without superuser.
            conn.execute("CREATE SCHEMA emr AUTHORIZATION migrator")
        owner = make_conninfo(admin, user="migrator")
        out = CliRunner().invoke(main, ["db", "init", "--dsn", owner])
        assert out.exit_code == 0, out.output
        for role in ROLES:
            assert f"角色 {role}" in out.output and "不存在" in out.output
        with psycopg.connect(admin) as conn:
            assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),)
                                ).fetchone() == (0,)
        out = CliRunner().invoke(main, ["db", "init", "--dsn", admin])
        assert out.exit_code == 0, out.output
        assert out.output.count("已创建，已授权本库") == len(ROLES), out.output
        with psycopg.connect(admin) as conn:
            assert conn.execute("SELECT rolreplication FROM pg_roles WHERE rolname = 'cdcsync_daemon'"
                                ).fetchone() == (True,)
            assert conn.execute("SELECT has_table_privilege('cdcsync_his', 'emr.patient', 'INSERT')"
                                ).fetchone() == (True,)
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.datadir.parent, ignore_errors=True)


def test_concurrent_migrations_of_several_databases(pg_cluster: object) -> None:
    """Roles are cluster-wide: databases migrated at the same time all succeed."""
    from concurrent.futures import ThreadPoolExecutor

    names = [f"rc{os.getpid()}_{next(_n)}" for _ in range(3)]
    dsns = [pg_cluster.create_database(n) for n in names]  # type: ignore[attr-defined]
    try:
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda d: apply_migrations(d, REPO / "sql"), dsns))
        assert all(len(r.roles) == len(ROLES) for r in results)
    finally:
        with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:  # type: ignore[attr-defined]
            for n in names:
                conn.execute(f"DROP DATABASE {n}")


@pytest.mark.parametrize("role", sorted(ROLES))
def test_roles_are_documented(role: str) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert role in readme
