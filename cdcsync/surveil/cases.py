"""The case store: pending cases (待确认 / 待确诊 / 待核查), their evidence and their history.

The only writer of ``cdcsync.surveil_case*`` (sql/030_surveil_cases.sql). A ``CaseStore`` wraps a
psycopg connection and never commits on its own: each method runs in ``conn.transaction()``, which
is a savepoint inside the caller's transaction (the rules consumer writes cases in the same
transaction as its checkpoint) and a transaction of its own on an idle connection (the actions of
the reminders API and the workbench). One open case per (org, patient, disease) is the partial
unique index ``surveil_case_one_open``; a new signal for an open case adds evidence.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


class Status(enum.StrEnum):
    TO_CONFIRM = "待确认"
    TO_DIAGNOSE = "待确诊"
    TO_CHECK = "待核查"
    REPORTED = "已报卡"
    EXCLUDED = "已排除"
    CORRECTED = "已订正"
    EXPIRED = "已过期"

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATUSES


OPEN_STATUSES: frozenset[Status] = frozenset({Status.TO_CONFIRM, Status.TO_DIAGNOSE, Status.TO_CHECK})


class Kind(enum.StrEnum):
    NOTIFIABLE_DIAGNOSIS = "notifiable_diagnosis"
    SUSPECTED = "suspected"
    POSITIVE_PATHOGEN = "positive_pathogen"
    SPECIAL_DRUG = "special_drug"
    DEATH = "death"
    CARD_MISMATCH = "card_mismatch"


KIND_LABELS: dict[Kind, str] = {
    Kind.NOTIFIABLE_DIAGNOSIS: "法定传染病诊断",
    Kind.SUSPECTED: "疑似病例待确诊",
    Kind.POSITIVE_PATHOGEN: "病原学检测阳性",
    Kind.SPECIAL_DRUG: "特殊用药",
    Kind.DEATH: "死亡病例",
    Kind.CARD_MISMATCH: "报告卡与诊断不一致",
}

ROLES = ("rules", "doctor", "public_health", "admin", "his")

# Snooze bounds: never past the due time while it lies ahead; an overdue case at most 30 minutes.
SNOOZE_MAX = dt.timedelta(hours=8)
SNOOZE_MAX_OVERDUE = dt.timedelta(minutes=30)


class CaseError(ValueError):
    """A refused case operation; the message is one Chinese line for the user."""

    code = "invalid"  # HTTP mapping: invalid → 422, not_found → 404, conflict → 409


class CaseNotFound(CaseError):
    code = "not_found"


class CaseClosed(CaseError):
    code = "conflict"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a doctor's id (from the request, checked by the caller), or ``rules:<pack version>``."""

    id: str
    role: str  # one of ROLES

    def __post_init__(self) -> None:
        if not self.id.strip():
            raise CaseError("操作人工号不能为空")
        if self.role not in ROLES:
            raise CaseError(f"操作人角色 {self.role!r} 无效，应为 {'、'.join(ROLES)} 之一")


@dataclass(frozen=True, slots=True)
class Evidence:
    """A source row: the event id and the row's table and key — never other values."""

    event_id: str
    table: str
    key: dict[str, Any]
    rule_id: str


@dataclass(frozen=True, slots=True)
class Signal:
    """What a rule found: open a case, or add evidence to the open one for that patient and disease."""

    kind: Kind
    status: Status  # the open status a new case gets
    disease_code: str
    disease_name: str
    disease_class: str  # 甲 | 乙 | 丙 | 其他
    org_code: str
    patient_id: str
    visit_id: str | None
    doctor_id: str | None
    doctor_name: str | None
    dept_code: str | None
    signal_at: dt.datetime  # commit time of the triggering transaction (timezone-aware)
    due_hours: float
    evidence: Evidence
    reason: str  # Chinese, e.g. "诊断 A09.0 属于法定传染病 其他感染性腹泻病"
    pack_version: str


