"""WAL safety: how close PostgreSQL is to invalidating a destination's slot, or to a full disk.

A replication slot keeps WAL until its destination confirms it. ``max_slot_wal_keep_size`` caps
what a slot may keep: past it PostgreSQL removes the WAL at the next checkpoint and the slot is
*lost* (``wal_status = lost``) — that destination cannot stream any more and needs the documented
recovery (``cdcsync slots drop`` + a new snapshot). With ``-1`` (PostgreSQL's default) nothing is
capped and a long platform outage fills the volume holding ``pg_wal``, which stops the whole
database. Both are reported here before they happen.

Free space on the ``pg_wal`` volume: PostgreSQL 15 has no SQL function for free disk space, so it
is reported only where it is honest — the server runs on this machine (the system identifier of
``pg_control_system()`` equals the one in ``<data_directory>/global/pg_control`` read here) and
``<data_directory>/pg_wal`` can be ``statvfs``'d from here (a symlinked ``pg_wal`` is followed to
its own volume). ``SHOW data_directory`` needs superuser or ``pg_read_all_settings`` (granted by
``pg_monitor``), and the data directory must be readable by our account (``initdb -g`` group
access). Otherwise the free space is "未知" (None), never a guess from another volume. The size of
``pg_wal`` itself comes from ``pg_ls_waldir()`` when the role may call it (superuser or
``pg_monitor``).
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any

import psycopg

from cdcsync.config import StreamSettings
from cdcsync.source.slots import SlotInfo

log = logging.getLogger(__name__)

MB = 1024 * 1024
UNKNOWN = "未知"
LOST = "lost"


def _rollback(conn: psycopg.Connection[Any]) -> None:
    if not conn.autocommit:
        conn.rollback()


def server_wal_settings(conn: psycopg.Connection[Any]) -> dict[str, int | None]:
    """``max_slot_wal_keep_size`` (MB, -1 = unlimited), ``max_wal_size`` (MB), ``wal_segment_size`` (bytes)."""
    rows = dict(conn.execute(
        "SELECT name, setting::bigint FROM pg_settings"
        " WHERE name IN ('max_slot_wal_keep_size', 'max_wal_size', 'wal_segment_size')").fetchall())
    return {
        "max_slot_wal_keep_size_mb": rows.get("max_slot_wal_keep_size"),
        "max_wal_size_mb": rows.get("max_wal_size"),
        "wal_segment_size_bytes": rows.get("wal_segment_size"),
    }


def pg_wal_bytes(conn: psycopg.Connection[Any]) -> int | None:
    """Total size of the files in ``pg_wal`` as the server reports it; None without the privilege."""
    try:
        row = conn.execute("SELECT coalesce(sum(size), 0)::bigint FROM pg_ls_waldir()").fetchone()
    except psycopg.Error:
        _rollback(conn)
        return None
    return int(row[0]) if row else None


def _local_system_identifier(datadir: Path) -> int | None:
    try:
        with open(datadir / "global" / "pg_control", "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    return struct.unpack("<Q", head)[0] if len(head) == 8 else None


def wal_volume(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Free/total bytes of the volume holding ``pg_wal`` when the server is verifiably local and
    the directory reachable from here; otherwise the figures are None and ``note`` says why."""
    out: dict[str, Any] = {"path": None, "free_bytes": None, "total_bytes": None, "note": UNKNOWN}
    try:
        (datadir,) = conn.execute("SHOW data_directory").fetchone() or (None,)
        (sysid,) = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone() or (None,)
    except psycopg.Error:
        _rollback(conn)
        out["note"] = "未知（数据库账号无权查看数据目录，可授予 pg_monitor 角色）"
        return out
    if not datadir:
        return out
    d = Path(str(datadir))
    if sysid is None or _local_system_identifier(d) != int(sysid):
        out["note"] = "未知（数据库不在本机，或本机账号无法读取其数据目录）"
        return out
    wal = d / "pg_wal"
    try:
        st = os.statvfs(wal)
    except OSError:
        out["note"] = "未知（本机账号无法访问 pg_wal 目录）"
        return out
    out.update(path=str(wal), free_bytes=st.f_bavail * st.f_frsize, total_bytes=st.f_blocks * st.f_frsize,
               note="pg_wal 所在磁盘")
    return out


def _warning(code: str, level: str, message: str) -> dict[str, str]:
    return {"code": code, "level": level, "message": message}


