"""What the daemon writes about itself for the stability figures: one ``cdcsync.daemon_run`` row
per run (start, last seen alive, clean stop) and per destination and Beijing day in
``cdcsync.stream_daily`` the seconds observed and healthy and the backlog high-water marks."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg

from cdcsync import __version__
from cdcsync.beijing import TODAY_SQL
from cdcsync.ops.faults import destination_failing


class RunRecord:
    """This process's row in ``cdcsync.daemon_run``."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex

    def start(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("INSERT INTO cdcsync.daemon_run (run_id, started_at, last_seen_at, version, hostname)"
                     " VALUES (%s, now(), now(), %s, %s) ON CONFLICT (run_id) DO NOTHING",
                     (self.run_id, __version__, socket.gethostname()[:100]))

    def seen(self, conn: psycopg.Connection[Any]) -> None:
        cur = conn.execute("UPDATE cdcsync.daemon_run SET last_seen_at = now() WHERE run_id = %s", (self.run_id,))
        if cur.rowcount == 0:  # the database was unreachable at start
            self.start(conn)

    def stopped(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("UPDATE cdcsync.daemon_run SET last_seen_at = now(), stopped_at = now() WHERE run_id = %s",
                     (self.run_id,))


def record_streams(conn: psycopg.Connection[Any], status: Mapping[str, Any], elapsed_s: float) -> None:
    """Add ``elapsed_s`` (the time since the previous tick) to each enabled destination's day."""
    for d in status.get("destinations") or []:
        if not d.get("enabled", True):
            continue
        healthy = elapsed_s if not destination_failing(d) else 0.0
        conn.execute(
            "INSERT INTO cdcsync.stream_daily AS s (destination, day, observed_s, healthy_s, backlog_max_bytes,"
            " lag_max_s, queue_max) VALUES (%s, " + TODAY_SQL + ", %s, %s, %s, %s, %s)"
            " ON CONFLICT (destination, day) DO UPDATE SET observed_s = s.observed_s + EXCLUDED.observed_s,"
            " healthy_s = s.healthy_s + EXCLUDED.healthy_s,"
            " backlog_max_bytes = greatest(s.backlog_max_bytes, EXCLUDED.backlog_max_bytes),"
            " lag_max_s = greatest(s.lag_max_s, EXCLUDED.lag_max_s),"
            " queue_max = greatest(s.queue_max, EXCLUDED.queue_max), updated_at = now()",
            (d["destination"], elapsed_s, healthy, int(d.get("lag_bytes") or 0), float(d.get("lag_seconds") or 0.0),
             int(d.get("quarantined_held") or 0)))
