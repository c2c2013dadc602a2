"""Per-destination replication status as a plain dict (CLI ``status`` and the monitoring API)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import psycopg

from cdcsync.beijing import TODAY_SQL
from cdcsync.config import Settings
from cdcsync.crypto.sm2_backend import sm2_backend
from cdcsync.engine.checkpoint import compaction_status, read_checkpoint
from cdcsync.settings.api import plain_http_warnings
from cdcsync.source.slots import SLOT_PREFIX, SlotInfo, get_slot, list_slots, slot_name
from cdcsync.source.walsafety import LOST, lost_message, slot_warnings, wal_overview
from cdcsync.validate.minimal import dropped_counts, not_sent


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def platform_refused(conn: psycopg.Connection[Any], name: str) -> dict[str, Any]:
    """The poison-batch alert: events the platform refuses for good (rule ``PLT…``), held in
    quarantine. It stays raised until they are retried or dealt with (``cdcsync quarantine``)."""
    rows = conn.execute(
        "SELECT rule_id, table_name, field, message, last_seen, count(*) OVER () FROM cdcsync.quarantine"
        " WHERE destination = %s AND status = 'held' AND rule_id LIKE 'PLT%%' ORDER BY last_seen DESC LIMIT 1",
        (name,)).fetchall()
    if not rows:
        return {"held": 0, "last": None}
    rule, table, field, message, seen, n = rows[0]
    return {"held": int(n), "last": {"rule_id": rule, "table": table, "field": field, "message": message,
                                     "at": _iso(seen)}}


def destination_status(conn: psycopg.Connection[Any], settings: Settings, name: str) -> dict[str, Any]:
    slot = get_slot(conn, slot_name(name))
    ck = read_checkpoint(conn, name)
    lag_seconds: float | None = None
    if slot is not None and slot.active_pid is not None:
        row = conn.execute("SELECT extract(epoch FROM flush_lag)::float8 FROM pg_stat_replication WHERE pid = %s",
                           (slot.active_pid,)).fetchone()
        lag_seconds = float(row[0]) if row and row[0] is not None else 0.0
    elif ck is not None and ck[2] is not None:
        row = conn.execute("SELECT extract(epoch FROM now() - %s::timestamptz)::float8", (ck[2],)).fetchone()
        lag_seconds = float(row[0]) if row else None
    today = conn.execute(
        "SELECT table_name, delivered, quarantined FROM cdcsync.delivery_stats"
        " WHERE destination = %s AND business_date = current_date ORDER BY table_name", (name,)).fetchall()
    sent = conn.execute(
        "SELECT attempts, failures, retries, last_failure_at, last_error FROM cdcsync.transmission_daily"
        " WHERE destination = %s AND day = " + TODAY_SQL, (name,)).fetchone()
    (held,) = conn.execute(
        "SELECT count(*) FROM cdcsync.quarantine WHERE destination = %s AND status = 'held'",
        (name,)).fetchone() or (0,)
    warn_bytes = settings.stream.wal_retention_warn_mb * 1024 * 1024
    retained = slot.retained_bytes if slot else None
    return _with_wal_safety(settings, name, slot, {
        "destination": name,
        "slot": slot_name(name),
        "slot_exists": slot is not None,
        "active": bool(slot and slot.active),
        "confirmed_flush_lsn": slot.confirmed_flush_lsn if slot else None,
        "checkpoint_lsn": ck[0] if ck else None,
        "snapshot_done": bool(ck[3]) if ck else False,
        "lag_bytes": slot.lag_bytes if slot else None,
        "lag_seconds": lag_seconds,
        "wal_retained_bytes": retained,
        "wal_retention_warning": bool(retained is not None and retained > warn_bytes),
        "last_event_at": _iso(ck[1]) if ck else None,
        "last_ack_at": _iso(ck[2]) if ck else None,
        "events_today": {t: int(d) for t, d, _ in today},
        "quarantined_today": {t: int(q) for t, _, q in today if q},
        "quarantined_held": int(held),
        "platform_refused": platform_refused(conn, name),
        # The restore-safe ids' log (cdcsync.delivered_keys): its last compaction, appends since.
        "delivered_keys": compaction_status(conn, name),
        # Minimum necessary: rows whose columns not named by the spec were left out, per table and column.
        "dropped_columns": dropped_counts(conn, name),
        # Remote destinations: today's send attempts, failed ones and retries (Beijing day).
        "sends_today": {
            "attempts": int(sent[0]) if sent else 0,
            "failures": int(sent[1]) if sent else 0,
            "retries": int(sent[2]) if sent else 0,
            "last_failure_at": _iso(sent[3]) if sent else None,
            "last_error": sent[4] if sent else None,
        },
    })


def _with_wal_safety(settings: Settings, name: str, slot: SlotInfo | None, d: dict[str, Any]) -> dict[str, Any]:
    """The slot's ``wal_status``/``safe_wal_size``, its warnings, and ``stopped_reason`` (the
    recovery message) when the slot is lost: the daemon stops that destination then."""
    d["wal_status"] = slot.wal_status if slot else None
    d["safe_wal_size"] = slot.safe_wal_size if slot else None
    d["wal_warnings"] = slot_warnings(name, slot, settings.stream)
    d["stopped_reason"] = lost_message(name, slot.name) if slot is not None and slot.wal_status == LOST else None
    return d


def certificate_warnings(destinations: Any) -> list[dict[str, Any]]:
    """Expired, not yet valid or soon expiring SM2 certificates (cdcsync.sink.certs)."""
    from cdcsync.sink.certs import certificate_warnings as warnings

    return warnings(destinations)


def collect_status(settings: Settings, conninfo: str | None = None) -> dict[str, Any]:
    with psycopg.connect(conninfo or settings.database.conninfo(), autocommit=True) as conn:
        dests = [destination_status(conn, settings, d.name) for d in settings.destinations]
        # the rules consumer's slot is ours too (cdcsync/surveil/consumer.py), not an orphan
        configured = {slot_name(d.name) for d in settings.destinations} | {settings.surveil.slot}
        orphans = [s.as_dict() for s in list_slots(conn, SLOT_PREFIX) if s.name not in configured]
        wal = wal_overview(conn, settings.stream)
        minimal = _minimum_necessary(conn)
        evaluation = evaluation_today(conn)
        configuration = _configuration(conn)
        software = _software(conn)
        surveil = _surveil(conn)
        (now,) = conn.execute("SELECT now()").fetchone() or (None,)
    for d, cfg in zip(dests, settings.destinations, strict=True):
        d["enabled"] = cfg.enabled
        d["kind"] = cfg.kind
        d["environment"] = getattr(cfg, "environment", "production")  # test: trial run (大疫情测试网)
    return {"generated_at": _iso(now), "destinations": dests, "orphan_slots": orphans,
            "listener_warnings": plain_http_warnings(settings), "wal": wal, "sm2_backend": sm2_backend(),
            "certificate_warnings": certificate_warnings(settings.destinations),
            "minimum_necessary": minimal, "backup": _backup(settings),
            "evaluation_today": evaluation, "configuration": configuration, "software": software,
            "surveil": surveil}


def _software(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """当前版本 / 可用新版本 / 更新说明 (cdcsync.control.upgrade)."""
    from cdcsync.control.upgrade import latest_check

    return latest_check(conn)


def _surveil(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """Open / overdue case counts and the rules consumer's position (as 8883 shows them)."""
    from cdcsync.surveil.status import surveil_status

    return surveil_status(conn)


