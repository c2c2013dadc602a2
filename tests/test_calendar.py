"""One business-date rule (BusinessCalendar.day_of) and its two other forms: the batcher's inline
hot path and the quarantine retry's (rows read back from JSON). Database-free."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from cdcsync.engine.batcher import Batcher, Counters, Limits
from cdcsync.engine.calendar import BusinessCalendar, business_day
from cdcsync.engine.passthrough import PassThroughTransform
from cdcsync.event import Change, dumps
from cdcsync.quarantine.store import Entry, released_day
from cdcsync.sink.memory import MemorySink
from cdcsync.spec import load_spec
from tests.engine_wire import MemoryCheckpointer

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
COMMIT = dt.datetime(2024, 5, 6, 17, 30, tzinfo=dt.UTC)  # 01:30 the next day in Beijing

VALUES: list[Any] = [
    dt.datetime(2024, 5, 1, 23, 59), dt.datetime(2024, 5, 1, 23, 59, tzinfo=SHANGHAI), dt.date(2024, 4, 30),
    None, "2024-05-02 08:00:00", "not a date", 17,
]


def _change(table: str, field: str, value: Any, op: str = "c", lsn: int = 0x10) -> Change:
    row = {"id": 1, field: value}
    after, before = (None, row) if op == "d" else (row, None)
    return Change(op, "emr", table, before, after, lsn, 5, COMMIT, 0)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def calendar() -> BusinessCalendar:
    return BusinessCalendar(load_spec(), SHANGHAI)


def test_spec_fields(calendar: BusinessCalendar) -> None:
    assert calendar.day_field("visit") == "visit_time" and calendar.business_time_field("visit") == "visit_time"
    assert calendar.timeliness("discharge") == "24h" and calendar.timeliness("no_such_table") == "realtime"
    assert calendar.day_field("no_such_table") is None
    assert BusinessCalendar(None).timeliness("visit") == "realtime"


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("op", ["c", "d"])
def test_batcher_inline_form_equals_the_rule(calendar: BusinessCalendar, value: Any, op: str) -> None:
    reference = BusinessCalendar(load_spec(), SHANGHAI)
    batcher = Batcher("d1", MemorySink("d1"), PassThroughTransform("ORG", "emr"), MemoryCheckpointer(),
                      lambda s, t: ("id",), None, Limits(1000, 1 << 30, 60.0, 4), Counters(), calendar)
    for table, field in (("visit", "visit_time"), ("no_such_table", "visit_time")):
        change = _change(table, field, value, op)
        batcher.add(change)
        assert batcher.batch.business_dates[-1] == reference.day_of(change)
    batcher.window.close()


def test_the_rule(calendar: BusinessCalendar) -> None:
    commit_day = COMMIT.astimezone(SHANGHAI).date()
    assert commit_day == dt.date(2024, 5, 7)
    expected = [dt.date(2024, 5, 1), dt.date(2024, 5, 1), dt.date(2024, 4, 30)] + [commit_day] * 4
    assert [calendar.day_of(_change("visit", "visit_time", v)) for v in VALUES] == expected
    assert business_day("2024-05-02") is None  # text is not a date to the engine (see the quarantine)


def _entry(table: str, row: dict[str, Any] | None, commit_ts: dt.datetime | None = COMMIT,
           business_date: dt.date | None = None) -> Entry:
    """A quarantine entry as read back: the row as JSON, first seen days after the commit."""
    stored = None if row is None else orjson.loads(dumps(row))
    seen = dt.datetime(2024, 6, 1, 9, 0, tzinfo=dt.UTC)
    return Entry("e1", "d1", table, {"id": 1}, "0/10", "R1", None, "…", stored, seen, seen, 1, "held", "c", 5,
                 commit_ts, business_date)


@pytest.mark.parametrize("value", [v for v in VALUES if isinstance(v, dt.date) or v is None or v == 17])
@pytest.mark.parametrize("table", ["visit", "no_such_table"])
def test_quarantine_form_equals_the_rule_on_the_json_row(calendar: BusinessCalendar, value: Any, table: str) -> None:
    """The quarantine keeps rows as JSON: its form parses the text back, then applies the rule,
    and falls back to the same commit date (the released row's statistics move on that day)."""
    change = _change(table, "visit_time", value)
    assert released_day(calendar, _entry(table, change.after)) == calendar.day_of(change)


def test_quarantine_keeps_the_day_the_engine_counted(calendar: BusinessCalendar) -> None:
    """A business time the source held as text: the engine counts it on the commit date, while
    the text in the kept row parses as a date. The day stored with the row (migration 074) wins."""
    change = _change("visit", "visit_time", "2024-05-02")
    counted = calendar.day_of(change)
    assert counted == dt.date(2024, 5, 7)
    assert released_day(calendar, _entry("visit", change.after)) == dt.date(2024, 5, 2)  # derived: wrong
    assert released_day(calendar, _entry("visit", change.after, business_date=counted)) == counted


def test_quarantine_fallback(calendar: BusinessCalendar) -> None:
    commit_day = dt.date(2024, 5, 7)  # COMMIT in the database's time zone
    assert released_day(calendar, _entry("visit", {"visit_time": "garbage"})) == commit_day
    assert released_day(calendar, _entry("visit", None)) == commit_day
    assert released_day(calendar, _entry("no_such_table", {"visit_time": "2024-05-02T08:00:00"})) == commit_day
    # Rows quarantined before the commit time was kept (migration 003): the day it was first seen.
    assert released_day(calendar, _entry("visit", None, commit_ts=None)) == dt.date(2024, 6, 1)
