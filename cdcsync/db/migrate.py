"""Apply the numbered SQL files in ``sql/`` once each, and keep the ``emr`` publication in step with
the dataset spec: it publishes exactly the spec's tables (minimum necessary: a table a vendor adds
to ``emr`` is never streamed), and every run of ``db init`` (after a spec upgrade too) sets it
again. The mirror must be a UTF8 database: anything else is refused before any change."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cdcsync.db.roles import RoleStatus, apply_role_grants, existing_roles
from cdcsync.resources import shared_dir
from cdcsync.spec import Spec, load_spec

log = logging.getLogger(__name__)

PUBLICATION = "cdcsync_emr"
SCHEMA = "emr"


class MirrorRefused(RuntimeError):
    """The database cannot serve as the mirror (message: one Chinese line for the admin)."""


def default_sql_dir() -> Path:
    """``$CDCSYNC_SQL_DIR``, else ``sql/`` of the checkout or of the installed package."""
    return shared_dir("sql", "CDCSYNC_SQL_DIR")


@dataclass
class MigrationResult:
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # applied earlier, file edited since
    publication_created: bool = False
    published: list[str] = field(default_factory=list)  # tables added to the publication
    unpublished: list[str] = field(default_factory=list)  # tables taken out (not in the spec)
    missing_tables: list[str] = field(default_factory=list)  # spec tables the database lacks

    @property
    def publication_changed(self) -> bool:
        return self.publication_created or bool(self.published or self.unpublished)
    roles: list[RoleStatus] = field(default_factory=list)  # sql/200_roles.sql, granted on every run


def migration_files(sql_dir: Path) -> list[Path]:
    files = sorted(p for p in sql_dir.glob("*.sql") if p.name[:3].isdigit())
    if not files:
        raise FileNotFoundError(f"{sql_dir}: 没有找到迁移文件（形如 001_xxx.sql）")
    return files


def apply_migrations(dsn: str, sql_dir: Path | None = None, spec: Spec | None = None) -> MigrationResult:
    sql_dir = sql_dir or default_sql_dir()
    result = MigrationResult()
    with psycopg.connect(dsn, autocommit=True) as conn:
        check_encoding(conn)
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
        sync_publication(conn, spec or load_spec(), result)
        result.roles = apply_role_grants(conn, roles_before)
        conn.execute("SELECT pg_advisory_unlock(hashtext('cdcsync.migrate'))")
    return result


def check_encoding(conn: psycopg.Connection[Any]) -> None:
    """Refuse a mirror whose server encoding is not UTF8: SQL_ASCII stores bytes unchecked (the
    stream would carry text that is not UTF-8), other encodings cannot hold the dataset's text."""
    row = conn.execute("SELECT current_setting('server_encoding'), current_database()").fetchone()
    encoding, dbname = (str(row[0]), str(row[1])) if row else ("?", "?")
    if encoding.upper() not in ("UTF8", "UTF-8"):
        raise MirrorRefused(
            f"数据库 {dbname} 的服务端编码为 {encoding}，镜像库必须是 UTF8 编码；请用"
            f" CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0 重建镜像库后再试")


def _emr_tables(conn: psycopg.Connection[Any]) -> set[str]:
    return {str(r[0]) for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')", (SCHEMA,)).fetchall()}


def _published(conn: psycopg.Connection[Any]) -> set[str]:
    """``schema.table`` of every table the publication sends (explicit or through a schema)."""
    return {f"{s}.{t}" for s, t in conn.execute(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (PUBLICATION,)).fetchall()}


def _schema_wide(conn: psycopg.Connection[Any], pub_oid: int, all_tables: bool) -> bool:
    return all_tables or conn.execute(
        "SELECT 1 FROM pg_publication_namespace WHERE pnpubid = %s", (pub_oid,)).fetchone() is not None


def sync_publication(conn: psycopg.Connection[Any], spec: Spec, result: MigrationResult | None = None
                     ) -> MigrationResult:
    """Make the publication hold exactly the spec's tables that exist in ``emr`` (creating it, or
    narrowing one that published the whole schema, as earlier versions did)."""
    result = result if result is not None else MigrationResult()
    existing = _emr_tables(conn)
    want = [t for t in spec.table_names if t in existing]
    wanted = {f"{SCHEMA}.{t}" for t in want}
    result.missing_tables = [t for t in spec.table_names if t not in existing]
    name = sql.Identifier(PUBLICATION)
    with conn.transaction():
        pub = conn.execute("SELECT oid, puballtables FROM pg_publication WHERE pubname = %s",
                           (PUBLICATION,)).fetchone()
        before = _published(conn) if pub is not None else set()
        if pub is not None and pub[1]:  # FOR ALL TABLES cannot be narrowed: replace it
            conn.execute(sql.SQL("DROP PUBLICATION {}").format(name))
            pub = None
        if pub is None:
            conn.execute(sql.SQL("CREATE PUBLICATION {}").format(name))
            result.publication_created = not before
            schema_wide, listed = False, set()
        else:
            schema_wide = _schema_wide(conn, int(pub[0]), False)
            listed = before if not schema_wide else set()
        if schema_wide or listed != wanted:
            if want:  # SET replaces every table and schema the publication had
                conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(
                    name, sql.SQL(", ").join(sql.Identifier(SCHEMA, t) for t in want)))
            else:  # SET TABLE needs at least one table
                conn.execute(sql.SQL("DROP PUBLICATION {}").format(name))
                conn.execute(sql.SQL("CREATE PUBLICATION {}").format(name))
        result.published = sorted(wanted - before)
        result.unpublished = sorted(before - wanted)
    for t in result.unpublished:
        log.warning("publication %s: %s taken out (not in the dataset spec)", PUBLICATION, t)
    return result


def publication_problems(conn: psycopg.Connection[Any], spec: Spec) -> tuple[str | None, list[str]]:
    """(reason to refuse streaming, warnings) about the publication compared with the spec.
    Refused: it is missing, or publishes whole schemas (a table created later would leave the
    hospital unchecked). Warned: a published table not in the spec, a spec table not published."""
    pub = conn.execute("SELECT oid, puballtables FROM pg_publication WHERE pubname = %s", (PUBLICATION,)).fetchone()
    if pub is None:
        return f"发布 {PUBLICATION} 不存在，请先运行 cdcsync db init", []
    if _schema_wide(conn, int(pub[0]), bool(pub[1])):
        return (f"发布 {PUBLICATION} 仍按整个模式发布（旧版本创建），会把数据集规范以外的表一并发送；"
                f"请先运行 cdcsync db init（只发布规范中的表）"), []
    published = _published(conn)
    existing = _emr_tables(conn)
    spec_tables = {f"{SCHEMA}.{t}" for t in spec.table_names}
    warnings = [f"表 {t} 不在数据集规范中，但在发布 {PUBLICATION} 中（其数据会被发送）；运行 cdcsync db init 可移除"
                for t in sorted(published - spec_tables)]
    warnings += [f"规范中的表 {SCHEMA}.{t} 不在发布 {PUBLICATION} 中（其数据不会被发送）；请运行 cdcsync db init"
                 for t in spec.table_names if t in existing and f"{SCHEMA}.{t}" not in published]
    return None, warnings
