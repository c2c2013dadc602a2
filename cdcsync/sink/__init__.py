"""Destinations: ``build_sink`` turns a destination's settings into a Sink.

Kept import-light: ``cdcsync.config`` imports ``cdcsync.sink.http_settings`` for its destination
union, so this package must not import the config at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdcsync.sink.base import Sink, SinkError

if TYPE_CHECKING:
    from cdcsync.config import DestinationSettings


def build_sink(dest: DestinationSettings) -> Sink:
    if dest.kind == "jsonl":
        from cdcsync.sink.jsonl import JsonlSink

        return JsonlSink(dest.name, dest.path)
    if dest.kind == "memory":
        from cdcsync.sink.memory import MemorySink

        return MemorySink(dest.name, null=dest.null)
    from cdcsync.sink.http import HttpSink

    return HttpSink(dest)


__all__ = ["Sink", "SinkError", "build_sink"]
