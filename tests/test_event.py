"""The batched event encoding (one JSON array, ``source`` blocks shared per transaction and table)
says exactly what encoding each event on its own says."""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal
from typing import Any

import orjson

from cdcsync.event import Event, encode_events, encode_lines


def _events() -> list[Event]:
    t1 = dt.datetime(2026, 11, 25, 8, 0, 0, 123456, tzinfo=dt.UTC)
    t2 = t1 + dt.timedelta(seconds=1)
    row = {"id": 1, "amount": Decimal("12.50"), "blob": b"\x00\xff", "at": t1, "name": "张三"}
    out = []
    for i, (lsn, tx, ts, table, snap, spec, mapping) in enumerate([
        (0x10, 7, t1, "visit", False, "1.0", "m1"),
        (0x10, 7, t1, "visit", False, "1.0", "m1"),  # same transaction and table: shared source
        (0x10, 7, t1, "lab_result", False, "1.0", "m1"),  # same transaction, other table
        (0x10, 7, t1, "visit", False, "1.0", "m2"),  # mappings reloaded inside the transaction
        (0x20, 8, t2, "visit", False, "1.0", "m2"),  # next transaction
        (0x20, 8, t2, "visit", True, None, None),  # snapshot row without versions
    ]):
        out.append(Event(f"o:{i}", "c", None, dict(row, id=i), "ORG", "emr", "emr", table, lsn, tx, ts, snap,
                         1000 + i, mapping, spec))
    out.append(Event("o:d", "d", {"id": 9}, None, "ORG2", "db2", "other", "visit", 0x20, 8, t2, False, 2000))
    return out


def _expected(e: Event) -> dict[str, Any]:
    """The envelope as docs/upstream-protocol.md describes it, built field by field."""
    after = None if e.after is None else {
        k: str(v) if isinstance(v, Decimal) else base64.b64encode(v).decode() if isinstance(v, bytes)
        else v.isoformat() if isinstance(v, dt.datetime) else v for k, v in e.after.items()}
    return {"id": e.id, "op": e.op, "before": e.before, "after": after, "ts_ms": e.ts_ms, "source": {
        "org_code": e.org_code, "db": e.db, "schema": e.schema, "table": e.table,
        "lsn": f"{e.lsn >> 32:X}/{e.lsn & 0xFFFFFFFF:X}", "tx_id": e.tx_id, "commit_ts": e.commit_ts.isoformat(),
        "snapshot": e.snapshot, "spec_version": e.spec_version, "mapping_version": e.mapping_version}}


def test_batched_encoding_says_what_each_event_says() -> None:
    events = _events()
    batched = orjson.loads(encode_events(events))
    assert batched == [_expected(e) for e in events]
    assert [orjson.loads(e.encode()) for e in events] == batched
    assert [orjson.loads(line) for line in encode_lines(events).splitlines()] == batched
    assert [e["source"]["mapping_version"] for e in batched][2:6] == ["m1", "m2", "m2", None]
    assert batched[0]["after"]["amount"] == "12.50" and batched[0]["after"]["blob"] == "AP8="
    assert batched[0]["source"]["commit_ts"] == "2026-11-25T08:00:00.123456+00:00"


def test_non_string_keys_still_encode() -> None:
    e = _events()[0]
    e.after = {"doc": {1: "a"}}
    assert orjson.loads(encode_events([e]))[0]["after"] == {"doc": {"1": "a"}}
