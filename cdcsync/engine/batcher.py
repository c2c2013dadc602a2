"""The batcher: collects a destination's events into bounded batches and drives
sink (through the delivery window) → checkpoint → flush.

It gets its :class:`Limits`, a :class:`Counters` object it adds to, the business calendar and
the stages it drives; it knows nothing of the pipeline that owns it. A transaction larger than a
batch leaves in several batches; only the batch holding its commit carries ``commit_through``,
so the acknowledged position moves to the commit once the last part is acknowledged.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Protocol

from cdcsync.config import StreamSettings
from cdcsync.engine.calendar import BusinessCalendar
from cdcsync.engine.checkpoint import Checkpointer, KnownIds
from cdcsync.engine.delivery import DeliveryWindow
from cdcsync.event import (
    SINK_REJECTED_RULE,
    Ack,
    Batch,
    Change,
    Event,
    Op,
    Rejected,
    Rejection,
    Row,
    Transform,
    dumps,
    event_id,
)
from cdcsync.sink import Sink, SinkError
from cdcsync.source.catalog import PkLookup

_monotonic = time.monotonic


class StatusSink(Protocol):
    """Where a confirmed position goes (the replication connection's standby status update)."""

    def send_status(self, flush_lsn: int, reply: bool = False) -> None: ...


@dataclass(slots=True, frozen=True)
class Limits:
    """When a batch leaves, and how many may wait for delivery (``stream.*`` settings)."""

    max_events: int
    max_bytes: int
    linger_s: float
    in_flight: int

    @classmethod
    def of(cls, stream: StreamSettings) -> Limits:
        return cls(stream.batch_max_events, stream.batch_max_bytes, stream.linger_ms / 1000.0,
                   stream.in_flight_batches)


@dataclass(slots=True)
class Counters:
    """A destination's running totals (status, ``cdcsync snapshot``'s summary, tests)."""

    events_sent: int = 0
    events_quarantined: int = 0
    batches_sent: int = 0
    flushed_lsn: int = 0


class Batcher:
    """Collects events into bounded batches and drives sink → checkpoint → flush."""

    def __init__(self, name: str, sink: Sink, transform: Transform, ckpt: Checkpointer, pks: PkLookup,
                 repl: StatusSink | None, limits: Limits, counters: Counters, calendar: BusinessCalendar,
                 position: bool = True) -> None:
        self.name = name  # the destination, for messages
        self.position = position
        self.transform = transform
        self.origin = transform.origin
        self.ckpt = ckpt
        self.pks = pks
        self.repl = repl
        self.counters = counters
        self.max_events = limits.max_events
        self.max_bytes = limits.max_bytes
        self.linger = limits.linger_s
        self.batch = Batch()
        self.deadline: float | None = None
        self.in_tx = False
        self.flush_pos = 0
        self.calendar = calendar
        self.bfields = calendar.day_fields  # table -> business date field (filled by the calendar)
        self.window = DeliveryWindow(sink, limits.in_flight)
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
            # BusinessCalendar.day_of inline for its common case: a spec table's datetime field
            # (tests/test_calendar.py holds the two to the same answer).
            fname = self.bfields.get(change.table)
            row = change.after
            value = row.get(fname) if fname is not None and row is not None else None
            b.business_dates.append(value.date() if type(value) is dt.datetime else self.calendar.day_of(change))
            # Estimate, not the JSON length: encoding is the sink's work (a null sink skips it).
            b.nbytes += 2 * change.size + 256
            if self.deadline is None:
                self.deadline = _monotonic() + self.linger
            if len(events) >= self.max_events or b.nbytes >= self.max_bytes:
                self.send()
            return
        assert isinstance(out, Rejection)
        b.rejections.append(self._rejected(
            event_id(self.origin, change), change.schema, change.table, change.row, change.lsn, change.op, change.tx_id,
            change.commit_ts, out, self.calendar.day_of(change)))
        if self.deadline is None:
            self.deadline = _monotonic() + self.linger
        if len(b.events) >= self.max_events or b.nbytes >= self.max_bytes:
            self.send()

    def _rejected(self, eid: str, schema: str, table: str, row: Row | None, lsn: int, op: Op, tx_id: int,
                  commit_ts: dt.datetime, rej: Rejection, day: dt.date) -> Rejected:
        pk_cols = self.pks(schema, table)
        pk = {c: row.get(c) for c in pk_cols} if row else {}
        return Rejected(eid, schema, table, _jsonable(pk), lsn, rej.rule_id, rej.field, rej.message, row, day,
                        op, tx_id, commit_ts)

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
            raise SinkError(f"目的地 {self.name} 未确认 {len(missing)} 条事件")
        sink_rej: list[Rejected] = []
        if ack.rejected:
            for ev, day in zip(b.events, b.business_dates, strict=True):
                reason = ack.rejected.get(ev.id)
                if reason is not None:
                    rule = ack.rejected_rules.get(ev.id, SINK_REJECTED_RULE)  # PLT… for a refused event
                    rejection = Rejection(rule, ack.rejected_fields.get(ev.id), reason)
                    row = ev.after if ev.after is not None else ev.before
                    sink_rej.append(self._rejected(ev.id, ev.schema, ev.table, row, ev.lsn, ev.op, ev.tx_id,
                                                   ev.commit_ts, rejection, day))
        lsn = self.ckpt.record(b, ack, sink_rej, position=self.position)
        c = self.counters
        c.events_sent += len(b.events) - len(sink_rej)
        c.events_quarantined += len(b.rejections) + len(sink_rej)
        c.batches_sent += 1
        self.advance(lsn)

    def checkpoint(self) -> None:
        """Write acknowledged transactions the checkpointer still holds, then confirm them."""
        self.advance(self.ckpt.write_pending())

    def advance(self, lsn: int | None) -> None:
        if lsn is not None and lsn > self.flush_pos:
            self.flush_pos = lsn
            self.counters.flushed_lsn = lsn
            if self.repl is not None:
                self.repl.send_status(lsn)

    def finish_snapshot(self, consistent_point: int) -> None:
        self.batch.snapshot_done_lsn = consistent_point
        self.batch.commit_through = consistent_point
        self.drain()
        self.flush_pos = consistent_point

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.window.close()


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    import orjson

    return dict(orjson.loads(dumps(value)))
