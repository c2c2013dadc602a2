"""``cdcsync backup verify``: is the backup intact and restorable?

1. every file against the SM3 digest and size in the manifest;
2. physical: the tar files extracted and ``pg_verifybackup`` run on them (PostgreSQL's SHA-256
   manifest and the WAL from start to end LSN);
3. logical: a test restore — roles and the dump into a throwaway cluster — and the per-table row
   counts and row-hash samples of the restored database compared with those read from the source
   in the dump's own snapshot.

The result is written beside the manifest (``verify.json``): status, each step, problems.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from cdcsync.ops.backup.catalog import Backup, BackupError, iso, load_backup, now_utc, sm3_file, write_verification
from cdcsync.ops.backup.figures import compare_figures, table_figures
from cdcsync.ops.backup.pgtools import bindir, run_tool

if TYPE_CHECKING:
    from cdcsync.config import Settings
    from cdcsync.db.cluster import LocalCluster

log = logging.getLogger(__name__)


def check_digests(backup: Backup) -> list[str]:
    problems = []
    for name, meta in sorted(backup.manifest.files.items()):
        f = backup.path / name
        if not f.exists():
            problems.append(f"文件缺失：{name}")
            continue
        size = f.stat().st_size
        if size != int(meta["size"]):
            problems.append(f"文件大小不符：{name}（清单 {meta['size']} 字节，实际 {size} 字节）")
        elif sm3_file(f) != meta["sm3"]:
            problems.append(f"文件内容已损坏（SM3 摘要不符）：{name}")
    return problems


def verify_physical(backup: Backup, bin_dir: Path, scratch: Path) -> list[str]:
    from cdcsync.ops.backup.physical import BASE, PG_MANIFEST, PHYSICAL, WAL

    src = backup.path / PHYSICAL
    data = scratch / "physical"
    (data / "pg_wal").mkdir(parents=True)
    try:
        with tarfile.open(src / BASE, "r:gz") as tar:
            tar.extractall(data, filter="tar")
        with tarfile.open(src / WAL, "r:gz") as tar:
            tar.extractall(data / "pg_wal", filter="tar")
    except (OSError, tarfile.TarError, EOFError) as exc:
        return [f"物理备份无法解包：{exc}"]
    shutil.copy(src / PG_MANIFEST, data / PG_MANIFEST)
    try:
        run_tool(bin_dir, "pg_verifybackup", f"--wal-directory={data / 'pg_wal'}", str(data))
    except BackupError as exc:
        return [f"pg_verifybackup 未通过：{exc}"]
    return []


def restore_into_scratch(backup: Backup, bin_dir: Path, cluster: LocalCluster) -> str:
    """Roles, then the dump, into a new database of ``cluster``; its DSN."""
    from cdcsync.ops.backup.logical import GLOBALS, require_dump

    dump = require_dump(backup.path)
    run_tool(bin_dir, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=0", f"--dbname={cluster.dsn()}",
             f"--file={backup.path / GLOBALS}")  # "role postgres already exists" is expected
    dbname = backup.manifest.database or "emr"
    dsn = cluster.create_database(dbname)
    run_tool(bin_dir, "pg_restore", "--exit-on-error", "--no-password", f"--dbname={dsn}", str(dump))
    return dsn


def verify_logical(backup: Backup, bin_dir: Path) -> list[str]:
    from cdcsync.db.cluster import throwaway_cluster

    cluster = throwaway_cluster("cdcsync-verify-")
    try:
        try:
            dsn = restore_into_scratch(backup, bin_dir, cluster)
        except BackupError as exc:
            return [f"试恢复失败：{exc}"]
        source = backup.manifest.source
        # the sample size the source was read with (a table with fewer rows gives all of them)
        sample = max((len(v["sample"]) for v in source.values()), default=0)
        with psycopg.connect(dsn) as conn:
            restored = table_figures(conn, sample)
        return compare_figures(source, restored)
    finally:
        cluster.destroy()
        shutil.rmtree(cluster.datadir.parent, ignore_errors=True)


def verify_backup(settings: Settings, backup: Backup) -> dict[str, Any]:
    """Run every check that applies; record and return the result."""
    started = now_utc()
    steps: list[dict[str, Any]] = []

    def step(name: str, problems: list[str]) -> None:
        steps.append({"step": name, "ok": not problems, "problems": problems})

    if not backup.ok:
        step("backup", [f"备份本身未完成：{backup.manifest.error or backup.manifest.status}"])
    else:
        step("digests", check_digests(backup))
        if steps[-1]["ok"]:
            bin_dir = bindir(settings)
            if backup.manifest.kind in ("physical", "all"):
                with tempfile.TemporaryDirectory(prefix="cdcsync-verify-") as tmp:
                    step("pg_verifybackup", verify_physical(backup, bin_dir, Path(tmp)))
            if backup.manifest.kind in ("logical", "all"):
                step("test_restore", verify_logical(backup, bin_dir))
    problems = [p for s in steps for p in s["problems"]]
    result = {"status": "ok" if not problems else "failed", "started_at": iso(started),
              "finished_at": iso(now_utc()), "steps": steps, "problems": problems}
    write_verification(backup.path, result)
    log.info("backup %s verified: %s", backup.id, result["status"])
    return result


def verify_and_reload(settings: Settings, backup: Backup) -> Backup:
    verify_backup(settings, backup)
    return load_backup(backup.path)
