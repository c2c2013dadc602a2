"""The batcher, the stream's feed and the checkpoint's accounting without a database:
transactions split across batches, replay skipping, keepalive flushes, counts per business day.

The pgoutput bytes are built per the protocol (tests/engine_wire.py), decoded by the real
decoder; the sink is the in-process MemorySink; the checkpointer is the real one with only its
SQL (``_store``) replaced by a list of what it would write."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from cdcsync.engine.batcher import Batcher, Counters, Limits
from cdcsync.engine.calendar import BusinessCalendar
from cdcsync.engine.feed import Feed
from cdcsync.engine.passthrough import PassThroughTransform
from cdcsync.event import Change, Event, Rejection
from cdcsync.sink.memory import MemorySink
from tests import engine_wire as w
from tests.engine_wire import MemoryCheckpointer

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 6, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
COLUMNS = [("id", w.INT8_OID), ("note", w.TEXT_OID)]
RELID = 16400


class Setup:
    def __init__(self, max_events: int = 1000, interval_s: float = 0.0, acked: int = 0,
                 transform: Any = None) -> None:
        self.sink = MemorySink("d1")
        self.ckpt = MemoryCheckpointer(interval_s)
        self.ckpt.acked_lsn = acked
        self.wire = w.Wire()
        self.counters = Counters()
        self.batcher = Batcher("d1", self.sink, transform or PassThroughTransform("ORG", "emr"), self.ckpt,
                               self.ckpt.keys.pk_lookup, self.wire, Limits(max_events, 1 << 30, 0.0, 4),
                               self.counters, BusinessCalendar(None, UTC))
        self.batcher.flush_pos = acked
        self.feed = Feed(self.batcher, self.wire.read_message, self.wire, acked, threading.Event())
        self.wire.xlog(0, w.relation(RELID, "emr", "note", COLUMNS))

    def transaction(self, final_lsn: int, end_lsn: int, ids: range, xid: int = 700) -> None:
        self.wire.xlog(final_lsn, w.begin(final_lsn, T0, xid))
        for i in ids:
            self.wire.xlog(final_lsn, w.insert(RELID, [str(i), f"row {i}"]))
        self.wire.xlog(end_lsn, w.commit(final_lsn, end_lsn, T0))

    def run(self) -> bool:
        quiet = self.feed.pump(0)
        self.batcher.drain()
        self.batcher.checkpoint()
        return quiet


def test_transaction_split_across_batches_flushes_at_its_commit_only() -> None:
    s = Setup(max_events=3)
    s.transaction(0x1000, 0x1010, range(7))
    s.feed.pump(0)
    # Two full batches left before the commit arrived; they are acknowledged, nothing is confirmed.
    s.batcher.collect()
    assert s.counters.batches_sent == 2 and s.counters.events_sent == 6
    assert s.wire.status == [] and s.batcher.flush_pos == 0 and s.ckpt.writes == []
    s.batcher.drain()
    assert s.counters.batches_sent == 3 and s.counters.events_sent == 7
    assert s.wire.status == [0x1010] and s.counters.flushed_lsn == 0x1010
    ((flush, totals, _),) = s.ckpt.writes
    assert flush == 0x1010 and totals.counts == {("note", T0.date()): [7, 0]}
    assert [e.id for e in s.sink.events] == [f"ORG.emr:{0x1000:016X}:{i}" for i in range(7)]
    assert [e.after for e in s.sink.events][:2] == [{"id": 0, "note": "row 0"}, {"id": 1, "note": "row 1"}]


def test_replayed_transactions_below_the_acknowledged_position_are_skipped() -> None:
    s = Setup(acked=0x2010)
    s.transaction(0x1000, 0x1010, range(3), xid=1)  # delivered before the crash
    s.transaction(0x2000, 0x2010, range(2), xid=2)  # ends at the acknowledged position: delivered too
    s.transaction(0x3000, 0x3010, range(4), xid=3)
    s.run()
    lsns = [e.lsn for e in s.sink.events]
    assert lsns == [0x3000] * 4
    assert [e.id for e in s.sink.events][0] == f"ORG.emr:{0x3000:016X}:0"  # ordinals as in the first run
    assert s.wire.status == [0x3010] and not s.feed.skip


def test_keepalive_moves_the_flush_position_only_when_idle() -> None:
    s = Setup(interval_s=3600.0)
    s.wire.keepalive(0x500)
    s.feed.pump(0)
    assert s.batcher.flush_pos == 0x500  # nothing pending: everything before it is acknowledged
    s.ckpt.due_at = 0.0  # the first write goes out at once, the next waits an hour
    s.transaction(0x1000, 0x1010, range(2))
    s.wire.keepalive(0x1100, reply=True)
    s.feed.pump(0)
    # Inside the pump the transaction was still in the batcher: the keepalive must not confirm it.
    assert s.batcher.flush_pos == 0x500 and s.wire.status == [0x500]
    s.batcher.drain()
    assert s.batcher.flush_pos == 0x1010 and s.wire.status[-1] == 0x1010
    s.transaction(0x2000, 0x2010, range(1))
    s.feed.pump(0)
    s.batcher.drain()
    assert s.ckpt.pending  # acknowledged, not written yet: not idle, a keepalive waits
    s.wire.keepalive(0x3000)
    s.feed.pump(0)
    assert s.batcher.flush_pos == 0x1010
    s.batcher.checkpoint()
    s.wire.keepalive(0x3000)
    s.feed.pump(0)
    assert s.batcher.flush_pos == 0x3000


def test_quiet_pump_and_logical_message_marker() -> None:
    s = Setup()
    s.wire.queue.clear()
    assert s.feed.pump(0) is True
    s.wire.xlog(0x900, w.message(0x900, "cdcsync.heartbeat", b"now"))
    assert s.feed.pump(0) is False and s.feed.marker == 0x900


def test_rejections_are_quarantined_under_their_event_id_and_counted_per_day() -> None:
    class RejectOdd(PassThroughTransform):
        def __call__(self, change: Change) -> Event | Rejection:
            if change.after is not None and change.after["id"] % 2:
                return Rejection("R1", "note", "odd")
            return super().__call__(change)

    s = Setup(transform=RejectOdd("ORG", "emr"))
    s.transaction(0x1000, 0x1010, range(5))
    s.run()
    ((_, totals, _),) = s.ckpt.writes
    assert totals.counts == {("note", T0.date()): [3, 2]}
    assert [(r.event_id, r.primary_key, r.rule_id) for r in totals.rejections] == [
        (f"ORG.emr:{0x1000:016X}:1", {"id": 1}, "R1"), (f"ORG.emr:{0x1000:016X}:3", {"id": 3}, "R1")]
    assert s.counters.events_sent == 3 and s.counters.events_quarantined == 2


def test_sink_rejections_keep_the_event_and_its_business_day() -> None:
    s = Setup()
    s.sink.reject = lambda ev: "no" if ev.after and ev.after["id"] == 1 else None
    s.transaction(0x1000, 0x1010, range(3))
    s.run()
    ((_, totals, _),) = s.ckpt.writes
    assert totals.counts == {("note", T0.date()): [2, 1]}
    (rej,) = totals.rejections
    assert (rej.event_id, rej.rule_id, rej.raw_row, rej.op, rej.tx_id, rej.commit_ts) == (
        f"ORG.emr:{0x1000:016X}:1", "sink.rejected", {"id": 1, "note": "row 1"}, "c", 700, T0)
    assert s.counters.events_sent == 2 and s.counters.events_quarantined == 1


def test_accounts_wait_for_the_whole_transaction_and_sum_per_write() -> None:
    s = Setup(max_events=2, interval_s=3600.0)
    s.ckpt.due_at = 1e18  # never due: the loop's checkpoint() writes
    s.transaction(0x1000, 0x1010, range(3), xid=1)
    s.transaction(0x2000, 0x2010, range(1), xid=2)
    s.wire.xlog(0x3000, w.begin(0x3000, T0, 3))
    s.wire.xlog(0x3000, w.insert(RELID, ["9", "open"]))  # its commit has not arrived
    s.feed.pump(0)
    s.batcher.send()
    s.batcher.drain()
    assert s.ckpt.writes == [] and s.ckpt.pending
    s.batcher.checkpoint()
    ((flush, totals, _),) = s.ckpt.writes
    assert flush == 0x2010 and totals.counts == {("note", T0.date()): [4, 0]}
    assert totals.last_event == T0
    hist = totals.latency[("note", T0.date())]
    assert hist.events == 4 and hist.timeliness == "realtime"
    assert s.ckpt.accounts  # the open transaction's row is still held
