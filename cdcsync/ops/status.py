"""The full status: the one dict behind the monitoring API (8883), the web page (8884), the
heartbeats and the fault detection (:mod:`cdcsync.ops.loop`).

The per-destination figures are :func:`cdcsync.engine.status.collect_status`'s — the very dict behind
``cdcsync status --json`` — so they all agree. Here rather than in ``api/`` because the ops loop
reads it too and the API shows ops figures (backups): ``ops/`` must not import ``api/``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from cdcsync import __version__
from cdcsync.beijing import TODAY_SQL
from cdcsync.crypto.sm2_backend import sm2_backend
from cdcsync.engine.health import last_errors
from cdcsync.settings.api import plain_http_warnings
from cdcsync.spec import load_spec
from cdcsync.surveil.status import surveil_status

if TYPE_CHECKING:
    from cdcsync.config import Settings

_STATE_NOTE = "无法读取数据库数据目录，显示前置软件状态目录所在磁盘"
StatusProvider = Callable[[], Mapping[str, Any]]
_PROCESS_START = time.time()


def _disk(settings: Settings, conn: psycopg.Connection[Any] | None) -> dict[str, Any]:
    """Free space where the WAL lives — only when the server is verifiably local and ``pg_wal``
    reachable (:func:`cdcsync.source.walsafety.wal_volume`); otherwise the volume of state_dir,
    and ``source`` says which (never another volume labelled as the WAL's)."""
    candidates: list[tuple[str, Path]] = []
    if conn is not None:
        from cdcsync.source.walsafety import wal_volume

        vol = wal_volume(conn)
        if vol["free_bytes"] is not None:
            return {"source": "wal_volume", "path": vol["path"], "free_bytes": vol["free_bytes"],
                    "total_bytes": vol["total_bytes"], "note": "WAL 所在磁盘"}
    state = Path(getattr(settings, "state_dir", ".") or ".")
    candidates += [("state_dir", state), ("state_dir", Path(os.path.abspath(state)).parent)]
    for source, path in candidates:
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue
        return {"source": source, "path": str(path), "free_bytes": usage.free, "total_bytes": usage.total,
                "note": _STATE_NOTE}
    return {"source": None, "path": None, "free_bytes": None, "total_bytes": None, "note": "无法获取磁盘空间"}


def _day_counts(dest: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    delivered: Mapping[str, int] = dest.get("events_today") or {}
    quarantined: Mapping[str, int] = dest.get("quarantined_today") or {}
    out: dict[str, dict[str, int]] = {}
    for table in sorted(set(delivered) | set(quarantined)):
        d, q = int(delivered.get(table, 0)), int(quarantined.get(table, 0))
        out[table] = {"captured": d + q, "delivered": d, "quarantined": q}
    return out


def build_status(settings: Settings, *, started_at: float | None = None, rules: Any = None,
                 conninfo: str | None = None) -> dict[str, Any]:
    """The full monitoring status. Never raises for an unreachable database: it says so."""
    from cdcsync.engine.status import certificate_warnings, collect_status

    spec = rules.spec if rules is not None else load_spec()
    now = time.time()
    started = started_at or _PROCESS_START
    out: dict[str, Any] = {
        "version": __version__,
        "org_code": getattr(settings, "org_code", None),
        "hospital": getattr(settings, "hospital", None),
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).astimezone().isoformat(),
        "uptime_seconds": round(now - started, 1),
        "spec_version": spec.version,
        "spec_digest": spec.digest,
        "mapping_version": None,
        "database": {"reachable": True},
        "generated_at": None,
        "destinations": [],
        "orphan_slots": [],
        "disk": None,
        "wal": None,
        "last_errors": last_errors(),
        # Plain HTTP on the network by explicit consent (allow_plain_http): known from the config.
        "listener_warnings": plain_http_warnings(settings) if hasattr(settings, "api") else [],
        "certificate_warnings": certificate_warnings(getattr(settings, "destinations", [])),
        "sm2_backend": sm2_backend(),  # this process's SM2 implementation and why
        "backup": _backup(settings),  # last backup and verification, and its alert (no database needed)
    }
    if rules is not None:
        out["mapping_version"] = rules.current().mapping_version
        if getattr(rules, "last_error", None):
            out["last_errors"].setdefault("mapping", {"message": rules.last_error, "at": None})
    ci = conninfo or settings.database.conninfo()
    try:
        base = collect_status(settings, ci)
    except psycopg.Error as exc:
        out["database"] = {"reachable": False, "error": f"镜像数据库无法连接（{type(exc).__name__}）"}
        out["destinations"] = [{"destination": d.name, "kind": d.kind, "enabled": d.enabled}
                               for d in getattr(settings, "destinations", [])]
        out["disk"] = _disk(settings, None)
        return out
    out["generated_at"] = base["generated_at"]
    out["orphan_slots"] = base["orphan_slots"]
    out["wal"] = base.get("wal")
    out["minimum_necessary"] = base["minimum_necessary"]
    out["evaluation_today"] = base.get("evaluation_today", [])
    out["software"] = base.get("software")  # 当前版本 / 可用新版本 / 更新说明 (status page)
    for dest in base["destinations"]:
        out["destinations"].append({**dest, "today": _day_counts(dest)})
    try:
        with psycopg.connect(ci, autocommit=True, connect_timeout=5) as conn:
            out["disk"] = _disk(settings, conn)
            out["timeliness_today"] = _timeliness_today(conn)
            out["surveil"] = surveil_status(conn)
    except psycopg.Error:
        out["disk"] = _disk(settings, None)
    return out


def _backup(settings: Settings) -> dict[str, Any] | None:
    from cdcsync.ops.backup.health import backup_status

    return backup_status(settings) if hasattr(settings, "backup") else None


def _timeliness_today(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Today's (Beijing) timeliness per destination and class, in two parts: HIS push (business
    time -> commit) and front-end upload (commit -> verified ack). Empty before migration 101."""
    try:
        rows = conn.execute(
            "SELECT destination, timeliness, timeliness_label, events, within_share, his_share, his_avg_s,"
            " frontend_share, frontend_avg_s FROM recon.timeliness_daily"
            " WHERE business_date = " + TODAY_SQL + " ORDER BY destination, limit_seconds"
        ).fetchall()
    except psycopg.Error:
        return []
    keys = ("destination", "timeliness", "label", "events", "within_share", "his_share", "his_avg_s",
            "frontend_share", "frontend_avg_s")
    return [{k: (float(v) if k.endswith("share") and v is not None else v) for k, v in zip(keys, r, strict=True)}
            for r in rows]


class CachedStatus:
    """Status computed at most every ``ttl`` seconds: a scrape storm must not load the database."""

    def __init__(self, compute: StatusProvider, ttl: float = 2.0) -> None:
        self._compute = compute
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value: Mapping[str, Any] | None = None
        self._at = 0.0

    def __call__(self) -> Mapping[str, Any]:
        with self._lock:
            if self._value is None or time.monotonic() - self._at >= self._ttl:
                self._value = self._compute()
                self._at = time.monotonic()
            return self._value


def status_provider_for(settings: Settings, *, started_at: float | None = None, rules: Any = None) -> CachedStatus:
    return CachedStatus(lambda: build_status(settings, started_at=started_at, rules=rules))
