"""The physical backup: ``pg_basebackup`` of the whole cluster in tar format, the WAL needed to
make it consistent streamed alongside (``pg_wal.tar.gz``), and PostgreSQL's own backup manifest
with SHA-256 checksums of every file (``pg_verifybackup`` checks it)."""

from __future__ import annotations

import json
from pathlib import Path

from cdcsync.ops.backup.catalog import BackupError, Manifest
from cdcsync.ops.backup.pgtools import Account, run_tool

PHYSICAL = "physical"
BASE = "base.tar.gz"
WAL = "pg_wal.tar.gz"
PG_MANIFEST = "backup_manifest"


def take_physical(out: Path, manifest: Manifest, account: Account, bin_dir: Path) -> None:
    target = out / PHYSICAL
    run_tool(bin_dir, "pg_basebackup", f"--dbname={account.for_tool(application_name='cdcsync-backup')}",
             f"--pgdata={target}", "--format=tar", "--wal-method=stream", "--compress=gzip:1",
             "--checkpoint=fast", "--manifest-checksums=SHA256", f"--label=cdcsync-{manifest.id}",
             env=account.env())
    start, end = wal_range(target)
    manifest.start_lsn = manifest.start_lsn or start
    manifest.end_lsn = end if manifest.kind == "physical" or manifest.end_lsn is None else manifest.end_lsn
    manifest.physical = {"start_lsn": start, "end_lsn": end}


def wal_range(target: Path) -> tuple[str, str]:
    """Start and end LSN of the backup, from PostgreSQL's manifest."""
    try:
        data = json.loads((target / PG_MANIFEST).read_text(encoding="utf-8"))
        ranges = data["WAL-Ranges"]
        return str(ranges[0]["Start-LSN"]), str(ranges[-1]["End-LSN"])
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise BackupError(f"{target / PG_MANIFEST}: 无法读取物理备份的清单（{exc}）") from None
