"""Workload and timeliness per department and doctor (首诊责任制 assessment) for the 防保科.

Over the cases created in a day or a month (Beijing time): how many were due, reported in time
(已报卡 no later than the due time), reported late, excluded, still open and overdue, still open
within time. The responsible doctor is the case's (the rules engine's first-contact doctor).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cdcsync.beijing import BEIJING

COLUMNS = ("dept_code", "doctor_id", "doctor_name", "due", "in_time", "late", "excluded", "open_overdue",
           "open_in_time", "other")
HEADERS = ("科室", "医生工号", "医生姓名", "应报病例", "及时报告", "迟报", "已排除", "超时未报", "未到时限",
           "其他结案", "及时报告率")


@dataclass(frozen=True, slots=True)
class Period:
    start: dt.datetime
    end: dt.datetime
    label: str


def period(kind: str, day: dt.date) -> Period:
    """The day, or the month containing ``day``, as a Beijing-time interval."""
    if kind == "month":
        first = day.replace(day=1)
        nxt = (first + dt.timedelta(days=32)).replace(day=1)
        return Period(dt.datetime.combine(first, dt.time(), BEIJING), dt.datetime.combine(nxt, dt.time(), BEIJING),
                      f"{first:%Y年%m月}")
    return Period(dt.datetime.combine(day, dt.time(), BEIJING),
                  dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), BEIJING), f"{day:%Y年%m月%d日}")


def workload(conn: psycopg.Connection[Any], p: Period, now: dt.datetime) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT coalesce(dept_code, '') AS dept_code, coalesce(doctor_id, '') AS doctor_id,"
            " max(coalesce(doctor_name, '')) AS doctor_name, count(*) AS due,"
            " count(*) FILTER (WHERE status = '已报卡' AND closed_at <= due_at) AS in_time,"
            " count(*) FILTER (WHERE status = '已报卡' AND closed_at > due_at) AS late,"
            " count(*) FILTER (WHERE status = '已排除') AS excluded,"
            " count(*) FILTER (WHERE status IN ('待确认', '待确诊', '待核查') AND due_at < %(now)s) AS open_overdue,"
            " count(*) FILTER (WHERE status IN ('待确认', '待确诊', '待核查') AND due_at >= %(now)s) AS open_in_time,"
            " count(*) FILTER (WHERE status IN ('已订正', '已过期')) AS other"
            " FROM cdcsync.surveil_case WHERE created_at >= %(start)s AND created_at < %(end)s"
            " GROUP BY 1, 2 ORDER BY 1, 2", {"now": now, "start": p.start, "end": p.end})
        rows = cur.fetchall()
    for r in rows:
        judged = r["in_time"] + r["late"] + r["open_overdue"]  # cases whose timeliness is decided
        r["rate"] = f"{r['in_time'] / judged:.1%}" if judged else "—"
    return rows


def _cell(value: Any) -> Any:
    # A name starting with = + - @ would be a formula in Excel (CSV injection): quote it.
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") else value


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    """UTF-8 with a BOM so that Excel on the 防保科's PC opens the Chinese headers correctly."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADERS)
    for r in rows:
        w.writerow([_cell(r[c]) for c in COLUMNS] + [r["rate"]])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
