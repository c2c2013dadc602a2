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

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from cdcsync.config import DestinationSettings, Settings
from cdcsync.db.migrate import PUBLICATION
from cdcsync.engine.accounting import TransmissionLog
from cdcsync.engine.batcher import Batcher, Counters, Limits
from cdcsync.engine.calendar import BusinessCalendar
from cdcsync.engine.checkpoint import Checkpointer, CheckpointState, KnownIds
from cdcsync.engine.feed import Feed
from cdcsync.engine.health import record_error
from cdcsync.engine.passthrough import PassThroughTransform
from cdcsync.event import Change, EventIds, Transform, event_id, lsn_to_str, str_to_lsn
from cdcsync.sink import Sink, build_sink
from cdcsync.source.catalog import PrimaryKeys
from cdcsync.source.protocol import ReplicationConnection, with_session_options
from cdcsync.source.slots import SlotInfo, create_slot, drop_slot, get_slot, list_slots, slot_name
from cdcsync.source.walsafety import LOST, lost_message

log = logging.getLogger(__name__)
_time = time.time
_monotonic = time.monotonic

HEARTBEAT_PREFIX = "cdcsync.heartbeat"
Destination = DestinationSettings
# Importable from here as before the split (tests, benchmarks and other packages use them).
__all__ = ["Batcher", "BusinessCalendar", "Change", "Counters", "EventIds", "Limits", "PassThroughTransform",
           "Pipeline", "PrimaryKeys", "Transform", "event_id", "run_pipeline_forever"]


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
                 stop: threading.Event | None = None, calendar: BusinessCalendar | None = None) -> None:
        """``transform``: required, so that no pipeline silently sends unvalidated rows; the daemon,
        ``drain`` and ``cdcsync snapshot`` get theirs from :func:`cdcsync.engine.daemon.build_pipeline`
        (with the calendar of the rules' spec; without one, the packaged spec's)."""
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
        self.calendar = calendar or BusinessCalendar.packaged()
        self.limits = Limits.of(self.stream)
        self.counters = Counters()  # for status and tests (also as the properties below)
        # drain/bench/tests: end the stream once this returns True for (pipeline, flushed position)
        self.catch_up: Callable[[Pipeline, int], bool] | None = None
        self.caught_up = False
        # Set while the destination is stopped because its slot was lost (the recovery message);
        # cleared when the admin has dropped the slot and the new snapshot begins.
        self.halted: str | None = None
        self._active_sink: Sink | None = None  # the session's sink, closed by halt()

    @property
    def events_sent(self) -> int:
        return self.counters.events_sent

    @property
    def events_quarantined(self) -> int:
        return self.counters.events_quarantined

    @property
    def batches_sent(self) -> int:
        return self.counters.batches_sent

    @property
    def flushed_lsn(self) -> int:
        return self.counters.flushed_lsn

    def _batcher(self, s: _Session, repl: ReplicationConnection | None, position: bool = True) -> Batcher:
        return Batcher(self.name, s.sink, s.transform, s.ckpt, s.pks, repl, self.limits, self.counters,
                       self.calendar, position=position)

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
            self.calendar.tz = conn.info.timezone
            self._check_database(conn)
            transform = self._transform
            pks = PrimaryKeys(conn)
            ckpt = Checkpointer(conn, self.name, self.slot, pks, self.stream.checkpoint_interval_ms / 1000,
                                calendar=self.calendar)
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
            self.transmission.close()  # its connection reopens on the next session's first send
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
                    s.repl = self._initial_snapshot(s, slot is not None)
                else:
                    with conn.transaction():
                        if slot is None:
                            create_slot(conn, self.slot)
                        slot = get_slot(conn, self.slot)
                    assert slot is not None and slot.confirmed_flush_lsn is not None
                    s.ckpt.mark_streaming(str_to_lsn(slot.confirmed_flush_lsn))
            else:
                log.info("replication slot present: %s (resuming at %s)", self.slot, lsn_to_str(s.ckpt.acked_lsn))
            if self.stop.is_set():
                return
            if s.repl is None:
                s.repl = ReplicationConnection(self.conninfo, application_name=f"cdcsync-{self.name}")
            self._stream(s, s.repl)

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
                s.repl = self._initial_snapshot(s, s.slot is not None)
                return self.events_sent - before
            s.repl = ReplicationConnection(self.conninfo, application_name=f"cdcsync-{self.name}-snapshot")
            created = s.repl.create_slot(f"{self.slot}_adhoc", export_snapshot=True, temporary=True)
            assert created.snapshot_name is not None
            with self._batcher(s, None, position=False) as batcher:
                total = read_snapshot(self.conninfo, created.snapshot_name, created.consistent_point,
                                      batcher.add, s.pks, tables=tables, stop=self.stop, deletes_for=self.name)
                batcher.finish_snapshot(created.consistent_point)
            log.info("destination %s: ad-hoc snapshot done, %d rows", self.name, total)
            return total

    # -- snapshot ---------------------------------------------------------------------------

    def _initial_snapshot(self, s: _Session, slot_exists: bool) -> ReplicationConnection:
        from cdcsync.source.snapshot import read_snapshot

        conn, ckpt, pks = s.conn, s.ckpt, s.pks

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
            with self._batcher(s, None) as batcher:
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

    def _stream(self, s: _Session, repl: ReplicationConnection) -> None:
        st = self.stream
        conn, ckpt = s.conn, s.ckpt
        repl.start(self.slot, ckpt.acked_lsn, PUBLICATION)
        with self._batcher(s, repl) as batcher:
            batcher.flush_pos = ckpt.acked_lsn
            self.healthy = True
            if self.on_ready is not None:
                self.on_ready()
            feed = Feed(batcher, repl.read_message, repl, ckpt.acked_lsn, self.stop)
            next_heartbeat = time.monotonic() + st.heartbeat_interval_s
            status_interval = st.status_interval_s
            window = batcher.window
            stop = self.stop
            quiet = False  # the last read brought no row data: the stream has caught up for now
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
                if feed.marker > batcher.flush_pos and batcher.idle:
                    batcher.flush_pos = feed.marker  # everything received before the message is acknowledged
                if self.catch_up is not None and batcher.idle and self.catch_up(self, batcher.flush_pos):
                    self.caught_up = True
                    break
                wait = 0.5 if batcher.deadline is None else max(0.0, min(0.5, batcher.deadline - now))
                if ckpt.pending:
                    wait = max(0.0, min(wait, ckpt.due_at - now))
                if window:  # a delivery may finish meanwhile: look again soon to checkpoint it
                    wait = min(wait, 0.01)
                quiet = feed.pump(wait)
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

    def end_delivery(self, why: str) -> None:
        """From another thread: close the session's sink, so a delivery retrying (a platform
        down, or replies it can no longer verify) ends now instead of at its next success. The
        batches it held are sent again from the checkpoint: deterministic ids make that harmless."""
        sink = self._active_sink
        if sink is not None:
            log.warning("destination %s: %s; stopping the delivery in progress", self.name, why)
            sink.close()

    def halt_if_lost(self) -> None:
        """Called from another thread when this destination's slot is seen lost: a delivery
        retrying would otherwise block the stream from ever noticing; the next session stops on
        :class:`SlotLost`."""
        if self.halted is None:
            self.end_delivery(f"slot {self.slot} is lost")


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
