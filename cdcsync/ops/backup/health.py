"""The last backup and verification for ``status``, 8883, ``/metrics`` and the status page, and
the alert when the last verified backup is missing, too old, or the last attempt failed."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from cdcsync.beijing import BEIJING
from cdcsync.ops.backup.catalog import BackupError, backup_dir, list_backups, now_utc

if TYPE_CHECKING:
    from cdcsync.config import Settings

# Alert codes (F's alert channels and the heartbeat's fault report carry them).
MISSING = "BACKUP_MISSING"
STALE = "BACKUP_STALE"
FAILED = "BACKUP_FAILED"
UNVERIFIED = "BACKUP_VERIFY_FAILED"


def backup_status(settings: Settings) -> dict[str, Any]:
    """``{"last": …, "last_verified": …, "max_age_hours": h, "alert": None | {code, level, message}}``."""
    cfg = settings.backup
    root = backup_dir(settings)
    out: dict[str, Any] = {"dir": str(root), "max_age_hours": cfg.max_age_hours, "last": None,
                           "last_verified": None, "count": 0, "alert": None}
    try:
        backups = list_backups(root)
    except (OSError, BackupError) as exc:
        out["alert"] = {"code": MISSING, "level": "error", "message": f"无法读取备份目录 {root}：{exc}"}
        return out
    out["count"] = len(backups)
    finished = [b for b in backups if b.manifest.status != "running"]
    last = finished[-1] if finished else None
    verified = next((b for b in reversed(backups) if b.verified), None)
    out["last"] = last.summary() if last else None
    out["last_verified"] = verified.summary() if verified else None
    out["alert"] = _alert(cfg.max_age_hours, last, verified)
    return out


def _alert(max_age_hours: float, last: Any, verified: Any) -> dict[str, str] | None:
    if last is not None and not last.ok:
        return {"code": FAILED, "level": "error",
                "message": f"最近一次备份（{last.id}）失败：{last.manifest.error or '未完成'}"}
    if last is not None and last.verification and last.verification.get("status") != "ok":
        first = (last.verification.get("problems") or ["未知原因"])[0]
        return {"code": UNVERIFIED, "level": "error", "message": f"最近一次备份（{last.id}）校验未通过：{first}"}
    if verified is None:
        return {"code": MISSING, "level": "error",
                "message": "尚无通过校验的备份：请配置并运行 cdcsync backup run（或启用 cdcsync-backup.timer）"}
    age = now_utc() - (verified.finished or now_utc())
    if age > dt.timedelta(hours=max_age_hours):
        hours = age.total_seconds() / 3600
        return {"code": STALE, "level": "warning",
                "message": f"最近一次通过校验的备份已是 {hours:.0f} 小时前（{verified.id}），"
                           f"超过 {max_age_hours:g} 小时：请检查 cdcsync-backup.timer"}
    return None


def backup_text(st: dict[str, Any] | None) -> str | None:
    """One Chinese line for the status page, or None when the status has no backup section."""
    if not st:
        return None
    if not st.get("count"):
        return "尚未配置备份（请配置并运行 cdcsync backup run，或启用 cdcsync-backup.timer）"
    v = st.get("last_verified")
    parts = []
    if v:
        size = int(v.get("size") or 0)
        parts.append(f"{_local(v.get('finished_at'))}，{size / 1024 / 1024:.1f} MB，校验通过（{v['id']}）")
    else:
        parts.append("尚无通过校验的备份")
    alert = st.get("alert")
    if alert:
        parts.append(f"【{alert['message']}】")
    return "；".join(parts)


def _local(value: Any) -> str:
    if not value:
        return "—"
    t = dt.datetime.fromisoformat(str(value)).astimezone(BEIJING)
    return t.strftime("%Y-%m-%d %H:%M")
