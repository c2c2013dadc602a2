"""The backups as the ops loop and the evaluation see them, read from the backup catalogue
(``cdcsync.ops.backup``): the last results for the fault detector, and every backup's end time
and result for the daily 备份并验证 component."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cdcsync.beijing import BEIJING
from cdcsync.ops.backup.catalog import backup_dir, list_backups


@dataclass(frozen=True)
class BackupState:
    last_at: dt.datetime | None  # the newest backup's end (any result)
    last_verified_at: dt.datetime | None  # the newest backup that passed verification
    last_failed: str | None  # why the newest backup (or its verification) failed; None: it did not
    max_age_h: float  # a verified backup older than this is missing
    ok_at: tuple[dt.datetime, ...] = ()  # end of every backup that completed, oldest first
    verified_at: tuple[dt.datetime, ...] = ()  # end of every backup that also passed verification

    def covers(self, end: dt.datetime) -> tuple[float, str]:
        """(0..1, Chinese detail) for a window ending at ``end``: 1 with a verified backup
        younger than ``max_age_h`` at ``end``; 0.5 with only an unverified one; else 0."""
        max_age = dt.timedelta(hours=self.max_age_h)
        verified = [t for t in self.verified_at if end - max_age <= t <= end]
        done = [t for t in self.ok_at if end - max_age <= t <= end]
        if verified:
            return 1.0, f"最近一次已验证的备份 {_local(verified[-1])}（{len(verified)} 次在 {self.max_age_h:g} 小时内）"
        if done:
            return 0.5, f"备份 {_local(done[-1])} 已完成但未通过试恢复校验"
        return 0.0, f"{self.max_age_h:g} 小时内没有完成的备份"


def _local(t: dt.datetime) -> str:
    return t.astimezone(BEIJING).strftime("%m-%d %H:%M")


def backup_state(settings: Any) -> BackupState:
    cfg = settings.backup
    try:
        backups = list_backups(backup_dir(settings))
    except Exception:  # noqa: BLE001 - an unreadable catalogue is reported as a failure, not a crash
        return BackupState(None, None, "备份目录无法读取", float(cfg.max_age_hours))
    verified = [b for b in backups if b.verified and b.finished is not None]
    last = backups[-1] if backups else None
    failed: str | None = None
    if last is not None and last.manifest.status == "failed":
        failed = f"备份 {last.id} 失败：{(last.manifest.error or '')[:200]}"
    elif last is not None and last.verification and last.verification.get("status") not in (None, "ok"):
        failed = f"备份 {last.id} 校验未通过"
    return BackupState(
        last_at=last.finished if last is not None else None,
        last_verified_at=verified[-1].finished if verified else None,
        last_failed=failed,
        max_age_h=float(cfg.max_age_hours),
        ok_at=tuple(sorted(b.finished for b in backups if b.ok and b.finished is not None)),
        verified_at=tuple(sorted(b.finished for b in verified if b.finished is not None)),
    )
