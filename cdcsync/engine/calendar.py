"""The business calendar: which day a change counts for, and which of a table's fields holds its
business time and timeliness class — all from the dataset spec, built once and passed to the
batcher, the checkpoint and the quarantine retry (nobody loads the spec behind their backs).

The rule (:meth:`BusinessCalendar.day_of`, the reference): the date of the row's business date
field (``business_date``, else ``business_time``, as the spec names it) when the table is in the
spec and the value is a date or datetime; otherwise the commit date in the database's time zone.
The batcher inlines its common case (a datetime value) for speed; ``tests/test_calendar.py``
checks the inline form against this one.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Protocol

from cdcsync.event import Row

if TYPE_CHECKING:
    from cdcsync.spec import Spec

log = logging.getLogger(__name__)

DEFAULT_TIMELINESS = "realtime"  # a table the spec does not know


class Dated(Protocol):
    """What the rule reads of a change (a :class:`~cdcsync.event.Change` or an Event)."""

    table: str
    before: Row | None
    after: Row | None
    lsn: int
    commit_ts: dt.datetime


def business_day(value: object) -> dt.date | None:
    """The day of a business date/time value; None when the value is neither."""
    if type(value) is dt.datetime:  # the common case first, then exactly as isinstance
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return None


class BusinessCalendar:
    """Per-table business fields of one dataset spec (None: no spec, every day is a commit date)."""

    def __init__(self, spec: Spec | None, tz: dt.tzinfo | None = None) -> None:
        self.spec = spec
        self.tz = tz  # the database's TimeZone: "today" means the same day as in SQL
        # table -> business date field (filled on first use; the batcher's hot path reads it)
        self.day_fields: dict[str, str | None] = {}
        self._time_fields: dict[str, str | None] = {}
        self._timeliness: dict[str, str] = {}
        self._commit_day: tuple[int, dt.date] = (-1, dt.date.min)

    @classmethod
    def packaged(cls) -> BusinessCalendar:
        """The calendar of the packaged spec; without a spec when it cannot be loaded (the
        engine alone, in tests and benchmarks, does not need one)."""
        try:
            from cdcsync.spec import load_spec

            return cls(load_spec())
        except Exception as exc:  # the spec is optional for the engine
            log.debug("dataset spec not available for business dates: %s", exc)
            return cls(None)

    def _in_spec(self, table: str) -> bool:
        try:
            return self.spec is not None and self.spec.has_table(table)
        except Exception:
            return False

    def day_field(self, table: str) -> str | None:
        """The field whose date a row of ``table`` counts for (None: not in the spec)."""
        try:
            return self.day_fields[table]
        except KeyError:
            pass
        name: str | None = None
        if self._in_spec(table):
            try:
                name = self.spec.table(table).business_date_field  # type: ignore[union-attr]
            except Exception:
                name = None
        self.day_fields[table] = name
        return name

    def business_time_field(self, table: str) -> str | None:
        """The field holding a table's business time (delay histograms; None: not in the spec)."""
        try:
            return self._time_fields[table]
        except KeyError:
            name = self.spec.table(table).business_time if self._in_spec(table) else None  # type: ignore[union-attr]
            self._time_fields[table] = name
            return name

    def timeliness(self, table: str) -> str:
        """The table's timeliness class (``realtime`` for a table the spec does not know)."""
        try:
            return self._timeliness[table]
        except KeyError:
            cls = self.spec.table(table).timeliness if self._in_spec(table) else DEFAULT_TIMELINESS  # type: ignore[union-attr]
            self._timeliness[table] = cls
            return cls

    def row_day(self, table: str, row: Row | None) -> dt.date | None:
        """The business day of ``row`` by its spec field; None when there is none to go by."""
        name = self.day_field(table)
        if name is None or not row:
            return None
        return business_day(row.get(name))

    def day_of(self, change: Dated) -> dt.date:
        """THE rule: the row's business day, else the commit date in the database's time zone."""
        try:  # row_day, inline: this runs for every event of a table without a spec field
            name = self.day_fields[change.table]
        except KeyError:
            name = self.day_field(change.table)
        if name is not None:
            row = change.after if change.after is not None else change.before
            if row and (day := business_day(row.get(name))) is not None:
                return day
        if self._commit_day[0] != change.lsn:
            self._commit_day = (change.lsn, self.commit_day(change.commit_ts))
        return self._commit_day[1]

    def commit_day(self, commit_ts: dt.datetime) -> dt.date:
        """The day of a commit in the database's time zone (the rule's fallback)."""
        return commit_ts.astimezone(self.tz).date()

    __call__ = day_of
