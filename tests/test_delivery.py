"""Pipelined delivery: the stream reads on while a sender thread delivers, acks are checkpointed
in order, and the checkpoint never covers a batch the destination has not acknowledged."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from cdcsync.engine.delivery import GIL_SWITCH_INTERVAL_S, DeliveryWindow
from cdcsync.engine.pipeline import PassThroughTransform, Pipeline, run_pipeline_forever
from cdcsync.event import Ack, Batch, Event, Rejected, str_to_lsn
from cdcsync.sink.base import SinkError
from tests.cdc_util import PROBE_DDL, prepare_db, settings_for, wait_for


def _event(i: int) -> Event:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    return Event(f"o:{i}", "c", None, {"id": i}, "ORG", "db", "emr", "t", i, 1, now, False, 0)


class GateSink:
    """A staged sink (delivered in the background) that blocks until the test opens the gate;
    records which batches it saw, on which thread."""

    name = "gate"

    def __init__(self, fail_on: int | None = None) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()  # a batch is inside deliver(), at the gate
        self.seen: list[str] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def prepare(self, batch: Batch) -> Batch:
        return batch

    def send(self, batch: Batch) -> Ack:
        return self.deliver(self.prepare(batch))

    def deliver(self, batch: Batch) -> Ack:
        self.entered.set()
        self.gate.wait(10)
        self.threads.add(threading.current_thread().name)
        first = batch.events[0].id
        self.seen.append(first)
        if self.fail_on is not None and len(self.seen) == self.fail_on:
            raise SinkError("platform said no")
        return Ack.all_of(batch.events)

    def close(self) -> None:
        pass


def test_window_keeps_order_bounds_batches_and_surfaces_failures() -> None:
    sink = GateSink(fail_on=3)
    window = DeliveryWindow(sink, limit=3)
    batches = [Batch(events=[_event(i)]) for i in range(3)]
    for b in batches:
        window.submit(b)
    assert window.full and len(window) == 3
    assert not window.oldest_done()
    assert window.pop_oldest(timeout=0.05) is None  # still waiting for the platform
    sink.gate.set()
    first = window.pop_oldest()
    assert first is not None and first[0] is batches[0] and list(first[1].accepted) == ["o:0"]
    second = window.pop_oldest()
    assert second is not None and second[0] is batches[1]
    with pytest.raises(SinkError, match="platform said no"):
        window.pop_oldest()
    assert sink.threads and all(n.startswith("cdcsync-send-gate") for n in sink.threads)
    # A batch of quarantined rows only is never sent, but keeps its place in the order.
    rejected_only = Batch(rejections=[Rejected("o:9", "emr", "t", {}, 9, "R1", None, "坏", None,
                                               _event(9).commit_ts.date())])
    window.submit(rejected_only)
    done = window.pop_oldest()
    assert done is not None and done[0] is rejected_only and list(done[1].accepted) == []
    window.close()


def test_background_delivery_shortens_the_gil_switch_interval() -> None:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        window = DeliveryWindow(GateSink(), limit=2)
        assert sys.getswitchinterval() == 0.005  # nothing runs in the background yet
        window.sink.gate.set()  # type: ignore[attr-defined]
        window.submit(Batch(events=[_event(1)]))
        assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL_S
        assert window.pop_oldest() is not None
        window.close()
    finally:
        sys.setswitchinterval(before)


def test_close_drops_batches_not_yet_started() -> None:
    sink = GateSink()
    window = DeliveryWindow(sink, limit=4)
    for i in range(4):
        window.submit(Batch(events=[_event(i)]))
    assert sink.entered.wait(10)  # the first one is inside deliver(), waiting at the gate
    later = [fut for _, fut in window._queue][1:]
    closing = threading.Thread(target=window.close)
    closing.start()
    # Open the gate only once close() has cancelled the others: nothing else may start.
    wait_for(lambda: all(f is not None and f.cancelled() for f in later), 10, "close() to cancel the rest")
    sink.gate.set()
    closing.join(10)
    assert not closing.is_alive() and sink.seen == ["o:0"] and len(window) == 0


class SlowCheckingSink:
    """A staged sink that takes its time per batch; at every call it reads the persisted checkpoint, which must
    never be ahead of what this sink had acknowledged before."""

    name = "t"

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.acked_flush: list[int] = []  # flush LSN of each acknowledged batch, in order
        self.violations: list[str] = []
        self.ids: list[str] = []
        self.threads: set[str] = set()

    def prepare(self, batch: Batch) -> Batch:
        return batch

    def send(self, batch: Batch) -> Ack:
        return self.deliver(self.prepare(batch))

    def deliver(self, batch: Batch) -> Ack:
        self.threads.add(threading.current_thread().name)
        row = self.conn.execute("SELECT acked_lsn::text FROM cdcsync.checkpoint WHERE destination = 't'").fetchone()
        persisted = str_to_lsn(row[0]) if row and row[0] else 0
        covered = max(self.acked_flush, default=0)
        if persisted > covered and self.acked_flush:
            self.violations.append(f"checkpoint {persisted:X} ahead of acknowledged {covered:X}")
        time.sleep(0.03)
        self.ids.extend(e.id for e in batch.events)
        if batch.flush_lsn is not None:
            self.acked_flush.append(batch.flush_lsn)
        return Ack.all_of(batch.events)

    def close(self) -> None:
        self.conn.close()


def test_pipeline_streams_ahead_of_a_slow_sink_and_checkpoints_in_order(fresh_db: str, tmp_path: Path) -> None:
    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(PROBE_DDL)
    settings, _ = settings_for(fresh_db, tmp_path, batch_max_events=5, linger_ms=0, in_flight_batches=4,
                               checkpoint_interval_ms=0, snapshot_on_new=False)
    sink = SlowCheckingSink(fresh_db)
    pipe = Pipeline(settings, settings.destinations[0], sink=sink,
                    transform=PassThroughTransform.for_settings(settings))
    ready = threading.Event()
    pipe.on_ready = ready.set
    t = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    t.start()
    try:
        assert ready.wait(30)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            for i in range(1, 121):
                conn.execute("INSERT INTO emr.cdc_probe (id, name, amount) VALUES (%s, %s, %s)", (i, f"行{i}", i))
        wait_for(lambda: len(sink.ids) >= 120, 60, "the slow sink to receive every row")
    finally:
        pipe.stop.set()
        t.join(30)
    assert not t.is_alive()
    sink.close()
    assert len(sink.ids) == 120 and sink.ids == sorted(sink.ids, key=lambda i: (i.split(":")[1], int(i.split(":")[2])))
    assert not sink.violations
    assert all(n.startswith("cdcsync-send-") for n in sink.threads)
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute("SELECT acked_lsn::text FROM cdcsync.checkpoint WHERE destination = 't'").fetchone()
    # Everything was acknowledged; an idle stream may confirm a little further (keepalives).
    assert row is not None and str_to_lsn(row[0]) >= max(sink.acked_flush)


def test_a_local_sink_is_called_inline() -> None:
    seen: list[str] = []

    class Local:
        name = "local"

        def send(self, batch: Batch) -> Ack:
            seen.append(threading.current_thread().name)
            return Ack.all_of(batch.events)

        def close(self) -> None:
            pass

    window = DeliveryWindow(Local(), limit=2)
    window.submit(Batch(events=[_event(1)]))
    assert seen == [threading.current_thread().name] and window.oldest_done()
    done = window.pop_oldest(timeout=0)
    assert done is not None and list(done[1].accepted) == ["o:1"]
    window.close()
