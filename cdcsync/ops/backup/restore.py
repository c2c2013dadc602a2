"""``cdcsync backup restore``: the logical dump into a target database, the archive into a
directory, and the stream made safe to resume.

Never over a live database by accident: a target database that exists and holds tables is
replaced only with ``force`` *and* its name typed again (``confirm``).

The stream after a restore (docs/operations.md, "Restore and the stream"):

* Event ids carry the commit LSN. A cluster created for the restore starts its WAL near zero, so
  new commits would reuse LSNs (and ids) the platforms already hold, and be dropped as
  duplicates: lost. A restore into another cluster therefore requires that cluster's WAL
  position to be ``SAFE_GAP`` past the backup's end (``advance_wal`` runs ``pg_resetwal -l`` on
  the stopped, empty cluster). Into the cluster the backup came from, positions only grow.
* Slots do not survive a logical restore: any ``cdcsync_*`` slot of a replaced database is
  dropped (it would stream the restore itself). For a destination that had acknowledged
  everything before the dump's instant (``streams_caught_up`` in the manifest), a new slot is
  created and its position recorded: it already holds every restored row, nothing is sent again.
  Any other destination is set to take a new initial snapshot (every row as op ``r``, plus
  deletes for keys it holds that the dump has not). A row it holds unchanged is re-sent under
  the id it was delivered by (``KnownIds``, cdcsync/engine/checkpoint.py): a duplicate the
  platform drops, not a new event.
"""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path
from typing import Any

import psycopg

from cdcsync.engine.checkpoint import destination_slots, reset_to_snapshot, resume_at
from cdcsync.event import lsn_to_str, str_to_lsn
from cdcsync.ops.backup.catalog import Backup, BackupError
from cdcsync.ops.backup.pgtools import Account, run_tool
from cdcsync.source.slots import create_slot

log = logging.getLogger(__name__)

SAFE_GAP = 1 << 40  # 1 TiB of WAL past the backup: more than a hospital writes between backups


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def target_tables(account: Account) -> int | None:
    """Number of user tables in the target database; None when it does not exist."""
    try:
        with psycopg.connect(account.conninfo(), connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN"
                " ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg_toast%'").fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def required_lsn(backup: Backup) -> int:
    end = backup.manifest.end_lsn or backup.manifest.snapshot_lsn
    if end is None:
        raise BackupError(f"备份 {backup.id} 的清单中没有结束位点（end_lsn）")
    return str_to_lsn(end) + SAFE_GAP


def check_wal_position(conn: psycopg.Connection[Any], backup: Backup) -> None:
    """Refuse a target cluster whose WAL position could repeat ids the platforms already hold."""
    sysid = None
    try:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        sysid = str(row[0]) if row else None
    except psycopg.Error:
        conn.rollback()
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    current = str_to_lsn(str(row[0])) if row else 0
    if sysid is not None and sysid == backup.manifest.system_identifier:
        return  # the same cluster: its positions only grow
    need = required_lsn(backup)
    if current < need:
        raise BackupError(
            f"目标数据库集群的 WAL 位置 {lsn_to_str(current)} 不够靠后："
            "恢复后的新变更会复用平台已收到的事件标识而被当作重复丢弃。"
            f"请先停止目标集群，执行 cdcsync backup advance-wal {backup.id} --datadir <数据目录>"
            f"（把 WAL 位置推进到 {lsn_to_str(need)} 之后），再启动集群并重新恢复")


def _drop_cdcsync_slots(admin: psycopg.Connection[Any], dbname: str) -> list[str]:
    rows = admin.execute("SELECT slot_name, active FROM pg_replication_slots WHERE database = %s"
                         " AND slot_name LIKE 'cdcsync%%'", (dbname,)).fetchall()
    if any(active for _, active in rows):
        raise BackupError(f"数据库 {dbname} 的复制槽正在使用中：请先停止 cdcsync（systemctl stop cdcsync）再恢复")
    for name, _ in rows:
        admin.execute("SELECT pg_drop_replication_slot(%s)", (name,))
    return [str(n) for n, _ in rows]


