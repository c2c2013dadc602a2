"""The workbench's tables (sql/040_workbench.sql): nonces, sessions, cards, write-back rows, audit.

Functions take a psycopg connection and run in ``conn.transaction()`` (a savepoint inside the
caller's transaction, or a transaction of its own on an autocommit connection).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cdcsync.beijing import BEIJING
from cdcsync.crypto.sm3 import sm3_hex
from cdcsync.workbench.sso import Ticket

CARD_PENDING = "待审核"
CARD_APPROVED = "已通过"
CARD_RETURNED = "已退回"
CARD_SUPERSEDED = "已订正"
CARD_DELETED = "已删除"


class ReplayedTicket(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str
    his: str
    staff_id: str
    staff_name: str
    dept_code: str
    dept_name: str | None
    role: str
    patient_id: str | None
    visit_id: str | None

    @property
    def sees_all(self) -> bool:
        """The 防保科 sees every department's patients; a doctor only their own department's."""
        return self.role == "public_health"


def use_nonce(conn: psycopg.Connection[Any], ticket: Ticket, keep: dt.timedelta) -> None:
    """Record the ticket's nonce; ReplayedTicket when it was used before. Nonces older than
    ``keep`` (ticket lifetime plus skew, after which the ticket is refused as expired anyway) go."""
    with conn.transaction():
        conn.execute("DELETE FROM cdcsync.wb_sso_nonce WHERE used_at < now() - %s", (keep,))
        row = conn.execute("INSERT INTO cdcsync.wb_sso_nonce (his, nonce, iat) VALUES (%s, %s, %s)"
                           " ON CONFLICT DO NOTHING RETURNING 1", (ticket.his, ticket.nonce, ticket.iat)).fetchone()
    if row is None:
        raise ReplayedTicket("单点登录票据已使用过，请从院内系统重新打开")


def start_session(conn: psycopg.Connection[Any], ticket: Ticket) -> tuple[str, Session]:
    """(cookie value, session). Only the cookie's SM3 hash is stored."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    with conn.transaction():
        conn.execute(
            "INSERT INTO cdcsync.wb_session (session_hash, csrf, his, staff_id, staff_name, dept_code, dept_name,"
            " role, patient_id, visit_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (sm3_hex(token.encode()), csrf, ticket.his, ticket.staff_id, ticket.staff_name, ticket.dept_code,
             ticket.dept_name, ticket.role, ticket.patient_id, ticket.visit_id))
    return token, Session(csrf, ticket.his, ticket.staff_id, ticket.staff_name, ticket.dept_code,
                          ticket.dept_name, ticket.role, ticket.patient_id, ticket.visit_id)


def load_session(conn: psycopg.Connection[Any], token: str, idle: dt.timedelta,
                 max_age: dt.timedelta) -> Session | None:
    """The live session of a cookie (touching it), or None when unknown, ended or timed out."""
    if not token or len(token) > 128:
        return None
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "UPDATE cdcsync.wb_session SET last_seen_at = now() WHERE session_hash = %s AND ended_at IS NULL"
            " AND last_seen_at > now() - %s AND created_at > now() - %s"
            " RETURNING csrf, his, staff_id, staff_name, dept_code, dept_name, role, patient_id, visit_id",
            (sm3_hex(token.encode()), idle, max_age))
        row = cur.fetchone()
    return Session(**row) if row else None


def end_session(conn: psycopg.Connection[Any], token: str) -> None:
    conn.execute("UPDATE cdcsync.wb_session SET ended_at = now() WHERE session_hash = %s AND ended_at IS NULL",
                 (sm3_hex(token.encode()),))


