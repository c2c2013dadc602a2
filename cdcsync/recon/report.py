"""The daily reconciliation report: the recon.* views for one day, as text, JSON or one HTML page.

The figures come from the views only (one implementation of every count); this module adds the
tolerances, the alerts and the rendering. The HTML page is self-contained (inline CSS and SVG, no
script, no external resource) so it can be mailed, archived or printed. Patient identity never
appears: card differences in identity are reported as "不一致" without values.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import unicodedata
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cdcsync.spec import load_spec


@dataclass(frozen=True)
class Tolerances:
    """Exceeding any of these makes ``cdcsync reconcile`` exit with 1."""

    max_card_mismatches: int = 0  # cards only on one side + cards with field differences
    min_timely_share: float = 0.95  # per destination and timeliness class, when it had events
    max_visit_diff_pct: float = 1.0  # |visits counted - HIS daily count| / HIS daily count, percent
    max_not_delivered: int | None = None  # rows of the day not yet delivered, per destination; None = no check
    # infectious inpatients of the day against the mean of the previous days (see inpatient_trend)
    max_inpatient_change_pct: float = 50.0


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return round(value.total_seconds())
    return value


def _rows(conn: psycopg.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return [{k: _plain(v) for k, v in row.items()} for row in cur.fetchall()]


def build_report(conn: psycopg.Connection, day: dt.date, tolerances: Tolerances | None = None) -> dict[str, Any]:
    """Everything for ``day`` as plain JSON-able data, with ``alerts`` and ``ok``."""
    tol = tolerances or Tolerances()
    spec = load_spec()
    labels = {t.name: t.comment for t in spec.tables}
    classes = {t.name: t.timeliness for t in spec.tables}

    tables = _rows(conn, "SELECT table_name, destination, mirror_rows, delivered, quarantined, not_delivered"
                         " FROM recon.table_daily_counts WHERE business_date = %s ORDER BY destination, table_name",
                   (day,))
    for row in tables:
        row["table_label"] = labels.get(row["table_name"], row["table_name"])
        row["timeliness"] = classes.get(row["table_name"])
    totals: dict[str, dict[str, int]] = {}
    for row in tables:
        t = totals.setdefault(row["destination"], {"mirror_rows": 0, "delivered": 0, "quarantined": 0,
                                                   "not_delivered": 0})
        for k in t:
            t[k] += row[k]

    visits = _rows(conn, "SELECT org_code, outpatient_visits, reported_outpatient, outpatient_diff,"
                         " emergency_visits, reported_emergency, emergency_diff"
                         " FROM recon.visit_daily_counts WHERE stat_date = %s ORDER BY org_code", (day,))
    inpatients = _rows(conn, "SELECT category, inpatients, new_diagnoses, new_patients"
                             " FROM recon.notifiable_inpatient_daily WHERE stat_date = %s", (day,))
    order = {"甲类": 0, "乙类": 1, "丙类": 2, "合计": 9}
    inpatients.sort(key=lambda row: (order.get(row["category"], 5), row["category"]))
    summary = _rows(conn, "SELECT * FROM recon.card_daily_summary WHERE compare_date = %s", (day,))
    card_summary = summary[0] if summary else dict.fromkeys(CARD_SUMMARY_KEYS, 0)
    card_summary.pop("compare_date", None)
    presence = _rows(conn, "SELECT card_no, presence FROM recon.card_comparison"
                           " WHERE compare_date = %s AND presence <> 'both' ORDER BY card_no", (day,))
    diffs = _rows(conn, "SELECT card_no, field, field_label, frontend_value, nndrs_value FROM recon.card_field_diff"
                        " WHERE compare_date = %s ORDER BY card_no, field", (day,))
    disease_names: dict[str, str] = dict(
        conn.execute("SELECT disease_code, disease_name FROM recon.notifiable_disease").fetchall())
    for d in diffs:
        d["frontend_shown"], d["nndrs_shown"] = (_shown(d["field"], d[k], disease_names)
                                                 for k in ("frontend_value", "nndrs_value"))
    total_now = next((row["inpatients"] for row in inpatients if row["category"] == "合计"), None)
    trend = inpatient_trend(conn, day, total_now)
    timeliness = _rows(conn, "SELECT destination, timeliness, timeliness_label, limit_seconds, events, within_limit,"
                             " within_share, p50_from_business_s, p95_from_business_s, p50_from_commit_s,"
                             " p95_from_commit_s, split_events, his_share, his_avg_s, his_p95_s, frontend_share,"
                             " frontend_avg_s FROM recon.timeliness_daily WHERE business_date = %s"
                             " ORDER BY destination, limit_seconds", (day,))
    transmission = _rows(conn, "SELECT d.destination, coalesce(t.attempts, 0) AS attempts,"
                               " coalesce(t.successes, 0) AS successes, coalesce(t.failures, 0) AS failures,"
                               " coalesce(t.retries, 0) AS retries, t.last_error, s.last_ack_at, s.since_last_ack,"
                               " s.wal_lag_bytes, s.quarantine_held"
                               " FROM recon.destinations d"
                               " LEFT JOIN recon.transmission_daily t ON t.destination = d.destination AND t.day = %s"
                               " LEFT JOIN recon.transmission_state s ON s.destination = d.destination"
                               " ORDER BY d.destination", (day,))

    alerts, notes = _check(tol, totals, visits, card_summary, timeliness)
    only = {kind: [r["card_no"] for r in presence if r["presence"] == kind] for kind in ("frontend_only", "nndrs_only")}
    actions = card_actions(only["frontend_only"], only["nndrs_only"], diffs)
    trend_line = _trend_problem(trend, tol)
    if trend_line:
        alerts.append(trend_line[0])
        actions.append(trend_line[1])
    elif trend["baseline_days"] < TREND_MIN_DAYS:
        notes.append(f"前 {TREND_DAYS} 日中只有 {trend['baseline_days']} 日有在院传染病患者数，"
                     f"不足 {TREND_MIN_DAYS} 日，未比对在院人数趋势")
    if card_summary.get("nndrs_deleted"):
        notes.append(f"大疫情网中已删除的 {card_summary['nndrs_deleted']} 张卡片未参与比对")
    return {
        "date": day.isoformat(),
        "generated_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "tolerances": asdict(tol),
        "tables": tables,
        "table_totals": totals,
        "visits": visits,
        "inpatients": inpatients,
        "cards": {"summary": card_summary,
                  "frontend_only": only["frontend_only"],
                  "nndrs_only": only["nndrs_only"],
                  "differences": diffs},
        "inpatient_trend": trend,
        "actions": actions,
        "timeliness": timeliness,
        "transmission": transmission,
        "alerts": alerts,
        "notes": notes,
        "ok": not alerts,
    }


CARD_SUMMARY_KEYS = (
    "frontend_cards", "nndrs_cards", "matched", "frontend_only", "nndrs_only", "with_differences", "disease_differs",
    "subtype_differs", "case_class_differs", "onset_date_differs", "diagnosis_date_differs", "death_date_differs",
    "population_group_differs", "region_differs", "report_org_differs", "identity_differs", "matched_by_card_no",
    "matched_by_id_no", "matched_by_name", "nndrs_deleted")

# National case-class codes (domain diagnosis_status) as the 防保科 reads them on a card.
CASE_CLASS_NAMES = {"1": "疑似病例", "2": "临床诊断病例", "3": "确诊病例", "4": "病原携带者", "5": "阳性检测"}

# What the 防保科 does about each kind of card problem: one line per problem.
CARD_ACTIONS: dict[str, str] = {
    "frontend_only": "前置软件有、大疫情网没有：请在大疫情网按患者查找；未录入的请补报，"
                     "已录入但信息不一致的请订正，并把大疫情网卡片编号回写 HIS",
    "nndrs_only": "大疫情网有、前置软件没有：请核实是否为在大疫情网直接录入的卡片；若是本院 HIS 开具的，"
                  "请联系 HIS 厂商检查该报告卡是否写入了镜像库",
    "disease": "请与报告医生核实诊断，按核实结果在大疫情网订正病种",
    "subtype": "请按检验结果核实分型，在大疫情网订正病种分型",
    "case_class": "请核实检验结果，在大疫情网订正病例分类（如疑似病例确诊后订正为确诊病例）",
    "onset_date": "请向报告医生核实发病日期，以病历为准在大疫情网订正",
    "diagnosis_date": "请核对病历中的诊断时间，在大疫情网订正诊断日期",
    "death_date": "请核对死亡记录，在大疫情网做死亡订正",
    "population_group": "请核实患者职业，在大疫情网订正人群分类",
    "region": "请核实患者现住址（影响属地疾控流调），在大疫情网订正现住地址",
    "report_org": "请确认是否为本院报告的卡片，误报请联系属地疾控处理",
    "identity": "请核对姓名、证件号、性别、出生日期（报告不显示具体内容），以证件为准在大疫情网订正",
}


def _shown(field: str, value: Any, disease_names: dict[str, str]) -> str:
    """A value as the 防保科 reads it: disease and case-class names beside their codes."""
    if value is None:
        return "（空）"
    if field in ("disease", "subtype") and value in disease_names:
        return f"{disease_names[value]}（{value}）"
    if field == "case_class" and value in CASE_CLASS_NAMES:
        return CASE_CLASS_NAMES[value]
    return str(value)


def card_actions(frontend_only: list[str], nndrs_only: list[str], diffs: list[dict[str, Any]]) -> list[str]:
    """One line per card problem: which card, what differs, what to do."""
    lines = [f"卡片 {no}：{CARD_ACTIONS['frontend_only']}" for no in frontend_only]
    lines += [f"大疫情网卡片 {no}：{CARD_ACTIONS['nndrs_only']}" for no in nndrs_only]
    for d in diffs:
        if d["field"] == "identity":
            what = "患者身份信息不一致"
        else:
            what = (f"{d['field_label']}不一致（前置软件 {d.get('frontend_shown', d['frontend_value'])}，"
                    f"大疫情网 {d.get('nndrs_shown', d['nndrs_value'])}）")
        lines.append(f"卡片 {d['card_no']}：{what}——{CARD_ACTIONS.get(d['field'], '请核实后订正')}")
    return lines


TREND_DAYS = 7
TREND_MIN_DAYS = 3
TREND_MIN_ABS = 3  # a change of fewer patients than this is never a problem (small wards)


def inpatient_trend(conn: psycopg.Connection, day: dt.date, today: int | None) -> dict[str, Any]:
    """Infectious inpatients of ``day`` against the mean of the previous days that had any.

    NNDRS exports do not say whether a case is an inpatient, so the figure is checked against its own
    recent history: a sudden rise (a cluster, or cards to make) or fall (diagnoses missing from the
    mirror) is worth a look by the 防保科.
    """
    rows = _rows(conn, "SELECT stat_date, inpatients FROM recon.notifiable_inpatient_daily"
                       " WHERE category = '合计' AND stat_date BETWEEN %s AND %s ORDER BY stat_date",
                 (day - dt.timedelta(days=TREND_DAYS), day - dt.timedelta(days=1)))
    days = [r["inpatients"] for r in rows if r["inpatients"]]
    mean = sum(days) / len(days) if days else None
    return {"today": today, "baseline_days": len(days), "baseline_mean": None if mean is None else round(mean, 1),
            "change_pct": None if (mean is None or today is None) else round((today - mean) * 100.0 / mean, 1)}


def _trend_problem(trend: dict[str, Any], tol: Tolerances) -> tuple[str, str] | None:
    if trend["baseline_days"] < TREND_MIN_DAYS or trend["change_pct"] is None:
        return None
    today, mean, pct = trend["today"], trend["baseline_mean"], trend["change_pct"]
    if abs(pct) <= tol.max_inpatient_change_pct or abs(today - mean) < TREND_MIN_ABS:
        return None
    alert = (f"在院传染病患者 {today} 人，前 {trend['baseline_days']} 日平均 {mean:g} 人，变化 {pct:+.0f}%，"
             f"超出 ±{tol.max_inpatient_change_pct:g}%")
    if pct > 0:
        action = (f"在院传染病患者比前几日多 {pct:.0f}%：请核实是否有聚集性病例，"
                  "并确认新增的住院传染病诊断均已报卡")
    else:
        action = (f"在院传染病患者比前几日少 {-pct:.0f}%：请核对住院患者名单，"
                  "若 HIS 住院诊断未写入镜像库请联系 HIS 厂商")
    return alert, action


def _check(tol: Tolerances, totals: dict[str, dict[str, int]], visits: list[dict[str, Any]],
           cards: dict[str, Any], timeliness: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    alerts: list[str] = []
    notes: list[str] = []
    mismatches = cards["frontend_only"] + cards["nndrs_only"] + cards["with_differences"]
    if mismatches > tol.max_card_mismatches:
        alerts.append(f"报告卡比对不一致 {mismatches} 张（仅前置软件 {cards['frontend_only']}，"
                      f"仅大疫情网 {cards['nndrs_only']}，内容不一致 {cards['with_differences']}），"
                      f"允许 {tol.max_card_mismatches} 张")
    for row in timeliness:
        share = row["within_share"]
        if row["events"] and share is not None and share < tol.min_timely_share:
            alerts.append(f"{row['destination']}：{row['timeliness_label']}数据及时率 {share:.1%}，低于目标 "
                          f"{tol.min_timely_share:.0%}；{timeliness_culprit(row, tol.min_timely_share)}")
    for v in visits:
        for kind, label in (("outpatient", "门诊"), ("emergency", "急诊")):
            reported = v[f"reported_{kind}"]
            if reported is None:
                notes.append(f"{v['org_code']}：HIS 未上报当日{label}统计，无法比对")
                continue
            diff = v[f"{kind}_diff"]
            pct = abs(diff) * 100.0 / max(reported, 1)
            if diff and pct > tol.max_visit_diff_pct:
                alerts.append(f"{v['org_code']}：{label}人次差 {diff:+d}（镜像库 {v[f'{kind}_visits']}，"
                              f"HIS {reported}，{pct:.1f}%），允许 {tol.max_visit_diff_pct:g}%")
    if not visits:
        notes.append("当日没有就诊记录，也没有 HIS 每日统计")
    for dest, t in totals.items():
        if tol.max_not_delivered is not None and t["not_delivered"] > tol.max_not_delivered:
            alerts.append(f"{dest}：当日尚有 {t['not_delivered']} 条记录未投递，允许 {tol.max_not_delivered} 条")
        if t["quarantined"]:
            notes.append(f"{dest}：当日 {t['quarantined']} 条记录进入隔离区，请用 cdcsync quarantine list 查看处理")
    return alerts, notes


def timeliness_culprit(row: dict[str, Any], target: float) -> str:
    """Which part missed the target (HIS push or front-end upload) and what to do, in one line."""
    his, front = row.get("his_share"), row.get("frontend_share")
    if his is None or front is None:
        return "本日期的事件未分段统计时延，无法判断是 HIS 还是前置软件滞后"
    parts = []
    if his < target:
        parts.append(f"HIS 推送及时率 {his:.1%}，HIS 写入镜像库平均滞后 {_seconds(row.get('his_avg_s'))}："
                     "请联系 HIS 厂商检查实时触发（数据应在业务发生后即写入镜像库）")
    if front < target:
        parts.append(f"前置软件上报及时率 {front:.1%}，平均 {_seconds(row.get('frontend_avg_s'))}："
                     "前置软件上报滞后，请检查与平台的网络、隔离区、复制槽")
    return "；".join(parts) or "两段各自达标，端到端超时来自两段滞后之和"


# --------------------------------------------------------------------------- text / json


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2)


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 120:
        return f"{value:g}秒"
    if value < 7200:
        return f"{value / 60:.0f}分钟"
    return f"{value / 3600:.1f}小时"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _n(value: Any) -> str:
    return "—" if value is None else str(value)


def _pad(text: str, width: int, right: bool = False) -> str:
    """Pad to a terminal width: CJK characters take two columns."""
    used = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    fill = " " * max(width - used, 1)
    return fill + text if right else text + fill


def _trend_text(t: dict[str, Any]) -> str:
    if t["baseline_mean"] is None:
        return "在院传染病患者趋势：前几日无数据"
    return (f"在院传染病患者趋势：今日 {_n(t['today'])} 人，前 {t['baseline_days']} 日平均 {t['baseline_mean']:g} 人"
            + ("" if t["change_pct"] is None else f"，变化 {t['change_pct']:+.0f}%"))


def render_text(r: dict[str, Any]) -> str:
    out: list[str] = [f"前置软件每日对账报告  {r['date']}", "=" * 40]
    out.append("结论：" + ("正常" if r["ok"] else f"超出容差 {len(r['alerts'])} 项"))
    out += [f"  ！{a}" for a in r["alerts"]]
    out += [f"  · {n}" for n in r["notes"]]
    if r["actions"]:
        out += ["", f"处理建议（防保科，{len(r['actions'])} 项）"]
        out += [f"  {i}. {a}" for i, a in enumerate(r["actions"], 1)]

    out += ["", "一、各表记录数（按业务日期）"]
    out.append(f"  {_pad('目的地', 12)}{_pad('表', 30)}{_pad('镜像库', 8, right=True)}"
               f"{_pad('已投递', 8, right=True)}{_pad('已隔离', 8, right=True)}{_pad('未投递', 8, right=True)}")
    for row in r["tables"]:
        if row["mirror_rows"] or row["delivered"] or row["quarantined"]:
            out.append(f"  {_pad(row['destination'], 12)}{_pad(row['table_label'], 30)}{row['mirror_rows']:>8}"
                       f"{row['delivered']:>8}{row['quarantined']:>8}{row['not_delivered']:>8}")
    for dest, t in r["table_totals"].items():
        out.append(f"  {dest} 合计：镜像库 {t['mirror_rows']}，已投递 {t['delivered']}，已隔离 {t['quarantined']}，"
                   f"未投递 {t['not_delivered']}")

    out += ["", "二、门急诊人次（镜像库 / HIS 统计 / 差）"]
    for v in r["visits"]:
        out.append(f"  {v['org_code']}：门诊 {v['outpatient_visits']} / {_n(v['reported_outpatient'])} / "
                   f"{_n(v['outpatient_diff'])}；急诊 {v['emergency_visits']} / {_n(v['reported_emergency'])} / "
                   f"{_n(v['emergency_diff'])}")

    out += ["", "三、传染病相关住院（在院患者 / 新增诊断 / 新增患者）"]
    for row in r["inpatients"]:
        out.append(f"  {row['category']}：{row['inpatients']} / {row['new_diagnoses']} / {row['new_patients']}")
    out.append("  " + _trend_text(r["inpatient_trend"]))

    c = r["cards"]
    s = c["summary"]
    out += ["", "四、报告卡比对（前置软件 / 大疫情网）",
            f"  前置软件 {s['frontend_cards']} 张，大疫情网 {s['nndrs_cards']} 张（另有已删除 {s['nndrs_deleted']} 张"
            f"不参与比对），两边都有 {s['matched']} 张：按卡片编号 {s['matched_by_card_no']}，按证件号 "
            f"{s['matched_by_id_no']}，按姓名+出生日期+性别 {s['matched_by_name']}",
            f"  仅前置软件 {s['frontend_only']} 张：{'、'.join(c['frontend_only']) or '无'}",
            f"  仅大疫情网 {s['nndrs_only']} 张：{'、'.join(c['nndrs_only']) or '无'}",
            f"  内容不一致 {s['with_differences']} 张"]
    for d in c["differences"]:
        out.append(f"    {d['card_no']} {d['field_label']}：前置软件 {d['frontend_shown']}，"
                   f"大疫情网 {d['nndrs_shown']}")

    out += ["", "五、及时性（时限内比例，自业务时间 P50/P95，自提交 P50/P95）"]
    for t in r["timeliness"]:
        share = "—" if t["within_share"] is None else f"{t['within_share']:.1%}"
        out.append(f"  {t['destination']} {t['timeliness_label']}（{_seconds(t['limit_seconds'])}）："
                   f"{t['within_limit']}/{t['events']} = {share}；"
                   f"{_seconds(t['p50_from_business_s'])}/{_seconds(t['p95_from_business_s'])}；"
                   f"{_seconds(t['p50_from_commit_s'])}/{_seconds(t['p95_from_commit_s'])}")
        if t.get("his_share") is not None and t.get("frontend_share") is not None:
            out.append(f"    HIS 推送及时率 {t['his_share']:.1%}（平均滞后 {_seconds(t['his_avg_s'])}）；"
                       f"前置软件上报及时率 {t['frontend_share']:.1%}（平均 {_seconds(t['frontend_avg_s'])}）")

    out += ["", "六、传输状态"]
    for t in r["transmission"]:
        out.append(f"  {t['destination']}：发送 {t['attempts']} 次，失败 {t['failures']}，重试 {t['retries']}；"
                   f"最近确认 {_n(t['last_ack_at'])}；复制滞后 {_n(t['wal_lag_bytes'])} 字节；"
                   f"隔离区待处理 {_n(t['quarantine_held'])}")
        if t["last_error"]:
            out.append(f"    最近失败原因：{t['last_error']}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- html

_CSS = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei","PingFang SC",sans-serif;
margin:24px auto;max-width:960px;color:#222;line-height:1.5}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;border-bottom:2px solid #2a6f97;padding-bottom:2px;margin-top:28px}
.meta{color:#666;font-size:13px}.ok{color:#1b7a3a;font-weight:bold}.bad{color:#b3261e;font-weight:bold}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eef3f7}
td.l,th.l{text-align:left}.alerts li{color:#b3261e}.notes li{color:#555}
.figs{display:flex;flex-wrap:wrap;gap:12px}
.fig{border:1px solid #ccd;border-radius:4px;padding:6px 12px;min-width:110px}
.actions li{margin:2px 0}.fig b{display:block;font-size:22px}.fig span{font-size:12px;color:#555}
svg{display:block;margin:6px 0}svg text{font-size:11px;fill:#333}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}table,svg{break-inside:avoid}}
"""


