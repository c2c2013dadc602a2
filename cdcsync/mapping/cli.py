"""``cdcsync codes …`` (list, show and import national value domains, 值域代码) and ``cdcsync mappings check``."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from cdcsync.cli_context import AppContext, connect_autocommit, conninfo, db_errors, optional_settings, pass_app
from cdcsync.mapping.domains import (
    LAYER_PUSHED,
    LAYER_SHIPPED,
    MappingError,
    ValueDomain,
    default_mappings_dir,
    display_path,
    load_local,
    load_national,
    load_national_layers,
    standard_ref,
)
from cdcsync.mapping.importer import ENCODINGS, CodeImportError, import_csv
from cdcsync.mapping.layers import MappingLayers


def mapping_layers(app: AppContext, mappings_dir: str | None, hospital: str | None) -> MappingLayers:
    """The mapping layers the daemon uses (shipped, pushed, local; cdcsync.mapping.layers), with
    ``--mappings-dir`` / ``--hospital`` overriding the configuration."""
    return MappingLayers.resolve(optional_settings(app), Path(mappings_dir) if mappings_dir else None, hospital)


def _fail(exc: MappingError) -> None:
    click.echo(f"错误：{exc}", err=True)
    for line in getattr(exc, "problems", [])[1:21]:
        click.echo(f"  {line}", err=True)
    extra = len(getattr(exc, "problems", [])) - 21
    if extra > 0:
        click.echo(f"  …… 另有 {extra} 行错误", err=True)
    sys.exit(2)


def _resolve_dir(ctx: click.Context, explicit: Path | None) -> Path:
    """--mappings-dir / $CDCSYNC_MAPPINGS_DIR, else the config file's mappings_dir, else the default."""
    if explicit is not None:
        return explicit
    app: Any = ctx.find_root().obj
    if app is not None and getattr(app, "config_path", None):
        configured = getattr(app.settings, "mappings_dir", None)
        if configured:
            return Path(configured)
    return default_mappings_dir()


def _hospital(ctx: click.Context, explicit: str | None) -> str | None:
    if explicit:
        return explicit
    app: Any = ctx.find_root().obj
    if app is not None and getattr(app, "config_path", None):
        return str(getattr(app.settings, "hospital", "") or "") or None
    return None


@click.group("codes")
@click.option("--mappings-dir", type=click.Path(file_okay=False, path_type=Path), envvar="CDCSYNC_MAPPINGS_DIR",
              help="值域代码目录（默认：配置文件 mappings_dir，或程序旁的 mappings/）")
@click.pass_context
def codes(ctx: click.Context, mappings_dir: Path | None) -> None:
    """值域代码：国家值域与本院对照表（查看、导入官方完整代码表）。"""
    ctx.meta["cdcsync.mappings_dir"] = mappings_dir


def _dir(ctx: click.Context) -> Path:
    return _resolve_dir(ctx, ctx.meta.get("cdcsync.mappings_dir"))


def _layered_settings(ctx: click.Context) -> Any:
    """The settings when a config file is in use and no --mappings-dir overrides it (then the
    national domains are layered: shipped + pushed/imported, cdcsync.mapping.layers)."""
    if ctx.meta.get("cdcsync.mappings_dir") is not None:
        return None
    app: Any = ctx.find_root().obj
    if app is None or not getattr(app, "config_path", None):
        return None
    return app.settings


def _national(ctx: click.Context) -> dict[str, ValueDomain]:
    settings = _layered_settings(ctx)
    if settings is None:
        return load_national(_dir(ctx))
    layers = MappingLayers.from_settings(settings)
    return load_national_layers(layers.mappings_dir, layers.pushed_dir)


def _local_root(ctx: click.Context) -> Path:
    settings = _layered_settings(ctx)
    return MappingLayers.from_settings(settings).local_dir if settings is not None else _dir(ctx)


@codes.command("list")
@click.option("--hospital", help="同时显示该医院对照表的条目数（mappings/local/<hospital>/）")
@click.pass_context
def list_cmd(ctx: click.Context, hospital: str | None) -> None:
    """列出全部国家值域：代码条数、是否子集、来源标准与版本日期。"""
    root = _dir(ctx)
    try:
        national = _national(ctx)
        hosp = _hospital(ctx, hospital)
        local = load_local(_local_root(ctx), hosp) if hosp else {}
    except MappingError as exc:
        _fail(exc)
        return
    head = (f"{'值域':<20}{_pad('名称', 14)}{'条数':>4}  {_pad('子集', 4)}{_pad('版本日期', 12)}"
            f"{_pad('来源', 10)}来源标准")
    if hosp:
        head += f"  [{hosp} 对照条数]"
    click.echo(head)
    for d in sorted(national.values(), key=lambda d: d.id):
        line = (f"{d.id:<22}{_pad(d.name, 14)}{len(d):>6}  {'是' if d.subset else '否':<4}"
                f"{d.version_date.isoformat():<12}{_pad(_LAYER.get(d.layer, d.layer), 10)}{standard_ref(d.standard)}")
        if hosp:
            t = local.get(d.id)
            line += f"  [{len(t.map) if t else '无对照表'}{'+直通' if t and t.passthrough else ''}]"
        click.echo(line)
    click.echo(f"共 {len(national)} 个值域，目录 {display_path(root)}")