def audit(conn: psycopg.Connection[Any], actor: str, role: str, action: str, *, his: str | None = None,
          allowed: bool = True, case_id: int | None = None, card_id: str | None = None,
          patient_id: str | None = None, detail: str | None = None) -> None:
    """One audit line: who, role, what, which case/card/patient — never field values."""
    conn.execute("INSERT INTO cdcsync.wb_audit (actor, role, his, action, allowed, case_id, card_id, patient_id,"
                 " detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                 (actor or "-", role or "-", his, action, allowed, case_id, card_id, patient_id, detail))


def purge_audit(conn: psycopg.Connection[Any], retention_days: int) -> int:
    """Delete audit lines older than the retention (at least 180 days: the trigger checks it)."""
    with conn.transaction():
        conn.execute("SET LOCAL cdcsync.audit_purge = 'on'")
        cur = conn.execute("DELETE FROM cdcsync.wb_audit WHERE at < now() - make_interval(days => %s)",
                           (max(180, retention_days),))
        return cur.rowcount


def purge_sessions(conn: psycopg.Connection[Any], max_age: dt.timedelta) -> int:
    """Forget sessions that ended or expired more than a day ago (they can never be used again)."""
    cur = conn.execute("DELETE FROM cdcsync.wb_session WHERE coalesce(ended_at, last_seen_at) < now() - %s"
                       " OR created_at < now() - %s", (dt.timedelta(days=1), max_age + dt.timedelta(days=1)))
    return cur.rowcount


def audit_lines(conn: psycopg.Connection[Any], *, actor: str | None = None, patient_id: str | None = None,
                limit: int = 500) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    if actor:
        where.append("actor = %s")
        params.append(actor)
    if patient_id:
        where.append("patient_id = %s")
        params.append(patient_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT audit_id, at, actor, role, his, action, allowed, case_id, card_id, patient_id, detail"
                    f" FROM cdcsync.wb_audit {clause} ORDER BY audit_id DESC LIMIT %s", (*params, limit))
        return cur.fetchall()


# -- cards -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardRow:
    card_row_id: int
    card_id: str
    version: int
    case_id: int | None
    status: str
    org_code: str
    patient_id: str
    visit_id: str | None
    disease_code: str
    disease_name: str
    dept_code: str
    doctor_id: str
    doctor_name: str
    fields: dict[str, Any]
    supplement_kind: str | None
    supplement: dict[str, Any] | None
    created_at: dt.datetime
    reviewed_at: dt.datetime | None
    reviewed_by: str | None
    review_reason: str | None


_CARD_COLUMNS = ("card_row_id, card_id, version, case_id, status, org_code, patient_id, visit_id, disease_code,"
                 " disease_name, dept_code, doctor_id, doctor_name, fields, supplement_kind, supplement, created_at,"
                 " reviewed_at, reviewed_by, review_reason")


def new_card_id(conn: psycopg.Connection[Any], org_code: str) -> str:
    """WB + org code + date + a sequence number of the day: readable on the phone with the 防保科."""
    today = dt.datetime.now(BEIJING).strftime("%Y%m%d")
    prefix = f"WB{org_code[-6:]}{today}"
    row = conn.execute("SELECT count(DISTINCT card_id) FROM cdcsync.wb_card WHERE card_id LIKE %s",
                       (prefix + "%",)).fetchone()
    n = int(row[0]) + 1 if row else 1
    return f"{prefix}{n:04d}"


def insert_card(conn: psycopg.Connection[Any], *, card_id: str, version: int, case_id: int | None, org_code: str,
                patient_id: str, visit_id: str | None, disease_code: str, disease_name: str, dept_code: str,
                doctor_id: str, doctor_name: str, fields: dict[str, Any], supplement_kind: str | None,
                supplement: dict[str, Any] | None) -> CardRow:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "INSERT INTO cdcsync.wb_card (card_id, version, case_id, status, org_code, patient_id, visit_id,"
            " disease_code, disease_name, dept_code, doctor_id, doctor_name, fields, supplement_kind, supplement)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_CARD_COLUMNS}",
            (card_id, version, case_id, CARD_PENDING, org_code, patient_id, visit_id, disease_code, disease_name,
             dept_code, doctor_id, doctor_name, Jsonb(fields), supplement_kind,
             Jsonb(supplement) if supplement is not None else None))
        row = cur.fetchone()
    assert row is not None
    card = CardRow(**row)
    write_back(conn, card, "新报卡" if version == 1 else "订正")
    publish(conn, card)
    return card


def _beijing_now() -> dt.datetime:
    return dt.datetime.now(BEIJING).replace(tzinfo=None, microsecond=0)


def _d(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def publish(conn: psycopg.Connection[Any], card: CardRow) -> None:
    """The card into ``emr.report_card_frontend`` (one row per card, its latest version and review
    state): from there the normal stream takes it to both platforms, like any mirror row. The
    HIS never writes that table (sql/220_workbench_grants.sql); codes in it are national."""
    f = card.fields
    now = _beijing_now()
    values: dict[str, Any] = {
        "org_code": card.org_code, "card_id": card.card_id, "card_version": card.version,
        "card_category_code": "1" if card.version == 1 else "2",
        "review_status": card.status, "case_id": card.case_id, "visit_id": card.visit_id,
        "patient_id": card.patient_id, "patient_name": f.get("patient_name"),
        "parent_name": f.get("parent_name") or None, "id_type_code": f.get("id_type_code") or None,
        "id_no": f.get("id_no") or None, "sex_code": f.get("sex_code"), "birth_date": _d(f.get("birth_date")),
        "age_value": int(f["age_value"]) if f.get("age_value") else None, "age_unit": f.get("age_unit") or None,
        "work_unit": f.get("work_unit") or None, "phone": f.get("phone") or None,
        "patient_belong_code": f.get("patient_belong_code"),
        "current_addr_region_code": f.get("current_addr_region_code"),
        "current_addr_detail": f.get("current_addr_detail") or None,
        "population_group_code": f.get("population_group_code"), "disease_code": card.disease_code,
        "other_disease_name": f.get("other_disease_name") or None,
        "diagnosis_status_code": f.get("diagnosis_status_code"), "case_type_code": f.get("case_type_code") or None,
        "onset_date": _d(f.get("onset_date")),
        "diagnosis_time": dt.datetime.fromisoformat(f["diagnosis_time"]) if f.get("diagnosis_time") else None,
        "death_date": _d(f.get("death_date")), "supplement_kind": card.supplement_kind,
        "supplement": Jsonb(card.supplement) if card.supplement is not None else None,
        "report_dept_code": card.dept_code, "report_doctor_id": card.doctor_id, "report_doctor": card.doctor_name,
        "report_time": card.created_at.astimezone(BEIJING).replace(tzinfo=None, microsecond=0),
        "remark": f.get("remark") or None,
        "modify_flag": "3" if card.status == CARD_DELETED else ("1" if card.version == 1 and card.status == CARD_PENDING
                                                              else "2"),
        "collect_time": now, "update_time": now,
    }
    cols = list(values)
    conn.execute(
        sql.SQL("INSERT INTO emr.report_card_frontend ({}) VALUES ({}) ON CONFLICT (org_code, card_id)"
                " DO UPDATE SET {}").format(
            sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join(sql.Placeholder() * len(cols)),
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
                               for c in cols if c not in ("org_code", "card_id"))),
        [values[c] for c in cols])