def restore_database(backup: Backup, target: Account, bin_dir: Path, *, force: bool = False,
                     confirm: str | None = None, with_globals: bool = False, stream: bool = True) -> dict[str, Any]:
    """Restore the logical dump into ``target``; returns what was done."""
    from cdcsync.ops.backup.logical import GLOBALS, require_dump

    dump = require_dump(backup.path)
    dbname = target.dbname
    tables = target_tables(target)
    if tables:
        if not force:
            raise BackupError(f"目标数据库 {dbname} 已存在且有 {tables} 张表（可能是正在使用的数据库）：不会覆盖。"
                              "确需覆盖请加 --force，并按提示再次输入数据库名确认")
        if confirm != dbname:
            raise BackupError(f"覆盖数据库需要再次确认：输入的名称 {confirm!r} 与目标数据库名 {dbname!r} 不一致，"
                              "已取消")
    done: dict[str, Any] = {"database": dbname, "replaced": bool(tables), "dropped_slots": [], "streams": {}}
    admin = target.with_db("postgres")
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        if stream:
            check_wal_position(conn, backup)
        if with_globals:
            run_tool(bin_dir, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=0", f"--dbname={admin.for_tool()}",
                     f"--file={backup.path / GLOBALS}", env=target.env())
        if tables is not None:
            done["dropped_slots"] = _drop_cdcsync_slots(conn, dbname)
            if tables:
                conn.execute(f"DROP DATABASE {_qi(dbname)} WITH (FORCE)")
        if tables is None or tables > 0:  # an empty database that exists is restored into as it is
            conn.execute(f"CREATE DATABASE {_qi(dbname)} TEMPLATE template0 ENCODING 'UTF8'")
    run_tool(bin_dir, "pg_restore", "--exit-on-error", "--no-password", f"--dbname={target.for_tool()}", str(dump),
             env=target.env())
    if stream:
        with psycopg.connect(target.conninfo(), autocommit=True) as conn:
            done["streams"] = prepare_streams(conn, backup)
    log.info("backup %s restored into %s", backup.id, dbname)
    return done


def prepare_streams(conn: psycopg.Connection[Any], backup: Backup) -> dict[str, str]:
    """Per destination of the restored state: a new slot at the current position when it had
    acknowledged everything before the dump ("resumed"), else a new initial snapshot ("snapshot")."""
    out: dict[str, str] = {}
    caught = backup.manifest.streams_caught_up
    for dest, slot in destination_slots(conn):
        if caught.get(dest):
            resume_at(conn, dest, create_slot(conn, slot))
            out[dest] = "resumed"
        else:
            reset_to_snapshot(conn, dest)
            out[dest] = "snapshot"
    return out


def wal_file_name(lsn: int, timeline: int, segment_size: int) -> str:
    """The WAL segment file name holding ``lsn`` (what ``pg_resetwal -l`` takes)."""
    seg = lsn // segment_size
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{seg // per_id:08X}{seg % per_id:08X}"


def _controldata(bin_dir: Path, datadir: Path, user: str | None) -> dict[str, str]:
    done = run_tool(bin_dir, "pg_controldata", "-D", str(datadir), user=user)
    out = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def advance_wal(backup: Backup, bin_dir: Path, datadir: Path) -> str:
    """``pg_resetwal -l`` on the stopped target cluster so its next WAL lies ``SAFE_GAP`` past the
    backup's end; run as the data directory's owner. Returns the new WAL file name."""
    owner = pwd.getpwuid(os.stat(datadir).st_uid).pw_name
    user = owner if os.geteuid() == 0 and owner != "root" else None
    info = _controldata(bin_dir, datadir, user)
    if info.get("Database cluster state") not in ("shut down", "shut down in recovery"):
        raise BackupError(f"{datadir}: 集群未正常停止（{info.get('Database cluster state')}），请先停止目标集群")
    timeline = int(info.get("Latest checkpoint's TimeLineID", "1"))
    segment = int(info.get("Bytes per WAL segment", str(16 * 1024 * 1024)))
    name = wal_file_name(required_lsn(backup) + segment, timeline, segment)
    run_tool(bin_dir, "pg_resetwal", "-l", name, "-D", str(datadir), user=user)
    return name
