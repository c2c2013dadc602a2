"""Seed ``cdcsync.delivery_latency`` for report tests the way the checkpoint writes it
(:class:`~cdcsync.engine.accounting.DelayHistogram` + :func:`~cdcsync.engine.accounting.write_aggregates`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from cdcsync.engine.accounting import BEIJING, DelayHistogram, write_aggregates
from cdcsync.engine.calendar import BusinessCalendar


def seed_latency(conn: psycopg.Connection[Any], destination: str, table: str, day: dt.date,
                 events: list[tuple[dt.datetime | None, dt.datetime]], acked_at: dt.datetime) -> int:
    """``events``: (business time, naive Beijing or None; commit time, aware) acknowledged at
    ``acked_at`` (aware); one (table, day) key, the packaged spec's timeliness class."""
    hist = DelayHistogram(BusinessCalendar.packaged().timeliness(table))
    acked_local = acked_at.astimezone(BEIJING).replace(tzinfo=None)
    for business_time, commit_time in events:
        hist.add_many([business_time], acked_local, (acked_at - commit_time).total_seconds())
    return write_aggregates(conn, destination, {(table, day): hist})
