"""``cdcsync nndrs import`` and ``cdcsync reconcile``; the lead registers everything in ``COMMANDS``."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click
import psycopg

from cdcsync.beijing import BEIJING


def _settings(dsn: str | None) -> Any | None:
    """The loaded settings; with --dsn a missing or broken config is tolerated (mappings use defaults)."""
    obj = click.get_current_context().find_root().obj
    if obj is None or not hasattr(type(obj), "settings"):  # hasattr(obj) would load the config
        return None
    if dsn is None:
        return obj.settings  # a ConfigError is shown by the main group as one line
    try:
        return obj.settings
    except Exception:  # noqa: BLE001 - config is optional when --dsn is given
        return None


def _conninfo(dsn: str | None, settings: Any | None) -> str:
    if dsn:
        return dsn
    if settings is None:
        raise click.UsageError("请用 --dsn 指定数据库连接串，或用 -c 指定配置文件")
    return str(settings.database.conninfo())


def _connect(conninfo: str) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(f"错误：无法连接数据库（{first}）", err=True)
        sys.exit(2)


def _sync_codes(conn: psycopg.Connection, settings: Any | None, mappings_dir: Path | None,
                hospital: str | None) -> Any | None:
    """Refresh recon.code_map & co. from the mapping files; on failure keep what the database has."""
    from cdcsync.mapping.domains import MappingError
    from cdcsync.mapping.layers import MappingLayers
    from cdcsync.recon.codemap import sync_reference

    try:
        tables = MappingLayers.resolve(settings, mappings_dir, hospital).load()
    except (MappingError, OSError) as exc:
        click.echo(f"警告：代码对照表未能加载，沿用数据库中已有的对照（{exc}）", err=True)
        return None
    sync_reference(conn, tables)
    return tables


def _missing_schema(exc: psycopg.Error) -> None:
    click.echo(f"错误：数据库中缺少对账所需的表或视图（{type(exc).__name__}）；请先执行 cdcsync db init", err=True)
    sys.exit(2)


_COMMON = [
    click.option("--dsn", help="数据库连接串（默认取配置文件 database.dsn）"),
    click.option("--mappings-dir", type=click.Path(file_okay=False, path_type=Path),
                 help="代码对照表目录（默认取配置文件 mappings_dir）"),
    click.option("--hospital", help="本院对照表子目录名（默认取配置文件 hospital）"),
]


def _common(f: Any) -> Any:
    for option in reversed(_COMMON):
        f = option(f)
    return f


@click.group()
def nndrs() -> None:
    """大疫情网（NNDRS）报告卡：导入导出文件，用于每日比对。"""


@nndrs.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--columns", "columns_file", type=click.Path(dir_okay=False, path_type=Path),
              help="列映射文件（省级导出列名不同时使用，格式见 cdcsync/recon/nndrs_columns.yaml）")
@_common
def nndrs_import(file: Path, columns_file: Path | None, dsn: str | None, mappings_dir: Path | None,
                 hospital: str | None) -> None:
    """导入大疫情网报告卡导出文件（CSV，UTF-8 或 GBK），按卡片ID更新，可重复导入。

    格式错误的行会给出行号和原因并跳过，其余照常导入；有跳过的行时退出码为 1。
    """
    from cdcsync.recon.nndrs import NndrsImportError, import_file, load_column_mapping

    settings = _settings(dsn)
    try:
        mapping = load_column_mapping(columns_file)
    except NndrsImportError as exc:
        click.echo(f"错误：{exc}", err=True)
        sys.exit(2)
    with _connect(_conninfo(dsn, settings)) as conn:
        tables = _sync_codes(conn, settings, mappings_dir, hospital)
        try:
            summary = import_file(conn, file, mapping, tables)
        except NndrsImportError as exc:
            click.echo(f"错误：{exc}", err=True)
            sys.exit(2)
        except psycopg.errors.UndefinedTable as exc:
            _missing_schema(exc)
        covered = _close_cases(conn, settings)
    for problem in summary.errors:
        click.echo(f"{file.name} 第 {problem.line} 行：{problem.message}，已跳过", err=True)
    for problem in summary.warnings:
        click.echo(f"{file.name} 第 {problem.line} 行：{problem.message}", err=True)
    click.echo(summary.text())
    if covered:
        click.echo(f"监测预警：{covered} 个待处理病例已有大疫情网报告卡，已结案（已报卡）")
    if summary.errors:
        sys.exit(1)


def _close_cases(conn: psycopg.Connection[Any], settings: Any) -> int:
    """Open early-warning cases the imported cards cover → 已报卡 (cdcsync.surveil.nndrs)."""
    from cdcsync.surveil.nndrs import close_by_nndrs
    from cdcsync.surveil.pack import PackError, load_pack

    path = None
    if settings is not None:
        from cdcsync.control.kinds import rules_pack_path

        path = rules_pack_path(settings)
    try:
        pack = load_pack(path)
    except PackError as exc:
        click.echo(f"警告：规则包无法加载，未核对监测预警病例：{exc}", err=True)
        return 0
    try:
        with conn.transaction():
            return close_by_nndrs(conn, pack)
    except psycopg.errors.UndefinedTable:
        return 0  # a mirror without the case tables (migration 030)


def _yesterday() -> dt.date:
    return dt.datetime.now(BEIJING).date() - dt.timedelta(days=1)


@click.command("reconcile")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="对账日期 YYYY-MM-DD（默认昨天，北京时间）")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True,
              help="输出格式")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="写入文件（默认输出到屏幕）")
@_common
@click.option("--max-card-mismatches", type=click.IntRange(min=0), default=0, show_default=True,
              help="允许的报告卡不一致张数（仅一方存在 + 内容不一致）")
@click.option("--min-timely-share", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="各时效分类时限内确认比例的下限")
@click.option("--max-visit-diff-pct", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="门急诊人次与 HIS 统计之差的上限（百分比）")
@click.option("--max-not-delivered", type=click.IntRange(min=0), default=None,
              help="每个目的地当日未投递记录数上限（默认不检查）")
@click.option("--max-inpatient-change-pct", type=click.FloatRange(min=0), default=50.0, show_default=True,
              help="在院传染病患者数与前 7 日平均之差的上限（百分比）")
@click.option("--match-window-days", type=click.IntRange(0, 60), default=None,
              help="报告卡按患者身份配对时诊断日期允许相差的天数"
                   "（默认取数据库参数 cdcsync.card_match_window_days，未设为 3）")
def reconcile(day: dt.datetime | None, fmt: str, out: Path | None, dsn: str | None, mappings_dir: Path | None,
              hospital: str | None, max_card_mismatches: int, min_timely_share: float, max_visit_diff_pct: float,
              max_not_delivered: int | None, max_inpatient_change_pct: float, match_window_days: int | None) -> None:
    """每日对账报告：记录数、门急诊人次、传染病住院、报告卡比对、及时性、传输状态。

    超出任一容差时退出码为 1（便于定时任务告警），正常为 0。
    """
    from cdcsync.recon.report import RENDERERS, Tolerances, build_report

    settings = _settings(dsn)
    tolerances = Tolerances(max_card_mismatches, min_timely_share, max_visit_diff_pct, max_not_delivered,
                            max_inpatient_change_pct)
    the_day = day.date() if day else _yesterday()
    with _connect(_conninfo(dsn, settings)) as conn:
        _sync_codes(conn, settings, mappings_dir, hospital)
        if match_window_days is not None:
            conn.execute("SELECT set_config('cdcsync.card_match_window_days', %s, false)", (str(match_window_days),))
        try:
            report = build_report(conn, the_day, tolerances)
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
            _missing_schema(exc)
    text = RENDERERS[fmt](report)
    if out:
        out.write_text(text, encoding="utf-8")
        click.echo(f"已写入 {out}：{'正常' if report['ok'] else '超出容差 ' + str(len(report['alerts'])) + ' 项'}",
                   err=True)
    else:
        click.echo(text, nl=False)
    if not report["ok"]:
        sys.exit(1)


COMMANDS: list[click.Command] = [nndrs, reconcile]
