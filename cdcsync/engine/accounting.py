"""Runtime accounting of a destination, written inside the engine's checkpoint transaction.

* :class:`PendingAccounts`: per acknowledged transaction (commit LSN), the delivered and
  quarantined counts per (table, business date), the quarantined rows, the latest commit time and
  the delivery-delay histograms — held until the checkpoint writes the transaction's position, then
  taken out in one piece (:meth:`PendingAccounts.take`). Database-free.
* :class:`DelayHistogram` and :func:`write_aggregates`: ``cdcsync.delivery_latency``, one upsert
  per (table, business date), never a row per event, in the same transaction as
  ``cdcsync.delivery_stats`` and the acked LSN, so the histograms never disagree with the counts.
* :class:`TransmissionLog`: the sinks' send attempts in ``cdcsync.transmission_daily`` (its own
  short transaction: counters for the daily report, not part of the delivery guarantee).

The reporting package (:mod:`cdcsync.recon`) reads these tables; it does not write them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psycopg

from cdcsync.beijing import BEIJING, TODAY_SQL
from cdcsync.engine.calendar import BusinessCalendar
from cdcsync.event import Batch, Event, Rejected

log = logging.getLogger(__name__)

# Upper bounds (seconds) of the histogram buckets; the last bucket holds everything above.
# Must equal cdcsync.latency_bounds() in sql/100_recon.sql (a test compares them).
LATENCY_BOUNDS: tuple[int, ...] = (
    1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
)
N_BUCKETS = len(LATENCY_BOUNDS) + 1

# Timeliness class -> limit in seconds, measured from the record's business time to the
# destination's acknowledgement. Must equal recon.timeliness_class (a test compares them).
TIMELINESS_LIMITS: Mapping[str, int] = {"realtime": 300, "2h": 7200, "24h": 86400, "daily": 172800}

# Business times in the mirror are Beijing local time without a zone (see the dataset spec).


@dataclass(slots=True)
class DelayHistogram:
    """Delays of one (table, business date): end to end (business time -> ack), the HIS part
    (business time -> commit in the mirror) and the front end's part (commit -> verified ack),
    each counted against the table's timeliness limit."""

    timeliness: str
    events: int = 0
    within: int = 0
    business_hist: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)
    commit_hist: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)
    max_business: float = 0.0
    max_commit: float = 0.0
    his_hist: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)
    his_within: int = 0
    frontend_within: int = 0
    his_sum: float = 0.0
    commit_sum: float = 0.0
    max_his: float = 0.0

    def add_many(self, business_times: Sequence[object], acked_local: dt.datetime, commit_delay: float) -> None:
        """Events of one transaction: their business times (naive Beijing datetime or date; None
        counts the commit delay) against the acknowledgement time in naive Beijing time."""
        limit = TIMELINESS_LIMITS[self.timeliness]
        hist = self.business_hist
        his_hist = self.his_hist
        within = his_within = 0
        his_sum = 0.0
        worst = self.max_business
        worst_his = self.max_his
        for value in business_times:
            if type(value) is dt.datetime:
                if value.tzinfo is not None:
                    value = value.astimezone(BEIJING).replace(tzinfo=None)
                delay = (acked_local - value).total_seconds()
            elif type(value) is dt.date:
                delay = (acked_local - dt.datetime.combine(value, dt.time())).total_seconds()
            else:
                delay = commit_delay
            if delay <= limit:
                within += 1
            hist[bisect.bisect_left(LATENCY_BOUNDS, delay)] += 1
            if delay > worst:
                worst = delay
            # The HIS part: from the business time to the row's commit in the mirror.
            his = max(delay - commit_delay, 0.0)
            if his <= limit:
                his_within += 1
            his_hist[bisect.bisect_left(LATENCY_BOUNDS, his)] += 1
            his_sum += his
            if his > worst_his:
                worst_his = his
        n = len(business_times)
        self.events += n
        self.within += within
        self.max_business = worst
        self.his_within += his_within
        self.his_sum += his_sum
        self.max_his = worst_his
        self.commit_hist[bucket(commit_delay)] += n
        if commit_delay <= limit:
            self.frontend_within += n
        self.commit_sum += max(commit_delay, 0.0) * n
        if commit_delay > self.max_commit:
            self.max_commit = commit_delay


def bucket(seconds: float) -> int:
    """Index of the histogram bucket for a delay (negative delays, from clock skew, count as 0)."""
    return bisect.bisect_left(LATENCY_BOUNDS, max(seconds, 0.0))


