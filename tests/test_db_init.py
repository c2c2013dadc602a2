"""`cdcsync db init`: applies what is missing, records it, and is safe to run twice."""

from __future__ import annotations

import psycopg
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.db.migrate import PUBLICATION


def _init(dsn: str) -> str:
    result = CliRunner().invoke(main, ["db", "init", "--dsn", dsn])
    assert result.exit_code == 0, result.output
    return result.output


def _schema_fingerprint(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema IN ('emr', 'cdcsync') ORDER BY 1, 2, 3"
        ).fetchall()


def test_db_init_twice_changes_nothing(fresh_db: str) -> None:
    first = _init(fresh_db)
    assert "001_cdcsync_state.sql" in first
    assert PUBLICATION in first
    before = _schema_fingerprint(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        applied = conn.execute("SELECT filename, applied_at FROM cdcsync.schema_migrations").fetchall()

    second = _init(fresh_db)
    assert "未做任何更改" in second
    assert _schema_fingerprint(fresh_db) == before
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT filename, applied_at FROM cdcsync.schema_migrations").fetchall() == applied
        pubs = conn.execute("SELECT pubname FROM pg_publication").fetchall()
    assert pubs == [(PUBLICATION,)]


def test_publication_covers_emr_only(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        schemas = {r[0] for r in conn.execute(
            "SELECT schemaname FROM pg_publication_tables WHERE pubname = %s", (PUBLICATION,))}
    assert schemas <= {"emr"}


def test_unreachable_database_is_one_clear_line() -> None:
    from cdcsync.db.cluster import free_port

    result = CliRunner().invoke(main, ["db", "init", "--dsn", f"host=127.0.0.1 port={free_port()} dbname=emr"])
    assert result.exit_code == 2
    assert "无法连接数据库" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