def _e(value: Any) -> str:
    return html.escape("—" if value is None else str(value))


def _fig(key: str, value: Any, label: str) -> str:
    return f'<div class="fig"><b id="fig-{key}" data-key="{key}">{_e(value)}</b><span>{_e(label)}</span></div>'


def _bars(rows: list[tuple[str, list[tuple[float, str, str]]]], *, max_value: float | None = None,
          target: float | None = None, percent: bool = False, title: str = "") -> str:
    """Horizontal grouped bars: rows of (label, [(value, colour, legend)]); optional target line."""
    if not rows:
        return ""
    label_w, chart_w, bar_h, gap = 150, 520, 12, 8
    top = max(value for _, bars in rows for value, _, _ in bars) if max_value is None else max_value
    top = top or 1.0
    group_h = max(len(bars) for _, bars in rows) * bar_h + gap
    height = len(rows) * group_h + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + chart_w + 70}" height="{height}"'
             f' role="img" aria-label="{_e(title)}">']
    for i, (label, bars) in enumerate(rows):
        y0 = 4 + i * group_h
        parts.append(f'<text x="{label_w - 6}" y="{y0 + bar_h}" text-anchor="end">{_e(label)}</text>')
        for j, (value, colour, legend) in enumerate(bars):
            w = max(0.0, min(value / top, 1.0)) * chart_w
            y = y0 + j * bar_h
            shown = f"{value:.1%}" if percent else f"{value:g}"
            parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{colour}">'
                         f'<title>{_e(legend)} {shown}</title></rect>')
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 3}">{shown}</text>')
    if target is not None:
        x = label_w + min(target / top, 1.0) * chart_w
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 18}" stroke="#b3261e"'
                     f' stroke-dasharray="4 3"/><text x="{x:.1f}" y="{height - 6}" text-anchor="middle">'
                     f'目标 {target:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _legend(items: list[tuple[str, str]]) -> str:
    return "<p class=\"meta\">" + "　".join(
        f'<span style="display:inline-block;width:10px;height:10px;background:{c}"></span> {_e(t)}'
        for c, t in items) + "</p>"


