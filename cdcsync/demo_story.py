"""The demo's day told truthfully: a live phase after the backfill, the NNDRS export, and why each
red item of the day's reconciliation is red in the demo.

The synthetic hospital's yesterday is written in bulk (backfill): its business times lie hours
before the rows reach the mirror, so the HIS part of timeliness is low by construction. The live
phase then writes today's encounters as they happen (``cdcsync.synth.live``) while the pipelines
deliver them, so their HIS part and the front end's part are both timely. :func:`timeliness_snapshot`
of each phase's business day, before and after it, gives the phase's own figures; the reconciliation
is of the backfilled day, complete as a DBA's daily check would see it.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from cdcsync.config import Settings
from cdcsync.synth.nndrs_export import Planted

# Phase figures: (destination, timeliness) -> (events, HIS within, front end within)
Snapshot = dict[tuple[str, str], tuple[int, int, int]]


def timeliness_snapshot(dsn: str, day: dt.date) -> Snapshot:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT destination, timeliness, sum(split_events), sum(his_within), sum(frontend_within)"
            " FROM cdcsync.delivery_latency WHERE business_date = %s GROUP BY 1, 2", (day,)).fetchall()
    return {(str(d), str(t)): (int(n), int(h), int(f)) for d, t, n, h, f in rows}


def phase_shares(before: Snapshot, after: Snapshot) -> dict[tuple[str, str], tuple[int, float, float]]:
    """Events, HIS share and front-end share of what was delivered between two snapshots."""
    out: dict[tuple[str, str], tuple[int, float, float]] = {}
    for key, (n, h, f) in after.items():
        n0, h0, f0 = before.get(key, (0, 0, 0))
        if n - n0 > 0:
            out[key] = (n - n0, (h - h0) / (n - n0), (f - f0) / (n - n0))
    return out


def share_line(label: str, shares: dict[tuple[str, str], tuple[int, float, float]], timeliness: str) -> str:
    parts = [f"{dest} HIS 推送 {his:.1%}、前置软件上报 {front:.1%}（{n} 个事件）"
             for (dest, t), (n, his, front) in sorted(shares.items()) if t == timeliness]
    return f"{label}：" + ("；".join(parts) or "无事件")


@dataclass
class LiveResult:
    rows: int = 0
    transactions: int = 0
    seconds: float = 0.0
    error: BaseException | None = field(default=None, repr=False)


def live_phase(settings: Settings, dsn: str, org_code: str, *, seconds: float, rate: float, seed: int,
               patients: int) -> LiveResult:
    """Write live encounters for ``seconds`` while the pipelines deliver them; everything delivered at the end."""
    from cdcsync.engine.daemon import drain
    from cdcsync.spec import load_spec
    from cdcsync.synth.hospital import load_codes
    from cdcsync.synth.live import live_groups, update_daily_stats
    from cdcsync.synth.load import load_steady
    from cdcsync.synth.model import Census
    from cdcsync.validate.compiler import beijing_now

    codes = load_codes(settings.mappings_dir, settings.hospital)
    census = Census()
    result = LiveResult()

    def write() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                groups = live_groups(codes, org_code, seed=seed, patients=patients, census=census, clock=beijing_now,
                                     seconds=seconds)
                res = load_steady(conn, load_spec(), groups, rate, None)
                now = beijing_now().replace(microsecond=0)
                update_daily_stats(conn, codes, org_code, now.date(), census, now)
                result.rows, result.transactions, result.seconds = res.rows, res.transactions, res.seconds
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result.error = exc

    writer = threading.Thread(target=write, name="demo-live-writer", daemon=True)
    writer.start()
    while writer.is_alive():
        drain(settings)  # delivers what was committed when it started; loop until the writer is done
        writer.join(0.2)
    drain(settings)
    if result.error is not None:
        raise result.error
    return result


def import_export(settings: Settings, dsn: str, org_code: str, path: Path, day: dt.date, seed: int) -> tuple[
        Planted, Any]:
    """Write the NNDRS export of the mirror's cards (with planted differences) and import it."""
    from cdcsync.mapping.domains import load_code_tables
    from cdcsync.recon.codemap import sync_reference
    from cdcsync.recon.nndrs import import_file
    from cdcsync.synth.hospital import load_codes
    from cdcsync.synth.nndrs_export import write_export

    tables = load_code_tables(settings.mappings_dir, settings.hospital, strict=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        planted = write_export(conn, load_codes(settings.mappings_dir, settings.hospital), org_code, path, day,
                               seed=seed)
        sync_reference(conn, tables)
        summary = import_file(conn, path, tables=tables)
    return planted, summary


# Why each red item is red in the demo (matched on the alert's wording).
WHY_BACKFILL = ("回填的历史：演示开始时把昨天的就诊一次写入镜像库，业务时间早于写入数小时，"
                "HIS 推送段必然超时；实时阶段（今天）写入的记录两段都及时（见上）")
WHY_CARDS = "故意放入的差异：{planted}"
WHY_QUARANTINE = "故意生成的不合规记录：合成数据按 --invalid-ratio 放入，由校验拦下进入隔离区"
WHY_TREND = "合成医院只生成了这一天：此前几日的在院人数只含开始生成前已入院的患者，与这一天不可比"
WHY_UNKNOWN = "未预期：请按报告中的处理建议查看"


def why_red(alert: str, planted: Planted | None) -> str:
    if "数据及时率" in alert:
        return WHY_BACKFILL
    if "报告卡比对不一致" in alert:
        return WHY_CARDS.format(planted=planted.summary() if planted else "本次未导入大疫情网导出")
    if "在院传染病患者" in alert:
        return WHY_TREND
    if "隔离区" in alert:
        return WHY_QUARANTINE
    return WHY_UNKNOWN


def explain(report: dict[str, Any], planted: Planted | None) -> list[tuple[str, str]]:
    """(red item, why it is red in this demo) for every alert and every quarantine note."""
    items = [(a, why_red(a, planted)) for a in report["alerts"]]
    items += [(n, WHY_QUARANTINE) for n in report["notes"] if "隔离区" in n]
    return items


def closing_summary(report: dict[str, Any], explanations: list[tuple[str, str]]) -> list[str]:
    verdict = "正常" if report["ok"] else f"超出容差 {len(report['alerts'])} 项"
    lines = [f"{report['date']} 对账结论：{verdict}"]
    alerts = set(report["alerts"])
    for item, why in explanations:
        lines.append(f"  {'！' if item in alerts else '·'}{item}")  # ！ exceeds a tolerance, · a note
        lines.append(f"    → 演示中为何为红：{why}")
    return lines
