"""For the database-free tests of the engine: pgoutput protocol-1 messages built byte by byte
(the layout of https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html), what
the replication connection hands the stream loop (:class:`Wire`), and the real checkpointer with
its SQL replaced by a list (:class:`MemoryCheckpointer`)."""

from __future__ import annotations

import datetime as dt
import struct

from cdcsync.engine.accounting import Totals
from cdcsync.engine.calendar import BusinessCalendar
from cdcsync.engine.checkpoint import Checkpointer
from cdcsync.source.pgoutput import PG_EPOCH
from cdcsync.source.protocol import Keepalive

TEXT_OID = 25
INT8_OID = 20
TIMESTAMP_OID = 1114


def _us(ts: dt.datetime) -> int:
    return (ts - PG_EPOCH) // dt.timedelta(microseconds=1)


def begin(final_lsn: int, commit_ts: dt.datetime, xid: int) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, _us(commit_ts), xid)


def commit(commit_lsn: int, end_lsn: int, commit_ts: dt.datetime) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, commit_lsn, end_lsn, _us(commit_ts))


def relation(relid: int, schema: str, name: str, columns: list[tuple[str, int]]) -> bytes:
    out = b"R" + struct.pack(">I", relid) + schema.encode() + b"\0" + name.encode() + b"\0" + b"f"
    out += struct.pack(">h", len(columns))
    for i, (col, oid) in enumerate(columns):
        out += struct.pack(">B", 1 if i == 0 else 0) + col.encode() + b"\0" + struct.pack(">Ii", oid, -1)
    return out


def insert(relid: int, values: list[str | None]) -> bytes:
    out = b"I" + struct.pack(">I", relid) + b"N" + struct.pack(">h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        else:
            data = v.encode()
            out += b"t" + struct.pack(">I", len(data)) + data
    return out


def message(lsn: int, prefix: str, content: bytes = b"", transactional: bool = False) -> bytes:
    return b"M" + struct.pack(">BQ", int(transactional), lsn) + prefix.encode() + b"\0" + \
        struct.pack(">I", len(content)) + content


class Wire:
    """What :meth:`cdcsync.source.protocol.ReplicationConnection.read_message` returns, from a
    list: ``(end LSN, payload)`` or a Keepalive, then None (nothing more arrived)."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, bytes] | Keepalive] = []
        self.status: list[int] = []  # standby status updates sent (flush LSN)

    def xlog(self, end: int, payload: bytes) -> None:
        self.queue.append((end, payload))

    def keepalive(self, wal_end: int, reply: bool = False) -> None:
        self.queue.append(Keepalive(wal_end, reply))

    def read_message(self, timeout: float) -> tuple[int, bytes] | Keepalive | None:
        return self.queue.pop(0) if self.queue else None

    def send_status(self, flush_lsn: int, reply: bool = False) -> None:
        self.status.append(flush_lsn)


class MemoryCheckpointer(Checkpointer):
    """The real Checkpointer; its writes are collected instead of sent to PostgreSQL."""

    def __init__(self, interval_s: float = 0.0, calendar: BusinessCalendar | None = None) -> None:
        super().__init__(None, "d1", "cdcsync_d1", lambda schema, table: ("id",), interval_s,  # type: ignore[arg-type]
                         calendar=calendar or BusinessCalendar(None))
        self.writes: list[tuple[int, Totals, bool | None]] = []

    def _store(self, t: Totals, flush_lsn: int, snapshot_done: bool | None, position: bool) -> None:
        self.keys.clear()  # what the COPY would have written
        self.writes.append((flush_lsn, t, snapshot_done))