def _configuration(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """What the national platform pushed on 8882 and is in force, per kind (cdcsync.control)."""
    from cdcsync.control.store import in_force

    return in_force(conn)


def _backup(settings: Settings) -> dict[str, Any]:
    from cdcsync.ops.backup.health import backup_status

    return backup_status(settings)


def evaluation_today(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Today's dynamic-evaluation scores per destination (cdcsync.ops.evaluate), as last computed."""
    rows = conn.execute(
        "SELECT destination, environment, correctness, timeliness, stability, adaptability, overall, computed_at"
        " FROM cdcsync.evaluation_daily WHERE day = " + TODAY_SQL +
        " ORDER BY destination").fetchall()
    keys = ("destination", "environment", "correctness", "timeliness", "stability", "adaptability", "overall")
    return [{**{k: (float(v) if isinstance(v, Decimal) else v) for k, v in zip(keys, r[:7], strict=True)},
             "computed_at": _iso(r[7])} for r in rows]


def _minimum_necessary(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """What never leaves the hospital (catalog) and what the publication gets wrong."""
    from cdcsync.db.migrate import publication_problems
    from cdcsync.spec import load_spec

    spec = load_spec()
    problem, warnings = publication_problems(conn, spec)
    return {**not_sent(conn, spec), "publication_problem": problem, "publication_warnings": warnings}
