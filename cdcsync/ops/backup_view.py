"""The backups as the ops loop and the evaluation see them: read through engineer E's backup
catalogue (``cdcsync.ops.backup``) when that package is installed; ``None`` otherwise (backups
not set up: no backup fault, and the evaluation leaves the backup component out)."""

from __future__ import annotations

import datetime as dt
import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BackupState:
    last_at: dt.datetime | None  # the newest backup's end (any result)
    last_verified_at: dt.datetime | None  # the newest backup that passed verification
    last_failed: str | None  # why the newest backup (or its verification) failed; None: it did not
    max_age_h: float  # a verified backup older than this is missing
    verified_on: frozenset[dt.date]  # Beijing days on which a verified backup finished


def backup_state(settings: Any) -> BackupState | None:
    """None when the backup package or its settings are absent."""
    try:
        catalog = importlib.import_module("cdcsync.ops.backup.catalog")
    except ModuleNotFoundError:
        return None
    cfg = getattr(settings, "backup", None)
    if cfg is None:
        return None
    try:
        backups = catalog.list_backups(catalog.backup_dir(settings))
    except Exception:  # noqa: BLE001 - an unreadable catalogue is reported as a failure, not a crash
        return BackupState(None, None, "备份目录无法读取", float(cfg.max_age_hours), frozenset())
    beijing = dt.timezone(dt.timedelta(hours=8))
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
        verified_on=frozenset(b.finished.astimezone(beijing).date() for b in verified if b.finished),
    )
