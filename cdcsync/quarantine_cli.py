"""CLI: ``quarantine list|show|retry``, ``mappings check``, ``validate``.

Registered on the main group by the lead (``COMMANDS``). Output for hospital staff is Chinese;
nothing here prints a patient value (``show`` masks the pii fields of the raw row).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson
import psycopg

from cdcsync.cli_context import AppContext, pass_app
from cdcsync.config import ConfigError, Settings

_SINCE_HELP = "只看此时间之后（最近一次发现时间）的条目，如 2026-11-20 或 2026-11-20T08:00"


def _settings(app: AppContext) -> Settings | None:
    """The settings, or None when no config file was given and none is needed (--dsn etc.)."""
    if app.config_path is None:
        try:
            return app.settings
        except ConfigError:
            return None
    return app.settings  # a named config file that is wrong is an error worth seeing


def _mappings(app: AppContext, mappings_dir: str | None, hospital: str | None) -> tuple[Path | None, str]:
    settings = _settings(app)
    root = Path(mappings_dir) if mappings_dir else (settings.mappings_dir if settings else None)
    return root, hospital or (settings.hospital if settings else "example")


def _conninfo(app: AppContext, dsn: str | None) -> str:
    if dsn:
        return dsn
    settings = _settings(app)
    if settings is None:
        raise click.UsageError("请用 -c 指定配置文件，或用 --dsn 给出数据库连接串")
    return settings.database.conninfo()


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"应为日期或日期时间（如 2026-11-20 或 2026-11-20T08:00），实际为 {value!r}",
                                 param_hint="--since") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
    return parsed


def _dumps(obj: Any) -> str:
    from cdcsync.event import dumps

    return dumps(obj).decode()


@contextlib.contextmanager
def _db_errors() -> Iterator[None]:
    """A database error becomes one line for the operator, not a traceback."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        first = str(exc).strip().splitlines()[0]
        raise click.ClickException(f"数据库中缺少所需的表（{first}）；请先执行 cdcsync db init") from None
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"数据库错误：{first}") from None


def _connect(conninfo: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"无法连接镜像库：{str(exc).strip().splitlines()[0]}") from None


# --- quarantine ---------------------------------------------------------------------------------


@click.group("quarantine")
def quarantine_group() -> None:
    """隔离区：查看未通过校验或代码映射的记录，修正后重试。"""