def write_back(conn: psycopg.Connection[Any], card: CardRow, event: str, reason: str | None = None) -> None:
    """One row the HIS reads (院内传报卡数据回传)."""
    conn.execute(
        "INSERT INTO writeback.report_card (event, card_id, version, card_status, case_id, org_code, patient_id,"
        " visit_id, disease_code, disease_name, doctor_id, dept_code, reason, card)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (event, card.card_id, card.version, card.status, card.case_id, card.org_code, card.patient_id,
         card.visit_id, card.disease_code, card.disease_name, card.doctor_id, card.dept_code, reason,
         Jsonb({"fields": card.fields, "supplement_kind": card.supplement_kind, "supplement": card.supplement})))


def get_card(conn: psycopg.Connection[Any], card_row_id: int) -> CardRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_CARD_COLUMNS} FROM cdcsync.wb_card WHERE card_row_id = %s", (card_row_id,))
        row = cur.fetchone()
    return CardRow(**row) if row else None


def set_card_status(conn: psycopg.Connection[Any], card_row_id: int, status: str, by: str,
                    reason: str | None) -> CardRow:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"UPDATE cdcsync.wb_card SET status = %s, reviewed_at = now(), reviewed_by = %s,"
                    f" review_reason = %s WHERE card_row_id = %s RETURNING {_CARD_COLUMNS}",
                    (status, by, reason, card_row_id))
        row = cur.fetchone()
    assert row is not None
    card = CardRow(**row)
    publish(conn, card)
    return card


def supersede(conn: psycopg.Connection[Any], card_row_id: int) -> None:
    conn.execute("UPDATE cdcsync.wb_card SET status = %s WHERE card_row_id = %s", (CARD_SUPERSEDED, card_row_id))


def list_cards(conn: psycopg.Connection[Any], *, patient_id: str | None = None, doctor_id: str | None = None,
               dept_code: str | None = None, statuses: tuple[str, ...] = (), disease_code: str | None = None,
               since: dt.date | None = None, until: dt.date | None = None, limit: int = 200) -> list[CardRow]:
    where: list[str] = []
    params: list[Any] = []
    for col, value in (("patient_id", patient_id), ("doctor_id", doctor_id), ("dept_code", dept_code),
                       ("disease_code", disease_code)):
        if value:
            where.append(f"{col} = %s")
            params.append(value)
    if statuses:
        where.append("status = ANY(%s)")
        params.append(list(statuses))
    if since:
        where.append("created_at >= %s::date")
        params.append(since)
    if until:
        where.append("created_at < %s::date + 1")
        params.append(until)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_CARD_COLUMNS} FROM cdcsync.wb_card {clause} ORDER BY card_row_id DESC LIMIT %s",
                    (*params, limit))
        return [CardRow(**r) for r in cur.fetchall()]


def his_cards(conn: psycopg.Connection[Any], *, dept_code: str | None = None, doctor_id: str | None = None,
              since: dt.date | None = None, until: dt.date | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The HIS's own cards (``emr.report_card``, local codes) for the 防保科's list."""
    where: list[str] = []
    params: list[Any] = []
    for col, value in (("report_dept_code", dept_code), ("report_doctor_id", doctor_id)):
        if value:
            where.append(f"{col} = %s")
            params.append(value)
    if since:
        where.append("report_time >= %s::date")
        params.append(since)
    if until:
        where.append("report_time < %s::date + 1")
        params.append(until)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT card_id, card_no, patient_id, disease_code, report_dept_code, report_doctor_id,"
                    f" report_doctor, report_time, modify_flag FROM emr.report_card {clause}"
                    " ORDER BY report_time DESC LIMIT %s", (*params, limit))
        return cur.fetchall()