def _table(headers: list[str], rows: list[list[Any]], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_e(v)}</td>' for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body or '<tr><td class=l>（无）</td></tr>'}</tbody></table>"


def render_html(r: dict[str, Any]) -> str:
    c, s = r["cards"], r["cards"]["summary"]
    out: list[str] = [
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>前置软件每日对账报告 {_e(r['date'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>传染病监测预警前置软件 每日对账报告</h1><p class=\"meta\">对账日期 <b id=\"report-date\">"
        f"{_e(r['date'])}</b>　生成时间 {_e(r['generated_at'])}</p>",
        f'<p>结论：<span id="verdict" class="{"ok" if r["ok"] else "bad"}">'
        f'{"正常" if r["ok"] else "超出容差 " + str(len(r["alerts"])) + " 项"}</span></p>',
    ]
    if r["alerts"]:
        out.append('<ul class="alerts" id="alerts">' + "".join(f"<li>{_e(a)}</li>" for a in r["alerts"]) + "</ul>")
    if r["notes"]:
        out.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in r["notes"]) + "</ul>")
    if r.get("demo_explanations"):
        # cdcsync demo: why each red item is red in the synthetic day (cdcsync.demo_story)
        out.append('<h2>本演示中为何为红</h2><ul class="demo-why" id="demo-why">' + "".join(
            f"<li><b>{_e(item)}</b><br>→ {_e(why)}</li>" for item, why in r["demo_explanations"]) + "</ul>")
    if r["actions"]:
        out.append(f'<h2>处理建议（防保科，<span id="action-count">{len(r["actions"])}</span> 项）</h2>'
                   '<ol class="actions" id="actions">' + "".join(f"<li>{_e(a)}</li>" for a in r["actions"]) + "</ol>")

    # 1. cards first: what 防保科 acts on
    out.append("<h2>一、报告卡比对（前置软件与大疫情网）</h2><div class=\"figs\">")
    out += [_fig("card-frontend", s["frontend_cards"], "前置软件报告卡"),
            _fig("card-nndrs", s["nndrs_cards"], "大疫情网报告卡"),
            _fig("card-matched", s["matched"], "两边都有"),
            _fig("card-frontend-only", s["frontend_only"], "仅前置软件"),
            _fig("card-nndrs-only", s["nndrs_only"], "仅大疫情网"),
            _fig("card-differences", s["with_differences"], "内容不一致"),
            _fig("card-nndrs-deleted", s["nndrs_deleted"], "大疫情网已删除（不比对）")]
    out.append("</div>")
    out.append(f'<p class="meta">配对方式：按卡片编号 {_e(s["matched_by_card_no"])} 张，按证件号+病种+诊断日期 '
               f'{_e(s["matched_by_id_no"])} 张，按姓名+出生日期+性别+病种+诊断日期 {_e(s["matched_by_name"])} 张</p>')
    consistent = max(s["matched"] - s["with_differences"], 0)
    out.append(_bars([("报告卡", [(float(consistent), "#1b7a3a", "一致"),
                                  (float(s["with_differences"]), "#e8a33d", "内容不一致"),
                                  (float(s["frontend_only"]), "#2a6f97", "仅前置软件"),
                                  (float(s["nndrs_only"]), "#b3261e", "仅大疫情网")])], title="报告卡比对"))
    out.append(_legend([("#1b7a3a", "一致"), ("#e8a33d", "内容不一致"), ("#2a6f97", "仅前置软件"),
                        ("#b3261e", "仅大疫情网")]))
    only = [[no, "仅前置软件"] for no in c["frontend_only"]] + [[no, "仅大疫情网"] for no in c["nndrs_only"]]
    out.append(_table(["卡片编号", "情况"], only, left=2))
    out.append(_table(["卡片编号", "字段", "前置软件", "大疫情网"],
                      [[d["card_no"], d["field_label"], d["frontend_shown"], d["nndrs_shown"]]
                       for d in c["differences"]],
                      left=4))

    out.append("<h2>二、门急诊人次与传染病相关住院</h2><div class=\"figs\">")
    op = sum(v["outpatient_visits"] for v in r["visits"])
    em = sum(v["emergency_visits"] for v in r["visits"])
    out += [_fig("outpatient", op, "门诊人次（镜像库）"), _fig("emergency", em, "急诊人次（镜像库）")]
    total = next((row for row in r["inpatients"] if row["category"] == "合计"), None)
    if total:
        out += [_fig("inpatients", total["inpatients"], "在院传染病患者"),
                _fig("new-diagnoses", total["new_diagnoses"], "新增传染病诊断")]
    out.append("</div>")
    vrows: list[tuple[str, list[tuple[float, str, str]]]] = []
    for v in r["visits"]:
        for kind, label in (("outpatient", "门诊"), ("emergency", "急诊")):
            vrows.append((f"{v['org_code'][-6:]} {label}", [(float(v[f"{kind}_visits"]), "#2a6f97", "镜像库"),
                                                           (float(v[f"reported_{kind}"] or 0), "#999", "HIS统计")]))
    out.append(_bars(vrows, title="门急诊人次"))
    out.append(_legend([("#2a6f97", "镜像库就诊记录"), ("#999", "HIS 每日统计")]))
    out.append(_table(["机构", "门诊（镜像库）", "门诊（HIS）", "差", "急诊（镜像库）", "急诊（HIS）", "差"],
                      [[v["org_code"], v["outpatient_visits"], v["reported_outpatient"], v["outpatient_diff"],
                        v["emergency_visits"], v["reported_emergency"], v["emergency_diff"]] for v in r["visits"]]))
    out.append(f'<p class="meta" id="inpatient-trend">{_e(_trend_text(r["inpatient_trend"]))}</p>')
    out.append(_table(["传染病类别", "在院患者", "新增诊断", "新增患者"],
                      [[row["category"], row["inpatients"], row["new_diagnoses"], row["new_patients"]]
                       for row in r["inpatients"]]))

    out.append("<h2>三、数据及时性</h2>")
    trows = [(f"{t['destination']} {t['timeliness_label']}", [(float(t["within_share"] or 0), "#1b7a3a", "时限内比例")])
             for t in r["timeliness"] if t["events"]]
    out.append(_bars(trows, max_value=1.0, target=r["tolerances"]["min_timely_share"], percent=True,
                     title="时限内比例"))
    out.append(_table(["目的地", "时效", "HIS 推送及时率", "HIS 平均滞后", "前置软件上报及时率", "前置软件平均时延"],
                      [[t["destination"], t["timeliness_label"], _share(t.get("his_share")),
                        _seconds(t.get("his_avg_s")), _share(t.get("frontend_share")),
                        _seconds(t.get("frontend_avg_s"))] for t in r["timeliness"]], left=2))
    out.append(_table(["目的地", "时效", "时限", "事件数", "时限内", "比例",
                       "业务P50", "业务P95", "提交P50", "提交P95"],
                      [[t["destination"], t["timeliness_label"], _seconds(t["limit_seconds"]), t["events"],
                        t["within_limit"], "—" if t["within_share"] is None else f"{t['within_share']:.1%}",
                        _seconds(t["p50_from_business_s"]), _seconds(t["p95_from_business_s"]),
                        _seconds(t["p50_from_commit_s"]), _seconds(t["p95_from_commit_s"])] for t in r["timeliness"]],
                      left=2))

    out.append("<h2>四、各表记录数与投递</h2><div class=\"figs\">")
    for dest, t in r["table_totals"].items():
        out += [_fig(f"{dest}-mirror", t["mirror_rows"], f"{dest} 镜像库记录"),
                _fig(f"{dest}-delivered", t["delivered"], f"{dest} 已投递"),
                _fig(f"{dest}-not-delivered", t["not_delivered"], f"{dest} 未投递")]
    out.append("</div>")
    for dest in r["table_totals"]:
        rows = [row for row in r["tables"] if row["destination"] == dest and (row["mirror_rows"] or row["delivered"])]
        out.append(f"<p class=\"meta\">{_e(dest)}</p>")
        out.append(_bars([(row["table_label"], [(float(row["mirror_rows"]), "#999", "镜像库"),
                                                (float(row["delivered"]), "#2a6f97", "已投递")]) for row in rows],
                         title=f"{dest} 各表记录数"))
    out.append(_legend([("#999", "镜像库记录数"), ("#2a6f97", "已投递")]))
    out.append(_table(["目的地", "表", "镜像库", "已投递", "已隔离", "未投递"],
                      [[row["destination"], row["table_label"], row["mirror_rows"], row["delivered"],
                        row["quarantined"], row["not_delivered"]]
                       for row in r["tables"] if row["mirror_rows"] or row["delivered"] or row["quarantined"]], left=2))

    out.append("<h2>五、传输状态</h2>")
    out.append(_table(["目的地", "发送次数", "成功", "失败", "重试", "最近确认", "复制滞后（字节）",
                       "隔离区待处理", "最近失败原因"],
                      [[t["destination"], t["attempts"], t["successes"], t["failures"], t["retries"], t["last_ack_at"],
                        t["wal_lag_bytes"], t["quarantine_held"], t["last_error"]] for t in r["transmission"]]))
    out.append(f"<p class=\"meta\">容差：报告卡不一致不超过 {r['tolerances']['max_card_mismatches']} 张；"
               f"及时率不低于 {r['tolerances']['min_timely_share']:.0%}；门急诊人次差不超过 "
               f"{r['tolerances']['max_visit_diff_pct']:g}%。</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


RENDERERS = {"text": render_text, "json": render_json, "html": render_html}
