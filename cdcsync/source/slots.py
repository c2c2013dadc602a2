"""Replication slots: one per destination, named ``cdcsync_<destination>``, plugin pgoutput.

Slots are created when missing and reported when present; they are never dropped implicitly
(a slot holds WAL, and dropping it loses the destination's position) — only ``cdcsync slots
drop NAME`` or a restarted initial snapshot (which re-reads every row anyway) drops one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

log = logging.getLogger(__name__)

SLOT_PREFIX = "cdcsync_"


def slot_name(destination: str) -> str:
    return f"{SLOT_PREFIX}{destination}"


@dataclass(slots=True, frozen=True)
class SlotInfo:
    name: str
    plugin: str | None
    database: str | None
    active: bool
    active_pid: int | None
    restart_lsn: str | None
    confirmed_flush_lsn: str | None
    retained_bytes: int | None  # WAL kept for this slot: current WAL position - restart_lsn
    lag_bytes: int | None  # current WAL position - confirmed_flush_lsn
    wal_status: str | None  # reserved | extended | unreserved | lost (PostgreSQL 13+)
    safe_wal_size: int | None  # bytes of WAL that may still be written before the slot is lost (None: unlimited)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


_SLOT_SQL = """
SELECT slot_name, plugin, database, active, active_pid, restart_lsn::text, confirmed_flush_lsn::text,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
       wal_status, safe_wal_size
  FROM pg_replication_slots
 WHERE slot_type = 'logical' AND database = current_database() {where}
 ORDER BY slot_name
"""


def list_slots(conn: psycopg.Connection[Any], prefix: str = SLOT_PREFIX) -> list[SlotInfo]:
    rows = conn.execute(_SLOT_SQL.format(where="AND starts_with(slot_name, %s)"), (prefix,)).fetchall()
    return [SlotInfo(*r) for r in rows]


def get_slot(conn: psycopg.Connection[Any], name: str) -> SlotInfo | None:
    row = conn.execute(_SLOT_SQL.format(where="AND slot_name = %s"), (name,)).fetchone()
    return SlotInfo(*row) if row else None


def create_slot(conn: psycopg.Connection[Any], name: str) -> str:
    """Create a pgoutput slot without a snapshot (inside the caller's transaction, if any); returns
    its start position as text. A slot with an exported snapshot is made on a replication connection
    (:meth:`cdcsync.source.protocol.ReplicationConnection.create_slot`): the initial snapshot needs one."""
    row = conn.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (name,)).fetchone()
    assert row is not None
    log.info("replication slot created: %s", name)
    return str(row[0])


def drop_slot(conn: psycopg.Connection[Any], name: str, force: bool = False) -> None:
    """Drop a slot. An active slot is refused unless ``force`` (then its walsender is ended)."""
    info = get_slot(conn, name)
    if info is None:
        raise LookupError(f"复制槽 {name} 不存在")
    if info.active:
        if not force:
            raise RuntimeError(f"复制槽 {name} 正在使用中（进程 {info.active_pid}），请先停止 cdcsync")
        conn.execute("SELECT pg_terminate_backend(%s)", (info.active_pid,))
    conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
    log.warning("replication slot dropped: %s", name)

