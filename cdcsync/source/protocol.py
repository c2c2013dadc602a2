"""The streaming replication protocol over psycopg 3, driven at the libpq (``pgconn``) level.

psycopg 3.3 sends ``START_REPLICATION`` as a simple query and returns a ``COPY_BOTH`` result;
from there the CopyData messages are read with ``get_copy_data`` and status updates written
with ``put_copy_data``. Replication connections only speak the simple query protocol, so
commands go through ``exec_`` too.

CopyData payloads (https://www.postgresql.org/docs/15/protocol-replication.html):
``w`` XLogData (start, end, clock, data), ``k`` primary keepalive (wal_end, clock, reply),
and from us ``r`` standby status update (write, flush, apply, clock, reply).
"""

from __future__ import annotations

import logging
import select
import struct
import time
from dataclasses import dataclass

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cdcsync.event import lsn_to_str, str_to_lsn
from cdcsync.source.typeconv import SESSION_OPTIONS

log = logging.getLogger(__name__)

_xlog_end = struct.Struct(">Q").unpack_from  # XLogData: 'w', start (1), end (9), clock (17), data (25)
_XLOG_DATA_AT = 25
_keepalive = struct.Struct(">Qq?").unpack_from
_status = struct.Struct(">cQQQq?").pack
PG_EPOCH_UNIX_US = 946_684_800_000_000


class ReplicationError(psycopg.OperationalError):
    """The replication connection failed or the server ended the stream; reconnecting may help."""


class CommandError(psycopg.DatabaseError):
    """A replication command the server refused (e.g. the slot already exists)."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.code = sqlstate


def pg_now_us() -> int:
    return int(time.time() * 1_000_000) - PG_EPOCH_UNIX_US


def with_session_options(conninfo: str, **extra: str) -> str:
    """The user's DSN plus the session settings our text parsing relies on."""
    params = conninfo_to_dict(conninfo)
    opts = params.get("options")
    options = f"{opts} {SESSION_OPTIONS}" if opts else SESSION_OPTIONS
    return make_conninfo(conninfo, options=options, **extra)


@dataclass(slots=True, frozen=True)
class Keepalive:
    wal_end: int
    reply: bool


@dataclass(slots=True, frozen=True)
class SlotCreated:
    slot_name: str
    consistent_point: int
    snapshot_name: str | None


