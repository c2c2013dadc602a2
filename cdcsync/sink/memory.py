"""In-process sink for tests and benchmarks; ``null`` mode only counts."""

from __future__ import annotations

from collections.abc import Callable

from cdcsync.event import Ack, Batch, Event


class MemorySink:
    def __init__(self, name: str, null: bool = False,
                 reject: Callable[[Event], str | None] | None = None) -> None:
        self.name = name
        self.null = null
        self.reject = reject  # tests: a reason to refuse an event, or None to accept it
        self.events: list[Event] = []
        self.count = 0
        self.batches = 0

    def send(self, batch: Batch) -> Ack:
        self.batches += 1
        self.count += len(batch.events)
        if self.null:
            return _all(batch)
        if self.reject is None:
            self.events.extend(batch.events)
            return _all(batch)
        accepted: list[str] = []
        rejected: dict[str, str] = {}
        for ev in batch.events:
            reason = self.reject(ev)
            if reason is None:
                accepted.append(ev.id)
                self.events.append(ev)
            else:
                rejected[ev.id] = reason
        return Ack(accepted, rejected)

    def close(self) -> None:
        pass


def _all(batch: Batch) -> Ack:
    return Ack.all_of(batch.events)
