"""Reminders: what a doctor or a department must act on, and the commit-ordered feed of changes.

The feed reads ``cdcsync.surveil_case_history`` in commit order (sql/120_surveil_feed.sql): only
rows whose writing transaction is older than the oldest transaction still running, ordered by
(transaction id, history id). A cursor ``"<xid>-<history_id>"`` (the SSE event id) therefore never
has a row appear behind it later: a client that reconnects with ``Last-Event-ID`` misses nothing.

The reminder text is Chinese and short: disease, due time, what to do. A reminder carries no more
patient data than the doctor already sees in the HIS: patient id, visit id and the patient's name
(looked up in ``emr.patient`` when the mirror has it).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cdcsync.beijing import BEIJING
from cdcsync.surveil.cases import OPEN_STATUSES, Case, Kind, Status

CURSOR_RE = re.compile(r"^(\d{1,20})-(\d{1,20})$")

# What to do, per open status (short, for a popup).
TODO: dict[Status, str] = {
    Status.TO_CONFIRM: "请确认诊断并填报传染病报告卡",
    Status.TO_DIAGNOSE: "请尽快明确诊断，确诊后填报传染病报告卡",
    Status.TO_CHECK: "请核查，需要报告的请填报传染病报告卡，无需报告的请注明排除原因",
}
KIND_WHY: dict[Kind, str] = {
    Kind.NOTIFIABLE_DIAGNOSIS: "诊断为法定传染病",
    Kind.SUSPECTED: "疑似诊断",
    Kind.POSITIVE_PATHOGEN: "病原学检测阳性",
    Kind.SPECIAL_DRUG: "使用特殊药物但无相应诊断",
    Kind.DEATH: "死亡病例",
    Kind.CARD_MISMATCH: "报告卡与诊断不一致",
}


def cursor_text(xid: int, history_id: int) -> str:
    return f"{xid}-{history_id}"


def parse_cursor(text: str | None) -> tuple[int, int] | None:
    """``"<xid>-<history_id>"`` → (xid, history_id); None for no or an unreadable cursor."""
    if not text:
        return None
    m = CURSOR_RE.match(text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def due_text(due_at: dt.datetime, now: dt.datetime) -> str:
    local = due_at.astimezone(BEIJING)
    when = local.strftime("%m-%d %H:%M")
    if due_at <= now:
        return f"已超过报告时限（{when}）"
    return f"请于 {when} 前处理"


def reminder_text(case: Case, now: dt.datetime) -> str:
    """E.g. ``【待确认】肺结核（乙类）：诊断为法定传染病。请于 12-02 15:30 前处理：请确认诊断并填报传染病报告卡。``"""
    klass = f"{case.disease_class}类" if case.disease_class != "其他" else "其他法定管理传染病"
    head = f"【{case.status}】{case.disease_name}（{klass}）：{KIND_WHY.get(case.kind, '')}。"
    if not case.is_open:
        closed = {Status.REPORTED: f"已报卡（{case.card_no}）", Status.EXCLUDED: "已排除",
                  Status.CORRECTED: "源记录已订正", Status.EXPIRED: "已过期"}.get(case.status, str(case.status))
        return f"{head}{closed}，无需再处理。"
    return f"{head}{due_text(case.due_at, now)}：{TODO[case.status]}。"


@dataclass(frozen=True, slots=True)
class ReminderScope:
    """Filters of a reminders request, already checked against the key's scope."""

    doctor_id: str | None = None
    dept_code: str | None = None
    depts_allowed: tuple[str, ...] | None = None  # the key's departments (None: any)
    doctors_allowed: tuple[str, ...] | None = None  # the key's doctors (None: any)
    statuses: tuple[Status, ...] = ()
    since: dt.datetime | None = None


def _where(scope: ReminderScope, alias: str = "c") -> tuple[str, list[Any]]:
    conds: list[str] = []
    params: list[Any] = []
    if scope.doctor_id is not None:
        conds.append(f"{alias}.doctor_id = %s")
        params.append(scope.doctor_id)
    if scope.dept_code is not None:
        conds.append(f"{alias}.dept_code = %s")
        params.append(scope.dept_code)
    if scope.depts_allowed is not None:
        conds.append(f"{alias}.dept_code = ANY(%s)")
        params.append(list(scope.depts_allowed))
    if scope.doctors_allowed is not None and scope.doctor_id is None and scope.dept_code is None:
        conds.append(f"{alias}.doctor_id = ANY(%s)")
        params.append(list(scope.doctors_allowed))
    if scope.statuses:
        conds.append(f"{alias}.status = ANY(%s)")
        params.append([str(s) for s in scope.statuses])
    if scope.since is not None:
        conds.append(f"{alias}.created_at >= %s")
        params.append(scope.since)
    return (" AND ".join(conds) if conds else "true"), params


_CASE_COLS = ("c.case_id, c.status, c.kind, c.disease_code, c.disease_name, c.disease_class, c.org_code,"
              " c.patient_id, c.visit_id, c.doctor_id, c.doctor_name, c.dept_code, c.signal_at, c.created_at,"
              " c.due_at, c.updated_at, c.snooze_until, c.acked_at, c.acked_by, c.closed_at, c.card_no,"
              " c.close_reason, c.pack_version")


