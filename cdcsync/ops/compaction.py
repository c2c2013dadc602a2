"""Periodic compaction of ``cdcsync.delivered_keys``, off the stream's thread.

The log gets one entry per acknowledged change and is compacted by the stream only when a
snapshot completes (once, in a healthy deployment; recorded like a run of this thread). This
thread keeps it bounded: every ``ops.compaction.check_interval_s`` it compares, per destination
of ``cdcsync.checkpoint``, the entries appended to the log since the destination's last
compaction (the log's identity sequence against ``seq_mark`` in
``cdcsync.delivered_keys_compaction``: two cheap reads, no scan) with
``max(min_entries, growth_ratio × live_entries)``, and compacts the destinations due.

A compaction applies the stream's own rule (:func:`cdcsync.engine.checkpoint.compact_keys`)
table by table, each table in its own short transaction on its own connection: never inside a
checkpoint transaction, never blocking the appends (a DELETE and a COPY take no conflicting
locks) nor a snapshot reading the log (it keeps reading the entries its MVCC snapshot sees).
The sequence counts every destination's appends, so with several destinations each is
compacted somewhat early: a cost in scans, never in correctness.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from cdcsync.beijing import BEIJING
from cdcsync.engine.checkpoint import compact_keys, keys_seq_now, record_compaction
from cdcsync.settings.ops import CompactionSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Due:
    destination: str
    appended: int  # entries appended to the log (all destinations) since its last compaction
    threshold: int


@dataclass(frozen=True, slots=True)
class Compaction:
    destination: str
    before: int  # the destination's entries when the compaction started
    after: int  # left: its latest entry per held key (plus any appended meanwhile, uncounted)
    seconds: float


def due(conn: psycopg.Connection[Any], cfg: CompactionSettings) -> list[Due]:
    """The destinations whose log grew by at least max(min_entries, growth_ratio × the entries
    their last compaction left) since it; one never compacted counts from 0."""
    now = keys_seq_now(conn)
    rows = conn.execute(
        "SELECT c.destination, coalesce(s.seq_mark, 0), coalesce(s.live_entries, 0) FROM cdcsync.checkpoint c"
        " LEFT JOIN cdcsync.delivered_keys_compaction s USING (destination) ORDER BY 1").fetchall()
    out = []
    for destination, mark, live in rows:
        threshold = max(cfg.min_entries, math.ceil(cfg.growth_ratio * int(live)))
        appended = now - int(mark)
        if appended >= threshold:
            out.append(Due(str(destination), appended, threshold))
    return out


def compact_destination(conn: psycopg.Connection[Any], destination: str) -> Compaction:
    """Compact one destination's entries, one transaction per table, and record the run.
    ``conn`` must be in autocommit mode (else all tables would share one long transaction)."""
    if not conn.autocommit:
        raise ValueError("compact_destination needs an autocommit connection (one transaction per table)")
    t0 = time.monotonic()
    mark = keys_seq_now(conn)  # before counting: entries appended from here on count towards the next run
    counts = {str(t): int(n) for t, n in conn.execute(
        "SELECT table_name, count(*) FROM cdcsync.delivered_keys WHERE destination = %s GROUP BY 1",
        (destination,)).fetchall()}
    before = sum(counts.values())
    deleted = 0
    for table in sorted(counts):
        with conn.transaction():
            deleted += compact_keys(conn, destination, table)
    result = Compaction(destination, before, before - deleted, time.monotonic() - t0)
    record_compaction(conn, destination, mark, result.before, result.after, result.seconds)
    # Counts and a name only: keys can be patient ids.
    log.info("delivered_keys compaction: destination %s: %d -> %d entries in %.1f s",
             destination, result.before, result.after, result.seconds)
    return result


def in_window(cfg: CompactionSettings, now: dt.datetime | None = None) -> bool:
    """A compaction may start now (``hours``: Beijing hours; empty: any)."""
    if not cfg.hours:
        return True
    return (now or dt.datetime.now(BEIJING)).astimezone(BEIJING).hour in cfg.hours


class Compactor:
    """The daemon's compaction thread (started and stopped by the ops loop)."""

    def __init__(self, conninfo: str, cfg: CompactionSettings) -> None:
        self.conninfo = conninfo
        self.cfg = cfg
        self.runs: list[Compaction] = []  # the latest check's compactions
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None  # cancelled by stop()

    def run_once(self, now: dt.datetime | None = None) -> list[Compaction]:
        """One check: compact every destination due (nothing outside the hours window)."""
        if not in_window(self.cfg, now):
            return []
        done: list[Compaction] = []
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5,
                             application_name="cdcsync-compaction") as conn:
            self._conn = conn
            try:
                for d in due(conn, self.cfg):
                    if self._stop.is_set():
                        break
                    done.append(compact_destination(conn, d.destination))
            finally:
                self._conn = None
        self.runs = done
        return done

    def start(self) -> Compactor:
        self._thread = threading.Thread(target=self._loop, name="cdcsync-compaction", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            # A compaction in progress rolls its current table back; the next run redoes it.
            with contextlib.suppress(psycopg.Error):
                conn.cancel()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.cfg.check_interval_s):
            try:
                self.run_once()
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning("delivered_keys compaction failed: %s", type(exc).__name__)
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                log.exception("delivered_keys compaction failed")
