"""CLI: ``quarantine list|show|retry``.

Output for hospital staff is Chinese; nothing here prints a patient value (``show`` masks the pii
fields of the raw row).
"""

from __future__ import annotations

from typing import Any

import click

from cdcsync.cli_context import (
    AppContext,
    connect_autocommit,
    conninfo,
    db_errors,
    dumps_text,
    parse_since,
    pass_app,
)
from cdcsync.mapping.cli import mapping_layers

_SINCE_HELP = "只看此时间之后（最近一次发现时间）的条目，如 2026-11-20 或 2026-11-20T08:00"


# --- quarantine ---------------------------------------------------------------------------------


@click.group("quarantine")
def quarantine_group() -> None:
    """隔离区：查看未通过校验或代码映射的记录，修正后重试。"""


def _filters(table: str | None, rule: str | None, since: str | None, destination: str | None,
             status: str | None) -> Any:
    from cdcsync.quarantine.store import Filters

    return Filters(table=table, rule=rule, since=parse_since(since), destination=destination,
                   status=None if status == "all" else status)


_common = [
    click.option("--table", "-t", help="只看此镜像表"),
    click.option("--rule", "-r", help="只看此规则编号（如 MAP001、VS001）"),
    click.option("--since", help=_SINCE_HELP),
    click.option("--destination", "-d", help="只看此目的地"),
    click.option("--dsn", help="数据库连接串（默认取配置文件 database.dsn）"),
]


def _with_common(fn: Any) -> Any:
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


@quarantine_group.command("list")
@_with_common
@click.option("--status", type=click.Choice(["held", "released", "discarded", "all"]), default="held",
              show_default=True, help="按状态筛选")
@click.option("--limit", type=int, default=200, show_default=True, help="最多列出条数")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def quarantine_list(app: AppContext, table: str | None, rule: str | None, since: str | None,
                    destination: str | None, dsn: str | None, status: str, limit: int, as_json: bool) -> None:
    """列出隔离区条目（不显示记录内容）。"""
    from cdcsync.quarantine.store import counts, list_entries

    f = _filters(table, rule, since, destination, status)
    with db_errors(), connect_autocommit(conninfo(app, dsn)) as conn:
        entries = list_entries(conn, f, limit)
        totals = counts(conn, f)
    if as_json:
        click.echo(dumps_text({"entries": [e.summary() for e in entries],
                           "counts": [{"table": t, "rule_id": r, "status": s, "count": n}
                                      for (t, r, s), n in totals.items()]}))
        return
    if not entries:
        click.echo("隔离区中没有符合条件的条目。")
        return
    for e in entries:
        pk = ",".join(f"{k}={v}" for k, v in e.primary_key.items())
        click.echo(f"{e.event_id}  [{e.destination}] {e.table_name}  {pk}")
        click.echo(f"    {e.rule_id} {e.field or '-'}：{e.message}")
        click.echo(f"    处理 {e.attempts} 次，状态 {e.status}，首次 {e.first_seen:%Y-%m-%d %H:%M:%S}，"
                   f"最近 {e.last_seen:%Y-%m-%d %H:%M:%S}")
    shown = len(entries)
    total = sum(totals.values())
    click.echo(f"共 {total} 条" + (f"（仅列出前 {shown} 条，可用 --limit 调整）" if total > shown else ""))


@quarantine_group.command("show")
@click.argument("event_id")
@click.option("--destination", "-d", help="目的地（同一事件在多个目的地被隔离时必填）")
@click.option("--dsn", help="数据库连接串（默认取配置文件 database.dsn）")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def quarantine_show(app: AppContext, event_id: str, destination: str | None, dsn: str | None,
                    as_json: bool) -> None:
    """显示一个隔离条目（含原始记录，患者身份信息以 *** 遮盖）。EVENT_ID 可为事件标识的末尾部分。"""
    from cdcsync.quarantine.store import find_entry, masked_row
    from cdcsync.spec import load_spec

    with db_errors(), connect_autocommit(conninfo(app, dsn)) as conn:
        found = find_entry(conn, event_id, destination)
    if not found:
        raise click.ClickException(f"隔离区中没有事件 {event_id}")
    if len(found) > 1:
        where = "、".join(f"{e.event_id}[{e.destination}]" for e in found[:5])
        raise click.ClickException(f"{event_id} 对应多个条目（{where}），请给出完整事件标识或 --destination")
    e = found[0]
    spec = load_spec()
    data = {**e.summary(), "raw_row": masked_row(spec, e.table_name, e.raw_row)}
    if as_json:
        click.echo(dumps_text(data))
        return
    for k, v in data.items():
        if k != "raw_row":
            click.echo(f"{k}: {v}")
    click.echo("raw_row:")
    for k, v in (data["raw_row"] or {}).items():
        click.echo(f"  {k}: {v}")


@quarantine_group.command("retry")
@_with_common
@click.option("--mappings-dir", type=click.Path(file_okay=False), help="值域代码目录（默认取配置）")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出结果")
@pass_app
def quarantine_retry(app: AppContext, table: str | None, rule: str | None, since: str | None,
                     destination: str | None, dsn: str | None, mappings_dir: str | None, as_json: bool) -> None:
    """重试待处理（held）的条目：按主键重读镜像库中的当前记录，用现行映射重新校验，通过的以原事件标识投递。"""
    from cdcsync.quarantine.store import retry
    from cdcsync.sink import SinkError, build_sink
    from cdcsync.validate.reload import RulesHolder
    from cdcsync.validate.stage import transform_for

    settings = app.settings
    dests = [settings.destination(destination)] if destination else list(settings.destinations)
    layers = mapping_layers(app, mappings_dir, None)
    holder = RulesHolder.for_layers(layers)
    stage = transform_for(settings, holder)  # the daemon's own stage
    rules = holder.current()  # the set the stage starts with
    sinks = {d.name: build_sink(d) for d in dests}
    try:
        with db_errors(), connect_autocommit(conninfo(app, dsn)) as conn:
            result = retry(conn, stage, sinks, _filters(table, rule, since, destination, "held"), spec=holder.spec)
    except SinkError as exc:
        raise click.ClickException(f"目的地暂时无法接收：{exc}；未能投递的条目保持待处理，可稍后重试") from None
    finally:
        for s in sinks.values():
            s.close()
    if as_json:
        click.echo(dumps_text({"mapping_version": rules.mapping_version, "released": result.released,
                           "still_held": result.still_held, "discarded": result.discarded,
                           "rejected_by_destination": result.rejected_by_sink}))
        return
    click.echo(f"重试 {result.total} 条（映射版本 {rules.mapping_version}）：已重发 {len(result.released)} 条，"
               f"仍未通过 {len(result.still_held)} 条，记录已不存在而放弃 {len(result.discarded)} 条，"
               f"目的地拒收 {len(result.rejected_by_sink)} 条")


COMMANDS: list[click.Command] = [quarantine_group]