def server_warnings(wal: dict[str, Any], stream: StreamSettings) -> list[dict[str, str]]:
    """Warnings about the server as a whole: an unlimited or small cap, little free space."""
    out: list[dict[str, str]] = []
    keep = wal.get("max_slot_wal_keep_size_mb")
    if keep is not None and keep < 0:
        out.append(_warning("wal_keep_unlimited", "warning",
                            "max_slot_wal_keep_size = -1（不限）：上报平台长时间中断时，复制槽保留的 WAL 可能占满"
                            "磁盘并使数据库停止。建议按安装说明设置上限。"))
    elif keep is not None and keep < stream.wal_keep_min_mb:
        out.append(_warning("wal_keep_small", "warning",
                            f"max_slot_wal_keep_size = {keep} MB，低于建议的最小值 {stream.wal_keep_min_mb} MB："
                            "上报平台短时中断即可能使复制槽失效，需要重做全量快照。"))
    free = (wal.get("volume") or {}).get("free_bytes")
    if free is not None and free < stream.wal_free_warn_mb * MB:
        out.append(_warning("wal_disk_low", "warning",
                            f"pg_wal 所在磁盘剩余 {free // MB} MB，低于告警阈值 {stream.wal_free_warn_mb} MB。"))
    return out


def lost_message(destination: str, slot: str) -> str:
    """The one message an admin sees for a lost slot (status, log, status page)."""
    return (f"目的地 {destination} 已停止：复制槽 {slot} 已失效（wal_status=lost，积压的 WAL 超过"
            f" max_slot_wal_keep_size 后已被数据库删除），无法继续增量同步。恢复方法：执行"
            f" cdcsync slots drop {slot}，然后重新做全量快照（cdcsync run 运行中会自动重做；未运行时执行"
            f" cdcsync snapshot --destination {destination}），重做时会为期间删除的记录补发删除事件。")


def slot_warnings(destination: str, slot: SlotInfo | None, stream: StreamSettings) -> list[dict[str, str]]:
    """Warnings for one destination's slot, worst first."""
    if slot is None or slot.wal_status is None:
        return []
    status = slot.wal_status
    if status == LOST:
        return [_warning("slot_lost", "error", lost_message(destination, slot.name))]
    out: list[dict[str, str]] = []
    if status == "unreserved":
        out.append(_warning("slot_unreserved", "error",
                            f"复制槽 {slot.name} 的 WAL 已超出 max_slot_wal_keep_size（wal_status=unreserved），"
                            "下一次检查点即可能失效：请尽快恢复与上报平台的连接。"))
    elif status == "extended":
        out.append(_warning("slot_extended", "warning",
                            f"复制槽 {slot.name} 保留的 WAL 已超过 max_wal_size（wal_status=extended）：上报积压，"
                            "请检查与上报平台的连接。"))
    safe = slot.safe_wal_size
    if safe is not None and safe < stream.wal_safe_size_warn_mb * MB:
        out.append(_warning("safe_wal_low", "error" if safe <= 0 else "warning",
                            f"复制槽 {slot.name} 距离失效只剩 {max(safe, 0) // MB} MB 的 WAL"
                            f"（safe_wal_size，告警阈值 {stream.wal_safe_size_warn_mb} MB）。"))
    return out


def wal_overview(conn: psycopg.Connection[Any], stream: StreamSettings) -> dict[str, Any]:
    """The server-wide WAL figures and warnings for ``status``, 8883 and the status page."""
    wal: dict[str, Any] = dict(server_wal_settings(conn))
    keep = wal["max_slot_wal_keep_size_mb"]
    wal["unlimited"] = keep is not None and keep < 0
    wal["pg_wal_bytes"] = pg_wal_bytes(conn)
    wal["volume"] = wal_volume(conn)
    wal["warnings"] = server_warnings(wal, stream)
    return wal


def init_check(conn: psycopg.Connection[Any], stream: StreamSettings) -> list[str]:
    """``db init``: Chinese lines about ``max_slot_wal_keep_size`` (first line: the value)."""
    wal = wal_overview(conn, stream)
    keep = wal["max_slot_wal_keep_size_mb"]
    lines = [f"max_slot_wal_keep_size = {'-1（不限）' if wal['unlimited'] else f'{keep} MB'}"]
    free = wal["volume"]["free_bytes"]
    lines.append(f"pg_wal 所在磁盘剩余空间：{UNKNOWN if free is None else f'{free // MB} MB'}")
    for w in wal["warnings"]:
        lines.append(f"警告：{w['message']}")
    if keep is not None and keep >= 0 and free is not None and keep * MB > free + (wal["pg_wal_bytes"] or 0):
        lines.append(f"警告：max_slot_wal_keep_size（{keep} MB）大于 pg_wal 所在磁盘的剩余空间，"
                     "磁盘会先于复制槽上限被占满。")
    return lines


__all__ = ["LOST", "init_check", "lost_message", "slot_warnings", "wal_overview", "wal_volume"]
