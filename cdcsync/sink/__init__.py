"""Destinations, the end of the flow ``source/ → validate/ + mapping/ → engine/ → sink/``:
``build_sink`` turns a destination's settings into a Sink (``http``: the national or provincial
platform, sealed with ``crypto/``; ``jsonl``: a file; ``memory``: tests and benchmarks).

Kept import-light: ``cdcsync.config`` imports ``cdcsync.sink.http_settings`` for its destination
union, so this package must not import the config at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdcsync.sink.base import Sink, SinkError

if TYPE_CHECKING:
    from cdcsync.config import DestinationSettings
    from cdcsync.sink.http import AttemptRecorder


def build_sink(dest: DestinationSettings, on_attempt: AttemptRecorder | None = None) -> Sink:
    """``on_attempt``: told about every send attempt of a remote destination (transmission log)."""
    if dest.kind == "jsonl":
        from cdcsync.sink.jsonl import JsonlSink

        return JsonlSink(dest.name, dest.path)
    if dest.kind == "memory":
        from cdcsync.sink.memory import MemorySink

        return MemorySink(dest.name, null=dest.null)
    from cdcsync.sink.http import HttpSink

    return HttpSink(dest, on_attempt=on_attempt)


__all__ = ["Sink", "SinkError", "build_sink"]
