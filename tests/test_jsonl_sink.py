"""JSONL destination file: private to its owner, torn tails cut, events appended whole."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import orjson

from cdcsync.event import Batch, Event
from cdcsync.sink.jsonl import JsonlSink


def _event(n: int) -> Event:
    ts = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    return Event(f"o.db:{n:016X}:0", "c", None, {"id": n, "name": "张三"}, "ORG123", "db", "emr",
                 "patient", n, n, ts, False, 0)


def test_file_is_created_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    old = os.umask(0o022)
    try:
        sink = JsonlSink("t", path)
    finally:
        os.umask(old)
    batch = Batch()
    batch.events.extend([_event(1), _event(2)])
    sink.send(batch)
    sink.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line)["after"]["id"] for line in lines] == [1, 2]


def test_a_torn_last_line_is_cut_on_open(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"id":"a"}\n{"id":"b","aft')
    JsonlSink("t", path).close()
    assert path.read_bytes() == b'{"id":"a"}\n'
