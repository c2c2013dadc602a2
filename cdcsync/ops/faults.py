"""Faults: what is wrong now (detected from the monitoring status), with a code, a Chinese
message and what to do; and the fault book in ``cdcsync.fault`` that opens a fault once,
keeps it while it lasts and resolves it when it is gone.

Codes (docs/upstream-protocol.md section 7.3 lists them for the platforms):

==================== ======================================================================
DEST_STOPPED         a destination has delivered nothing for ``destination_stopped_after_s``
                     while its sends fail or its stream is not running; or its slot was lost
CERT_EXPIRING        a hospital or platform certificate expires soon, has expired or is unreadable
BACKUP_FAILED        the last backup or its verification failed
BACKUP_MISSING       no verified backup within ``backup.max_age_hours``
WAL_RETENTION_RISK   a slot keeps too much WAL / is near invalidation, or pg_wal's disk is filling
DB_UNREACHABLE       the mirror database does not answer (heartbeat only: nowhere to record it)
==================== ======================================================================

Messages name destinations, files and figures only: never patient data.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cdcsync.ops.backup_view import BackupState
from cdcsync.settings.ops import FaultSettings

DEST_STOPPED = "DEST_STOPPED"
CERT_EXPIRING = "CERT_EXPIRING"
BACKUP_FAILED = "BACKUP_FAILED"
BACKUP_MISSING = "BACKUP_MISSING"
WAL_RETENTION_RISK = "WAL_RETENTION_RISK"
DB_UNREACHABLE = "DB_UNREACHABLE"

# What the person reading the alert should do, per code.
RESOLUTIONS: dict[str, str] = {
    DEST_STOPPED: "检查与该上报平台的网络连接和平台状态（cdcsync status 中的最近错误）；"
                  "数据已在本地保留，恢复后自动补传。如提示复制槽失效，按 docs/wal-safety.md 处理。",
    CERT_EXPIRING: "向 CA 申请新证书（cdcsync keys csr），替换配置中的证书文件；无需重启。",
    BACKUP_FAILED: "查看 cdcsync backup list 中失败的备份及原因，修正后执行 cdcsync backup run。",
    BACKUP_MISSING: "检查备份定时任务（systemd timer）是否运行，手动执行 cdcsync backup run。",
    WAL_RETENTION_RISK: "尽快恢复积压目的地的上报，或扩充 pg_wal 所在磁盘；"
                        "必要时调整 max_slot_wal_keep_size（docs/wal-safety.md）。",
    DB_UNREACHABLE: "检查镜像数据库服务是否运行、连接串与账号是否正确。",
}
TITLES: dict[str, str] = {
    DEST_STOPPED: "上报目的地停止",
    CERT_EXPIRING: "证书即将到期或不可用",
    BACKUP_FAILED: "备份失败",
    BACKUP_MISSING: "缺少近期的已验证备份",
    WAL_RETENTION_RISK: "WAL 保留风险",
    DB_UNREACHABLE: "镜像数据库无法连接",
}


@dataclass(frozen=True)
class Fault:
    """One problem present now. (code, subject) identifies it while it lasts."""

    code: str
    subject: str
    severity: str  # "warning" | "error"
    message: str

    @property
    def key(self) -> tuple[str, str]:
        return self.code, self.subject

    @property
    def resolution(self) -> str:
        return RESOLUTIONS[self.code]


@dataclass(frozen=True)
class FaultRecord:
    """A fault as the book keeps it (and the heartbeat reports it)."""

    fault_id: str
    code: str
    subject: str
    severity: str
    message: str
    resolution: str
    opened_at: dt.datetime
    resolved_at: dt.datetime | None
    alerts_sent: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return TITLES.get(self.code, self.code)

    def as_dict(self) -> dict[str, Any]:
        return {"fault_id": self.fault_id, "code": self.code, "title": self.title, "subject": self.subject,
                "severity": self.severity, "message": self.message, "resolution": self.resolution,
                "opened_at": self.opened_at.isoformat(),
                "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None}


def _parse(value: Any) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def destination_failing(d: Mapping[str, Any]) -> bool:
    """True while the destination cannot deliver: its stream is not reading the slot, or its
    latest send failed after its latest acknowledgement."""
    if not d.get("enabled", True):
        return False
    if d.get("stopped_reason"):
        return True
    if not d.get("active") and d.get("snapshot_done", True):  # during the first snapshot the slot is idle
        return True
    sends = d.get("sends_today") or {}
    failed, acked = _parse(sends.get("last_failure_at")), _parse(d.get("last_ack_at"))
    return failed is not None and (acked is None or failed > acked)


def error_class(message: str | None) -> str | None:
    """The class of a technical error (``HTTP 503``, ``timeout``, ``connection error``…): the
    text before its first colon, so no platform text or detail travels further."""
    if not message:
        return None
    return message.split(":", 1)[0].strip()[:40] or None


@dataclass
class DestinationWatch:
    """Since when each destination has been failing (in this process), to call it stopped only
    after ``destination_stopped_after_s``."""

    failing_since: dict[str, dt.datetime] = field(default_factory=dict)

    def seed(self, open_faults: Iterable[FaultRecord]) -> None:
        """After a restart a destination that was stopped stays stopped: no resolve-and-reopen."""
        for f in open_faults:
            if f.code == DEST_STOPPED:
                self.failing_since.setdefault(f.subject, f.opened_at)

    def update(self, name: str, failing: bool, now: dt.datetime) -> dt.datetime | None:
        if not failing:
            self.failing_since.pop(name, None)
            return None
        return self.failing_since.setdefault(name, now)


def detect(status: Mapping[str, Any], backup: BackupState | None, settings: FaultSettings,
           watch: DestinationWatch, now: dt.datetime | None = None) -> list[Fault]:
    """The faults present in a monitoring status (:func:`cdcsync.ops.status.build_status`)."""
    now = now or dt.datetime.now(dt.UTC)
    out: list[Fault] = []
    if not (status.get("database") or {}).get("reachable", True):
        out.append(Fault(DB_UNREACHABLE, "database", "error", "镜像数据库无法连接，数据采集与上报暂停"))
        return out  # nothing else can be told without the database
    for d in status.get("destinations") or []:
        name = str(d.get("destination"))
        if not d.get("enabled", True):
            continue
        if d.get("stopped_reason"):
            out.append(Fault(DEST_STOPPED, name, "error", str(d["stopped_reason"])))
        else:
            since = watch.update(name, destination_failing(d), now)
            if since is not None and (now - since).total_seconds() >= settings.destination_stopped_after_s:
                err = error_class((d.get("sends_today") or {}).get("last_error"))
                why = f"最近错误：{err}" if err else "数据流未在运行"
                out.append(Fault(DEST_STOPPED, name, "error",
                                 f"目的地 {name} 自 {since.astimezone():%Y-%m-%d %H:%M:%S} 起未能上报（{why}）"))
        for w in d.get("wal_warnings") or []:
            if w.get("code") != "slot_lost":  # a lost slot is DEST_STOPPED above
                out.append(Fault(WAL_RETENTION_RISK, name, w.get("level", "warning"), str(w.get("message"))))
        if d.get("wal_retention_warning"):
            mb = int(d.get("wal_retained_bytes") or 0) // (1024 * 1024)
            out.append(Fault(WAL_RETENTION_RISK, name, "warning",
                             f"目的地 {name} 的复制槽保留了 {mb} MB WAL（上报积压）"))
    for w in (status.get("wal") or {}).get("warnings") or []:
        out.append(Fault(WAL_RETENTION_RISK, "server", w.get("level", "warning"), str(w.get("message"))))
    for w in status.get("certificate_warnings") or []:
        out.append(Fault(CERT_EXPIRING, str(w.get("file")), w.get("level", "warning"), str(w.get("message"))))
    out.extend(_backup_faults(backup, settings, now))
    return _merge(out)


def _backup_faults(backup: BackupState | None, settings: FaultSettings, now: dt.datetime) -> list[Fault]:
    if backup is None:
        return []
    if backup.last_failed is not None:
        return [Fault(BACKUP_FAILED, "backup", "error", backup.last_failed)]
    if backup.last_verified_at is None:
        return [Fault(BACKUP_MISSING, "backup", "warning", "尚无已验证的备份")]
    age_h = (now - backup.last_verified_at).total_seconds() / 3600
    if age_h > backup.max_age_h:
        return [Fault(BACKUP_MISSING, "backup", "warning",
                      f"最近一次已验证的备份在 {age_h:.0f} 小时前（上限 {backup.max_age_h:.0f} 小时）")]
    return []


def _merge(faults: Sequence[Fault]) -> list[Fault]:
    """One fault per (code, subject): the worst, messages joined."""
    by_key: dict[tuple[str, str], Fault] = {}
    for f in faults:
        old = by_key.get(f.key)
        if old is None:
            by_key[f.key] = f
        else:
            sev = "error" if "error" in (old.severity, f.severity) else "warning"
            by_key[f.key] = Fault(f.code, f.subject, sev, f"{old.message}；{f.message}")
    return list(by_key.values())


@dataclass(frozen=True)
class Transitions:
    opened: list[FaultRecord]
    resolved: list[FaultRecord]


_COLUMNS = "fault_id, code, subject, severity, message, resolution, opened_at, resolved_at, alerts_sent"


def _record(row: Sequence[Any]) -> FaultRecord:
    return FaultRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], tuple(row[8] or ()))


class FaultBook:
    """``cdcsync.fault``: open once, keep while present, resolve when gone."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def open_faults(self) -> list[FaultRecord]:
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM cdcsync.fault WHERE resolved_at IS NULL"
                                 " ORDER BY opened_at").fetchall()
        return [_record(r) for r in rows]

    def recent(self, hours: float = 24.0) -> list[FaultRecord]:
        """Open faults and those resolved within ``hours`` (what a heartbeat reports)."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM cdcsync.fault WHERE resolved_at IS NULL"
            " OR resolved_at > now() - make_interval(secs => %s) ORDER BY opened_at", (hours * 3600,)).fetchall()
        return [_record(r) for r in rows]

    def sync(self, present: Iterable[Fault]) -> Transitions:
        now_present = {f.key: f for f in present}
        opened: list[FaultRecord] = []
        resolved: list[FaultRecord] = []
        with self.conn.transaction():
            held = {(f.code, f.subject): f for f in self.open_faults()}
            for key, f in now_present.items():
                if key in held:
                    self.conn.execute("UPDATE cdcsync.fault SET last_seen_at = now(), message = %s, severity = %s"
                                      " WHERE fault_id = %s", (f.message, f.severity, held[key].fault_id))
                    continue
                fid = f"{f.code}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
                row = self.conn.execute(
                    f"INSERT INTO cdcsync.fault (fault_id, code, subject, severity, message, resolution)"
                    f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                    (fid, f.code, f.subject, f.severity, f.message, f.resolution)).fetchone()
                assert row is not None
                opened.append(_record(row))
            for key, rec in held.items():
                if key not in now_present:
                    row = self.conn.execute(
                        f"UPDATE cdcsync.fault SET resolved_at = now() WHERE fault_id = %s RETURNING {_COLUMNS}",
                        (rec.fault_id,)).fetchone()
                    assert row is not None
                    resolved.append(_record(row))
        return Transitions(opened, resolved)

    def mark_alerted(self, fault_id: str, tag: str) -> None:
        self.conn.execute("UPDATE cdcsync.fault SET alerts_sent = array_append(alerts_sent, %s)"
                          " WHERE fault_id = %s AND NOT (%s = ANY(alerts_sent))", (tag, fault_id, tag))

    def needing_alerts(self, days: float = 7.0) -> list[FaultRecord]:
        """Open faults, and faults resolved within ``days`` (their resolved notice may be due)."""
        return self.recent(days * 24)
