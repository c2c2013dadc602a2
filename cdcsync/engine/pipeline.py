"""The stages of one destination wired together.

    replication stream (or snapshot) → decode → transform → batcher → sink → checkpoint → flush

One :class:`Pipeline` per destination, each with its own slot, connections and thread, so one
destination's outage never holds another back. The loop reads, decodes and batches on one
thread; a remote destination's batches are prepared and delivered in order by background threads
(:mod:`cdcsync.engine.delivery`), and the loop checkpoints their acknowledgements in the same order.
When ``stream.in_flight_batches`` batches wait for delivery nothing more is read (TCP
back-pressure keeps the rest in PostgreSQL), so memory stays bounded. A transaction larger than
a batch leaves in several batches; the acknowledged position only moves to its commit once the
last of them is acknowledged.
"""

from __future__ import annotations

import datetime as dt
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

from cdcsync.config import DestinationSettings, Settings
from cdcsync.db.migrate import PUBLICATION
from cdcsync.engine.checkpoint import Checkpointer, CheckpointState, KnownIds
from cdcsync.engine.delivery import DeliveryWindow
from cdcsync.engine.health import record_error
from cdcsync.event import (
    SINK_REJECTED_RULE,
    Ack,
    Batch,
    Change,
    Event,
    Rejected,
    Rejection,
    dumps,
    lsn_to_str,
    str_to_lsn,
)
from cdcsync.recon.latency import TransmissionLog
from cdcsync.sink import Sink, SinkError, build_sink
from cdcsync.source.pgoutput import Begin, Commit, LogicalMessage, PgOutputDecoder, Truncate
from cdcsync.source.protocol import ReplicationConnection, with_session_options
from cdcsync.source.slots import SlotInfo, drop_slot, get_slot, list_slots, slot_name
from cdcsync.source.walsafety import LOST, lost_message

log = logging.getLogger(__name__)
_time = time.time
_monotonic = time.monotonic

HEARTBEAT_PREFIX = "cdcsync.heartbeat"
_xlog_end = struct.Struct(">Q").unpack_from
Destination = DestinationSettings


class Transform(Protocol):
    """Validation/mapping stage: a Change becomes an Event, or a Rejection for quarantine.

    For a real destination this is always the validation stage built by
    :func:`cdcsync.validate.stage.transform_for`; :class:`PassThroughTransform` is for tests and
    benchmarks of the engine alone."""

    @property
    def origin(self) -> str:
        """``{org_code}.{database}``: the first part of every event id (also of quarantined ones)."""
        ...

    def __call__(self, change: Change) -> Event | Rejection: ...


def event_id(origin: str, change: Change) -> str:
    if change.snapshot:
        return f"{origin}:r{change.lsn:016X}:{change.schema}.{change.table}:{change.key or change.ordinal}"
    return f"{origin}:{change.lsn:016X}:{change.ordinal}"


class EventIds:
    """``event_id`` for a stream of changes, with the ``{origin}:{commit_lsn}:`` part formatted
    once per transaction rather than once per change (same ids, hot path)."""

    __slots__ = ("origin", "lsn", "prefix")

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.lsn = -1  # the transaction ``prefix`` belongs to
        self.prefix = ""

    def __call__(self, change: Change) -> str:
        if change.snapshot:
            return event_id(self.origin, change)
        if change.lsn != self.lsn:
            self.lsn = change.lsn
            self.prefix = f"{self.origin}:{change.lsn:016X}:"
        return self.prefix + str(change.ordinal)


class PassThroughTransform:
    """The Event envelope around the change as it is: no validation, no mapping, no versions.
    For tests and benchmarks of the engine only (an upstream platform refuses its batches);
    every real path uses :func:`cdcsync.validate.stage.transform_for`."""

    def __init__(self, org_code: str, db: str) -> None:
        self.org_code = org_code
        self.db = db
        self.origin = f"{org_code}.{db}"
        self._ids = EventIds(self.origin)

    @classmethod
    def for_settings(cls, settings: Settings) -> PassThroughTransform:
        return cls(settings.org_code, settings.database.dbname)

    def __call__(self, change: Change) -> Event | Rejection:
        lsn = change.lsn
        ids = self._ids
        # EventIds inline for the common case (same transaction as the previous change)
        eid = ids.prefix + str(change.ordinal) if lsn == ids.lsn and not change.snapshot else ids(change)
        return Event(
            eid, change.op, change.before, change.after, self.org_code, self.db,
            change.schema, change.table, lsn, change.tx_id, change.commit_ts, change.snapshot,
            int(_time() * 1000),
        )


