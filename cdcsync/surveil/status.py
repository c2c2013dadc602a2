"""Counts of the surveillance cases and the rules consumer's position, for every status surface:
``cdcsync status`` (cdcsync/engine/status.py), the monitoring API and ``/metrics`` on 8883
(cdcsync/ops/status.py, cdcsync/api/monitor_app.py). Counts only: no patient data.
"""

from __future__ import annotations

from typing import Any

import psycopg


def surveil_status(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """Open and overdue case counts and the rules consumer's position (None before migration 030)."""
    try:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status IN ('待确认', '待确诊', '待核查')),"
            " count(*) FILTER (WHERE status IN ('待确认', '待确诊', '待核查') AND due_at < now())"
            " FROM cdcsync.surveil_case").fetchone()
        ck = conn.execute(
            "SELECT c.applied_lsn::text, c.pack_version, c.last_commit_at, c.updated_at,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), c.applied_lsn)::bigint, s.active"
            " FROM cdcsync.surveil_checkpoint c LEFT JOIN pg_replication_slots s ON s.slot_name = c.slot_name"
            " WHERE c.consumer = 'surveil'").fetchone()
    except psycopg.Error:
        return None
    out: dict[str, Any] = {"open": int(row[0]) if row else 0, "overdue": int(row[1]) if row else 0,
                           "consumer": None}
    if ck is not None:
        out["consumer"] = {"applied_lsn": ck[0], "pack_version": ck[1],
                           "last_commit_at": ck[2].isoformat() if ck[2] else None,
                           "updated_at": ck[3].isoformat() if ck[3] else None, "lag_bytes": ck[4],
                           "active": bool(ck[5])}
    return out
