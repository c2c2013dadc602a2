"""``cdcsync rules check|list|evaluate``: rule packs and the ground-truth check, for the 防保科 and
for admins. Messages are Chinese; every error names the file and where in it.

``rules replay`` (re-running the rules over the mirror for a period) is added to this group by the
rules consumer's CLI.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from cdcsync.cli_context import AppContext, conninfo, fail, optional_settings, pass_app
from cdcsync.surveil.cases import KIND_LABELS, Kind
from cdcsync.surveil.pack import CLASSES, PackError, RulePack, load_pack


def configured_pack_path(app: AppContext) -> Path | None:
    """The pack in force: one pushed by the national platform (control plane), else
    ``surveil.pack``, else None (the shipped default pack)."""
    settings = optional_settings(app)
    if settings is None:
        return None
    from cdcsync.control.kinds import rules_pack_path

    return rules_pack_path(settings)


def _cls(c: str) -> str:
    return c if c == "其他" else f"{c}类"


def _describe(pack: RulePack) -> list[str]:
    per = {c: [d for d in pack.diseases if d.cls == c] for c in CLASSES}
    lines = [f"规则包 {pack.name}（{pack.title}），版本 {pack.version}，文件 {pack.path}",
             f"病种 {len(pack.diseases)} 个：" + "，".join(f"{_cls(c)} {len(per[c])}" for c in CLASSES if per[c]),
             f"报告时限：甲类 {pack.due.class_a:g} 小时，按甲类管理的乙类 {pack.due.managed_as_class_a:g} 小时，"
             f"其他 {pack.due.other:g} 小时",
             f"病原体 {len(pack.pathogens)} 个，检验项目 {len(pack.lab_items)} 个，特殊用药组 {len(pack.drugs)} 个，"
             f"来源 {len(pack.sources)} 条",
             "启用的规则：" + "、".join(f"{KIND_LABELS[k]}（{k.value}）" for k in Kind if k in pack.kinds)]
    return lines


@click.group("rules")
def rules_group() -> None:
    """传染病监测预警规则包：校验、查看、与真值比对。"""


@rules_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def check_cmd(app: AppContext, file: Path | None) -> None:
    """校验规则包 FILE（省略时校验配置 surveil.pack 指定的规则包，未配置则为随附的默认规则包）。

    有效时退出码 0，否则打印错误（文件、位置与应填内容）并以退出码 1 退出。
    """
    path = file if file is not None else configured_pack_path(app)
    try:
        pack = load_pack(path)
    except PackError as exc:
        click.echo(f"规则包无效：{exc}", err=True)
        sys.exit(1)
    click.echo("规则包有效。")
    for line in _describe(pack):
        click.echo(f"  {line}")


@rules_group.command("list")
@click.option("--pack", "file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="规则包文件（默认：配置 surveil.pack，未配置则为随附的默认规则包）")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def list_cmd(app: AppContext, file: Path | None, as_json: bool) -> None:
    """显示当前规则包：版本、各类病种、报告时限、启用的规则。"""
    try:
        pack = load_pack(file if file is not None else configured_pack_path(app))
    except PackError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(pack.summary(), ensure_ascii=False, indent=2))
        return
    for line in _describe(pack):
        click.echo(line)
    for cls in CLASSES:
        diseases = [d for d in pack.diseases if d.cls == cls]
        if not diseases:
            continue
        click.echo(f"{_cls(cls)}（{len(diseases)}）：")
        for d in diseases:
            extra = "，按甲类管理" if d.managed_as_class_a else ""
            click.echo(f"  {d.code:<6} {d.name}（ICD-10 {'、'.join(d.icd10) or '无'}；"
                       f"{pack.due_hours(d):g} 小时内报告{extra}）")
    for g in pack.drugs:
        click.echo(f"特殊用药 {g.label}：{len(g.codes)} 个药品，对应病种 {'、'.join(g.diseases)}")


@rules_group.command("evaluate")
@click.option("--truth", "truth_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="真值文件（cdcsync gen --truth 生成，每行一个 JSON）")
@click.option("--wait", type=click.FloatRange(0, 86400), default=0.0, show_default=True,
              help="最多等待多少秒，直到病例与真值一致（规则消费者仍在处理时）")
@click.option("--run", "run_rules", is_flag=True,
              help="先在镜像库现有数据上直接运行规则（不经复制流；用于未运行 cdcsync run 时）")
@click.option("--dsn", help="数据库连接串（默认取配置文件）")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def evaluate_cmd(app: AppContext, truth_file: Path, wait: float, run_rules: bool, dsn: str | None,
                 as_json: bool) -> None:
    """比对真值与已生成的病例：按规则类别输出召回率与精确率；全部为 100% 时退出码 0，否则 1。"""
    import psycopg

    from cdcsync.surveil.evaluate import TruthError, actual_cases, evaluate, read_truth

    try:
        truth = read_truth(truth_file)
    except TruthError as exc:
        fail(str(exc))
    target = conninfo(app, dsn)
    try:
        if run_rules:
            _run_over_mirror(app, target)
        deadline = time.monotonic() + wait
        while True:
            with psycopg.connect(target, autocommit=True) as conn:
                result = evaluate(truth, actual_cases(conn))
            if result.perfect or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    except psycopg.OperationalError as exc:
        fail(f"无法连接数据库：{(str(exc).splitlines() or [type(exc).__name__])[0]}")
    except psycopg.errors.UndefinedTable:
        fail("数据库中没有病例表 cdcsync.surveil_case：请先执行 cdcsync db init")
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(f"{'规则类别':<24}{'真值':>6}{'生成':>6}{'一致':>6}{'召回率':>9}{'精确率':>9}")
        for s in result.scores:
            click.echo(f"{KIND_LABELS[Kind(s.kind)] + '（' + s.kind + '）':<24}{s.truth:>6}{s.found:>6}{s.matched:>6}"
                       f"{s.recall:>9.1%}{s.precision:>9.1%}")
            if s.truth == 0:
                click.echo(f"  提示：真值中没有 {s.kind} 类病例，此类未被检验")
        for label, keys in (("漏报（真值有、未生成）", result.missing), ("多报（生成了、真值无）", result.extra)):
            if keys:
                click.echo(f"{label} {len(keys)} 例，前 10 例：")
                for k in keys[:10]:
                    click.echo(f"  {k[0]} {k[1]} 病种 {k[2]} 患者 {k[3]} 就诊 {k[4]}")
        click.echo("结论：" + ("全部一致（召回率、精确率均为 100%）" if result.perfect else "不一致"))
    sys.exit(0 if result.perfect else 1)


def _run_over_mirror(app: AppContext, target: str) -> None:
    """The rules over every rule-relevant row of the mirror, in write order, in one transaction."""
    import psycopg

    from cdcsync.surveil.mirror import mirror_events
    from cdcsync.surveil.rules import RuleEngine, holder_mapper
    from cdcsync.validate.reload import RulesHolder

    settings = optional_settings(app)
    try:
        pack = load_pack(configured_pack_path(app))
    except PackError as exc:
        fail(str(exc))
    holder = RulesHolder.load(settings.mappings_dir if settings else None, settings.hospital if settings else "example")
    with psycopg.connect(target) as conn:
        org = settings.org_code if settings else None
        if org is None:
            row = conn.execute("SELECT org_code FROM emr.visit LIMIT 1").fetchone()
            org = row[0] if row else "UNKNOWN0"
        db = conn.info.dbname
        events = list(mirror_events(conn, holder, org, db))
        engine = RuleEngine(pack, mapper=holder_mapper(holder))
        results = engine.apply(conn, events)
        conn.commit()
    click.echo(f"已在镜像库 {len(events)} 条记录上运行规则（规则包 {pack.version}），"
               f"新建病例 {sum(1 for r in results if r.created)} 例", err=True)