_UPSERT = """
INSERT INTO cdcsync.delivery_latency AS l (destination, table_name, business_date, timeliness, events,
    within_limit, business_hist, commit_hist, max_business_s, max_commit_s, his_hist, split_events, his_within,
    frontend_within, his_sum_s, commit_sum_s, max_his_s)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (destination, table_name, business_date) DO UPDATE SET
    events = l.events + EXCLUDED.events,
    within_limit = l.within_limit + EXCLUDED.within_limit,
    business_hist = cdcsync.hist_add(l.business_hist, EXCLUDED.business_hist),
    commit_hist = cdcsync.hist_add(l.commit_hist, EXCLUDED.commit_hist),
    max_business_s = greatest(l.max_business_s, EXCLUDED.max_business_s),
    max_commit_s = greatest(l.max_commit_s, EXCLUDED.max_commit_s),
    his_hist = cdcsync.hist_add(l.his_hist, EXCLUDED.his_hist),
    split_events = l.split_events + EXCLUDED.split_events,
    his_within = l.his_within + EXCLUDED.his_within,
    frontend_within = l.frontend_within + EXCLUDED.frontend_within,
    his_sum_s = l.his_sum_s + EXCLUDED.his_sum_s,
    commit_sum_s = l.commit_sum_s + EXCLUDED.commit_sum_s,
    max_his_s = greatest(l.max_his_s, EXCLUDED.max_his_s),
    timeliness = EXCLUDED.timeliness,
    updated_at = now()
"""


def merge(into: dict[tuple[str, dt.date], DelayHistogram], more: Mapping[tuple[str, dt.date], DelayHistogram]) -> None:
    """Add ``more`` to ``into`` (aggregates of batches that belong to one checkpoint write)."""
    for key, agg in more.items():
        have = into.get(key)
        if have is None:
            into[key] = agg
            continue
        have.events += agg.events
        have.within += agg.within
        have.business_hist = [a + b for a, b in zip(have.business_hist, agg.business_hist, strict=True)]
        have.commit_hist = [a + b for a, b in zip(have.commit_hist, agg.commit_hist, strict=True)]
        have.max_business = max(have.max_business, agg.max_business)
        have.max_commit = max(have.max_commit, agg.max_commit)
        have.his_hist = [a + b for a, b in zip(have.his_hist, agg.his_hist, strict=True)]
        have.his_within += agg.his_within
        have.frontend_within += agg.frontend_within
        have.his_sum += agg.his_sum
        have.commit_sum += agg.commit_sum
        have.max_his = max(have.max_his, agg.max_his)


def write_aggregates(conn: psycopg.Connection, destination: str,
                     aggs: Mapping[tuple[str, dt.date], DelayHistogram]) -> int:
    """Upsert pre-aggregated delays into ``cdcsync.delivery_latency``; returns the keys written."""
    params = [
        (destination, table, day, a.timeliness, a.events, a.within, a.business_hist, a.commit_hist,
         a.max_business, a.max_commit, a.his_hist, a.events, a.his_within, a.frontend_within, a.his_sum,
         a.commit_sum, a.max_his)
        for (table, day), a in sorted(aggs.items())
    ]
    if params:
        with conn.cursor() as cur:
            cur.executemany(_UPSERT, params)
    return len(params)



DayKey = tuple[str, dt.date]  # (table, business date)


@dataclass(slots=True)
class Totals:
    """What one checkpoint write adds: counts, quarantined rows, histograms, latest commit time."""

    counts: dict[DayKey, list[int]]  # [delivered, quarantined]
    rejections: list[Rejected]
    latency: dict[DayKey, DelayHistogram]
    last_event: dt.datetime | None