class BusinessDates:
    """The day a change counts for in delivery statistics: the spec's business time field of the
    row when the table is in the dataset spec, else the commit date (local time)."""

    def __init__(self, tz: dt.tzinfo | None = None) -> None:
        self.tz = tz  # the database's TimeZone: "today" means the same day as in SQL
        self._fields: dict[str, str | None] = {}
        self._spec: Any = None
        try:
            from cdcsync.spec import load_spec

            self._spec = load_spec()
        except Exception as exc:  # the spec is optional for the engine
            log.debug("dataset spec not available for business dates: %s", exc)
        self._commit_day: tuple[int, dt.date] = (-1, dt.date.min)

    def _field(self, table: str) -> str | None:
        if table not in self._fields:
            name: str | None = None
            if self._spec is not None:
                try:
                    if self._spec.has_table(table):
                        name = self._spec.table(table).business_date_field
                except Exception:
                    name = None
            self._fields[table] = name
        return self._fields[table]

    def __call__(self, change: Change) -> dt.date:
        try:
            fname = self._fields[change.table]
        except KeyError:
            fname = self._field(change.table)
        if fname is not None:
            row = change.after if change.after is not None else change.before
            value = row.get(fname) if row else None
            if type(value) is dt.datetime:  # the common case first, then exactly as isinstance
                return value.date()
            if isinstance(value, dt.datetime):
                return value.date()
            if isinstance(value, dt.date):
                return value
        if self._commit_day[0] != change.lsn:
            self._commit_day = (change.lsn, change.commit_ts.astimezone(self.tz).date())
        return self._commit_day[1]


