"""CLI commands of the CDC engine: ``run``, ``snapshot``, ``slots list|drop``, ``status``.

Registered on the main group by the lead (``COMMANDS``).
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from cdcsync.cli_context import AppContext, pass_app


@click.command("run")
@pass_app
def run_cmd(app: AppContext) -> None:
    """运行数据同步服务：为每个启用的目的地读取复制流并投递（Ctrl-C / SIGTERM 安全退出）。"""
    from cdcsync.config import load_settings
    from cdcsync.engine.daemon import run

    sys.exit(run(app.settings, reload_settings=lambda: load_settings(app.config_path)))


@click.command("snapshot")
@click.option("--destination", "-d", required=True, help="目的地名称")
@click.option("--table", "-t", "tables", multiple=True, help="只读取这些表（emr 下的表名，可重复）")
@pass_app
def snapshot_cmd(app: AppContext, destination: str, tables: tuple[str, ...]) -> None:
    """全量快照：读取镜像表现有数据，经校验与代码映射后投递到目的地（首次为初始快照，之后为补发）。"""
    from cdcsync.engine.daemon import build_pipeline
    from cdcsync.engine.pipeline import SnapshotRefused
    from cdcsync.mapping.layers import MappingLayers
    from cdcsync.validate.reload import RulesHolder

    settings = app.settings
    dest = settings.destination(destination)
    # The same validation stage as the daemon's: rows that fail go to the quarantine.
    pipe = build_pipeline(settings, dest, RulesHolder.for_layers(MappingLayers.from_settings(settings)))
    try:
        pipe.snapshot_once(list(tables) or None)
    except (SnapshotRefused, LookupError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    held = f"，{pipe.events_quarantined} 条未通过校验已隔离（cdcsync quarantine list 查看）" \
        if pipe.events_quarantined else ""
    click.echo(f"快照完成：目的地 {destination}，投递 {pipe.events_sent} 条记录{held}")


@click.group("slots")
def slots_group() -> None:
    """复制槽：查看与删除（删除会丢失该目的地的同步位置）。"""


@slots_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def slots_list(app: AppContext, as_json: bool) -> None:
    """列出 cdcsync 的复制槽及其保留的 WAL。"""
    import psycopg

    from cdcsync.source.slots import list_slots, slot_name

    configured = {slot_name(d.name) for d in app.settings.destinations}
    with psycopg.connect(app.settings.database.conninfo(), autocommit=True) as conn:
        slots = list_slots(conn)
    if as_json:
        click.echo(orjson.dumps([dict(s.as_dict(), configured=s.name in configured) for s in slots],
                                option=orjson.OPT_INDENT_2).decode())
        return
    if not slots:
        click.echo("没有 cdcsync 复制槽。")
        return
    for s in slots:
        mb = (s.retained_bytes or 0) / 1024 / 1024
        note = "" if s.name in configured else "  （配置中无此目的地，可用 cdcsync slots drop 删除）"
        click.echo(f"{s.name}  {'使用中' if s.active else '空闲'}  已确认位点 {s.confirmed_flush_lsn}"
                   f"  保留 WAL {mb:.1f} MB{note}")


@slots_group.command("drop")
@click.argument("name")
@click.option("--yes", is_flag=True, help="不再询问，直接删除")
@pass_app
def slots_drop(app: AppContext, name: str, yes: bool) -> None:
    """删除复制槽 NAME（该目的地需重新做初始快照）。"""
    import psycopg

    from cdcsync.engine.checkpoint import reset_to_snapshot
    from cdcsync.source.slots import drop_slot, get_slot

    with psycopg.connect(app.settings.database.conninfo(), autocommit=True) as conn:
        if get_slot(conn, name) is None:
            raise click.ClickException(f"复制槽 {name} 不存在")
        if not yes:
            click.confirm(f"删除复制槽 {name}？该目的地的同步位置将丢失，需要重新做初始快照", abort=True)
        try:
            drop_slot(conn, name)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        dest = name.removeprefix("cdcsync_")
        reset_to_snapshot(conn, dest)
    click.echo(f"已删除复制槽 {name}")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def status_cmd(app: AppContext, as_json: bool) -> None:
    """各目的地的同步状态：位点、延迟、保留的 WAL、今日事件数、隔离数。"""
    from cdcsync.engine.status import collect_status

    st = collect_status(app.settings)
    if as_json:
        click.echo(orjson.dumps(st, option=orjson.OPT_INDENT_2).decode())
        return
    for d in st["destinations"]:
        _print_dest(d)
        _print_dest_wal(d)
    _print_wal(st["wal"])
    for s in st["orphan_slots"]:
        click.echo(f"警告：复制槽 {s['name']} 不属于任何已配置的目的地，仍在保留 WAL（cdcsync slots drop {s['name']}）")
    for warning in st.get("listener_warnings", []):
        click.echo(f"警告：{warning}")
    for w in st["certificate_warnings"]:
        click.echo(f"{'错误' if w['level'] == 'error' else '警告'}：{w['message']}")
    _print_minimal(st["minimum_necessary"])
    _print_surveil(st.get("surveil"))
    if st.get("sm2_backend"):  # detected in this process; the daemon started the same way picks the same
        click.echo(f"SM2 实现：{st['sm2_backend']['backend']}（{st['sm2_backend']['reason']}）")
    sw = st.get("software")
    if sw:
        click.echo(f"当前版本 {sw['current']}；可用新版本 {sw['available'] or '无'}"
                   + (f"（{sw['checked_at']} 检查）" if sw["checked_at"] else "（尚未检查，cdcsync upgrade check）"))
        for line in (sw["notes"] or "").splitlines():
            click.echo(f"  更新说明：{line}")
    for kind, c in st.get("configuration", {}).items():
        click.echo(f"国家平台下发的配置 {kind}：版本 {c['version'] if c['version'] is not None else '本机导入'}"
                   f"（记录 {c['record']}，{c['package_id']}，{c['since']} 起生效；cdcsync config history 查看）")
    if st.get("backup"):
        from cdcsync.ops.backup.health import backup_text

        click.echo(f"备份：{backup_text(st['backup'])}")


def _print_surveil(sv: dict[str, Any] | None) -> None:
    """Open and overdue cases (counts only) and where the rules consumer stands."""
    if sv is None:
        return  # no case tables in this mirror (migration 030 not applied)
    click.echo(f"监测预警病例：未结 {sv['open']} 例，其中超过报告时限 {sv['overdue']} 例"
               "（cdcsync cases list --overdue）")
    c = sv.get("consumer")
    if c is not None:
        lag = c["lag_bytes"]
        click.echo(f"  规则引擎：{'运行中' if c['active'] else '未运行'}  规则包 {c['pack_version'] or '-'}"
                   f"  已处理位点 {c['applied_lsn']}  未处理 {_mb(lag) if lag is not None else '-'}"
                   f"  最近处理 {c['last_commit_at'] or '-'}")


def _print_minimal(m: dict[str, Any]) -> None:
    """Minimum necessary: what the catalog holds that is not sent, and publication problems."""
    if m["tables_not_published"]:
        click.echo(f"未发布（不发送）的 emr 表（不在数据集规范中）：{', '.join(m['tables_not_published'])}")
    for table, columns in m["columns_not_sent"].items():
        click.echo(f"不发送的列（数据集规范未定义）：emr.{table}：{', '.join(columns)}")
    if m["publication_problem"]:
        click.echo(f"错误：{m['publication_problem']}")
    for warning in m["publication_warnings"]:
        click.echo(f"警告：{warning}")


def _print_dest(d: dict[str, Any]) -> None:
    state = "运行中" if d["active"] else ("未创建复制槽" if not d["slot_exists"] else "未运行")
    click.echo(f"目的地 {d['destination']}（{d['kind']}{'' if d['enabled'] else '，已停用'}）：{state}")
    click.echo(f"  复制槽 {d['slot']}  已确认位点 {d['confirmed_flush_lsn']}  检查点 {d['checkpoint_lsn']}")
    lag_s = d["lag_seconds"]
    click.echo(f"  延迟 {d['lag_bytes'] or 0} 字节 / {f'{lag_s:.1f}' if lag_s is not None else '-'} 秒"
               f"  保留 WAL {(d['wal_retained_bytes'] or 0) / 1024 / 1024:.1f} MB"
               + ("  ⚠ 超过告警阈值" if d["wal_retention_warning"] else ""))
    click.echo(f"  最近事件 {d['last_event_at'] or '-'}  最近确认 {d['last_ack_at'] or '-'}"
               f"  隔离待处理 {d['quarantined_held']}")
    refused = d["platform_refused"]
    if refused["held"]:
        last = refused["last"]
        click.echo(f"  ⚠ 平台拒收 {refused['held']} 条（已隔离，其余数据照常上报）；最近 {last['at']}："
                   f"{last['rule_id']} 表 {last['table']} 字段 {last['field'] or '-'}：{last['message']}"
                   f"（cdcsync quarantine list --rule {last['rule_id']}）")
    sends = d["sends_today"]
    if sends["attempts"]:
        click.echo(f"  今日发送 {sends['attempts']} 次，失败 {sends['failures']} 次，重试 {sends['retries']} 次"
                   + (f"；最近失败 {sends['last_failure_at']}：{sends['last_error']}" if sends["failures"] else ""))
    for table, n in d["events_today"].items():
        click.echo(f"    今日 {table}: {n}")
    for table, columns in d["dropped_columns"].items():
        listed = "，".join(f"{c} {n} 行" for c, n in columns.items())
        click.echo(f"  已去除的列（数据集规范未定义，未发送）emr.{table}：{listed}")


def _mb(value: int | None) -> str:
    return "未知" if value is None else f"{value / 1024 / 1024:.0f} MB"


def _print_dest_wal(d: dict[str, Any]) -> None:
    """The slot's WAL safety: wal_status, safe_wal_size and its warnings (a lost slot first)."""
    if d.get("wal_status") is not None:
        safe = d.get("safe_wal_size")
        click.echo(f"  WAL 状态 {d['wal_status']}  距离失效 {'不限' if safe is None else _mb(safe)}")
    for w in d.get("wal_warnings") or []:
        click.echo(f"  {'错误' if w['level'] == 'error' else '警告'}：{w['message']}")


def _print_wal(wal: dict[str, Any]) -> None:
    keep = wal["max_slot_wal_keep_size_mb"]
    vol = wal["volume"]
    free = "未知" if vol["free_bytes"] is None else f"{_mb(vol['free_bytes'])}（{vol['path']}）"
    click.echo(f"WAL：max_slot_wal_keep_size {'-1（不限）' if wal['unlimited'] else f'{keep} MB'}"
               f"  pg_wal 大小 {_mb(wal['pg_wal_bytes'])}  pg_wal 所在磁盘剩余 {free}")
    for w in wal["warnings"]:
        click.echo(f"警告：{w['message']}")


COMMANDS: list[click.Command] = [run_cmd, snapshot_cmd, slots_group, status_cmd]
