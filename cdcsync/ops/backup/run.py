"""``cdcsync backup run``: take a backup, write its manifest, verify it, apply retention."""

from __future__ import annotations

import logging
import os
import socket
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from cdcsync.ops.backup.catalog import (
    Backup,
    BackupError,
    Manifest,
    backup_dir,
    iso,
    load_backup,
    new_backup_id,
    now_utc,
    sm3_file,
    write_manifest,
)
from cdcsync.ops.backup.pgtools import Account, bindir

if TYPE_CHECKING:
    from cdcsync.config import Settings

log = logging.getLogger(__name__)
KINDS = ("logical", "physical", "all")


def digest_files(path: Path, manifest: Manifest) -> None:
    """SM3 and size of every file of the backup (manifest and verification result excluded)."""
    manifest.files = {}
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            f = Path(root) / name
            rel = str(f.relative_to(path))
            if rel in ("manifest.json", "verify.json") or rel.endswith(".tmp"):
                continue
            manifest.files[rel] = {"size": f.stat().st_size, "sm3": sm3_file(f)}


def take_backup(settings: Settings, kind: str, config_path: Path | None = None) -> Backup:
    """Take one backup into a new directory. A failure is recorded in its manifest (status
    ``failed``: an alert) and raised."""
    if kind not in KINDS:
        raise BackupError(f"--kind 应为 {'、'.join(KINDS)} 之一，实际为 {kind!r}")
    root = backup_dir(settings)
    root.mkdir(parents=True, exist_ok=True, mode=0o750)
    started = now_utc()
    backup_id = new_backup_id(root, started)
    path = root / backup_id
    path.mkdir(mode=0o750)
    account = Account.of(settings.database)
    manifest = Manifest(id=backup_id, kind=kind, started_at=iso(started) or "", host=socket.gethostname(),
                        org_code=settings.org_code, database=account.dbname)
    write_manifest(path, manifest)
    try:
        bin_dir = bindir(settings)
        if kind in ("logical", "all"):
            from cdcsync.ops.backup.files import archive_files
            from cdcsync.ops.backup.logical import take_logical

            take_logical(settings, path, manifest, account, bin_dir)
            manifest.archived = archive_files(settings, config_path, path, backup_id)
            manifest.secrets = manifest.archived["secrets_mode"]
        if kind in ("physical", "all"):
            from cdcsync.ops.backup.physical import take_physical

            physical = Account.of(settings.database, settings.backup.physical_dsn)
            take_physical(path, manifest, physical, bin_dir)
        digest_files(path, manifest)
        manifest.status = "ok"
    except Exception as exc:
        manifest.status = "failed"
        manifest.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.debug("backup %s failed:\n%s", backup_id, traceback.format_exc())
        raise
    finally:
        manifest.finished_at = iso(now_utc())
        write_manifest(path, manifest)
    log.info("backup %s (%s) done: %d bytes", backup_id, kind, manifest.size)
    return load_backup(path)