@dataclass(frozen=True, slots=True)
class Case:
    case_id: int
    status: Status
    kind: Kind
    disease_code: str
    disease_name: str
    disease_class: str
    org_code: str
    patient_id: str
    visit_id: str | None
    doctor_id: str | None
    doctor_name: str | None
    dept_code: str | None
    signal_at: dt.datetime
    created_at: dt.datetime
    due_at: dt.datetime
    updated_at: dt.datetime
    snooze_until: dt.datetime | None
    acked_at: dt.datetime | None
    acked_by: str | None
    closed_at: dt.datetime | None
    card_no: str | None
    close_reason: str | None
    pack_version: str

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    def overdue(self, now: dt.datetime) -> bool:
        return self.is_open and self.due_at < now

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, dt.datetime) else (
                str(value) if isinstance(value, enum.Enum) else value)
        return out


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    history_id: int
    case_id: int
    at: dt.datetime
    actor: str
    actor_role: str
    action: str
    from_status: str | None
    to_status: str
    reason: str | None
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        out["at"] = self.at.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    evidence_id: int
    case_id: int
    event_id: str
    table_name: str
    row_key: dict[str, Any]
    rule_id: str
    added_at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        out["added_at"] = self.added_at.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class CaseDetail:
    case: Case
    evidence: list[EvidenceRow]
    history: list[HistoryEntry]


@dataclass(frozen=True, slots=True)
class OpenResult:
    case: Case
    created: bool  # False: evidence added to the open case (or already there)
    evidence_added: bool


@dataclass(frozen=True, slots=True)
class Action:
    """An action on an open case (reminders API, workbench, CLI)."""

    name: str  # ack | snooze | exclude | reported
    until: dt.datetime | None = None  # snooze
    reason: str | None = None  # exclude (required); free note for the others
    card_no: str | None = None  # reported (required)

    NAMES = ("ack", "snooze", "exclude", "reported")


@dataclass(slots=True)
class CaseFilter:
    doctor_id: str | None = None
    dept_code: str | None = None
    statuses: Sequence[Status] = ()
    open_only: bool = False
    actionable_at: dt.datetime | None = None  # open and not snoozed at that time
    overdue_at: dt.datetime | None = None  # open and past due at that time
    since: dt.datetime | None = None  # created at or after
    kinds: Sequence[Kind] = ()
    disease_code: str | None = None
    org_code: str | None = None
    patient_id: str | None = None
    before_id: int | None = None  # paging: newest first, ids below this one
    after_id: int | None = None  # oldest first, ids above this one (streams)
    limit: int = 100
    extra: dict[str, Any] = field(default_factory=dict)


_CASE_COLUMNS = (
    "case_id, status, kind, disease_code, disease_name, disease_class, org_code, patient_id, visit_id,"
    " doctor_id, doctor_name, dept_code, signal_at, created_at, due_at, updated_at, snooze_until,"
    " acked_at, acked_by, closed_at, card_no, close_reason, pack_version")
_OPEN = ("待确认", "待确诊", "待核查")  # the order of the partial index predicate (ON CONFLICT)
_OPEN_SQL = "('待确认', '待确诊', '待核查')"


def _case(row: dict[str, Any]) -> Case:
    return Case(**{**row, "status": Status(row["status"]), "kind": Kind(row["kind"])})