_LAYER = {LAYER_SHIPPED: "随版本发布", LAYER_PUSHED: "下发/导入"}


def _pad(text: str, width: int) -> str:
    """Left-justify counting CJK characters as two columns."""
    w = sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)
    return text + " " * max(1, width - w)


@codes.command("show")
@click.argument("domain_id")
@click.option("--hospital", help="同时显示该医院的本地代码对照")
@click.option("--limit", type=int, default=0, help="最多显示多少条代码（0 表示全部）")
@click.pass_context
def show_cmd(ctx: click.Context, domain_id: str, hospital: str | None, limit: int) -> None:
    """显示一个值域的来源标准和全部代码。"""
    try:
        national = _national(ctx)
        if domain_id not in national:
            raise MappingError(f"没有值域 {domain_id!r}；可用 `cdcsync codes list` 查看全部值域")
        d = national[domain_id]
        table = load_local(_local_root(ctx), hospital).get(domain_id) if hospital else None
    except MappingError as exc:
        _fail(exc)
        return
    click.echo(f"值域：{d.id}（{d.name}）")
    click.echo(f"来源标准：{d.standard}")
    kind = "代表性子集" if d.subset else "完整代码表"
    click.echo(f"版本日期：{d.version_date.isoformat()}    条数：{len(d)}    {kind}"
               f"    来源：{_LAYER.get(d.layer, d.layer)}")
    if d.source_note:
        click.echo(f"说明：{d.source_note}")
    shown = list(d)[: limit or None]
    for c in shown:
        attrs = "  ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in c.attrs.items())
        click.echo(f"  {c.code}\t{c.name}" + (f"\t{attrs}" if attrs else ""))
    if len(shown) < len(d):
        click.echo(f"  …… 另有 {len(d) - len(shown)} 条")
    if hospital:
        if table is None:
            click.echo(f"医院 {hospital} 没有 {d.id} 的对照表")
        else:
            mode = "国家代码可直通" if table.passthrough else "不直通"
            click.echo(f"医院 {hospital} 对照（{len(table.map)} 条，{mode}）：")
            for k, v in table.map.items():
                now = d.resolve(v)
                mark = "" if now == v else f"  → 新版本代码 {now}" if now else "  ← 国家代码不存在"
                click.echo(f"  {k} -> {v} {d.name_of(v) or ''}{mark}")


@codes.command("import")
@click.option("--domain", "domain_id", required=True, help="要替换的值域 id，如 icd10、region、drug")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--code-column", help="代码所在列（表头名或从 1 开始的列号；默认识别 code/代码/编码，否则第 1 列）")
@click.option("--name-column", help="名称所在列（表头名或列号；默认识别 name/名称/值含义，否则第 2 列）")
@click.option("--attr", "attrs", multiple=True, help="额外保留为属性的列（表头名，可重复）")
@click.option("--encoding", type=click.Choice(ENCODINGS), default="auto", show_default=True,
              help="文件编码；auto 自动识别 UTF-8 / GBK(GB18030)")
@click.option("--version-date", type=click.DateTime(formats=["%Y-%m-%d"]), help="新代码表的版本日期（默认沿用原文件）")
@click.option("--subset", is_flag=True, help="导入的仍只是子集（默认视为完整代码表）")
@click.pass_context
def import_cmd(ctx: click.Context, domain_id: str, csv_file: Path, code_column: str | None,
               name_column: str | None, attrs: tuple[str, ...], encoding: str,
               version_date: dt.datetime | None, subset: bool) -> None:
    """用官方完整代码表（CSV）替换值域文件；任何一行有误都不写入。"""
    options: dict[str, Any] = dict(code_column=code_column, name_column=name_column, attr_columns=attrs,
                                   encoding=encoding, version_date=version_date.date() if version_date else None,
                                   subset=subset)
    settings = _layered_settings(ctx)
    record: int | None = None
    try:
        if settings is not None:  # with a configuration: into the pushed/imported layer, recorded
            from cdcsync.control.imports import import_into_layer

            result, record = import_into_layer(settings, domain_id, csv_file, **options)
        else:
            result = import_csv(_dir(ctx), domain_id, csv_file, **options)
    except CodeImportError as exc:
        _fail(exc)
        return
    except MappingError as exc:
        _fail(exc)
        return
    d = result.domain
    click.echo(f"已导入值域 {d.id}（{d.name}）：{len(d)} 条（原 {result.previous_count} 条），"
               f"文件编码 {result.encoding.upper()}，已写入 {display_path(result.path)}")
    if record is not None:
        click.echo(f"已记入配置历史（记录号 {record}），运行中的服务数秒内自动加载；"
                   f"如需撤销：cdcsync config rollback {record}")
    if result.dangling:
        click.echo(f"警告：{len(result.dangling)} 条本院对照指向的国家代码已不在新代码表中，请修正对照表：", err=True)
        for line in result.dangling[:20]:
            click.echo(f"  {line}", err=True)


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
    from cdcsync.spec import load_spec

    tables = mapping_layers(app, mappings_dir, hospital).load()
    spec = load_spec()
    if no_data:
        report = check_coverage(tables, spec, None)
    else:
        with db_errors(), connect_autocommit(conninfo(app, dsn)) as conn:
            report = check_coverage(tables, spec, conn)
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(format_text(report))
    sys.exit(0 if report.ok else 1)
