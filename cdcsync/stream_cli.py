"""CLI commands of the CDC engine: ``run``, ``snapshot``, ``slots list|drop``, ``status``.

Registered on the main group by the lead (``COMMANDS``).
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from cdcsync.cli import AppContext, pass_app


@click.command("run")
@pass_app
def run_cmd(app: AppContext) -> None:
    """运行数据同步服务：为每个启用的目的地读取复制流并投递（Ctrl-C / SIGTERM 安全退出）。"""
    from cdcsync.daemon import run

    sys.exit(run(app.settings))


@click.command("snapshot")
@click.option("--destination", "-d", required=True, help="目的地名称")
@click.option("--table", "-t", "tables", multiple=True, help="只读取这些表（emr 下的表名，可重复）")
@pass_app
def snapshot_cmd(app: AppContext, destination: str, tables: tuple[str, ...]) -> None:
    """全量快照：读取镜像表现有数据并投递到目的地（首次为初始快照，之后为补发）。"""
    from cdcsync.pipeline import Pipeline, SnapshotRefused

    dest = app.settings.destination(destination)
    pipe = Pipeline(app.settings, dest)
    try:
        n = pipe.snapshot_once(list(tables) or None)
    except (SnapshotRefused, LookupError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    click.echo(f"快照完成：目的地 {destination}，共 {n} 条记录")


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
        conn.execute("UPDATE cdcsync.checkpoint SET snapshot_done = false, acked_lsn = '0/0', updated_at = now()"
                     " WHERE destination = %s", (dest,))
    click.echo(f"已删除复制槽 {name}")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def status_cmd(app: AppContext, as_json: bool) -> None:
    """各目的地的同步状态：位点、延迟、保留的 WAL、今日事件数、隔离数。"""
    from cdcsync.status import collect_status

    st = collect_status(app.settings)
    if as_json:
        click.echo(orjson.dumps(st, option=orjson.OPT_INDENT_2).decode())
        return
    for d in st["destinations"]:
        _print_dest(d)
    for s in st["orphan_slots"]:
        click.echo(f"警告：复制槽 {s['name']} 不属于任何已配置的目的地，仍在保留 WAL（cdcsync slots drop {s['name']}）")
    for warning in st.get("listener_warnings", []):
        click.echo(f"警告：{warning}")
    if st.get("sm2_backend"):  # detected in this process; the daemon started the same way picks the same
        click.echo(f"SM2 实现：{st['sm2_backend']['backend']}（{st['sm2_backend']['reason']}）")


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
    sends = d["sends_today"]
    if sends["attempts"]:
        click.echo(f"  今日发送 {sends['attempts']} 次，失败 {sends['failures']} 次，重试 {sends['retries']} 次"
                   + (f"；最近失败 {sends['last_failure_at']}：{sends['last_error']}" if sends["failures"] else ""))
    for table, n in d["events_today"].items():
        click.echo(f"    今日 {table}: {n}")


COMMANDS: list[click.Command] = [run_cmd, snapshot_cmd, slots_group, status_cmd]
