"""``cdcsync gen``: write synthetic hospital days into the emr.* mirror tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

INVALID_LABELS = {
    "bad_id_check_digit": "身份证号校验位错误",
    "unknown_local_code": "未映射的本地代码",
    "vital_out_of_range": "生命体征超出合理范围",
    "birth_after_visit": "出生日期晚于就诊时间",
    "discharge_before_admission": "出院时间早于入院时间",
}
BASE_TABLES = ("dept", "staff")


def _settings(ctx: click.Context, dsn: str | None) -> tuple[str, str | None, str | None, Any]:
    """(conninfo, org_code, hospital, mappings_dir) from --dsn and the config; config optional with --dsn."""
    from cdcsync.config import ConfigError

    app = ctx.find_object(_app_type())
    settings = None
    if app is not None:
        try:
            settings = app.settings
        except ConfigError:
            if dsn is None:
                raise
    if settings is None:
        if dsn is None:
            raise click.UsageError("请用 --dsn 指定数据库连接串，或用 -c 指定配置文件")
        return dsn, None, None, None
    return dsn or settings.database.conninfo(), settings.org_code, settings.hospital, settings.mappings_dir


def _app_type() -> type:
    from cdcsync.cli_context import AppContext

    return AppContext


@click.command("gen")
@click.option("--dsn", help="镜像库连接串（默认取配置文件 database.dsn）")
@click.option("--seed", type=int, default=1, show_default=True, help="随机种子：相同种子与日期生成完全相同的数据")
@click.option("--patients", type=click.IntRange(1, 1_000_000), default=2000, show_default=True, help="每日就诊人数")
@click.option("--days", type=click.IntRange(1, 3650), default=None, help="生成天数（默认 1；--rate 模式下默认不限）")
@click.option(
    "--date",
    "start",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="首个业务日期 YYYY-MM-DD（默认：使最后一天为昨天，其全部记录都已发生）",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="持续写入模式：每秒写入行数（每次就诊一个事务）",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="持续写入模式的时长（秒；默认直到 Ctrl-C）",
)
@click.option(
    "--invalid-ratio",
    type=click.FloatRange(0, 0.5),
    default=0.02,
    show_default=True,
    help="故意生成的不合规记录比例（供校验环节捕获）",
)
@click.option(
    "--live",
    is_flag=True,
    help="实时模式（配合 --rate）：每次就诊的业务时间取写入时刻，结束时更新当日 HIS 统计",
)
@click.option(
    "--nndrs-export",
    "nndrs_export",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="写完后把镜像库中的报告卡导出为大疫情网格式（GB18030 CSV），并故意放入已知差异（答案见 FILE.planted.json）",
)
@click.option("--hospital", default=None, help="本地代码表（mappings/local/<hospital>；默认取配置，否则 example）")
@click.option("--org-code", default=None, help="医疗机构代码（默认取配置 org_code）")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="同时加入监测预警场景，并把正确的规则引擎应生成的病例写入此文件（每行一个 JSON）",
)
@click.pass_context
def gen(
    ctx: click.Context,
    dsn: str | None,
    seed: int,
    patients: int,
    days: int | None,
    start: dt.datetime | None,
    rate: float | None,
    duration: float | None,
    invalid_ratio: float,
    live: bool,
    nndrs_export: Path | None,
    hospital: str | None,
    org_code: str | None,
    truth: Path | None,
) -> None:
    """生成模拟医院数据（门急诊、住院、诊断、检验、用药、病程、传染病报告卡等）写入 emr.* 镜像表。

    输出只含各表行数与各类故意错误的条数，不含任何患者信息。
    """
    import psycopg

    from cdcsync.extras import require_extra

    require_extra("sim")  # python-stdnum: valid county codes for the synthetic ID numbers

    from cdcsync.spec import load_spec
    from cdcsync.synth.hospital import Hospital, iter_days, load_codes
    from cdcsync.synth.load import Group, LoadError, drop_existing, load_bulk, load_steady
    from cdcsync.synth.site import backfill_day
    from cdcsync.validate.compiler import beijing_now

    if live and rate is None:
        raise click.UsageError("--live 需要与 --rate 一起使用")
    conninfo, cfg_org, cfg_hospital, mappings_dir = _settings(ctx, dsn)
    codes = load_codes(mappings_dir, hospital or cfg_hospital or "example")
    org = org_code or cfg_org
    if not org and "org" in codes.tables.local:
        org = next(iter(codes.tables.local["org"].map))  # the example hospital's own code
    if not org:
        raise click.UsageError("请用 --org-code 指定医疗机构代码")
    if truth is not None and rate is not None:
        raise click.UsageError("--truth 只用于批量生成，不能与 --rate 同时使用")
    now = beijing_now().replace(microsecond=0)  # the mirror records Beijing local time
    n_days = days if days is not None else (None if rate else 1)
    span = dt.timedelta(days=(n_days or 1) - 1)
    first = start.date() if start else backfill_day(now) - span
    last = first + span
    spec = load_spec()
    hosp = Hospital(codes, org, first, seed=seed, patients=patients, invalid_ratio=invalid_ratio, now=now,
                    surveillance=truth is not None)
    truth_rows: list[tuple[str, dict[str, Any]]] = []  # rule-relevant rows in the order they are written
    base = hosp.base_group(dt.datetime.combine(first, dt.time()) - dt.timedelta(days=30))
    counts: dict[str, int] = {}
    invalid = dict.fromkeys(INVALID_LABELS, 0)

    def tally(group: Group) -> None:
        for table, rows in group.rows.items():
            counts[table] = counts.get(table, 0) + len(rows)

    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            drop_existing(conn, spec, base, BASE_TABLES)
            if rate is None:
                for day in iter_days(hosp, first, n_days):
                    groups = [base, *day.groups] if day.date == first else day.groups
                    rows: dict[str, list[Any]] = {}
                    updates = []
                    for g in groups:
                        tally(g)
                        for table, batch in g.rows.items():
                            rows.setdefault(table, []).extend(batch)
                        updates.extend(g.updates)
                    load_bulk(conn, spec, rows, updates)
                    if truth is not None:
                        truth_rows.extend((t.name, r) for t in spec.tables for r in rows.get(t.name, ()))
                    for kind, keys in day.invalid.items():
                        invalid[kind] += len(keys)
                    click.echo(f"已写入 {day.date.isoformat()}：{sum(len(b) for b in rows.values())} 行", err=True)
            elif live:
                from cdcsync.synth.live import live_groups, update_daily_stats
                from cdcsync.synth.model import Census

                census = Census()
                click.echo(f"实时写入：目标 {rate:g} 行/秒，业务时间取写入时刻"
                           f"{'，时长 ' + format(duration, 'g') + ' 秒' if duration else '，按 Ctrl-C 结束'}", err=True)

                def live_counted() -> Iterator[Group]:
                    for g in live_groups(codes, org, seed=seed, patients=patients, census=census, clock=beijing_now,
                                         seconds=duration):
                        tally(g)
                        yield g

                res = load_steady(conn, spec, live_counted(), rate, None)
                stats_now = beijing_now().replace(microsecond=0)
                if not update_daily_stats(conn, codes, org, stats_now.date(), census, stats_now):
                    click.echo("镜像库中尚无今日的 HIS 每日统计，已按实时写入的就诊新建", err=True)
                click.echo(f"实时写入结束：{res.rows} 行，{res.transactions} 个事务，用时 {res.seconds:.1f} 秒"
                           f"{'（已中断）' if res.interrupted else ''}")
            else:

                def stream() -> Iterator[Group]:
                    yield base
                    for day in iter_days(hosp, first, n_days):
                        for kind, keys in day.invalid.items():
                            invalid[kind] += len(keys)
                        yield from day.groups

                def counted() -> Iterator[Group]:
                    for g in stream():
                        tally(g)
                        yield g

                click.echo(
                    f"持续写入：目标 {rate:g} 行/秒，"
                    f"{'时长 ' + format(duration, 'g') + ' 秒' if duration else '按 Ctrl-C 结束'}",
                    err=True,
                )
                res = load_steady(
                    conn,
                    spec,
                    counted(),
                    rate,
                    duration,
                    on_progress=lambda r: click.echo(
                        f"已写入 {r.rows} 行，{r.transactions} 个事务，{r.seconds:.0f} 秒", err=True
                    ),
                )
                click.echo(
                    f"持续写入结束：{res.rows} 行，{res.transactions} 个事务，用时 {res.seconds:.1f} 秒，"
                    f"平均 {res.rows / max(res.seconds, 1e-9):.0f} 行/秒"
                    f"{'（已中断）' if res.interrupted else ''}"
                )
            if nndrs_export is not None:
                from cdcsync.synth.nndrs_export import planted_path, write_export

                export_day = beijing_now().date() if live else last  # the cards just written
                planted = write_export(conn, codes, org, nndrs_export, export_day, seed=seed)
                click.echo(f"已写入大疫情网导出 {nndrs_export}：{planted.summary()}；"
                           f"答案见 {planted_path(nndrs_export)}")
    except LoadError as exc:
        raise click.ClickException(str(exc)) from None
    except psycopg.OperationalError as exc:
        raise click.ClickException(
            f"无法连接镜像库：{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None

    if truth is not None:
        n_truth = _write_truth(ctx, truth, truth_rows, org, mappings_dir, hospital or cfg_hospital or "example")
        click.echo(f"真值：正确的规则引擎应生成 {n_truth} 个待处理病例，已写入 {truth}")
    click.echo(
        f"模拟医院数据（种子 {seed}，首日 {first.isoformat()}，每日 {patients} 人次，代码表 {codes.tables.hospital}）："
    )
    for table in spec.table_names:
        if counts.get(table):
            click.echo(f"  emr.{table:<22} {counts[table]:>8} 行")
    click.echo("故意生成的不合规记录（仅计数）：")
    for kind, label in INVALID_LABELS.items():
        click.echo(f"  {label:<12} {invalid[kind]:>6} 条")


def _write_truth(ctx: click.Context, path: Path, rows: list[tuple[str, dict[str, Any]]], org: str,
                 mappings_dir: Any, hospital: str) -> int:
    """The ground truth over ``rows``: each row through the stream's validation and mapping stage
    (invalid rows drop out, as the stream quarantines them), then :mod:`cdcsync.synth.truth`."""
    import datetime as dt

    from cdcsync.event import Change, Event
    from cdcsync.surveil.pack import PackError, load_pack
    from cdcsync.synth.truth import expected_cases, write_truth
    from cdcsync.validate.reload import RulesHolder
    from cdcsync.validate.stage import ValidationStage

    app = ctx.find_object(_app_type())
    pack_path = None
    if app is not None:
        from cdcsync.surveil.cli import configured_pack_path

        pack_path = configured_pack_path(app)
    try:
        pack = load_pack(pack_path)
    except PackError as exc:
        raise click.ClickException(str(exc)) from None
    holder = RulesHolder.load(mappings_dir, hospital)
    stage = ValidationStage(holder, org, "truth")
    tables = holder.current().tables
    now = dt.datetime.now(dt.UTC)
    mapped: list[tuple[str, dict[str, Any]]] = []
    for n, (table, row) in enumerate(rows):
        if table not in ("diagnosis", "lab_result", "drug_order", "death_record", "report_card"):
            continue
        full = {name: row.get(name) for name in tables[table].table.field_names}
        out = stage(Change("c", "emr", table, None, full, 1, 1, now, n))
        if isinstance(out, Event) and out.after is not None:
            mapped.append((table, out.after))
    try:
        return write_truth(path, expected_cases(pack, mapped))
    except OSError as exc:
        raise click.ClickException(f"{path}: 无法写入真值文件（{exc.strerror or type(exc).__name__}）") from None