class CaseStore:
    """Typed access to the case tables over one connection (never commits by itself)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def _cur(self) -> psycopg.Cursor[dict[str, Any]]:
        return self.conn.cursor(row_factory=dict_row)

    # -- the rules consumer --------------------------------------------------------------------

    def open_or_add(self, signal: Signal) -> OpenResult:
        """Open a case for the signal, or add its evidence to the open case of that patient and
        disease. Idempotent per (case, event, rule): a replayed signal changes nothing.

        A new case, its evidence and its ``open`` history row are one statement (one round trip,
        atomic by itself: the rules consumer opens thousands per backlog); only when the patient
        already has an open case of the disease does the evidence path below run."""
        actor = Actor(f"rules:{signal.pack_version}", "rules")
        ev = signal.evidence
        due = signal.signal_at + dt.timedelta(hours=signal.due_hours)
        with self._cur() as cur:
            cur.execute(
                f"WITH c AS (INSERT INTO cdcsync.surveil_case (status, kind, disease_code, disease_name,"
                f" disease_class, org_code, patient_id, visit_id, doctor_id, doctor_name, dept_code, signal_at,"
                f" due_at, pack_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT (org_code, patient_id, disease_code) WHERE status IN {_OPEN_SQL}"
                f" DO NOTHING RETURNING {_CASE_COLUMNS}),"
                f" e AS (INSERT INTO cdcsync.surveil_case_evidence (case_id, event_id, table_name, row_key, rule_id)"
                f" SELECT case_id, %s, %s, %s, %s FROM c),"
                f" h AS (INSERT INTO cdcsync.surveil_case_history (case_id, actor, actor_role, action, from_status,"
                f" to_status, reason, detail) SELECT case_id, %s, %s, 'open', NULL, status, %s, %s FROM c)"
                f" SELECT {_CASE_COLUMNS} FROM c",
                (str(signal.status), str(signal.kind), signal.disease_code, signal.disease_name,
                 signal.disease_class, signal.org_code, signal.patient_id, signal.visit_id,
                 signal.doctor_id, signal.doctor_name, signal.dept_code, signal.signal_at, due,
                 signal.pack_version,
                 ev.event_id, ev.table, Jsonb(ev.key), ev.rule_id,
                 actor.id, actor.role, signal.reason, Jsonb({"event_id": ev.event_id, "rule_id": ev.rule_id})))
            row = cur.fetchone()
        if row is not None:
            return OpenResult(_case(row), True, True)
        with self.conn.transaction(), self._cur() as cur:
            cur.execute(
                f"SELECT {_CASE_COLUMNS} FROM cdcsync.surveil_case WHERE org_code = %s AND patient_id = %s"
                f" AND disease_code = %s AND status IN {_OPEN_SQL} FOR UPDATE",
                (signal.org_code, signal.patient_id, signal.disease_code))
            row = cur.fetchone()
            if row is None:  # closed meanwhile by a concurrent action: cannot happen under the lock
                raise CaseError("未找到未结病例")
            case = _case(row)
            added = self._add_evidence(cur, case.case_id, ev)
            if added:
                self._history(cur, case.case_id, actor, "evidence", case.status, case.status, signal.reason,
                              {"event_id": ev.event_id, "rule_id": ev.rule_id})
                cur.execute("UPDATE cdcsync.surveil_case SET updated_at = now() WHERE case_id = %s",
                            (case.case_id,))
            return OpenResult(case, False, added)

    def find_open(self, org_code: str, patient_id: str, disease_code: str) -> Case | None:
        with self._cur() as cur:
            cur.execute(
                f"SELECT {_CASE_COLUMNS} FROM cdcsync.surveil_case WHERE org_code = %s AND patient_id = %s"
                f" AND disease_code = %s AND status IN {_OPEN_SQL}", (org_code, patient_id, disease_code))
            row = cur.fetchone()
        return _case(row) if row else None

    def open_cases_of_patient(self, org_code: str, patient_id: str) -> list[Case]:
        with self._cur() as cur:
            cur.execute(
                f"SELECT {_CASE_COLUMNS} FROM cdcsync.surveil_case WHERE org_code = %s AND patient_id = %s"
                f" AND status IN {_OPEN_SQL} ORDER BY case_id", (org_code, patient_id))
            return [_case(r) for r in cur.fetchall()]

    def open_cases_of_patients(self, org_code: str, patient_ids: Sequence[str]) -> list[Case]:
        """The open cases of several patients in one query (the rule engine's per-batch prefetch)."""
        with self._cur() as cur:
            cur.execute(
                f"SELECT {_CASE_COLUMNS} FROM cdcsync.surveil_case WHERE org_code = %s AND patient_id = ANY(%s)"
                f" AND status IN {_OPEN_SQL} ORDER BY case_id", (org_code, list(patient_ids)))
            return [_case(r) for r in cur.fetchall()]

    def upgrade(self, case_id: int, to: Status, actor: Actor, reason: str,
                evidence: Evidence | None = None) -> Case:
        """Move an open case to another open status (e.g. 待确诊 → 待确认 when confirmed)."""
        if not to.is_open:
            raise CaseError(f"升级的目标状态 {to} 不是未结状态")
        with self.conn.transaction(), self._cur() as cur:
            case = self._lock_open(cur, case_id)
            if evidence is not None:
                self._add_evidence(cur, case_id, evidence)
            if case.status == to:
                return case
            new = self._set(cur, case_id, "status = %s", (str(to),))
            self._history(cur, case_id, actor, "upgrade", case.status, to, reason,
                          {"event_id": evidence.event_id} if evidence else {})
            return new

    def close_reported(self, case_id: int, card_no: str, actor: Actor, reason: str | None = None,
                       evidence: Evidence | None = None) -> Case:
        """已报卡: a report card (HIS's own, an NNDRS import, or the doctor's word) covers the case."""
        if not card_no or not card_no.strip():
            raise CaseError("报告卡编号不能为空")
        with self.conn.transaction(), self._cur() as cur:
            case = self._lock_open(cur, case_id)
            if evidence is not None:
                self._add_evidence(cur, case_id, evidence)
            new = self._set(cur, case_id, "status = %s, card_no = %s, closed_at = now()",
                            (str(Status.REPORTED), card_no.strip()))
            self._history(cur, case_id, actor, "reported", case.status, Status.REPORTED,
                          reason or f"报告卡 {card_no.strip()}", {"card_no": card_no.strip()})
            return new

    def close_excluded(self, case_id: int, reason: str, actor: Actor) -> Case:
        if not reason or not reason.strip():
            raise CaseError("排除病例必须填写原因")
        with self.conn.transaction(), self._cur() as cur:
            case = self._lock_open(cur, case_id)
            new = self._set(cur, case_id, "status = %s, close_reason = %s, closed_at = now()",
                            (str(Status.EXCLUDED), reason.strip()))
            self._history(cur, case_id, actor, "exclude", case.status, Status.EXCLUDED, reason.strip(), {})
            return new

    def close_corrected(self, case_id: int, reason: str, actor: Actor, evidence: Evidence | None = None) -> Case:
        """已订正: the triggering record was revoked or corrected at the source."""
        with self.conn.transaction(), self._cur() as cur:
            case = self._lock_open(cur, case_id)
            if evidence is not None:
                self._add_evidence(cur, case_id, evidence)
            new = self._set(cur, case_id, "status = %s, close_reason = %s, closed_at = now()",
                            (str(Status.CORRECTED), reason))
            self._history(cur, case_id, actor, "correct", case.status, Status.CORRECTED, reason, {})
            return new

    def expire_overdue(self, grace: dt.timedelta, actor: Actor, now: dt.datetime | None = None) -> list[int]:
        """已过期: every open case whose due time passed more than ``grace`` ago (the consumer's sweep,
        docs/surveillance.md). ``closed_at`` is set, so the case leaves the reminders and counts as
        closed after its due time (``recon.pending_cases.overdue``); one ``expire`` history row
        each. Returns the case ids, in order."""
        reason = f"超过报告时限 {_days(grace)} 仍未处理（未报卡、未排除），已标记为已过期"
        with self.conn.transaction(), self._cur() as cur:
            cur.execute(
                f"WITH due AS (SELECT case_id, status AS old FROM cdcsync.surveil_case WHERE status IN {_OPEN_SQL}"
                f" AND due_at < coalesce(%s, now()) - %s FOR UPDATE),"
                f" u AS (UPDATE cdcsync.surveil_case c SET status = %s, closed_at = now(), close_reason = %s,"
                f" updated_at = now() FROM due WHERE c.case_id = due.case_id RETURNING c.case_id, due.old),"
                f" h AS (INSERT INTO cdcsync.surveil_case_history (case_id, actor, actor_role, action, from_status,"
                f" to_status, reason, detail) SELECT case_id, %s, %s, 'expire', old, %s, %s, %s FROM u)"
                f" SELECT case_id FROM u ORDER BY case_id",
                (now, grace, str(Status.EXPIRED), reason, actor.id, actor.role, str(Status.EXPIRED), reason,
                 Jsonb({"grace_hours": grace.total_seconds() / 3600})))
            return [int(r["case_id"]) for r in cur.fetchall()]

    # -- actions of doctors and the 防保科 ------------------------------------------------------

    def apply_action(self, case_id: int, action: Action, actor: Actor,
                     now: dt.datetime | None = None) -> Case:
        """``ack`` (seen), ``snooze`` (until, bounded), ``exclude`` (reason), ``reported`` (card no)."""
        if action.name == "exclude":
            return self.close_excluded(case_id, action.reason or "", actor)
        if action.name == "reported":
            return self.close_reported(case_id, action.card_no or "", actor, action.reason)
        if action.name not in ("ack", "snooze"):
            raise CaseError(f"未知操作 {action.name!r}，应为 ack（已阅）、snooze（暂缓）、exclude（排除）、"
                            f"reported（已报卡）之一")
        with self.conn.transaction(), self._cur() as cur:
            case = self._lock_open(cur, case_id)
            if action.name == "ack":
                new = self._set(cur, case_id, "acked_at = coalesce(acked_at, now()),"
                                " acked_by = coalesce(acked_by, %s)", (actor.id,))
                self._history(cur, case_id, actor, "ack", case.status, case.status, action.reason, {})
                return new
            until = self._bounded_snooze(case, action.until, now or self._now(cur))
            new = self._set(cur, case_id, "snooze_until = %s", (until,))
            self._history(cur, case_id, actor, "snooze", case.status, case.status, action.reason,
                          {"until": until.isoformat()})
            return new

    @staticmethod
    def _bounded_snooze(case: Case, until: dt.datetime | None, now: dt.datetime) -> dt.datetime:
        if until is None:
            raise CaseError("暂缓提醒必须给出截止时间（until）")
        if until.tzinfo is None:
            raise CaseError("暂缓截止时间必须带时区（如 2026-12-01T10:00:00+08:00）")
        if until <= now:
            raise CaseError("暂缓截止时间必须晚于当前时间")
        limit = min(now + SNOOZE_MAX, case.due_at) if case.due_at > now else now + SNOOZE_MAX_OVERDUE
        if until > limit:
            raise CaseError(f"暂缓截止时间不能晚于 {limit.isoformat(timespec='minutes')}"
                            f"（最长 8 小时，且不超过报告时限；已超时的病例最长 30 分钟）")
        return until

    # -- reading ---------------------------------------------------------------------------------

    def get(self, case_id: int) -> Case:
        with self._cur() as cur:
            cur.execute(f"SELECT {_CASE_COLUMNS} FROM cdcsync.surveil_case WHERE case_id = %s", (case_id,))
            row = cur.fetchone()
        if row is None:
            raise CaseNotFound(f"病例 {case_id} 不存在")
        return _case(row)

    def detail(self, case_id: int) -> CaseDetail:
        case = self.get(case_id)
        return CaseDetail(case, self.evidence(case_id), self.history(case_id))

    def evidence(self, case_id: int) -> list[EvidenceRow]:
        with self._cur() as cur:
            cur.execute("SELECT evidence_id, case_id, event_id, table_name, row_key, rule_id, added_at"
                        " FROM cdcsync.surveil_case_evidence WHERE case_id = %s ORDER BY evidence_id", (case_id,))
            return [EvidenceRow(**r) for r in cur.fetchall()]

    def history(self, case_id: int | None = None, after_id: int | None = None,
                limit: int = 1000) -> list[HistoryEntry]:
        """One case's history, or (``case_id`` None) every case's, in order, after ``after_id``."""
        where, params = [], []
        if case_id is not None:
            where.append("case_id = %s")
            params.append(case_id)
        if after_id is not None:
            where.append("history_id > %s")
            params.append(after_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._cur() as cur:
            cur.execute(f"SELECT history_id, case_id, at, actor, actor_role, action, from_status, to_status,"
                        f" reason, detail FROM cdcsync.surveil_case_history {clause}"
                        f" ORDER BY history_id LIMIT %s", (*params, limit))
            return [HistoryEntry(**r) for r in cur.fetchall()]

    def list(self, flt: CaseFilter) -> list[Case]:
        """Newest first (or oldest first with ``after_id``), filtered."""
        where: list[sql.Composable] = []
        params: list[Any] = []

        def add(cond: str, *values: Any) -> None:
            where.append(sql.SQL(cond))
            params.extend(values)

        if flt.doctor_id is not None:
            add("doctor_id = %s", flt.doctor_id)
        if flt.dept_code is not None:
            add("dept_code = %s", flt.dept_code)
        if flt.statuses:
            add("status = ANY(%s)", [str(s) for s in flt.statuses])
        if flt.open_only or flt.actionable_at is not None or flt.overdue_at is not None:
            add("status = ANY(%s)", list(_OPEN))
        if flt.actionable_at is not None:
            add("(snooze_until IS NULL OR snooze_until <= %s)", flt.actionable_at)
        if flt.overdue_at is not None:
            add("due_at < %s", flt.overdue_at)
        if flt.since is not None:
            add("created_at >= %s", flt.since)
        if flt.kinds:
            add("kind = ANY(%s)", [str(k) for k in flt.kinds])
        if flt.disease_code is not None:
            add("disease_code = %s", flt.disease_code)
        if flt.org_code is not None:
            add("org_code = %s", flt.org_code)
        if flt.patient_id is not None:
            add("patient_id = %s", flt.patient_id)
        if flt.before_id is not None:
            add("case_id < %s", flt.before_id)
        if flt.after_id is not None:
            add("case_id > %s", flt.after_id)
        order = "ASC" if flt.after_id is not None else "DESC"
        query = sql.SQL("SELECT {} FROM cdcsync.surveil_case {} ORDER BY case_id {} LIMIT %s").format(
            sql.SQL(_CASE_COLUMNS),
            sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
            sql.SQL(order))
        with self._cur() as cur:
            cur.execute(query, (*params, max(1, min(flt.limit, 10_000))))
            return [_case(r) for r in cur.fetchall()]

    def counts(self, now: dt.datetime | None = None) -> tuple[int, int]:
        """(open cases, overdue open cases) — the status page shows counts only."""
        with self._cur() as cur:
            cur.execute("SELECT count(*) AS open, count(*) FILTER (WHERE due_at < coalesce(%s, now())) AS overdue"
                        f" FROM cdcsync.surveil_case WHERE status IN {_OPEN_SQL}", (now,))
            row = cur.fetchone()
        return (int(row["open"]), int(row["overdue"])) if row else (0, 0)

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _now(cur: psycopg.Cursor[dict[str, Any]]) -> dt.datetime:
        cur.execute("SELECT now() AS now")
        row = cur.fetchone()
        assert row is not None
        return row["now"]

    def _lock_open(self, cur: psycopg.Cursor[dict[str, Any]], case_id: int) -> Case:
        cur.execute(f"SELECT {_CASE_COLUMNS} FROM cdcsync.surveil_case WHERE case_id = %s FOR UPDATE", (case_id,))
        row = cur.fetchone()
        if row is None:
            raise CaseNotFound(f"病例 {case_id} 不存在")
        case = _case(row)
        if not case.is_open:
            raise CaseClosed(f"病例 {case_id} 已结案（{case.status}），不能再操作")
        return case

    @staticmethod
    def _set(cur: psycopg.Cursor[dict[str, Any]], case_id: int, assignments: str, params: tuple[Any, ...]) -> Case:
        cur.execute(f"UPDATE cdcsync.surveil_case SET {assignments}, updated_at = now() WHERE case_id = %s"
                    f" RETURNING {_CASE_COLUMNS}", (*params, case_id))
        row = cur.fetchone()
        assert row is not None
        return _case(row)

    @staticmethod
    def _add_evidence(cur: psycopg.Cursor[dict[str, Any]], case_id: int, ev: Evidence) -> bool:
        cur.execute("INSERT INTO cdcsync.surveil_case_evidence (case_id, event_id, table_name, row_key, rule_id)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING evidence_id",
                    (case_id, ev.event_id, ev.table, Jsonb(ev.key), ev.rule_id))
        return cur.fetchone() is not None

    @staticmethod
    def _history(cur: psycopg.Cursor[dict[str, Any]], case_id: int, actor: Actor, action: str,
                 from_status: Status | None, to_status: Status, reason: str | None, detail: dict[str, Any]) -> None:
        cur.execute("INSERT INTO cdcsync.surveil_case_history (case_id, actor, actor_role, action, from_status,"
                    " to_status, reason, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (case_id, actor.id, actor.role, action, str(from_status) if from_status else None,
                     str(to_status), reason, Jsonb(detail)))


def _days(grace: dt.timedelta) -> str:
    days = grace.total_seconds() / 86400
    return f"{days:g} 天" if days >= 1 else f"{grace.total_seconds() / 3600:g} 小时"


@contextmanager
def standalone_store(dsn: str) -> Iterator[CaseStore]:
    """A store on its own connection: each method commits as it returns (CLI, reminders API)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield CaseStore(conn)
