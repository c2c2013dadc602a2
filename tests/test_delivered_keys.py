"""The delivered-keys log's per-event work, without a database: which keys an acknowledged batch
adds and removes, the version digest, and the fast key text held to its reference form."""

from __future__ import annotations

import datetime as dt
from hashlib import blake2b
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cdcsync.engine.checkpoint import DeliveredKeys, pk_formatter, pk_json, version_digest
from cdcsync.event import Event, Op
from cdcsync.source.pgoutput import tuple_data

T0 = dt.datetime(2024, 5, 6, 2, 0, tzinfo=dt.UTC)
PKS: dict[str, tuple[str, ...]] = {"visit": ("id",), "lab": ("org", "no"), "log": ()}


def ev(op: Op, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None, eid: str,
       versions: tuple[str | None, str | None] = (None, None)) -> Event:
    image = None if after is None else tuple_data([None if v is None else str(v).encode() for v in after.values()])
    return Event(eid, op, before, after, "ORG", "emr", "emr", table, 0x10, 7, T0, False, 0, *versions, image=image)


def digest(event: Event) -> str:
    d = version_digest(event)
    assert d is not None
    return d


def tracked(events: list[Event], rejected: dict[str, str] | None = None) -> DeliveredKeys:
    keys = DeliveredKeys("d1", lambda schema, table: PKS[table])
    keys.track(events, rejected)
    return keys


def test_inserts_updates_and_deletes_leave_the_last_operation_per_key() -> None:
    row1, row2 = {"id": 1, "v": "a"}, {"id": 2, "v": "b"}
    keys = tracked([
        ev("c", "visit", None, row1, "x:1"),
        ev("c", "visit", None, row2, "x:2"),
        ev("u", "visit", row1, {"id": 1, "v": "a2"}, "x:3"),
        ev("d", "visit", row2, None, "x:4"),
    ])
    assert keys._ops == {
        ("visit", '{"id":1}'): (True, "x:3", digest(ev("u", "visit", None, {"id": 1, "v": "a2"}, "x:3"))),
        ("visit", '{"id":2}'): (False, None, None),
    }


def test_an_update_that_changes_the_key_removes_the_old_key() -> None:
    update = ev("u", "lab", {"org": "A", "no": 1}, {"org": "A", "no": 2, "r": "阳性"}, "x:1")
    assert tracked([update])._ops == {
        ("lab", '{"org":"A","no":1}'): (False, None, None),
        ("lab", '{"org":"A","no":2}'): (True, "x:1", digest(update)),
    }


def test_rejected_events_and_tables_without_a_key_are_not_tracked() -> None:
    keys = tracked([ev("c", "visit", None, {"id": 1}, "x:1"), ev("c", "log", None, {"m": "…"}, "x:2")],
                   rejected={"x:1": "E1"})
    assert keys._ops == {}


def test_a_truncate_clears_the_table_and_keys_after_it_count() -> None:
    keys = tracked([
        ev("c", "visit", None, {"id": 1}, "x:1"),
        ev("c", "lab", None, {"org": "A", "no": 1}, "x:2"),
        ev("t", "visit", None, None, "x:3"),
        ev("c", "visit", None, {"id": 5}, "x:4"),
    ])
    assert keys._truncated == {"visit"}
    assert set(keys._ops) == {("lab", '{"org":"A","no":1}'), ("visit", '{"id":5}')}


def test_the_digest_covers_the_image_and_the_transform_versions() -> None:
    row = {"id": 1, "n": "36.5", "s": "张三\t'\"", "x": None}
    base = ev("c", "visit", None, row, "x:1", ("m1", "s1"))
    assert base.image is not None
    assert digest(base) == blake2b(b"m1\0s1\0" + base.image, digest_size=16).hexdigest()
    assert digest(base) == digest(ev("r", "visit", None, dict(row), "other id", ("m1", "s1")))  # content only
    others = [ev("c", "visit", None, {**row, "n": "36.6"}, "x:1", ("m1", "s1")),
              ev("c", "visit", None, {**row, "x": ""}, "x:1", ("m1", "s1")),  # NULL is not ''
              ev("c", "visit", None, row, "x:1", ("m2", "s1")),  # other code tables: other content sent
              ev("c", "visit", None, row, "x:1", ("m1", "s2")),
              ev("c", "visit", None, row, "x:1")]
    assert len({digest(base), *map(digest, others)}) == 1 + len(others)


def test_a_version_without_an_image_is_tracked_without_a_digest() -> None:
    toasted = ev("u", "visit", {"id": 1}, {"id": 1, "big": "…"}, "x:1")
    toasted.image = None  # an update whose TOASTed value was unchanged: the decoder had no image
    assert tracked([toasted])._ops == {("visit", '{"id":1}'): (True, "x:1", None)}


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(),
    st.decimals(allow_nan=False, allow_infinity=False), st.dates(), st.datetimes(), st.binary(max_size=8),
)


@given(st.lists(st.text(min_size=1), min_size=1, max_size=4, unique=True).flatmap(
    lambda cols: st.tuples(st.just(tuple(cols)), st.fixed_dictionaries({c: scalars for c in cols}))))
def test_the_fast_key_text_equals_the_reference(case: tuple[tuple[str, ...], dict[str, Any]]) -> None:
    cols, row = case
    assert pk_formatter(cols)(row) == pk_json(row, cols)
    assert pk_formatter(cols)({}) == pk_json({}, cols)  # a before-image without the key: nulls

