"""Apply the numbered SQL files in ``sql/`` once each, and keep the ``emr`` publication in place."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from cdcsync.db.roles import RoleStatus, apply_role_grants, existing_roles
from cdcsync.resources import shared_dir

log = logging.getLogger(__name__)

PUBLICATION = "cdcsync_emr"


def default_sql_dir() -> Path:
    """``$CDCSYNC_SQL_DIR``, else ``sql/`` of the checkout or of the installed package."""
    return shared_dir("sql", "CDCSYNC_SQL_DIR")


@dataclass
class MigrationResult:
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # applied earlier, file edited since
    publication_created: bool = False
    roles: list[RoleStatus] = field(default_factory=list)  # sql/200_roles.sql, granted on every run


def migration_files(sql_dir: Path) -> list[Path]:
    files = sorted(p for p in sql_dir.glob("*.sql") if p.name[:3].isdigit())
    if not files:
        raise FileNotFoundError(f"{sql_dir}: 没有找到迁移文件（形如 001_xxx.sql）")
    return files


def apply_migrations(dsn: str, sql_dir: Path | None = None) -> MigrationResult:
    sql_dir = sql_dir or default_sql_dir()
    result = MigrationResult()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('cdcsync.migrate'))")
        conn.execute(
            "CREATE SCHEMA IF NOT EXISTS cdcsync;"
            "CREATE TABLE IF NOT EXISTS cdcsync.schema_migrations (filename text PRIMARY KEY,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        roles_before = existing_roles(conn)
        done: dict[str, str] = dict(conn.execute("SELECT filename, checksum FROM cdcsync.schema_migrations").fetchall())
        for path in migration_files(sql_dir):
            body = path.read_bytes()
            checksum = hashlib.sha256(body).hexdigest()
            if path.name in done:
                (result.changed if done[path.name] != checksum else result.skipped).append(path.name)
                continue
            with conn.transaction():
                conn.execute(body)
                conn.execute(
                    "INSERT INTO cdcsync.schema_migrations (filename, checksum) VALUES (%s, %s)",
                    (path.name, checksum),
                )
            log.info("migration applied: %s", path.name)
            result.applied.append(path.name)
        result.publication_created = ensure_publication(conn)
        result.roles = apply_role_grants(conn, roles_before)
        conn.execute("SELECT pg_advisory_unlock(hashtext('cdcsync.migrate'))")
    return result


def ensure_publication(conn: psycopg.Connection) -> bool:
    """Publish every table of schema ``emr`` (and tables added to it later)."""
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (PUBLICATION,)).fetchone()
    if exists:
        return False
    conn.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLES IN SCHEMA emr")
    return True
