"""Retention: keep the newest backup of each of the last N days that have one and of each of the
last M ISO weeks; the newest verified backup is never removed, nor a backup still running."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Sequence

from cdcsync.beijing import BEIJING
from cdcsync.ops.backup.catalog import Backup, parse_time


def to_keep(backups: Sequence[Backup], keep_daily: int, keep_weekly: int) -> set[str]:
    """Ids to keep among ``backups`` (oldest first). Only verified backups count towards a day or
    week: a failed or unverified one never pushes a good one out."""
    keep: set[str] = {b.id for b in backups if b.manifest.status == "running"}
    good = [b for b in reversed(backups) if b.verified]  # newest first
    if good:
        keep.add(good[0].id)
    days: dict[dt.date, str] = {}
    weeks: dict[tuple[int, int], str] = {}
    for b in good:
        t = (parse_time(b.manifest.started_at) or dt.datetime.now(dt.UTC)).astimezone(BEIJING)
        day = t.date()
        if day not in days and len(days) < keep_daily:
            days[day] = b.id
        week = tuple(t.isocalendar())[:2]
        if week not in weeks and len(weeks) < keep_weekly:
            weeks[(int(week[0]), int(week[1]))] = b.id
    keep |= set(days.values()) | set(weeks.values())
    # The newest backup (whatever its state) stays until a later one exists: it is the evidence
    # of the last attempt that the status shows.
    if backups:
        keep.add(backups[-1].id)
    return keep


def prune(backups: Sequence[Backup], keep_daily: int, keep_weekly: int, dry_run: bool = False) -> list[str]:
    """Remove the backups retention does not keep; their ids."""
    keep = to_keep(backups, keep_daily, keep_weekly)
    removed = []
    for b in backups:
        if b.id not in keep:
            if not dry_run:
                shutil.rmtree(b.path)
            removed.append(b.id)
    return removed