class PendingAccounts:
    """Acknowledged work per commit LSN, until the checkpoint writes it (see the module docstring).
    A transaction's figures are complete once its last batch is acknowledged; a replay after a
    crash starts from :meth:`clear` and counts the replayed transactions from scratch."""

    def __init__(self, calendar: BusinessCalendar) -> None:
        self.calendar = calendar
        # commit LSN -> (table, business date) -> [delivered, quarantined]
        self._stats: dict[int, dict[DayKey, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        self._quarantine: dict[int, list[Rejected]] = defaultdict(list)
        self._last_event: dict[int, dt.datetime] = {}
        # commit LSN -> delivery-delay histograms per (table, business date), measured at ack time
        self._latency: dict[int, dict[DayKey, DelayHistogram]] = defaultdict(dict)

    def clear(self) -> None:
        self._stats.clear()
        self._quarantine.clear()
        self._last_event.clear()
        self._latency.clear()

    def __bool__(self) -> bool:
        return bool(self._stats or self._quarantine)

    def add(self, batch: Batch, rejected_ids: Mapping[str, str], sink_rejections: Sequence[Rejected],
            acked_at: dt.datetime) -> None:
        """Account for an acknowledged batch: its accepted events (those not in ``rejected_ids``),
        its own rejections and the destination's (``sink_rejections``). ``acked_at``: aware."""
        # One pass groups the accepted events by (transaction, table, business date); the
        # counting and delay histograms then work per group (hot path: keep per-event work small).
        groups: dict[tuple[int, str, dt.date], list[Event]] = {}
        for ev, day in zip(batch.events, batch.business_dates, strict=True):
            if rejected_ids and ev.id in rejected_ids:
                continue
            key = (ev.lsn, ev.table, day)
            group = groups.get(key)
            if group is None:
                groups[key] = [ev]
            else:
                group.append(ev)
        acked_local = acked_at.astimezone(BEIJING).replace(tzinfo=None)  # business times: naive Beijing
        calendar = self.calendar
        for (lsn, table, day), events in groups.items():
            self._stats[lsn][(table, day)][0] += len(events)
            commit_ts = max(ev.commit_ts for ev in events) if len(events) > 1 else events[0].commit_ts
            prev = self._last_event.get(lsn)
            if prev is None or commit_ts > prev:
                self._last_event[lsn] = commit_ts
            hists = self._latency[lsn]
            hist = hists.get((table, day))
            if hist is None:
                hist = hists[(table, day)] = DelayHistogram(calendar.timeliness(table))
            name = calendar.business_time_field(table)
            values = [ev.after.get(name) if ev.after else None for ev in events] if name else [None] * len(events)
            hist.add_many(values, acked_local, (acked_at - commit_ts).total_seconds())
        for rej in [*batch.rejections, *sink_rejections]:
            self._stats[rej.lsn][(rej.table, rej.business_date)][1] += 1
            self._quarantine[rej.lsn].append(rej)

    def take(self, through: int) -> Totals:
        """Remove and sum up every transaction whose commit LSN is at or below ``through``."""
        done = [lsn for lsn in self._stats if lsn <= through] + [
            lsn for lsn in self._quarantine if lsn <= through and lsn not in self._stats]
        totals: dict[DayKey, list[int]] = defaultdict(lambda: [0, 0])
        rejections: list[Rejected] = []
        latency: dict[DayKey, DelayHistogram] = {}
        last_event: dt.datetime | None = None
        for lsn in done:
            for key, (d, q) in self._stats.pop(lsn, {}).items():
                totals[key][0] += d
                totals[key][1] += q
            rejections.extend(self._quarantine.pop(lsn, []))
            ts = self._last_event.pop(lsn, None)
            if ts is not None and (last_event is None or ts > last_event):
                last_event = ts
            merge(latency, self._latency.pop(lsn, {}))
        return Totals(dict(totals), rejections, latency, last_event)


_TRANSMISSION = """
INSERT INTO cdcsync.transmission_daily AS t (destination, day, attempts, successes, failures, retries,
    last_success_at, last_failure_at, last_error)
VALUES (%(dest)s, """ + TODAY_SQL + """, 1, %(ok)s::int, 1 - %(ok)s::int, %(retry)s::int,
    CASE WHEN %(ok)s THEN now() END, CASE WHEN %(ok)s THEN NULL ELSE now() END, %(error)s)
ON CONFLICT (destination, day) DO UPDATE SET
    attempts = t.attempts + 1,
    successes = t.successes + EXCLUDED.successes,
    failures = t.failures + EXCLUDED.failures,
    retries = t.retries + EXCLUDED.retries,
    last_success_at = coalesce(EXCLUDED.last_success_at, t.last_success_at),
    last_failure_at = coalesce(EXCLUDED.last_failure_at, t.last_failure_at),
    last_error = coalesce(EXCLUDED.last_error, t.last_error)
"""


def record_transmission(
    conn: psycopg.Connection, destination: str, *, ok: bool, retry: bool = False, error: str | None = None
) -> None:
    """Count one send attempt of a batch (``retry``: it repeats an earlier failed attempt).

    ``error`` is a short technical reason (HTTP status, timeout); never put event content in it.
    """
    conn.execute(_TRANSMISSION, {"dest": destination, "ok": ok, "retry": retry,
                                 "error": None if ok else (error or "未知错误")[:500]})


class TransmissionLog:
    """Counts a destination's send attempts in ``cdcsync.transmission_daily`` on its own
    connection. Accounting only: a database hiccup here is logged, never fails a delivery."""

    def __init__(self, conninfo: str, destination: str) -> None:
        self.conninfo = conninfo
        self.destination = destination
        self._conn: psycopg.Connection | None = None

    def __call__(self, ok: bool, retry: bool, error: str | None = None) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.conninfo, autocommit=True)
            record_transmission(self._conn, self.destination, ok=ok, retry=retry, error=error)
        except psycopg.Error as exc:
            log.warning("%s: could not count a send attempt: %s", self.destination, type(exc).__name__)
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
