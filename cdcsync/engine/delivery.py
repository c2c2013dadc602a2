"""Batches on their way to a sink: a bounded window, worked on in the background.

The stream keeps decoding the next batch while a remote destination works on this one (for a
platform: encryption, HTTPS and the platform's own processing, partly on another core). A sink
that splits its work (:class:`~cdcsync.sink.base.StagedSink`, e.g. HTTP) gets two threads: one
prepares the next batch (encoding, encryption) while the other delivers, one batch at a time and
in the order handed over. The pipeline collects the acknowledgements in that same order and
checkpoints them on its own thread (the checkpoint connection is never shared). ``limit`` bounds
the batches held, so memory stays bounded and a slow destination holds the stream back.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

from cdcsync.event import Ack, Batch
from cdcsync.sink.base import Sink, StagedSink

log = logging.getLogger(__name__)

_NOTHING_TO_SEND = Ack(accepted=())

# The stream's thread is CPU-bound, so a delivery thread coming back from the network or from
# OpenSSL waits up to the interpreter's switch interval for the GIL (5 ms by default), several
# times per batch. 0.5 ms: bench/upstream.py 6-30 % faster end to end.
GIL_SWITCH_INTERVAL_S = 0.0005


class DeliveryWindow:
    """At most ``limit`` batches handed to ``sink`` and not yet collected, oldest first."""

    def __init__(self, sink: Sink, limit: int) -> None:
        self.sink = sink
        self.limit = max(1, limit)
        self._queue: deque[tuple[Batch, Future[Ack] | None]] = deque()
        self._pool: ThreadPoolExecutor | None = None  # delivers, in order
        self._prep: ThreadPoolExecutor | None = None  # prepares (StagedSink only)
        self._staged = isinstance(sink, StagedSink)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.limit

    def submit(self, batch: Batch) -> None:
        """Hand ``batch`` over. A StagedSink works on it in the background; any other sink (a
        local file, memory) is called right here: a thread would cost more than it overlaps. A
        batch of rejections only needs no sink."""
        fut: Future[Ack] | None = None
        sink = self.sink
        if batch.events:
            if self._staged:
                assert isinstance(sink, StagedSink)
                if self._pool is None:
                    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
                        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
                    self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cdcsync-send-{sink.name}")
                    self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cdcsync-prepare-{sink.name}")
                assert self._prep is not None
                prepared = self._prep.submit(sink.prepare, batch)
                fut = self._pool.submit(_deliver_when_prepared, sink, prepared)
            else:
                fut = Future()
                try:
                    fut.set_result(sink.send(batch))
                except Exception as exc:  # surfaces in pop_oldest, in order, like a background failure
                    fut.set_exception(exc)
        self._queue.append((batch, fut))

    def oldest_done(self) -> bool:
        if not self._queue:
            return False
        fut = self._queue[0][1]
        return fut is None or fut.done()

    def pop_oldest(self, timeout: float | None = None) -> tuple[Batch, Ack] | None:
        """The oldest batch and its Ack once delivered (waiting up to ``timeout``; None: wait as
        long as it takes), else None. A failed delivery raises its exception here."""
        if not self._queue:
            return None
        batch, fut = self._queue[0]
        if fut is not None:
            done, _ = wait_futures([fut], timeout=timeout)
            if not done:
                return None
        self._queue.popleft()
        return batch, (fut.result() if fut is not None else _NOTHING_TO_SEND)

    def close(self) -> None:
        """Drop the batches not yet started and wait for the one being sent (its Ack is not
        collected: the stream resumes from the checkpoint, and deterministic ids make the
        replay harmless to the destination)."""
        for _, fut in self._queue:
            if fut is not None:
                fut.cancel()
        if self._queue:
            log.info("%s: %d batch(es) in delivery dropped from the window; they are sent again after the "
                     "checkpoint", self.sink.name, len(self._queue))
        for pool in (self._prep, self._pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._queue.clear()
        self._pool = self._prep = None


def _deliver_when_prepared(sink: StagedSink, prepared: Future[Any]) -> Ack:
    return sink.deliver(prepared.result())