class PrimaryKeys:
    """Primary key columns per table (catalog lookup, cached): REPLICA IDENTITY FULL flags every
    column as key in pgoutput, so the real key comes from pg_index."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._cache: dict[tuple[str, str], tuple[str, ...]] = {}

    def __call__(self, schema: str, table: str) -> tuple[str, ...]:
        key = (schema, table)
        if key not in self._cache:
            with self.conn.transaction():
                rows = self.conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                    " AND a.attnum = ANY(i.indkey) WHERE i.indisprimary AND i.indrelid = %s::regclass"
                    " ORDER BY array_position(i.indkey::int2[], a.attnum)",
                    (f'"{schema}"."{table}"',)).fetchall()
            self._cache[key] = tuple(r[0] for r in rows)
        return self._cache[key]


@dataclass(slots=True)
class _Session:
    """What one connection session of a pipeline works with."""

    conn: psycopg.Connection[Any]
    sink: Sink
    transform: Transform
    pks: PrimaryKeys
    ckpt: Checkpointer
    state: CheckpointState
    slot: SlotInfo | None
    repl: ReplicationConnection | None = None


class Pipeline:
    """Source → transform → batch → sink → checkpoint → flush for one destination."""

    def __init__(self, settings: Settings, dest: Destination, *, transform: Transform, sink: Sink | None = None,
                 stop: threading.Event | None = None) -> None:
        """``transform``: required, so that no pipeline silently sends unvalidated rows; the daemon,
        ``drain`` and ``cdcsync snapshot`` get theirs from :func:`cdcsync.engine.daemon.build_pipeline`."""
        self.settings = settings
        self.stream = settings.stream
        self.dest = dest
        self.name = dest.name
        self.slot = slot_name(dest.name)
        self.conninfo = settings.database.conninfo()
        self._sink = sink
        self._transform = transform
        self.transmission = TransmissionLog(self.conninfo, dest.name)  # send attempts, for status/recon
        self.stop = stop or threading.Event()
        self.healthy = False
        self.on_ready: Callable[[], None] | None = None
        self.business_date = BusinessDates()
        # counters for status and tests
        self.events_sent = 0
        self.events_quarantined = 0
        self.batches_sent = 0
        self.flushed_lsn = 0
        # drain/bench/tests: end the stream once this returns True for (pipeline, flushed position)
        self.catch_up: Callable[[Pipeline, int], bool] | None = None
        self.caught_up = False
        # Set while the destination is stopped because its slot was lost (the recovery message);
        # cleared when the admin has dropped the slot and the new snapshot begins.
        self.halted: str | None = None
        self._active_sink: Sink | None = None  # the session's sink, closed by halt()

    # -- lifecycle --------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(with_session_options(self.conninfo, application_name=f"cdcsync-{self.name}"))

    @contextmanager
    def _session(self) -> Iterator[_Session]:
        """Connect and load this destination's state; close what was opened on the way out."""
        conn = self._connect()
        sink = self._sink or build_sink(self.dest, on_attempt=self.transmission)
        session: _Session | None = None
        self._active_sink = sink
        try:
            self.business_date.tz = conn.info.timezone
            self._check_database(conn)
            transform = self._transform
            pks = PrimaryKeys(conn)
            ckpt = Checkpointer(conn, self.name, self.slot, pks, self.stream.checkpoint_interval_ms / 1000)
            state = ckpt.load()
            with conn.transaction():
                slot = get_slot(conn, self.slot)
            session = _Session(conn, sink, transform, pks, ckpt, state, slot)
            yield session
        finally:
            if session is not None and session.repl is not None:
                session.repl.close()
            self._active_sink = None
            if self._sink is None:
                sink.close()
            conn.close()

    def _check_database(self, conn: psycopg.Connection[Any]) -> None:
        """Event ids name the database as ``settings.database.dbname`` resolves it; a connection
        that landed elsewhere (e.g. through a service file) would make ids that differ by path."""
        expected = self.settings.database.dbname
        if conn.info.dbname != expected:
            raise DatabaseMismatch(
                f"连接到的数据库 {conn.info.dbname} 与连接串推断的数据库名 {expected} 不一致；"
                "请在 database.dsn 中写明 dbname=…")

    def run_once(self) -> None:
        """One session: connect, snapshot if needed, stream until stopped or an error."""
        self.healthy = False
        with self._session() as s:
            conn, slot = s.conn, s.slot
            if s.state.snapshot_done and slot is not None and slot.wal_status == LOST:
                # The WAL after the acknowledged position is gone: streaming on would silently
                # skip changes. Stop here until the admin drops the slot (then a new snapshot).
                raise SlotLost(lost_message(self.name, self.slot))
            if not s.state.snapshot_done or slot is None:
                if s.state.snapshot_done and slot is None:
                    log.error("destination %s: slot %s is missing although its snapshot was done;"
                              " taking a new initial snapshot", self.name, self.slot)
                if self.stream.snapshot_on_new:
                    s.repl = self._initial_snapshot(conn, s.sink, s.transform, s.ckpt, s.pks, slot is not None)
                else:
                    with conn.transaction():
                        if slot is None:
                            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                                         (self.slot,))
                            log.info("replication slot created: %s", self.slot)
                        slot = get_slot(conn, self.slot)
                    assert slot is not None and slot.confirmed_flush_lsn is not None
                    s.ckpt.mark_streaming(str_to_lsn(slot.confirmed_flush_lsn))
            else:
                log.info("replication slot present: %s (resuming at %s)", self.slot, lsn_to_str(s.ckpt.acked_lsn))
            if self.stop.is_set():
                return
            if s.repl is None:
                s.repl = ReplicationConnection(self.conninfo, application_name=f"cdcsync-{self.name}")
            self._stream(conn, s.repl, s.sink, s.transform, s.ckpt, s.pks)

    def snapshot_once(self, tables: list[str] | None = None) -> int:
        """``cdcsync snapshot``: the initial snapshot when it was never completed (all tables,
        slot created, streaming left to ``run``); otherwise an ad-hoc re-read of ``tables`` (or
        all) as op ``r`` events, in a temporary slot's snapshot, leaving the position alone."""
        from cdcsync.source.snapshot import read_snapshot

        with self._session() as s:
            if s.slot is not None and s.slot.active:
                raise SnapshotRefused(f"目的地 {self.name} 的复制槽 {self.slot} 正在使用中，请先停止 cdcsync run")
            if not s.state.snapshot_done or s.slot is None:
                if tables:
                    raise SnapshotRefused(
                        f"目的地 {self.name} 尚未完成初始快照；初始快照包含全部表，不能用 --table 指定")
                before = self.events_sent
                s.repl = self._initial_snapshot(s.conn, s.sink, s.transform, s.ckpt, s.pks, s.slot is not None)
                return self.events_sent - before
            s.repl = ReplicationConnection(self.conninfo, application_name=f"cdcsync-{self.name}-snapshot")
            created = s.repl.create_slot(f"{self.slot}_adhoc", export_snapshot=True, temporary=True)
            assert created.snapshot_name is not None
            with _Batcher(self, s.sink, s.transform, s.ckpt, s.pks, None, position=False) as batcher:
                total = read_snapshot(self.conninfo, created.snapshot_name, created.consistent_point,
                                      batcher.add, s.pks, tables=tables, stop=self.stop, deletes_for=self.name)
                batcher.finish_snapshot(created.consistent_point)
            log.info("destination %s: ad-hoc snapshot done, %d rows", self.name, total)
            return total

    # -- snapshot ---------------------------------------------------------------------------

    def _initial_snapshot(self, conn: psycopg.Connection[Any], sink: Sink, transform: Transform,
                          ckpt: Checkpointer, pks: PrimaryKeys, slot_exists: bool) -> ReplicationConnection:
        from cdcsync.source.snapshot import read_snapshot

        ckpt.start_snapshot()
        if slot_exists:
            log.warning("destination %s: initial snapshot not finished; recreating slot %s", self.name, self.slot)
            with conn.transaction():
                drop_slot(conn, self.slot, force=True)
        repl = ReplicationConnection(self.conninfo, application_name=f"cdcsync-{self.name}")
        try:
            created = repl.create_slot(self.slot, export_snapshot=True)
            log.info("destination %s: slot %s created, snapshot at %s", self.name, self.slot,
                     lsn_to_str(created.consistent_point))
            assert created.snapshot_name is not None
            with _Batcher(self, sink, transform, ckpt, pks, None) as batcher:
                # Rows the destination already holds unchanged (a restore, a lost slot) keep their ids.
                batcher.known = known = KnownIds(self.conninfo, self.name, pks)
                total = read_snapshot(self.conninfo, created.snapshot_name, created.consistent_point,
                                      batcher.add, pks, stop=self.stop, deletes_for=self.name)
                if self.stop.is_set():
                    raise _Interrupted()
                batcher.finish_snapshot(created.consistent_point)
            log.info("destination %s: initial snapshot done, %d rows (%d already held, re-sent under their ids)",
                     self.name, total, known.reused)
            return repl
        except BaseException:
            repl.close()
            raise

    # -- streaming --------------------------------------------------------------------------

    def _stream(self, conn: psycopg.Connection[Any], repl: ReplicationConnection, sink: Sink,
                transform: Transform, ckpt: Checkpointer, pks: PrimaryKeys) -> None:
        st = self.stream
        repl.start(self.slot, ckpt.acked_lsn, PUBLICATION)
        decoder = PgOutputDecoder()
        with _Batcher(self, sink, transform, ckpt, pks, repl) as batcher:
            batcher.flush_pos = ckpt.acked_lsn
            self.healthy = True
            if self.on_ready is not None:
                self.on_ready()
            skip = False
            acked = ckpt.acked_lsn
            next_heartbeat = time.monotonic() + st.heartbeat_interval_s
            status_interval = st.status_interval_s
            decode = decoder.decode
            add = batcher.add
            window = batcher.window
            stop = self.stop
            read = repl.read_raw
            read_next = repl.read_next
            get_copy_data = repl.pg.get_copy_data
            quiet = False  # the last read brought no row data: the stream has caught up for now
            marker = 0  # LSN of the latest non-transactional logical message received
            while not stop.is_set():
                now = time.monotonic()
                if window.oldest_done():
                    batcher.collect()
                if batcher.deadline is not None and now >= batcher.deadline:
                    batcher.send()
                if ckpt.pending and (quiet or now >= ckpt.due_at):  # coalesce writes only under load
                    batcher.checkpoint()
                if now >= next_heartbeat:
                    self._heartbeat(conn, repl)
                    next_heartbeat = now + st.heartbeat_interval_s
                if repl.status_due(status_interval):
                    repl.send_status(batcher.flush_pos)
                if marker > batcher.flush_pos and batcher.idle:
                    batcher.flush_pos = marker  # everything received before the message is acknowledged
                if self.catch_up is not None and batcher.idle and self.catch_up(self, batcher.flush_pos):
                    self.caught_up = True
                    break
                wait = 0.5 if batcher.deadline is None else max(0.0, min(0.5, batcher.deadline - now))
                if ckpt.pending:
                    wait = max(0.0, min(wait, ckpt.due_at - now))
                if window:  # a delivery may finish meanwhile: look again soon to checkpoint it
                    wait = min(wait, 0.01)
                buf = read(wait)
                quiet = True  # no row data in this read: keepalives say the walsender caught up
                # Drain what is already here without touching the timers (they are checked every
                # few hundred messages: the batcher's size limits act inside add()).
                budget = 500
                while buf is not None:
                    if buf[0] == 0x77:  # XLogData
                        quiet = False
                        end = _xlog_end(buf, 9)[0]
                        if end > repl.received_lsn:
                            repl.received_lsn = end
                        m = decode(buf, 25)
                        if type(m) is Change:
                            if not skip:
                                add(m)
                        elif type(m) is Begin:
                            # A transaction whose commit precedes the acknowledged position was
                            # delivered before a crash; PostgreSQL may send it again.
                            skip = m.final_lsn < acked
                            batcher.in_tx = not skip
                        elif type(m) is Commit:
                            if not skip:
                                batcher.commit(m.commit_lsn, m.end_lsn)
                            batcher.in_tx = False
                            skip = False
                        elif type(m) is Truncate:
                            if not skip:
                                for ch in m.changes:
                                    add(ch)
                        elif type(m) is LogicalMessage and not m.transactional and m.lsn > marker:
                            marker = m.lsn  # a heartbeat or drain target: confirmed once idle
                    else:  # primary keepalive
                        ka = repl.keepalive(buf)
                        if batcher.idle and ka.wal_end > batcher.flush_pos:
                            batcher.flush_pos = ka.wal_end  # everything sent before it is acknowledged
                        if ka.reply:
                            repl.send_status(batcher.flush_pos)
                    budget -= 1
                    if budget == 0 or (budget & 31 == 0 and stop.is_set()):
                        break
                    # read(0) with its common case inline: a message already buffered by libpq
                    n, data = get_copy_data(1)
                    buf = bytes(data) if n > 0 else read_next(n)
            # Shutdown: deliver and acknowledge what is in flight, tell PostgreSQL, CopyDone.
            batcher.drain()
            batcher.checkpoint()
            repl.send_status(batcher.flush_pos)
            repl.stop()
            log.info("destination %s: stream stopped at %s", self.name, lsn_to_str(batcher.flush_pos))

    def _heartbeat(self, conn: psycopg.Connection[Any], repl: ReplicationConnection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_logical_emit_message(false, %s, now()::text)", (HEARTBEAT_PREFIX,))
            slot = get_slot(conn, self.slot)
        if slot is not None and slot.retained_bytes is not None:
            limit = self.stream.wal_retention_warn_mb * 1024 * 1024
            if slot.retained_bytes > limit:
                log.warning("slot %s retains %d MB of WAL (threshold %d MB)", self.slot,
                            slot.retained_bytes // (1024 * 1024), self.stream.wal_retention_warn_mb)

    def halt_if_lost(self) -> None:
        """Called from another thread when this destination's slot is seen lost: a delivery
        retrying against a platform that is down would otherwise block the stream from ever
        noticing. Closing the session's sink ends the retries; the next session stops on
        :class:`SlotLost`."""
        sink = self._active_sink
        if self.halted is None and sink is not None:
            log.warning("destination %s: slot %s is lost; stopping the delivery in progress", self.name, self.slot)
            sink.close()


class SlotLost(RuntimeError):
    """The destination's slot was invalidated (``wal_status = lost``); the message names the recovery."""


LOST_POLL_S = 5.0  # a stopped destination looks this often whether its slot has been dropped


def check_lost_slots(conn: psycopg.Connection[Any], pipes: list[Pipeline]) -> None:
    """One query for every pipeline's slot; halt the ones whose slot is lost (daemon loop)."""
    lost = {s.name for s in list_slots(conn) if s.wal_status == LOST}
    for p in pipes:
        if p.slot in lost:
            p.halt_if_lost()


def _wait_for_slot_drop(pipe: Pipeline) -> bool:
    """Stopped for a lost slot: wait until ``cdcsync slots drop`` removed it (True), or stop."""
    while not pipe.stop.wait(LOST_POLL_S):
        try:
            with psycopg.connect(pipe.conninfo, autocommit=True, connect_timeout=10) as conn:
                if get_slot(conn, pipe.slot) is None:
                    return True
        except psycopg.Error as exc:
            log.debug("destination %s: slot check failed: %s", pipe.name, exc)
    return False


class DatabaseMismatch(RuntimeError):
    """The session's database is not the one the event ids name (message for the admin)."""


class SnapshotRefused(RuntimeError):
    """``cdcsync snapshot`` cannot run now (message for the admin)."""


class _Interrupted(Exception):
    """Stop requested while the snapshot was running (it restarts from scratch next time)."""


class _Batcher:
    """Collects events into bounded batches and drives sink → checkpoint → flush."""

    def __init__(self, pipe: Pipeline, sink: Sink, transform: Transform, ckpt: Checkpointer,
                 pks: PrimaryKeys, repl: ReplicationConnection | None, position: bool = True) -> None:
        self.pipe = pipe
        self.position = position
        self.sink = sink
        self.transform = transform
        self.ckpt = ckpt
        self.pks = pks
        self.repl = repl
        self.max_events = pipe.stream.batch_max_events
        self.max_bytes = pipe.stream.batch_max_bytes
        self.linger = pipe.stream.linger_ms / 1000.0
        self.batch = Batch()
        self.deadline: float | None = None
        self.in_tx = False
        self.flush_pos = 0
        self.bdate = pipe.business_date
        self.bfields = self.bdate._fields  # table -> business time field (filled by bdate)
        self.window = DeliveryWindow(sink, pipe.stream.in_flight_batches)
        self.known: KnownIds | None = None  # set for the initial snapshot only

    @property
    def idle(self) -> bool:
        """Nothing received is waiting for acknowledgement or for its checkpoint."""
        return not self.in_tx and self.deadline is None and not self.window and not self.ckpt.pending

    def add(self, change: Change) -> None:
        out = self.transform(change)
        b = self.batch
        if type(out) is Event:
            if self.known is not None:
                self.known.reuse(out)
            events = b.events
            events.append(out)
            # BusinessDates inline for its common case: a spec table's datetime business field.
            fname = self.bfields.get(change.table)
            row = change.after
            value = row.get(fname) if fname is not None and row is not None else None
            b.business_dates.append(value.date() if type(value) is dt.datetime else self.bdate(change))
            # Estimate, not the JSON length: encoding is the sink's work (a null sink skips it).
            b.nbytes += 2 * change.size + 256
            if self.deadline is None:
                self.deadline = _monotonic() + self.linger
            if len(events) >= self.max_events or b.nbytes >= self.max_bytes:
                self.send()
            return
        assert isinstance(out, Rejection)
        b.rejections.append(self._rejected(change, out))
        if self.deadline is None:
            self.deadline = _monotonic() + self.linger
        if len(b.events) >= self.max_events or b.nbytes >= self.max_bytes:
            self.send()

    def _rejected(self, change: Change, rej: Rejection, eid: str | None = None) -> Rejected:
        row = change.row
        pk_cols = self.pks(change.schema, change.table)
        pk = {c: row.get(c) for c in pk_cols} if row else {}
        return Rejected(eid or event_id(self.transform.origin, change), change.schema, change.table,
                        _jsonable(pk), change.lsn, rej.rule_id, rej.field, rej.message, row, self.bdate(change),
                        change.op, change.tx_id, change.commit_ts)

    def commit(self, commit_lsn: int, end_lsn: int) -> None:
        self.batch.commit_through = commit_lsn
        self.batch.flush_lsn = end_lsn
        if self.deadline is None:
            self.deadline = time.monotonic() + self.linger

    def send(self) -> None:
        """Hand the batch being filled to the delivery window (waiting for room when it is full)."""
        b = self.batch
        if not b.events and not b.rejections and b.commit_through is None:
            self.deadline = None
            return
        self.batch = Batch()
        self.deadline = None
        window = self.window
        while window.full:
            self._record(*window.pop_oldest())  # type: ignore[misc]  # full: never None
        window.submit(b)

    def collect(self) -> None:
        """Checkpoint the batches delivered so far, oldest first, without waiting."""
        window = self.window
        while window.oldest_done():
            self._record(*window.pop_oldest())  # type: ignore[misc]  # done: never None

    def drain(self) -> None:
        """Send the batch being filled and wait until every batch is delivered and recorded."""
        self.send()
        while (done := self.window.pop_oldest()) is not None:
            self._record(*done)

    def _record(self, b: Batch, ack: Ack) -> None:
        missing = ack.missing(b)
        if missing:
            raise SinkError(f"目的地 {self.pipe.name} 未确认 {len(missing)} 条事件")
        sink_rej: list[Rejected] = []
        if ack.rejected:
            for ev in b.events:
                reason = ack.rejected.get(ev.id)
                if reason is not None:
                    ch = Change(ev.op, ev.schema, ev.table, ev.before, ev.after, ev.lsn, ev.tx_id, ev.commit_ts, 0,
                                ev.snapshot)
                    rule = ack.rejected_rules.get(ev.id, SINK_REJECTED_RULE)  # PLT… for a refused event
                    rejection = Rejection(rule, ack.rejected_fields.get(ev.id), reason)
                    sink_rej.append(self._rejected(ch, rejection, ev.id))
        lsn = self.ckpt.record(b, ack, sink_rej, position=self.position)
        self.pipe.events_sent += len(b.events) - len(sink_rej)
        self.pipe.events_quarantined += len(b.rejections) + len(sink_rej)
        self.pipe.batches_sent += 1
        self.advance(lsn)

    def checkpoint(self) -> None:
        """Write acknowledged transactions the checkpointer still holds, then confirm them."""
        self.advance(self.ckpt.write_pending())

    def advance(self, lsn: int | None) -> None:
        if lsn is not None and lsn > self.flush_pos:
            self.flush_pos = lsn
            self.pipe.flushed_lsn = lsn
            if self.repl is not None:
                self.repl.send_status(lsn)

    def finish_snapshot(self, consistent_point: int) -> None:
        self.batch.snapshot_done_lsn = consistent_point
        self.batch.commit_through = consistent_point
        self.drain()
        self.flush_pos = consistent_point

    def __enter__(self) -> _Batcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.window.close()


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    import orjson

    return dict(orjson.loads(dumps(value)))


def run_pipeline_forever(pipe: Pipeline) -> None:
    """Keep one destination streaming: reconnect with exponential backoff and jitter."""
    from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("destination %s: %s: %s; reconnecting in %.1fs (attempt %d)", pipe.name,
                    type(exc).__name__, _one_line(exc), wait, state.attempt_number)
        record_error(f"destination.{pipe.name}", f"{type(exc).__name__}: {_one_line(exc)}"[:300])

    def stop_when_asked(state: RetryCallState) -> bool:
        return pipe.stop.is_set()

    def session() -> None:
        try:
            pipe.run_once()
        except _Interrupted:
            return
        except SlotLost as exc:
            pipe.halted = str(exc)
            return
        except Exception as exc:
            if pipe.healthy and not pipe.stop.is_set():
                # It was streaming: reconnect at once, back off only if that fails too.
                log.warning("destination %s: stream lost (%s: %s); reconnecting", pipe.name,
                            type(exc).__name__, _one_line(exc))
                record_error(f"destination.{pipe.name}", f"{type(exc).__name__}: {_one_line(exc)}"[:300])
                return
            raise

    while not pipe.stop.is_set():
        retrying = Retrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential_jitter(multiplier=0.5, max=30.0, jitter=1.0),
            stop=stop_when_asked,
            sleep=lambda seconds: None if pipe.stop.wait(seconds) else None,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            retrying(session)
        except Exception as exc:
            if pipe.stop.is_set():
                log.info("destination %s: stopped while reconnecting (%s)", pipe.name, type(exc).__name__)
                return
            raise
        if pipe.caught_up:
            return  # catch-up mode reached its target (a lost stream reconnects instead)
        if pipe.halted is not None:
            # One clear message; the other destinations keep running, and so does this thread,
            # waiting for the documented recovery (slots drop, then the new snapshot below).
            log.error("%s", pipe.halted)
            record_error(f"destination.{pipe.name}", pipe.halted)
            if pipe.catch_up is not None or not _wait_for_slot_drop(pipe):
                return
            log.warning("destination %s: slot %s was dropped; taking a new snapshot (with deletes for rows"
                        " gone meanwhile)", pipe.name, pipe.slot)
            pipe.halted = None


def _one_line(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
