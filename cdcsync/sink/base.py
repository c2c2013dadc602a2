"""The sink interface: a destination takes a batch and says which events it accepted."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cdcsync.event import Ack, Batch


class SinkError(RuntimeError):
    """The destination could not take the batch; the pipeline retries from its checkpoint."""


@runtime_checkable
class Sink(Protocol):
    name: str

    def send(self, batch: Batch) -> Ack:
        """Deliver every event of ``batch`` durably, or raise; the Ack names each event id."""
        ...

    def close(self) -> None:
        ...