class ReplicationConnection:
    """One ``replication=database`` connection: commands, then at most one COPY_BOTH stream."""

    def __init__(self, conninfo: str, application_name: str = "cdcsync") -> None:
        dsn = with_session_options(conninfo, replication="database", application_name=application_name)
        self.pg = pq.PGconn.connect(dsn.encode())
        if self.pg.status != pq.ConnStatus.OK:
            msg = self.pg.get_error_message()
            self.pg.finish()
            raise ReplicationError(f"复制连接失败：{msg}")
        self.streaming = False
        self.received_lsn = 0  # highest WAL end seen in XLogData/keepalive (set by read_message only)
        self._last_status = 0.0

    # -- commands ---------------------------------------------------------------------------

    def command(self, sql: str) -> list[tuple[str | None, ...]]:
        res = self.pg.exec_(sql.encode())
        if res.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            msg = (res.get_error_message() or self.pg.get_error_message()).strip()
            if self.pg.status == pq.ConnStatus.BAD:
                raise ReplicationError(f"{sql.split()[0]}: {msg}")
            state = res.error_field(pq.DiagnosticField.SQLSTATE)
            raise CommandError(f"{sql.split()[0]}: {msg}", state.decode() if state else None)
        rows = []
        for r in range(res.ntuples):
            row = []
            for c in range(res.nfields):
                v = res.get_value(r, c)
                row.append(None if v is None else bytes(v).decode())
            rows.append(tuple(row))
        return rows

    def identify_system(self) -> dict[str, str | None]:
        (row,) = self.command("IDENTIFY_SYSTEM")
        return {"systemid": row[0], "timeline": row[1], "xlogpos": row[2], "dbname": row[3]}

    def create_slot(self, name: str, export_snapshot: bool = False, temporary: bool = False) -> SlotCreated:
        """Create a pgoutput slot; with ``export_snapshot`` the snapshot stays valid until the
        next command on this connection (so keep it open and idle while the COPY runs)."""
        temp = " TEMPORARY" if temporary else ""
        snap = "export" if export_snapshot else "nothing"
        (row,) = self.command(f'CREATE_REPLICATION_SLOT "{name}"{temp} LOGICAL pgoutput (SNAPSHOT \'{snap}\')')
        return SlotCreated(str(row[0]), str_to_lsn(str(row[1])), row[2])

    # -- streaming --------------------------------------------------------------------------

    def start(self, slot: str, lsn: int, publication: str) -> None:
        sql = (f'START_REPLICATION SLOT "{slot}" LOGICAL {lsn_to_str(lsn)} '
               f"(proto_version '1', publication_names '{publication}', messages 'true')")
        self.pg.send_query(sql.encode())
        res = self.pg.get_result()
        if res is None or res.status != pq.ExecStatus.COPY_BOTH:
            msg = (res.get_error_message() if res is not None else "") or self.pg.get_error_message()
            raise ReplicationError(f"START_REPLICATION {slot} 失败：{msg.strip()}")
        self.pg.nonblocking = 1
        self.streaming = True
        self.received_lsn = max(self.received_lsn, lsn)
        log.info("replication started: slot=%s from=%s", slot, lsn_to_str(lsn))

    def read_message(self, timeout: float) -> tuple[int, bytes] | Keepalive | None:
        """The next CopyData message: ``(end LSN, pgoutput payload)`` for XLogData, a
        :class:`Keepalive`, or None when nothing arrived within ``timeout`` seconds (0: only what
        is already here). Keeps :attr:`received_lsn` up to date. Hot path: a message libpq has
        already buffered costs no select and no object but the tuple."""
        pg = self.pg
        n, data = pg.get_copy_data(1)
        if n <= 0:
            if n == 0:
                if timeout > 0:
                    r, _, _ = select.select([pg.socket], [], [], timeout)
                    if not r:
                        return None
                pg.consume_input()
                n, data = pg.get_copy_data(1)
                if n == 0:
                    return None
            if n < 0:
                self.streaming = False
                self._raise_end(n)
        kind = data[0]
        if kind == 0x77:  # w: XLogData
            end = _xlog_end(data, 9)[0]
            if end > self.received_lsn:
                self.received_lsn = end
            return end, bytes(data[_XLOG_DATA_AT:])
        if kind == 0x6B:  # k: primary keepalive
            return self.keepalive(data)
        raise ReplicationError(f"unexpected CopyData message {chr(kind)!r}")

    def keepalive(self, buf: bytes | memoryview) -> Keepalive:
        wal_end, _clock, reply = _keepalive(buf, 1)
        if wal_end > self.received_lsn:
            self.received_lsn = wal_end
        return Keepalive(wal_end, reply)

    def _raise_end(self, n: int) -> None:
        msg = self.pg.get_error_message()
        res = self.pg.get_result()
        if res is not None and res.get_error_message():
            msg = res.get_error_message()
        text = msg.strip() if msg else ""
        if n == -1:
            raise ReplicationError(f"服务器结束了复制流 {text}".strip())
        raise ReplicationError(f"复制连接中断：{text or '连接已断开'}")

    def send_status(self, flush_lsn: int, reply: bool = False) -> None:
        """Standby status update: received up to ``received_lsn``, durable up to ``flush_lsn``."""
        write = max(self.received_lsn, flush_lsn)
        msg = _status(b"r", write, flush_lsn, flush_lsn, pg_now_us(), reply)
        if self.pg.put_copy_data(msg) != 1:
            raise ReplicationError(f"发送复制状态失败：{self.pg.get_error_message()}")
        self._flush_out()
        self._last_status = time.monotonic()

    def status_due(self, interval: float) -> bool:
        return time.monotonic() - self._last_status >= interval

    def _flush_out(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pg.flush() == 1:
            if time.monotonic() > deadline:
                raise ReplicationError("发送复制状态超时")
            select.select([], [self.pg.socket], [], 0.1)

    def stop(self, timeout: float = 5.0) -> None:
        """End the COPY cleanly (CopyDone) and drain what the server still sends."""
        if not self.streaming:
            return
        self.streaming = False
        try:
            self.pg.put_copy_end()
            self._flush_out(timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                n, _ = self.pg.get_copy_data(1)
                if n == 0:
                    select.select([self.pg.socket], [], [], 0.1)
                    self.pg.consume_input()
                    continue
                if n < 0:
                    break
            self.pg.nonblocking = 0
            while self.pg.get_result() is not None:
                pass
        except (psycopg.Error, OSError) as exc:
            log.debug("CopyDone not completed cleanly: %s", exc)

    def close(self) -> None:
        self.pg.finish()

    def __enter__(self) -> ReplicationConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