def _filters(table: str | None, rule: str | None, since: str | None, destination: str | None,
             status: str | None) -> Any:
    from cdcsync.quarantine import Filters

    return Filters(table=table, rule=rule, since=_since(since), destination=destination,
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
    from cdcsync.quarantine import counts, list_entries

    f = _filters(table, rule, since, destination, status)
    with _db_errors(), _connect(_conninfo(app, dsn)) as conn:
        entries = list_entries(conn, f, limit)
        totals = counts(conn, f)
    if as_json:
        click.echo(_dumps({"entries": [e.summary() for e in entries],
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
    from cdcsync.quarantine import find_entry, masked_row
    from cdcsync.spec import load_spec

    with _db_errors(), _connect(_conninfo(app, dsn)) as conn:
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
        click.echo(_dumps(data))
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
    from cdcsync.mapping.reload import RulesHolder
    from cdcsync.quarantine import retry
    from cdcsync.sink import SinkError, build_sink
    from cdcsync.validate.stage import transform_for

    settings = app.settings
    dests = [settings.destination(destination)] if destination else list(settings.destinations)
    root, hospital = _mappings(app, mappings_dir, None)
    stage = transform_for(settings, RulesHolder.load(root, hospital))  # the daemon's own stage
    rules = stage.rules
    sinks = {d.name: build_sink(d) for d in dests}
    try:
        with _db_errors(), _connect(_conninfo(app, dsn)) as conn:
            result = retry(conn, stage, sinks, _filters(table, rule, since, destination, "held"))
    except SinkError as exc:
        raise click.ClickException(f"目的地暂时无法接收：{exc}；未能投递的条目保持待处理，可稍后重试") from None
    finally:
        for s in sinks.values():
            s.close()
    if as_json:
        click.echo(_dumps({"mapping_version": rules.mapping_version, "released": result.released,
                           "still_held": result.still_held, "discarded": result.discarded,
                           "rejected_by_destination": result.rejected_by_sink}))
        return
    click.echo(f"重试 {result.total} 条（映射版本 {rules.mapping_version}）：已重发 {len(result.released)} 条，"
               f"仍未通过 {len(result.still_held)} 条，记录已不存在而放弃 {len(result.discarded)} 条，"
               f"目的地拒收 {len(result.rejected_by_sink)} 条")


# --- mappings check -------------------------------------------------------------------------------


@click.group("mappings")
def mappings_group() -> None:
    """本院代码对照：上线前检查。"""


@mappings_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@click.option("--dsn", help="数据库连接串（默认取配置文件 database.dsn）")
@click.option("--no-data", is_flag=True, help="只检查对照表文件，不查询镜像库中的数据")
@click.option("--mappings-dir", type=click.Path(file_okay=False), help="值域代码目录（默认取配置）")
@click.option("--hospital", help="本院对照表目录名（默认取配置 hospital）")
@pass_app
def mappings_check(app: AppContext, as_json: bool, dsn: str | None, no_data: bool, mappings_dir: str | None,
                   hospital: str | None) -> None:
    """检查值域代码有无缺漏：数据中未对照的本地代码（含行数）、没有本地对照表的值域、对照到无效国家代码的条目。
    有缺漏时退出码为 1。"""
    from cdcsync.mapping.coverage import check_coverage, format_text
    from cdcsync.mapping.domains import load_code_tables
    from cdcsync.spec import load_spec

    root, hosp = _mappings(app, mappings_dir, hospital)
    tables = load_code_tables(root, hosp, strict=False)
    spec = load_spec()
    if no_data:
        report = check_coverage(tables, spec, None)
    else:
        with _db_errors(), _connect(_conninfo(app, dsn)) as conn:
            report = check_coverage(tables, spec, conn)
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(format_text(report))
    sys.exit(0 if report.ok else 1)


# --- validate -----------------------------------------------------------------------------------


@click.command("validate")
@click.option("--table", "-t", "tables", multiple=True, help="只检查这些表（可重复）")
@click.option("--limit", type=int, help="每张表最多检查行数")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@click.option("--dsn", help="数据库连接串（默认取配置文件 database.dsn）")
@click.option("--mappings-dir", type=click.Path(file_okay=False), help="值域代码目录（默认取配置）")
@pass_app
def validate_cmd(app: AppContext, tables: tuple[str, ...], limit: int | None, as_json: bool, dsn: str | None,
                 mappings_dir: str | None) -> None:
    """校验镜像库中已有的数据（上线前由 HIS 厂商执行）：按表、按规则汇总，附示例主键，不显示数据内容。
    有不合格记录时退出码为 1。"""
    from cdcsync.mapping.reload import build_validators
    from cdcsync.spec import load_spec
    from cdcsync.validate.bulk import estimate_rows, format_text, validate_table

    spec = load_spec()
    for t in tables:
        if not spec.has_table(t):
            raise click.BadParameter(f"数据集规范中没有表 {t!r}（可选：{', '.join(spec.table_names)}）",
                                     param_hint="--table")
    names = list(tables) or list(spec.table_names)
    root, hosp = _mappings(app, mappings_dir, None)
    rules = build_validators(root, hosp, spec)
    summaries = []
    with _db_errors(), _connect(_conninfo(app, dsn)) as conn:
        tty = sys.stderr.isatty() and not as_json
        if tty:
            total = estimate_rows(conn, names)
            if limit is not None:
                total = min(total, limit * len(names))
            with click.progressbar(length=max(total, 1), label="校验中", file=sys.stderr) as bar:
                for t in names:
                    summaries.append(validate_table(conn, rules, t, limit, progress=bar.update))
        else:
            for t in names:
                summaries.append(validate_table(conn, rules, t, limit))
    failed = sum(s.failed for s in summaries)
    if as_json:
        click.echo(_dumps({"mapping_version": rules.mapping_version, "spec_version": rules.spec_version,
                           "rows": sum(s.rows for s in summaries), "failed": failed,
                           "tables": [s.as_dict() for s in summaries]}))
    else:
        click.echo(format_text(summaries, spec))
    sys.exit(1 if failed else 0)


COMMANDS: list[click.Command] = [quarantine_group, mappings_group, validate_cmd]