def _case_of(row: dict[str, Any]) -> Case:
    fields = {k: row[k] for k in Case.__slots__}
    return Case(**{**fields, "status": Status(row["status"]), "kind": Kind(row["kind"])})


def _patient_names(conn: psycopg.Connection[Any], keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Patient names for (org_code, patient_id): what the doctor sees in the HIS anyway."""
    if not keys:
        return {}
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT org_code, patient_id, name FROM emr.patient WHERE (org_code, patient_id) IN"
                        " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                        ([k[0] for k in keys], [k[1] for k in keys]))
            return {(r[0], r[1]): r[2] for r in cur.fetchall() if r[2] is not None}
    except psycopg.Error:  # no patient table in this mirror: ids only
        return {}


def reminder(case: Case, now: dt.datetime, name: str | None) -> dict[str, Any]:
    """The JSON of one reminder (no other patient data than id, name and visit)."""
    return {
        "case_id": case.case_id,
        "status": str(case.status),
        "kind": str(case.kind),
        "disease": {"code": case.disease_code, "name": case.disease_name, "class": case.disease_class},
        "patient": {"patient_id": case.patient_id, "name": name, "visit_id": case.visit_id},
        "doctor_id": case.doctor_id,
        "doctor_name": case.doctor_name,
        "dept_code": case.dept_code,
        "created_at": case.created_at.isoformat(),
        "due_at": case.due_at.isoformat(),
        "overdue": case.overdue(now),
        "snooze_until": case.snooze_until.isoformat() if case.snooze_until else None,
        "acked_at": case.acked_at.isoformat() if case.acked_at else None,
        "text": reminder_text(case, now),
        "actions": ["ack", "snooze", "exclude", "reported"] if case.is_open else [],
    }


def list_reminders(conn: psycopg.Connection[Any], scope: ReminderScope, *, before_id: int | None,
                   limit: int, now: dt.datetime) -> list[dict[str, Any]]:
    """Newest first. Without a status filter: the open cases not snoozed at ``now`` (what must be
    acted on); with one: the cases in those statuses."""
    where, params = _where(scope)
    if not scope.statuses:
        where += " AND c.status = ANY(%s) AND (c.snooze_until IS NULL OR c.snooze_until <= %s)"
        params += [[str(s) for s in OPEN_STATUSES], now]
    if before_id is not None:
        where += " AND c.case_id < %s"
        params.append(before_id)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_CASE_COLS} FROM cdcsync.surveil_case c WHERE {where}"
                    f" ORDER BY c.case_id DESC LIMIT %s", (*params, limit))
        cases = [_case_of(r) for r in cur.fetchall()]
    names = _patient_names(conn, {(c.org_code, c.patient_id) for c in cases})
    return [reminder(c, now, names.get((c.org_code, c.patient_id))) for c in cases]


@dataclass(frozen=True, slots=True)
class FeedItem:
    cursor: str
    action: str
    data: dict[str, Any]


def feed_head(conn: psycopg.Connection[Any]) -> str:
    """The cursor of "now": every row of a transaction older than the oldest one running is behind
    it, every later row after it (a new client without Last-Event-ID starts here)."""
    row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::numeric - 1").fetchone()
    conn.commit()
    return cursor_text(int(row[0]) if row else 0, 2**63 - 1)


def read_feed(conn: psycopg.Connection[Any], scope: ReminderScope, after: tuple[int, int], *,
              limit: int, now: dt.datetime) -> tuple[list[FeedItem], tuple[int, int]]:
    """History rows after ``after`` in commit order whose case matches ``scope``; returns them and
    the new cursor (which moves past rows of other cases too, so a quiet filter does not re-scan)."""
    where, params = _where(scope)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT h.xid::text::numeric AS hx, h.history_id AS hid, h.action AS h_action, h.actor AS h_actor,"
            " h.actor_role AS h_role, h.from_status AS h_from, h.to_status AS h_to, h.at AS h_at,"
            f" ({where}) AS matches, {_CASE_COLS}"
            " FROM cdcsync.surveil_case_history h JOIN cdcsync.surveil_case c USING (case_id)"
            " WHERE h.xid < pg_snapshot_xmin(pg_current_snapshot())"
            " AND (h.xid::text::numeric, h.history_id) > (%s::numeric, %s::bigint)"
            " ORDER BY h.xid, h.history_id LIMIT %s",
            (*params, after[0], after[1], limit))
        rows = cur.fetchall()
    conn.commit()
    last = after
    items: list[FeedItem] = []
    matched: list[tuple[dict[str, Any], Case]] = []
    for r in rows:
        last = (int(r["hx"]), int(r["hid"]))
        if r["matches"]:
            matched.append((r, _case_of(r)))
    names = _patient_names(conn, {(c.org_code, c.patient_id) for _, c in matched})
    conn.commit()
    for r, case in matched:
        data = reminder(case, now, names.get((case.org_code, case.patient_id)))
        data["change"] = {"action": r["h_action"], "actor": r["h_actor"], "actor_role": r["h_role"],
                          "from_status": r["h_from"], "to_status": r["h_to"], "at": r["h_at"].isoformat()}
        items.append(FeedItem(cursor_text(int(r["hx"]), int(r["hid"])), str(r["h_action"]), data))
    return items, last
