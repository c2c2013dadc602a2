"""What the popup shows of a case's evidence: the source row's diagnosis, lab result or drug, and dates.

Evidence rows hold the table and the key only (cdcsync/surveil/cases.py); the values are read from
the mirror at display time, a few fields per table — the doctor's own patient's data, on screen only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cdcsync.surveil.cases import EvidenceRow

# table → (Chinese label, fields shown in order, time field)
SHOWN: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "diagnosis": ("诊断", ("diagnosis_code", "diagnosis_name"), "diagnosis_time"),
    "lab_result": ("检验结果", ("lab_item_name", "result_value", "result_unit"), "report_time"),
    "lab_report": ("检验报告", ("report_name",), "report_time"),
    "drug_order": ("用药", ("drug_name", "drug_spec"), "order_time"),
    "death_record": ("死亡记录", ("death_cause_name",), "death_time"),
    "report_card": ("院内报告卡", ("card_no",), "report_time"),
}


def _fmt(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return "" if value is None else str(value)


def describe_evidence(conn: psycopg.Connection[Any], rows: list[EvidenceRow]) -> list[dict[str, str]]:
    out = []
    for ev in rows:
        label, fields, time_field = SHOWN.get(ev.table_name, (ev.table_name, (), None))
        text, when = "", ""
        if ev.table_name in SHOWN and ev.row_key:
            query = sql.SQL("SELECT * FROM emr.{} WHERE {} LIMIT 1").format(
                sql.Identifier(ev.table_name),
                sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in ev.row_key))
            try:
                with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(query, list(ev.row_key.values()))
                    src = cur.fetchone()
            except psycopg.Error:
                src = None  # a key naming a column that does not exist: show the label only
            if src:
                text = " ".join(_fmt(src.get(f)) for f in fields if src.get(f) is not None)
                when = _fmt(src.get(time_field)) if time_field else ""
            else:
                text = "（源记录已删除或未找到）"
        out.append({"label": label, "text": text, "when": when, "rule": ev.rule_id})
    return out
