"""The logical backup: ``pg_dump -Fc`` of the mirror database (emr tables and the cdcsync state
in one dump) inside the exported snapshot of a temporary replication slot, so the dump's instant
is an exact LSN (``snapshot_lsn``); the source's row counts and row-hash samples are read in the
same snapshot. Roles and memberships come from ``pg_dumpall --globals-only --no-role-passwords``
(passwords never enter a backup; the ACLs of the objects are in the dump itself)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from cdcsync.engine.checkpoint import positions as checkpoint_positions
from cdcsync.event import lsn_to_str, str_to_lsn
from cdcsync.ops.backup.catalog import BackupError, Manifest
from cdcsync.ops.backup.figures import table_figures
from cdcsync.ops.backup.pgtools import Account, run_tool

if TYPE_CHECKING:
    from cdcsync.config import Settings

log = logging.getLogger(__name__)

DUMP = "database.dump"
GLOBALS = "globals.sql"
SLOT_PREFIX = "cdcsyncbk_"  # not cdcsync_: status would list it as an orphan destination slot
CATCH_UP_WAIT_S = 30.0


def _snapshot(account: Account) -> tuple[Any, str, int | None, str | None]:
    """(handle to keep open, snapshot name, consistent LSN or None, system identifier): a
    temporary logical slot's exported snapshot when the account may replicate, else
    ``pg_export_snapshot()`` (then the instant is known only to within the dump's start)."""
    from cdcsync.source.protocol import ReplicationConnection, ReplicationError

    try:
        repl = ReplicationConnection(account.conninfo(), application_name="cdcsync-backup")
    except (ReplicationError, psycopg.Error) as exc:
        log.warning("backup: no replication connection (%s); exporting a plain snapshot", str(exc).strip()[:120])
    else:
        try:
            sysid = repl.identify_system()["systemid"]
            created = repl.create_slot(f"{SLOT_PREFIX}{os.getpid()}", export_snapshot=True, temporary=True)
            assert created.snapshot_name is not None
            return repl, created.snapshot_name, created.consistent_point, sysid
        except psycopg.Error as exc:
            repl.close()
            log.warning("backup: cannot create a temporary slot (%s); exporting a plain snapshot",
                        str(exc).strip()[:120])
    conn = psycopg.connect(account.conninfo(application_name="cdcsync-backup"))
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    assert row is not None
    return conn, str(row[0]), None, None


def take_logical(settings: Settings, out: Path, manifest: Manifest, account: Account, bin_dir: Path) -> None:
    env = account.env()
    handle, snap, consistent, sysid = _snapshot(account)
    try:
        with psycopg.connect(account.conninfo(application_name="cdcsync-backup")) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{snap}'")
            start = conn.execute("SELECT pg_current_wal_lsn()::text, current_setting('server_version')"
                                 ).fetchone()
            assert start is not None
            manifest.start_lsn, manifest.server_version = str(start[0]), str(start[1])
            manifest.snapshot_lsn = lsn_to_str(consistent) if consistent is not None else None
            manifest.system_identifier = sysid
            manifest.stream_positions = checkpoint_positions(conn)
            manifest.source = table_figures(conn, settings.backup.verify_sample_rows)
            conn.execute("COMMIT")
        run_tool(bin_dir, "pg_dump", "--format=custom", "--compress=6", f"--snapshot={snap}",
                 f"--file={out / DUMP}", f"--dbname={account.for_tool(application_name='cdcsync-backup')}",
                 env=env)
    finally:
        handle.close()
    run_tool(bin_dir, "pg_dumpall", "--globals-only", "--no-role-passwords", f"--file={out / GLOBALS}",
             f"--dbname={account.for_tool(application_name='cdcsync-backup')}", env=env)
    with psycopg.connect(account.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        manifest.end_lsn = str(row[0]) if row else None
        if consistent is not None:
            manifest.streams_caught_up = _wait_caught_up(conn, consistent)


def _wait_caught_up(conn: psycopg.Connection[Any], consistent: int) -> dict[str, bool]:
    """Per destination: has it acknowledged everything before the dump's instant? A destination
    that has holds every row of the dump, so after a restore it needs no re-snapshot
    (docs/operations.md). Destinations being streamed (slot active) get up to CATCH_UP_WAIT_S,
    helped by a heartbeat message that gives the stream a position past the dump to confirm."""
    from cdcsync.engine.pipeline import HEARTBEAT_PREFIX

    # Without the privilege the daemon's own heartbeat moves the position, later.
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT pg_logical_emit_message(false, %s, 'backup')", (HEARTBEAT_PREFIX,))
    deadline = time.monotonic() + CATCH_UP_WAIT_S
    while True:
        positions = checkpoint_positions(conn)
        # the slot's confirmed position: the daemon confirms only what is acknowledged (or quarantined)
        slots = {str(s): (bool(a), str(c)) for s, a, c in conn.execute(
            "SELECT slot_name, active, confirmed_flush_lsn::text FROM pg_replication_slots"
            " WHERE database = current_database() AND confirmed_flush_lsn IS NOT NULL").fetchall()}
        active = {s for s, (a, _) in slots.items() if a}
        done = {d: max(str_to_lsn(lsn), str_to_lsn(slots.get(f"cdcsync_{d}", (False, "0/0"))[1])) >= consistent
                for d, lsn in positions.items()}
        waiting = [d for d, ok in done.items() if not ok and f"cdcsync_{d}" in active]
        if not waiting or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def require_dump(path: Path) -> Path:
    dump = path / DUMP
    if not dump.exists():
        raise BackupError(f"{path}: 该备份没有逻辑备份文件 {DUMP}")
    return dump
