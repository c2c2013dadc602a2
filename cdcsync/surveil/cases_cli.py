"""``cdcsync cases list|show|history``: the pending cases for the 防保科 and admins (Chinese output,
``--json`` for programs). Reads only; actions go through the reminders API or the workbench."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from cdcsync.beijing import BEIJING
from cdcsync.cli_context import AppContext, conninfo, db_errors, fail, parse_since, pass_app
from cdcsync.surveil.cases import KIND_LABELS, Case, CaseError, CaseFilter, Kind, Status, standalone_store


def _t(value: dt.datetime | None) -> str:
    return value.astimezone(BEIJING).strftime("%m-%d %H:%M") if value else "-"


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def _line(c: Case, now: dt.datetime) -> str:
    due = _t(c.due_at) + ("（已超时）" if c.overdue(now) else "")
    return (f"{c.case_id:>7}  {c.status}  {KIND_LABELS[c.kind]:<10}  {c.disease_name}（{c.disease_class}）"
            f"  患者 {c.patient_id}  就诊 {c.visit_id or '-'}  医生 {c.doctor_id or '-'}  科室 {c.dept_code or '-'}"
            f"  生成 {_t(c.created_at)}  时限 {due}")


@click.group("cases")
def cases_group() -> None:
    """监测预警病例（待确认、待确诊、待核查）：查询、详情与处理记录。"""


@cases_group.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice([s.value for s in Status]),
              help="状态（可重复）；不指定时列出未结病例")
@click.option("--all", "all_statuses", is_flag=True, help="包括已结案病例")
@click.option("--kind", "kinds", multiple=True, type=click.Choice([k.value for k in Kind]), help="发现途径（可重复）")
@click.option("--dept", help="责任科室代码")
@click.option("--doctor", help="责任医生工号")
@click.option("--overdue", is_flag=True, help="只列出已超过报告时限的未结病例")
@click.option("--since", help="生成时间不早于（日期或日期时间，北京时间）")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@click.option("--dsn", help="数据库连接串（默认取配置文件）")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def list_cmd(app: AppContext, statuses: tuple[str, ...], all_statuses: bool, kinds: tuple[str, ...],
             dept: str | None, doctor: str | None, overdue: bool, since: str | None, limit: int,
             dsn: str | None, as_json: bool) -> None:
    """列出病例，最新的在前。"""
    now = dt.datetime.now(dt.UTC)
    flt = CaseFilter(doctor_id=doctor, dept_code=dept, statuses=[Status(s) for s in statuses],
                     open_only=not statuses and not all_statuses, overdue_at=now if overdue else None,
                     since=parse_since(since), kinds=[Kind(k) for k in kinds], limit=limit)
    with db_errors(), standalone_store(conninfo(app, dsn)) as store:
        cases = store.list(flt)
        n_open, n_overdue = store.counts(now)
    if as_json:
        _dump({"cases": [c.as_dict() for c in cases], "open": n_open, "overdue": n_overdue})
        return
    for c in cases:
        click.echo(_line(c, now))
    click.echo(f"共 {len(cases)} 条（全院未结 {n_open} 例，其中超时 {n_overdue} 例）")


@cases_group.command("show")
@click.argument("case_id", type=int)
@click.option("--dsn", help="数据库连接串（默认取配置文件）")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def show_cmd(app: AppContext, case_id: int, dsn: str | None, as_json: bool) -> None:
    """病例 CASE_ID 的详情：状态、时限、证据（来源表与主键）与处理记录。"""
    with db_errors(), standalone_store(conninfo(app, dsn)) as store:
        try:
            d = store.detail(case_id)
        except CaseError as exc:
            fail(str(exc))
    if as_json:
        _dump({"case": d.case.as_dict(), "evidence": [e.as_dict() for e in d.evidence],
               "history": [h.as_dict() for h in d.history]})
        return
    c, now = d.case, dt.datetime.now(dt.UTC)
    click.echo(_line(c, now))
    click.echo(f"  规则包版本 {c.pack_version}；触发信号 {_t(c.signal_at)}；报告时限 {_t(c.due_at)}")
    if c.snooze_until:
        click.echo(f"  暂缓至 {_t(c.snooze_until)}")
    if c.acked_at:
        click.echo(f"  已阅 {_t(c.acked_at)}（{c.acked_by}）")
    if c.closed_at:
        click.echo(f"  结案 {_t(c.closed_at)}" + (f"，报告卡 {c.card_no}" if c.card_no else "")
                   + (f"，说明：{c.close_reason}" if c.close_reason else ""))
    click.echo("  证据：")
    for e in d.evidence:
        key = json.dumps(e.row_key, ensure_ascii=False)
        click.echo(f"    {e.table_name} {key}  规则 {e.rule_id}  事件 {e.event_id}")
    click.echo("  处理记录：")
    for h in d.history:
        click.echo(f"    {_t(h.at)}  {h.actor}（{h.actor_role}）  {h.action}  {h.from_status or '-'} → {h.to_status}"
                   + (f"  {h.reason}" if h.reason else ""))


@cases_group.command("history")
@click.argument("case_id", type=int, required=False)
@click.option("--since", help="处理时间不早于（日期或日期时间，北京时间）")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--dsn", help="数据库连接串（默认取配置文件）")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def history_cmd(app: AppContext, case_id: int | None, since: str | None, limit: int, dsn: str | None,
                as_json: bool) -> None:
    """处理记录（只增不删）：病例 CASE_ID 的，或省略时全部病例的，按时间先后。"""
    start = parse_since(since)
    with db_errors(), standalone_store(conninfo(app, dsn)) as store:
        if case_id is not None:
            try:
                store.get(case_id)
            except CaseError as exc:
                fail(str(exc))
        entries = [h for h in store.history(case_id, limit=limit) if start is None or h.at >= start]
    if as_json:
        _dump({"history": [h.as_dict() for h in entries]})
        return
    for h in entries:
        click.echo(f"{h.history_id:>8}  {_t(h.at)}  病例 {h.case_id}  {h.actor}（{h.actor_role}）  {h.action}"
                   f"  {h.from_status or '-'} → {h.to_status}" + (f"  {h.reason}" if h.reason else ""))
    click.echo(f"共 {len(entries)} 条处理记录")


COMMANDS: list[click.Command] = [cases_group]
