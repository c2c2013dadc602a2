"""Destinations: ``build_sink`` turns a destination's settings into a Sink."""

from __future__ import annotations

from cdcsync.config import JsonlDestination, MemoryDestination
from cdcsync.sink.base import Sink, SinkError


def build_sink(dest: JsonlDestination | MemoryDestination) -> Sink:
    if isinstance(dest, JsonlDestination):
        from cdcsync.sink.jsonl import JsonlSink

        return JsonlSink(dest.name, dest.path)
    if isinstance(dest, MemoryDestination):
        from cdcsync.sink.memory import MemorySink

        return MemorySink(dest.name, null=dest.null)
    raise TypeError(f"unsupported destination kind: {type(dest).__name__}")


__all__ = ["Sink", "SinkError", "build_sink"]
