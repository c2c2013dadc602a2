"""``cdcsync rules replay --since DATE [--until DATE] [--apply]``: the rules over the mirror's rows of
a period (e.g. after a rule-pack fix, or for the time a lost slot could not stream).

The rows are turned into events through the same validation and mapping stage as the stream
(:func:`cdcsync.surveil.mirror.mirror_events`) and the engine in force (``surveil.pack``) runs over
them in ONE transaction; the cases before and after are compared. Dry-run (default): the
transaction is rolled back and only what would open, change or close is shown. ``--apply``:
committed. The rules consumer may run meanwhile: the one-open-case index serializes them, and a
signal already handled only adds evidence. Replayed signals take the replay time as their signal
time (the rows' commit time is not known outside the stream).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import click
import psycopg
from psycopg.rows import dict_row

from cdcsync.beijing import BEIJING
from cdcsync.cli_context import AppContext, db_errors, pass_app
from cdcsync.event import Event


def _row_time(ev: Event, fields: Mapping[str, str | None]) -> dt.datetime | None:
    row = ev.after or {}
    for name in (fields.get(ev.table), "update_time", "collect_time"):
        value = row.get(name) if name else None
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=BEIJING)
        if isinstance(value, dt.date):
            return dt.datetime.combine(value, dt.time(), BEIJING)
    return None


def _snapshot(conn: psycopg.Connection[Any]) -> dict[int, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT case_id, status, kind, disease_name, patient_id, visit_id, dept_code"
                    " FROM cdcsync.surveil_case")
        return {r["case_id"]: r for r in cur.fetchall()}


def replay(conninfo: str, settings: Any, since: dt.datetime, until: dt.datetime | None, apply: bool
           ) -> dict[str, Any]:
    """Run the rules over the period; returns what opened, changed and closed (and the counts)."""
    from cdcsync.control.kinds import rules_pack_path
    from cdcsync.mapping.layers import MappingLayers
    from cdcsync.surveil.engine import build_engine
    from cdcsync.surveil.mirror import mirror_events
    from cdcsync.validate.reload import RulesHolder

    holder = RulesHolder.for_layers(MappingLayers.from_settings(settings))  # the code tables in force
    engine = build_engine(rules_pack_path(settings), holder)  # the pack in force
    fields = {t.name: t.business_time for t in holder.spec.tables}
    with psycopg.connect(conninfo) as conn:
        before = _snapshot(conn)
        rejected: list[str] = []
        events = []
        for ev in mirror_events(conn, holder, settings.org_code, settings.database.dbname, rejected=rejected):
            t = _row_time(ev, fields)
            if t is not None and t >= since and (until is None or t < until):
                events.append(ev)
        engine.apply(conn, events)
        after = _snapshot(conn)
        if apply:
            conn.commit()
        else:
            conn.rollback()
    opened = [after[i] for i in sorted(set(after) - set(before))]
    changed = [{**after[i], "from_status": before[i]["status"]} for i in sorted(before)
               if after[i]["status"] != before[i]["status"]]
    open_now = ("待确认", "待确诊", "待核查")
    return {"since": since.isoformat(), "until": until.isoformat() if until else None, "applied": apply,
            "pack_version": engine.version, "events": len(events), "rejected_rows": len(rejected),
            "opened": opened, "closed": [c for c in changed if c["status"] not in open_now],
            "upgraded": [c for c in changed if c["status"] in open_now]}


@click.command("replay")
@click.option("--since", required=True, help="起始时间（日期或日期时间，北京时间；按记录的业务时间）")
@click.option("--until", help="截止时间（不含）；默认至今")
@click.option("--apply", "do_apply", is_flag=True, help="写入病例（默认只演示将生成、变更或结案的病例，不写入）")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def replay_cmd(app: AppContext, since: str, until: str | None, do_apply: bool, as_json: bool) -> None:
    """对镜像库中一段时间的记录重新运行监测预警规则（默认演练，不写入；--apply 写入）。"""
    from cdcsync.cli_context import parse_since

    start = parse_since(since)
    end = parse_since(until)
    assert start is not None
    settings = app.settings
    with db_errors():
        result = replay(settings.database.conninfo(), settings, start, end, do_apply)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return
    mode = "已写入" if do_apply else "演练（未写入；加 --apply 写入）"
    click.echo(f"规则包 {result['pack_version']}，{result['events']} 条记录"
               f"（{result['rejected_rows']} 条未通过校验，跳过）：{mode}")
    for title, key in (("将生成" if not do_apply else "已生成", "opened"),
                       ("将结案" if not do_apply else "已结案", "closed"),
                       ("将变更状态" if not do_apply else "已变更状态", "upgraded")):
        items = result[key]
        click.echo(f"{title} {len(items)} 例")
        for c in items:
            frm = f"{c['from_status']} → " if "from_status" in c else ""
            click.echo(f"  病例 {c['case_id']}  {frm}{c['status']}  {c['disease_name']}  患者 {c['patient_id']}"
                       f"  就诊 {c['visit_id'] or '-'}  科室 {c['dept_code'] or '-'}")


COMMANDS: list[click.Command] = [replay_cmd]
