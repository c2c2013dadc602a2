"""The sink interface: a destination takes a batch and says which events it accepted."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class StagedSink(Sink, Protocol):
    """A sink whose ``send`` is ``deliver(prepare(batch))``: the delivery window prepares the next
    batch (encoding, encryption: CPU) while the previous one is delivered (network, the
    destination's own work). Deliveries still happen one at a time, in order."""

    def prepare(self, batch: Batch) -> Any: ...

    def deliver(self, prepared: Any) -> Ack: ...
