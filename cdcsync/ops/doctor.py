"""``cdcsync doctor``: the pre-flight checks an admin runs before go-live and when something is
wrong. Each finding has a Chinese explanation and, when not ok, the fix; the command exits 0
(all ok), 1 (warnings) or 2 (failures)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from cdcsync.secrets import OWNER_ONLY

if TYPE_CHECKING:
    from cdcsync.config import Settings

OK, WARNING, FAILURE, SKIPPED = "ok", "warning", "failure", "skipped"
CLOCK_WARN_S, CLOCK_FAIL_S = 30.0, 300.0  # the envelope refuses requests 300 s off
MIN_PG_VERSION, TESTED_PG_VERSION = 130000, 150000
PORTS = {"data": 8881, "config": 8882, "monitor": 8883, "web": 8884}


@dataclass
class Finding:
    check: str
    title: str
    level: str
    detail: str
    explain: str
    fix: str = ""


def _f(check: str, title: str, explain: str) -> Callable[..., Finding]:
    def make(level: str, detail: str, fix: str = "") -> Finding:
        return Finding(check, title, level, detail, explain, "" if level == OK else fix)
    return make


def exit_code(findings: list[Finding]) -> int:
    levels = {f.level for f in findings}
    return 2 if FAILURE in levels else 1 if WARNING in levels else 0


# --------------------------------------------------------------------------- database

def _setting(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,)).fetchone()
    if not row:
        return ""
    value = row[0]
    return value.decode() if isinstance(value, bytes) else str(value)  # bytes in a SQL_ASCII database


def version_finding(ver: int) -> Finding:
    """The server's ``server_version_num`` against what the stream needs (13: the slots' WAL
    status) and what is tested (15)."""
    f = _f("pg_version", "PostgreSQL 版本", "需要 PostgreSQL 13 及以上（复制槽 WAL 状态），推荐 15。")
    return f(FAILURE if ver < MIN_PG_VERSION else WARNING if ver < TESTED_PG_VERSION else OK,
             f"server_version_num = {ver}", "升级 PostgreSQL 到 15 或更高版本")


def _surveil_on(conn: psycopg.Connection[Any], settings: Settings) -> bool:
    """Whether ``cdcsync run`` starts the rules consumer (``surveil.enabled``; unset: the mirror has
    the case tables), as :func:`cdcsync.surveil.consumer.surveil_enabled` decides it."""
    if settings.surveil.enabled is not None:
        return settings.surveil.enabled
    from cdcsync.surveil.consumer import surveil_tables_present

    try:
        return surveil_tables_present(conn)
    finally:
        if not conn.autocommit:
            conn.rollback()


def database_checks(conn: psycopg.Connection[Any], settings: Settings) -> Iterator[Finding]:
    n_dest = max(1, len(settings.enabled_destinations))
    yield version_finding(int(_setting(conn, "server_version_num") or 0))
    wal = _setting(conn, "wal_level")
    f = _f("wal_level", "wal_level", "逻辑复制要求 wal_level = logical，否则无法创建复制槽、无法同步。")
    yield f(OK if wal == "logical" else FAILURE, f"wal_level = {wal}",
            "在 postgresql.conf 中设置 wal_level = logical 并重启 PostgreSQL")
    # The rules consumer (when on) streams from a slot of its own, through a WAL sender of its own.
    surveil = _surveil_on(conn, settings)
    n_slots = n_dest + (1 if surveil else 0)
    why = "每个上报目的地一个复制槽/发送进程" + ("，监测预警规则消费者一个" if surveil else "")
    for name, need in (("max_replication_slots", n_slots + 2), ("max_wal_senders", n_slots + 3)):
        have = int(_setting(conn, name) or 0)
        f = _f(name, name, f"{why}，另需临时快照、备份各用一个（至少 {need}）。")
        yield f(FAILURE if have < n_slots else WARNING if have < need else OK, f"{name} = {have}，建议 ≥ {need}",
                f"在 postgresql.conf 中设置 {name} = {max(need, 10)} 并重启 PostgreSQL")
    keep = int(_setting(conn, "max_slot_wal_keep_size") or -1)
    f = _f("max_slot_wal_keep_size", "max_slot_wal_keep_size",
           "复制槽保留的 WAL 上限：不限（-1）时平台长时间中断会占满磁盘；太小则复制槽失效、需重做快照。")
    want = settings.stream.wal_keep_min_mb
    yield f(WARNING if keep < 0 or keep < want else OK, f"max_slot_wal_keep_size = {keep} MB",
            f"设置 max_slot_wal_keep_size = {want}MB（不超过 pg_wal 所在磁盘剩余空间）并 SELECT pg_reload_conf()")
    row = conn.execute("SELECT rolreplication OR rolsuper, current_user FROM pg_roles WHERE rolname = current_user"
                       ).fetchone()
    f = _f("replication_role", "账号 REPLICATION 属性与授权",
           "同步服务的数据库账号必须有 REPLICATION 属性（属性不随角色继承），并属于 cdcsync_daemon 角色。")
    if not row or not row[0]:
        yield f(FAILURE, f"账号 {row[1] if row else '?'} 没有 REPLICATION 属性",
                f"由数据库管理员执行 ALTER ROLE {row[1] if row else '<账号>'} REPLICATION")
    else:
        missing = [t for (t,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'emr' AND c.relkind = 'r' AND NOT has_table_privilege(c.oid, 'SELECT')").fetchall()]
        yield f(FAILURE if missing else OK, f"账号 {row[1]}：REPLICATION 有" + (
            f"；不能读取 emr.{'、emr.'.join(missing[:5])}" if missing else "；可读取全部 emr 表"),
            "GRANT cdcsync_daemon TO <账号>（或执行 cdcsync db init 授权）")
    enc = _setting(conn, "server_encoding")
    f = _f("server_encoding", "数据库编码", "镜像库必须是 UTF8 编码，否则中文字段无法正确解码与上报。")
    yield f(OK if enc == "UTF8" else FAILURE, f"server_encoding = {enc}",
            "用 UTF8 编码重建镜像库（CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0）并导回数据")
    yield from _publication(conn)
    yield from _slots(conn, settings)


def _publication(conn: psycopg.Connection[Any]) -> Iterator[Finding]:
    from cdcsync.db.migrate import publication_problems
    from cdcsync.spec import load_spec

    f = _f("publication", "发布与数据集规范一致", "发布（publication）只应包含数据集规范中的表：多了会外发不该外发的数据，少了会漏报。")  # noqa: E501
    try:
        problem, warnings = publication_problems(conn, load_spec())
    except psycopg.Error as exc:
        conn.rollback()
        yield f(FAILURE, f"无法检查发布：{str(exc).strip().splitlines()[0]}", "执行 cdcsync db init")
        return
    if problem:
        yield f(FAILURE, problem, "执行 cdcsync db init（使发布只包含规范中的表）")
    elif warnings:
        yield f(WARNING, "；".join(warnings), "执行 cdcsync db init")
    else:
        yield f(OK, "发布只包含数据集规范中的表")


def _slots(conn: psycopg.Connection[Any], settings: Settings) -> Iterator[Finding]:
    from cdcsync.source.slots import get_slot, slot_name

    warn = settings.stream.wal_retention_warn_mb * 1024 * 1024
    for d in settings.enabled_destinations:
        f = _f(f"slot:{d.name}", f"复制槽 {slot_name(d.name)}", "每个目的地一个复制槽，应处于使用中；它保留的 WAL 过多说明同步滞后。")  # noqa: E501
        s = get_slot(conn, slot_name(d.name))
        if s is None:
            yield f(WARNING, "尚未创建（首次 cdcsync run 时创建）", "启动 cdcsync（systemctl start cdcsync）")
        elif s.wal_status == "lost":
            yield f(FAILURE, "复制槽已失效（WAL 已被回收）", f"按 docs/wal-safety.md：cdcsync slots drop {s.name} 后重启 cdcsync")  # noqa: E501
        elif not s.active:
            yield f(WARNING, f"未在使用（cdcsync 未运行？），保留 WAL {(s.retained_bytes or 0) >> 20} MB",
                    "启动 cdcsync；不再使用的目的地用 cdcsync slots drop 删除其复制槽")
        else:
            big = (s.retained_bytes or 0) > warn
            yield f(WARNING if big else OK, f"使用中，保留 WAL {(s.retained_bytes or 0) >> 20} MB",
                    "检查该平台是否可达、cdcsync status 中的延迟与错误")


def disk_checks(conn: psycopg.Connection[Any] | None, settings: Settings) -> Iterator[Finding]:
    need = settings.stream.wal_free_warn_mb * 1024 * 1024
    f = _f("disk_pg_wal", "pg_wal 所在磁盘剩余空间", "平台中断期间 WAL 在本机累积；磁盘满会使数据库停止写入。")
    if conn is not None:
        from cdcsync.source.walsafety import wal_volume

        vol = wal_volume(conn)
        free = vol["free_bytes"]
        yield f(SKIPPED, vol["note"]) if free is None else f(
            FAILURE if free < need / 4 else WARNING if free < need else OK, f"剩余 {free >> 20} MB",
            "清理或扩容 pg_wal 所在磁盘")
    f = _f("disk_state_dir", "状态目录所在磁盘剩余空间", "状态目录存放 jsonl 输出、备份（默认）等。")
    path = Path(os.path.abspath(settings.state_dir))
    while not path.exists():
        path = path.parent
    free = shutil.disk_usage(path).free
    yield f(FAILURE if free < need / 4 else WARNING if free < need else OK, f"{path}：剩余 {free >> 20} MB",
            "清理或扩容该磁盘，或把 state_dir / backup.dir 放到更大的磁盘")


# --------------------------------------------------------------------------- host

def port_checks(settings: Settings) -> Iterator[Finding]:
    for name, default in PORTS.items():
        listener = getattr(settings.api, name, None)
        if listener is not None and not listener.enabled:
            continue
        port = listener.port if listener is not None else default
        host = "127.0.0.1" if listener is None or listener.host in ("0.0.0.0", "::") else listener.host
        if not port:
            continue
        f = _f(f"port:{port}", f"端口 {port}（{name}）", "8881–8884 是前置软件对外服务的端口，须空闲或正由 cdcsync 使用。")  # noqa: E501
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
                yield f(OK, "空闲")
                continue
            except OSError:
                pass
        yield f(OK, "已被 cdcsync 使用（服务运行中）") if _ours(host, port) else f(
            FAILURE, "被其他程序占用", f"用 ss -ltnp 'sport = :{port}' 查出占用的程序；或在 api.{name}.port 改用其他端口")  # noqa: E501


def _ours(host: str, port: int) -> bool:
    import httpx

    for scheme in ("http", "https"):
        with contextlib.suppress(Exception):
            r = httpx.get(f"{scheme}://{host}:{port}/healthz", timeout=3, verify=False)  # noqa: S501 - identity only
            if isinstance(r.json(), dict) and "status" in r.json():
                return True
    return False


def key_checks(settings: Settings) -> Iterator[Finding]:
    files: list[tuple[str, Path]] = []
    for d in settings.destinations:
        hospital_key = getattr(d, "hospital_key", None)
        if hospital_key is not None:
            files.append((f"{d.name}.hospital_key", hospital_key))
    api = settings.api
    for name in ("data", "monitor", "web"):
        k = getattr(api, name).tls_key_file
        if k is not None:
            files.append((f"api.{name}.tls_key_file", k))
    for label, p in (("api.monitor_token_file", api.monitor_token_file), ("backup.key_file", settings.backup.key_file),
                     ("database.password_file", settings.database.password_file)):
        if p is not None:
            files.append((label, p))
    for label, path in files:
        f = _f(f"key:{label}", f"密钥/口令文件 {label}", "私钥与口令文件只允许属主读写（0600），否则可能已经泄露。")
        try:
            mode = os.stat(path).st_mode
        except OSError:
            yield f(FAILURE, f"{path} 不存在或无法读取", "检查配置中的路径与文件权限")
            continue
        if mode & OWNER_ONLY:  # the rule of cdcsync.secrets.loose_mode; the mode is shown either way
            yield f(FAILURE, f"{path} 权限为 {stat.filemode(mode)}", f"chmod 600 {path}（并评估是否需要更换密钥）")
        else:
            yield f(OK, f"{path}（{stat.filemode(mode)}）")
    from cdcsync.sink.certs import certificate_warnings

    f = _f("certificates", "证书有效期", "国密证书过期后平台将拒收数据；到期前 30 天告警。")
    try:
        warns = certificate_warnings(settings.destinations)
    except Exception as exc:  # a broken file is a finding, not a crash
        yield f(FAILURE, str(exc), "检查证书文件")
        return
    errors = [w for w in warns if w.get("level") == "error"]
    yield f(FAILURE if errors else WARNING if warns else OK,
            "；".join(w["message"] for w in warns) or "未发现过期或即将过期的证书", "向 CA 申请新证书并更新配置")


def platform_checks(settings: Settings) -> Iterator[Finding]:
    from cdcsync.ops.platform_ping import ping_platform

    for d in settings.enabled_destinations:
        if d.kind != "http":
            continue
        f = _f(f"platform:{d.name}", f"平台 {d.name} 可达", "TLS 握手成功且平台对签名的空请求（ping）作出签名应答，才能上报。")  # noqa: E501
        result = ping_platform(d, settings.org_code)
        yield f(OK if result.ok else FAILURE, result.detail,
                "检查网络与防火墙（到平台 8888 端口）、ca_bundle、医院密钥是否已在平台登记、平台公钥/证书配置")
        c = _f(f"clock:{d.name}", f"与平台 {d.name} 的时钟偏差", "请求带时间戳，与平台时钟相差超过 300 秒会被拒收。")
        if result.offset_s is None:
            yield c(SKIPPED, "平台未应答，无法比较")
        else:
            off = abs(result.offset_s)
            yield c(FAILURE if off > CLOCK_FAIL_S else WARNING if off > CLOCK_WARN_S else OK,
                    f"本机比平台{'快' if result.offset_s > 0 else '慢'} {off:.0f} 秒",
                    "配置 NTP 时间同步（timedatectl set-ntp true / chrony）")


def mapping_check(conn: psycopg.Connection[Any] | None, settings: Settings) -> Iterator[Finding]:
    from cdcsync.mapping.coverage import check_coverage
    from cdcsync.mapping.layers import MappingLayers
    from cdcsync.spec import load_spec

    f = _f("mappings", "代码对照覆盖（mappings check）", "数据中出现、但没有对照到国家值域的本地代码会被隔离，不会上报。")  # noqa: E501
    try:
        tables = MappingLayers.from_settings(settings).load()
        report = check_coverage(tables, load_spec(), conn)
    except Exception as exc:  # a broken code table is a finding
        yield f(FAILURE, f"代码表无法加载：{exc}", "修正代码表文件（cdcsync codes check）")
        return
    if report.invalid_mappings:
        yield f(FAILURE, f"{len(report.invalid_mappings)} 条对照指向不存在的国家代码", "执行 cdcsync mappings check 查看并修正")  # noqa: E501
    elif report.unmapped or report.domains_without_local_table:
        gaps = [f"{len(report.unmapped)} 个本地代码未对照（共 {sum(u.rows for u in report.unmapped)} 行）"] \
            if report.unmapped else []
        if report.domains_without_local_table:
            gaps.append("没有本地对照表的值域：" + "、".join(m.domain for m in report.domains_without_local_table))
        yield f(WARNING, "；".join(gaps), "执行 cdcsync mappings check 查看并补充本地对照表")
    else:
        yield f(OK, f"已检查 {len(report.tables_checked)} 张表，本地代码均有对照")


def backup_check(settings: Settings) -> Iterator[Finding]:
    from cdcsync.ops.backup.health import backup_status

    st = backup_status(settings)
    f = _f("backup", "最近一次备份", "上线前与运行中都应有近期、通过试恢复校验的备份。")
    alert = st["alert"]
    if alert is None:
        v = st["last_verified"]
        yield f(OK, f"{v['id']}，{v['finished_at']}，校验通过")
    else:
        yield f(FAILURE if alert["level"] == "error" else WARNING, alert["message"],
                "执行 cdcsync backup run，并启用 cdcsync-backup.timer（docs/operations.md）")


def run_doctor(settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    conn: psycopg.Connection[Any] | None = None
    try:
        conn = psycopg.connect(settings.database.conninfo(), autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        findings.append(_f("database", "连接镜像数据库", "前置软件通过 database.dsn 连接镜像库。")(
            FAILURE, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            "检查 database.dsn、口令文件、pg_hba.conf 与数据库服务"))
    try:
        if conn is not None:
            findings += database_checks(conn, settings)
        findings += disk_checks(conn, settings)
        findings += port_checks(settings)
        findings += key_checks(settings)
        findings += platform_checks(settings)
        findings += mapping_check(conn, settings)
        findings += backup_check(settings)
    finally:
        if conn is not None:
            conn.close()
    return findings


def as_json(findings: list[Finding]) -> dict[str, Any]:
    return {"exit_code": exit_code(findings), "findings": [asdict(f) for f in findings]}


__all__ = ["Finding", "as_json", "exit_code", "run_doctor"]
