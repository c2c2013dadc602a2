"""The rule engine: events (national codes, after validation and mapping) → cases.

``RuleEngine(pack).apply(conn, events)`` evaluates each event of the ``emr`` tables it knows and
opens, adds to, upgrades or closes cases through :class:`~cdcsync.surveil.cases.CaseStore` on
``conn``, inside the caller's transaction (it never commits: the rules consumer commits the cases
with its checkpoint). For context it reads the mirror through ``conn`` (the visit's diagnoses, the
patient's report cards, the visit's doctor), mapping those rows' local codes to national ones with
the same code tables as the pipeline.

The kinds (docs/surveillance.md):

* ``diagnosis``: ICD-10 in a disease's set; 疑似 → 待确诊 (suspected), 临床诊断/确诊 → 待确认
  (notifiable_diagnosis), or upgrades an open 待确诊/待核查 case of that disease to 待确认;
* ``lab_result``: positive qualitative result of a notifiable pathogen or lab item, no confirmed
  diagnosis of that disease in the visit → 待确诊 (positive_pathogen); with a suspected one, the
  open suspected case is upgraded to 待确认;
* ``drug_order``: a drug of a special group, no diagnosis of the group's diseases in the visit,
  no card and no open case of them → 待核查 (special_drug);
* ``death_record``: a notifiable cause → 待核查 (death) unless a card with the death exists; no
  notifiable cause and open cases → those cases move to 待核查;
* ``report_card``: closes the open cases of its disease as 已报卡 (a death case only with the death
  date on the card; a mismatch case as 已订正 once the card agrees); a card disagreeing with the
  EMR diagnosis (disease, case classification, onset date) → 待核查 (card_mismatch).

A report card for the patient and disease (in ``emr.report_card``, revoked ones excepted) keeps
every kind but card_mismatch from opening a case: the hospital has reported it already.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cdcsync.event import Event, Row
from cdcsync.surveil.batchstore import BatchStore, StaleCase
from cdcsync.surveil.cases import (
    Actor,
    Case,
    Evidence,
    Kind,
    OpenResult,
    Signal,
    Status,
)
from cdcsync.surveil.pack import Disease, RulePack

log = logging.getLogger(__name__)

REVOKED = "3"  # national modify_flag 撤销
CORRECTION = "2"  # national card_category 订正报告
CARD_TABLES = ("report_card", "report_card_frontend")  # the HIS's cards and the workbench's
KEYS: Mapping[str, str] = {
    "diagnosis": "diagnosis_id",
    "lab_result": "lab_result_id",
    "drug_order": "drug_order_id",
    "death_record": "death_record_id",
    "report_card": "card_id",
}
# The one column :meth:`RuleEngine.relevant` reads per table; a table not named here is always relevant.
DECIDING_COLUMNS: Mapping[str, str] = {
    "diagnosis": "diagnosis_code",
    "lab_result": "qualitative_result_code",
    "drug_order": "drug_code",
}
# (table, raw mirror row) -> the row validated and mapped (national codes), None when it fails
# validation: the stream quarantines such a row, so the rules must not count it as context either.
Mapper = Callable[[str, Row], Row | None]


def holder_mapper(holder: Any) -> Mapper:
    """A :data:`Mapper` over a :class:`~cdcsync.validate.reload.RulesHolder` (the code tables in force)."""
    from cdcsync.validate.compiler import beijing_now

    def mapped(table: str, row: Row) -> Row | None:
        compiled = holder.current().tables.get(table)
        if compiled is None:
            return row
        out, violations = compiled.check({k: v for k, v in row.items() if k in compiled.columns}, beijing_now())
        return None if violations else out

    return mapped


def _default_mapper() -> Mapper:
    from cdcsync.validate.reload import RulesHolder

    return holder_mapper(RulesHolder.load())


@dataclass(frozen=True, slots=True)
class _Card:
    card_id: str
    card_no: str
    patient_id: str
    visit_id: str | None
    disease: Disease
    status: str | None
    onset: dt.date | None
    death_date: dt.date | None
    doctor_id: str | None
    doctor_name: str | None
    dept_code: str | None
    reported: dt.datetime | None  # report_time (business time, Beijing local)
    correction: bool  # 订正报告 (national card_category 2)


@dataclass(frozen=True, slots=True)
class _Dx:
    disease: Disease
    status: str
    onset: dt.date | None
    time: dt.datetime | None


class RuleEngine:
    """Applies one rule pack; stateless between calls (all state is in the case tables)."""

    def __init__(self, pack: RulePack, *, mapper: Mapper | None = None) -> None:
        self.pack = pack
        self._mapper = mapper
        self.actor = Actor(f"rules:{pack.version}", "rules")
        self.errors = 0  # events skipped because a rule failed on them (logged)

    @property
    def version(self) -> str:
        return self.pack.version

    def relevant(self, table: str, row: Row) -> bool:
        """Whether a row of a rule table (national codes) can matter at all: most diagnoses, lab
        results and orders cannot. Reads only the column :data:`DECIDING_COLUMNS` names for the
        table (the rules consumer asks before it validates and maps a row)."""
        pack = self.pack
        if table == "diagnosis":
            return pack.disease_for_icd(row.get("diagnosis_code")) is not None
        if table == "lab_result":
            return row.get("qualitative_result_code") in pack.positive_results
        if table == "drug_order":
            return pack.drug_group(row.get("drug_code")) is not None
        return True

    def _map(self, table: str, row: Row) -> Row | None:
        if self._mapper is None:
            self._mapper = _default_mapper()
        return self._mapper(table, row)

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> list[OpenResult]:
        """Evaluate ``events`` in order; returns what happened to cases (created, evidence, changes).

        Optimistic: the whole call runs in one savepoint, without one per event (two round trips
        per signal saved). Should any event raise, that savepoint is rolled back and the call is
        redone with a savepoint per event, leaving out (and logging) the ones that fail: the outcome
        is the same as if each event had been isolated from the start."""
        out: list[OpenResult] = []
        try:
            with conn.transaction():
                run = _Run(self, conn, out)
                run.prefetch(events)
                for event in events:
                    self._event(run, event)
            return out
        except psycopg.OperationalError:
            raise  # the connection is gone: the consumer reconnects and replays
        except Exception as exc:  # redone below, event by event; logged there if it fails again
            log.debug("rules: batch of %d events redone event by event (%s)", len(events), type(exc).__name__)
        return self._apply_isolated(conn, events)

    def _event(self, run: _Run, event: Event) -> None:
        """One event, no savepoint of its own (the fast path of :meth:`apply`)."""
        if event.schema != "emr":
            return
        handler = _HANDLERS.get(event.table)
        if handler is None:
            return
        if event.op == "d" or (event.after is not None and event.after.get("modify_flag") == REVOKED):
            gone = event.before if event.op == "d" else event.after
            if event.table == "diagnosis" and gone is not None:
                _diagnosis_revoked(run, event, gone)
            return
        if event.op in ("c", "u", "r") and event.after is not None and run.relevant(event.table, event.after):
            handler(run, event, event.after)

    def _apply_isolated(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> list[OpenResult]:
        """:meth:`apply` with a savepoint per event: one that fails is logged and left out."""
        out: list[OpenResult] = []
        run = _Run(self, conn, out)
        run.prefetch(events)
        for event in events:
            if event.schema != "emr":
                continue
            handler = _HANDLERS.get(event.table)
            if handler is None:
                continue
            if event.op == "d" or (event.after is not None and event.after.get("modify_flag") == REVOKED):
                gone = event.before if event.op == "d" else event.after
                if event.table == "diagnosis" and gone is not None:
                    mark = len(out)
                    try:
                        _diagnosis_revoked(run, event, gone)
                    except StaleCase:  # the store's savepoint undid the write; read the case tables again
                        del out[mark:]
                        _diagnosis_revoked(run, event, gone)
                continue
            if event.op not in ("c", "u", "r") or event.after is None:
                continue
            if not run.relevant(event.table, event.after):
                continue  # no case can come of it: no savepoint, no query
            for attempt in (1, 2):
                mark = len(out)
                try:
                    with conn.transaction():  # a savepoint: one failing event costs that event only
                        handler(run, event, event.after)
                except psycopg.OperationalError:
                    raise  # the connection is gone: the consumer reconnects and replays
                except StaleCase:
                    if attempt == 1:  # a prefetched case was closed meanwhile: once more, reading the tables
                        del out[mark:]
                        continue
                    self.errors += 1
                    log.error("rules: %s event %s skipped (case closed concurrently)", event.table, event.id)
                except Exception as exc:
                    # A bug or a row the rules cannot read must not stop the stream (that would hold
                    # every later case back). Logged without values: table, event id, error type.
                    self.errors += 1
                    log.error("rules: %s event %s skipped (%s)", event.table, event.id, type(exc).__name__)
                break
        return out


class _Run:
    """One ``apply`` call: the connection, the store and the helpers the handlers share."""

    def __init__(self, engine: RuleEngine, conn: psycopg.Connection[Any], out: list[OpenResult]) -> None:
        self.engine = engine
        self.pack = engine.pack
        self.conn = conn
        self.store = BatchStore(conn)
        self.out = out
        # Per call: the visits' doctors and staff names read (mirror rows, not written here), the
        # event ids of the call that no case holds as evidence yet (seen_closed needs no query).
        self._visits: dict[tuple[str, str], tuple[str | None, str | None, str | None]] = {}
        self._staff: dict[tuple[str, str], str | None] = {}
        self._new_events: set[str] = set()
        # Mirror context, read once per call: the rows of every event of the call are committed
        # before it runs, so the mirror holds at least what each event saw (and at most later
        # rows, as when the consumer lags).
        self._cards: dict[tuple[str, str], list[_Card]] = {}
        self._dx: dict[tuple[str, str], list[_Dx]] = {}
        self._dx_of_patient: set[tuple[str, str]] = set()  # every visit's diagnoses of them are in _dx

    def prefetch(self, events: Sequence[Event]) -> None:
        """The report cards and visit diagnoses of the patients of ``events``, in two queries per
        organisation (instead of some per event)."""
        wanted: dict[str, set[str]] = {}
        visit_ids: dict[str, set[str]] = {}
        event_ids: list[str] = []
        for e in events:
            if e.schema == "emr" and e.table in _HANDLERS:
                row = e.after if e.after is not None else e.before
                if row is not None and row.get("patient_id") and self.relevant(e.table, row):
                    wanted.setdefault(e.org_code, set()).add(row["patient_id"])
                    event_ids.append(e.id)
                    if row.get("visit_id"):
                        visit_ids.setdefault(e.org_code, set()).add(row["visit_id"])
        if event_ids:
            seen = {r["event_id"] for r in self._rows(
                "SELECT DISTINCT event_id FROM cdcsync.surveil_case_evidence WHERE event_id = ANY(%s)", (event_ids,))}
            self._new_events = set(event_ids) - seen
        for org, vids in visit_ids.items():
            vlist = sorted(vids)
            for v in vlist:
                self._visits[(org, v)] = (None, None, None)
            for r in self._rows("SELECT visit_id, doctor_id, doctor_name, dept_code FROM emr.visit"
                                " WHERE org_code = %s AND visit_id = ANY(%s)", (org, vlist)):
                self._visits[(org, r["visit_id"])] = (r["doctor_id"], r["doctor_name"], r["dept_code"])
        for org, patients in wanted.items():
            ids = sorted(patients)
            self.store.load_open(org, ids)
            for p in ids:
                self._cards[(org, p)] = []
                self._dx_of_patient.add((org, p))
            for table, raw in self._card_rows("patient_id = ANY(%s) AND org_code = %s", (ids, org)):
                mapped = self.engine._map(table, raw)
                card = self.card_of(mapped) if mapped is not None else None
                if card is not None:
                    self._cards[(org, card.patient_id)].append(card)
            visits: set[str] = set()
            for raw in self._rows("SELECT * FROM emr.diagnosis WHERE patient_id = ANY(%s) AND org_code = %s"
                                  " ORDER BY diagnosis_time, diagnosis_id", (ids, org)):
                visit = raw.get("visit_id")
                if visit is None:
                    continue
                if visit not in visits:
                    visits.add(visit)
                    self._dx[(org, visit)] = []
                mapped = self.engine._map("diagnosis", raw)
                dx = self.dx_of(mapped) if mapped is not None else None
                if dx is not None:
                    self._dx[(org, visit)].append(dx)

    # -- reading the mirror ------------------------------------------------------------------

    def _rows(self, query: str, params: tuple[Any, ...]) -> list[Row]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def _card_rows(self, where: str, params: tuple[Any, ...]) -> list[tuple[str, Row]]:
        """The HIS's cards (emr.report_card) and the workbench's (emr.report_card_frontend, national
        codes, docs/workbench.md): either one means the hospital reported. Oldest first."""
        rows = [(t, raw) for t in CARD_TABLES
                for raw in self._rows(f"SELECT * FROM emr.{t} WHERE {where}", params)]
        rows.sort(key=lambda tr: (tr[1].get("report_time") or dt.datetime.min, tr[1].get("card_id") or ""))
        return rows

    def relevant(self, table: str, row: Row) -> bool:
        return self.engine.relevant(table, row)

    def cards(self, org: str, patient: str) -> list[_Card]:
        """The patient's report cards (national codes), revoked ones left out, oldest first."""
        cached = self._cards.get((org, patient))
        if cached is not None:
            return cached
        out = []
        for table, raw in self._card_rows("patient_id = %s AND org_code = %s", (patient, org)):
            mapped = self.engine._map(table, raw)
            card = self.card_of(mapped) if mapped is not None else None
            if card is not None:
                out.append(card)
        self._cards[(org, patient)] = out
        return out

    def card_of(self, row: Row) -> _Card | None:
        if row.get("modify_flag") == REVOKED:
            return None
        disease = self.pack.disease(row.get("disease_code") or "")
        if disease is None and row.get("other_disease_name"):
            disease = self.pack.disease_by_name(row["other_disease_name"])
        if disease is None:
            return None
        return _Card(row["card_id"], row.get("card_no") or row["card_id"], row["patient_id"], row.get("visit_id"),
                     disease,
                     row.get("diagnosis_status_code"), row.get("onset_date"), row.get("death_date"),
                     row.get("report_doctor_id"), row.get("report_doctor"), _local(row, "report_dept_code"),
                     row.get("report_time"), row.get("card_category_code") == CORRECTION)

    def visit_diagnoses(self, org: str, patient: str, visit: str) -> list[_Dx]:
        """The visit's notifiable diagnoses (suspected or confirmed), in diagnosis order."""
        cached = self._dx.get((org, visit))
        if cached is not None:
            return cached
        if (org, patient) in self._dx_of_patient:
            return []  # prefetched: the visit has no diagnosis of this patient
        out = []
        # patient_id first: emr.diagnosis is indexed on it (sql/002_emr_mirror.sql)
        for raw in self._rows("SELECT * FROM emr.diagnosis WHERE patient_id = %s AND org_code = %s"
                              " AND visit_id = %s ORDER BY diagnosis_time, diagnosis_id", (patient, org, visit)):
            mapped = self.engine._map("diagnosis", raw)
            dx = self.dx_of(mapped) if mapped is not None else None
            if dx is not None:
                out.append(dx)
        self._dx[(org, visit)] = out
        return out

    def dx_of(self, row: Row) -> _Dx | None:
        if row.get("modify_flag") == REVOKED:
            return None
        disease = self.pack.disease_for_icd(row.get("diagnosis_code"))
        status = row.get("diagnosis_status_code") or ""
        if disease is None or (status not in self.pack.suspected_statuses
                               and status not in self.pack.confirmed_statuses):
            return None
        return _Dx(disease, status, row.get("onset_date"), row.get("diagnosis_time"))

    def visit_doctor(self, org: str, visit: str | None) -> tuple[str | None, str | None, str | None]:
        if not visit:
            return None, None, None
        cached = self._visits.get((org, visit))
        if cached is not None:
            return cached
        rows = self._rows("SELECT doctor_id, doctor_name, dept_code FROM emr.visit WHERE org_code = %s"
                          " AND visit_id = %s", (org, visit))
        out = (rows[0]["doctor_id"], rows[0]["doctor_name"], rows[0]["dept_code"]) if rows else (None, None, None)
        self._visits[(org, visit)] = out
        return out

    def staff_name(self, org: str, staff_id: str) -> str | None:
        if (org, staff_id) in self._staff:
            return self._staff[(org, staff_id)]
        rows = self._rows("SELECT staff_name FROM emr.staff WHERE org_code = %s AND staff_id = %s", (org, staff_id))
        name = rows[0]["staff_name"] if rows else None
        self._staff[(org, staff_id)] = name
        return name

    def responsible(self, org: str, visit: str | None, doctor_id: str | None, doctor_name: str | None,
                    dept: str | None) -> tuple[str | None, str | None, str | None]:
        """首诊责任制: the doctor of the triggering row, else the visit's doctor (and department)."""
        v_doc, v_name, v_dept = self.visit_doctor(org, visit)
        if doctor_id:
            name = doctor_name or (v_name if doctor_id == v_doc else None) or self.staff_name(org, doctor_id)
            return doctor_id, name, dept or v_dept
        return v_doc, v_name, dept or v_dept

    # -- writing cases -----------------------------------------------------------------------

    def evidence(self, event: Event, row: Row, rule_id: str) -> Evidence:
        key_col = KEYS[event.table]
        return Evidence(event.id, event.table, {"org_code": row.get("org_code"), key_col: row.get(key_col)}, rule_id)

    def signal(self, kind: Kind, status: Status, disease: Disease, event: Event, row: Row, rule_id: str,
               reason: str, who: Callable[[], tuple[str | None, str | None, str | None]]) -> OpenResult | None:
        """Open a case (or add evidence to the open one); ``who`` gives the responsible doctor,
        asked only when a case may be opened."""
        if not self.pack.enabled(kind):
            return None
        if self.seen_closed(event.id, rule_id, row["patient_id"], disease.code):
            return None
        doctor = who()
        sig = Signal(kind=kind, status=status, disease_code=disease.code, disease_name=disease.name,
                     disease_class=disease.cls, org_code=event.org_code, patient_id=row["patient_id"],
                     visit_id=row.get("visit_id"), doctor_id=doctor[0], doctor_name=doctor[1], dept_code=doctor[2],
                     signal_at=event.commit_ts, due_hours=self.pack.due_hours(disease),
                     evidence=self.evidence(event, row, rule_id), reason=reason,
                     pack_version=self.pack.version)
        result = self.store.open_or_add(sig)
        self.out.append(result)
        return result

    def seen_closed(self, event_id: str, rule_id: str, patient: str, disease: str) -> bool:
        """This rule already took this event as evidence of a case of this patient and disease
        that is closed now (a replay after the case was reported or excluded): it must not open a
        new one. (The same event under another rule, e.g. a card that closes one case and shows a
        mismatch, may.) No query for an event no case held as evidence when the call began and
        that this call has not added as evidence since: the common, live case."""
        if event_id in self._new_events and event_id not in self.store.touched_events:
            return False
        with self.conn.cursor() as cur:
            cur.execute("SELECT 1 FROM cdcsync.surveil_case_evidence e JOIN cdcsync.surveil_case c USING (case_id)"
                        " WHERE e.event_id = %s AND e.rule_id = %s AND c.patient_id = %s AND c.disease_code = %s"
                        " AND c.closed_at IS NOT NULL LIMIT 1", (event_id, rule_id, patient, disease))
            return cur.fetchone() is not None

    def upgrade(self, case: Case, to: Status, evidence: Evidence, reason: str) -> None:
        new = self.store.upgrade(case.case_id, to, self.engine.actor, reason, evidence)
        self.out.append(OpenResult(new, False, True))

    def add_evidence(self, case: Case, evidence: Evidence, reason: str) -> None:
        """Evidence on an open case without changing it (upgrade to its own status is a no-op)."""
        new = self.store.upgrade(case.case_id, case.status, self.engine.actor, reason, evidence)
        self.out.append(OpenResult(new, False, True))

    def close_reported(self, case: Case, card: _Card, evidence: Evidence) -> None:
        new = self.store.close_reported(case.case_id, card.card_no, self.engine.actor,
                                        f"医院报告卡 {card.card_no} 已报告{card.disease.name}", evidence)
        self.out.append(OpenResult(new, False, True))

    def close_if_carded(self, org: str, patient: str, disease: Disease, evidence: Evidence) -> bool:
        """True when a card covers the patient and disease; an open case of it (not a card check)
        is closed as 已报卡 on the way (a card the consumer saw before the case existed)."""
        cards = [c for c in self.cards(org, patient) if c.disease.code == disease.code]
        if not cards:
            return False
        case = self.store.find_open(org, patient, disease.code)
        if case is not None and case.kind not in (Kind.CARD_MISMATCH, Kind.DEATH):
            self.close_reported(case, cards[-1], evidence)
        return True


def _local(row: Row, name: str) -> str | None:
    """The HIS's own code of a coded column (what the HIS filters reminders by)."""
    value = row.get(f"{name}_local")
    return value if value is not None else row.get(name)


def _dx_reason(row: Row, disease: Disease) -> str:
    return f"诊断 {row.get('diagnosis_code')} 属于{disease.cls}类传染病 {disease.name}" if disease.cls != "其他" \
        else f"诊断 {row.get('diagnosis_code')} 属于其他法定管理/重点监测传染病 {disease.name}"


# -- handlers --------------------------------------------------------------------------------------


def _diagnosis(run: _Run, event: Event, row: Row) -> None:
    dx = run.dx_of(row)
    if dx is None:
        return
    pack, org, patient = run.pack, event.org_code, row["patient_id"]
    disease = dx.disease
    suspected = dx.status in pack.suspected_statuses
    rule = "diagnosis.suspected" if suspected else "diagnosis.notifiable"
    ev = run.evidence(event, row, rule)
    doctor = partial(run.responsible, org, row.get("visit_id"), row.get("doctor_id"), row.get("doctor_name"),
                             _local(row, "dept_code"))
    _check_visit_cards(run, event, row, dx)
    if run.close_if_carded(org, patient, disease, ev):
        return
    case = run.store.find_open(org, patient, disease.code)
    if suspected:
        run.signal(Kind.SUSPECTED, Status.TO_DIAGNOSE, disease, event, row, rule,
                   f"{_dx_reason(row, disease)}（疑似病例），请尽快确诊或排除", doctor)
        return
    if case is not None and case.status != Status.TO_CONFIRM and case.kind != Kind.CARD_MISMATCH:
        run.upgrade(case, Status.TO_CONFIRM, ev, f"{_dx_reason(row, disease)}（已诊断），请确认并报告")
        return
    run.signal(Kind.NOTIFIABLE_DIAGNOSIS, Status.TO_CONFIRM, disease, event, row, rule,
               f"{_dx_reason(row, disease)}，请确认并填报传染病报告卡", doctor)


def _diagnosis_revoked(run: _Run, event: Event, row: Row) -> None:
    """A diagnosis revoked (修改标志 撤销) or deleted at the source: an open case that rests on that
    diagnosis alone is closed as 已订正; one with other evidence keeps it and notes the revocation."""
    disease = run.pack.disease_for_icd(row.get("diagnosis_code"))
    patient = row.get("patient_id")
    if disease is None or not patient:
        return
    case = run.store.find_open(event.org_code, patient, disease.code)
    if case is None:
        return
    diag_id = row.get("diagnosis_id")
    evidence = run.store.evidence(case.case_id)
    only_this = all(e.table_name == "diagnosis" and e.row_key.get("diagnosis_id") == diag_id for e in evidence)
    ev = run.evidence(event, row, "diagnosis.revoked")
    if only_this:
        new = run.store.close_corrected(case.case_id, f"诊断记录 {diag_id} 已在 HIS 中撤销", run.engine.actor, ev)
        run.out.append(OpenResult(new, False, True))
    else:
        run.add_evidence(case, ev, f"诊断记录 {diag_id} 已在 HIS 中撤销，病例另有其他证据")


def _check_visit_cards(run: _Run, event: Event, row: Row, dx: _Dx) -> None:
    """A diagnosis made after the visit's card was reported (e.g. the discharge diagnosis): check
    the card against it too. A card reported later is checked when it arrives; judging it here
    would depend on whether the consumer already sees it in the mirror."""
    visit = row.get("visit_id")
    if not visit or not run.pack.enabled(Kind.CARD_MISMATCH):
        return
    made = row.get("diagnosis_time")
    for card in run.cards(event.org_code, row["patient_id"]):
        if card.visit_id == visit and (made is None or card.reported is None or card.reported <= made):
            _card_consistency(run, event, row, card, "diagnosis.card_check", made)


def _lab_result(run: _Run, event: Event, row: Row) -> None:
    pack = run.pack
    if row.get("qualitative_result_code") not in pack.positive_results:
        return
    disease = pack.disease_for_pathogen(row.get("pathogen_code")) or pack.disease_for_lab_item(
        row.get("lab_item_code"))
    if disease is None:
        return
    org, patient, visit = event.org_code, row["patient_id"], row.get("visit_id")
    rule = "lab.positive"
    ev = run.evidence(event, row, rule)
    if run.close_if_carded(org, patient, disease, ev):
        return
    what = f"检验 {row.get('lab_item_name') or row.get('lab_item_code')} 阳性（{disease.name}）"
    dxs = [d for d in run.visit_diagnoses(org, patient, visit) if d.disease.code == disease.code] if visit else []
    case = run.store.find_open(org, patient, disease.code)
    if any(d.status in pack.confirmed_statuses for d in dxs):
        if case is not None:
            run.add_evidence(case, ev, what)
        return
    if case is not None and case.status == Status.TO_DIAGNOSE and case.kind == Kind.SUSPECTED:
        run.upgrade(case, Status.TO_CONFIRM, ev, f"{what}，疑似病例已有病原学证据，请确诊并报告")
        return
    def doctor() -> tuple[str | None, str | None, str | None]:
        """The doctor who ordered the test (its lab report), else the visit's."""
        doc_id, dept = None, None
        if row.get("lab_report_id"):
            rep = run._rows("SELECT apply_doctor_id, apply_dept_code FROM emr.lab_report WHERE org_code = %s"
                            " AND lab_report_id = %s", (org, row["lab_report_id"]))
            if rep:
                doc_id, dept = rep[0]["apply_doctor_id"], rep[0]["apply_dept_code"]
        return run.responsible(org, visit, doc_id, None, dept)

    run.signal(Kind.POSITIVE_PATHOGEN, Status.TO_DIAGNOSE, disease, event, row, rule,
               f"{what}，本次就诊无相应诊断，请明确诊断", doctor)


def _drug_order(run: _Run, event: Event, row: Row) -> None:
    group = run.pack.drug_group(row.get("drug_code"))
    if group is None:
        return
    org, patient, visit = event.org_code, row["patient_id"], row.get("visit_id")
    wanted = set(group.diseases)
    if visit and any(d.disease.code in wanted for d in run.visit_diagnoses(org, patient, visit)):
        return
    if any(c.disease.code in wanted for c in run.cards(org, patient)):
        return
    rule = "drug.special"
    for code in group.diseases:
        case = run.store.find_open(org, patient, code)
        if case is not None:
            run.add_evidence(case, run.evidence(event, row, rule), f"开具{group.label} {row.get('drug_name')}")
            return
    names = [d.name for d in map(run.pack.disease, group.diseases) if d is not None]
    disease = run.pack.disease(group.diseases[0])
    assert disease is not None  # the pack loader checked the reference
    doctor = partial(run.responsible, org, visit, row.get("doctor_id"), None, _local(row, "dept_code"))
    run.signal(Kind.SPECIAL_DRUG, Status.TO_CHECK, disease, event, row, rule,
               f"开具{group.label} {row.get('drug_name') or row.get('drug_code')}，本次就诊无"
               f"{'、'.join(names)}诊断，请核查",
               doctor)


def _death_record(run: _Run, event: Event, row: Row) -> None:
    pack, org, patient, visit = run.pack, event.org_code, row["patient_id"], row.get("visit_id")
    diseases: dict[str, Disease] = {}
    for col in ("death_cause_code", "underlying_cause_code"):
        d = pack.disease_for_icd(row.get(col))
        if d is not None:
            diseases.setdefault(d.code, d)
    doctor = partial(run.responsible, org, visit, row.get("doctor_id"), None, _local(row, "dept_code"))
    if diseases:
        cards = run.cards(org, patient)
        for disease in diseases.values():
            if any(c.disease.code == disease.code and c.death_date is not None for c in cards):
                continue  # the card already carries the death (订正 filed)
            run.signal(Kind.DEATH, Status.TO_CHECK, disease, event, row, "death.cause",
                       f"患者死亡，死因含{disease.cls}类传染病 {disease.name}，请核查报告卡并订正死亡信息"
                       if disease.cls != "其他" else
                       f"患者死亡，死因含传染病 {disease.name}，请核查报告卡并订正死亡信息", doctor)
        return
    if not pack.enabled(Kind.DEATH):
        return
    for case in run.store.open_cases_of_patient(org, patient):
        ev = run.evidence(event, row, "death.open_case")
        run.upgrade(case, Status.TO_CHECK, ev,
                    f"患者死亡，死亡记录未填写传染病死因，而有未结的{case.disease_name}病例，请核查")


def _report_card(run: _Run, event: Event, row: Row) -> None:
    card = run.card_of(row)
    if card is None:
        return
    org, patient = event.org_code, row["patient_id"]
    case = run.store.find_open(org, patient, card.disease.code)
    ev = run.evidence(event, row, "card.match")
    if case is not None:
        if case.kind == Kind.DEATH and card.death_date is None:
            run.add_evidence(case, ev, f"报告卡 {card.card_no} 未填写死亡日期")
        elif case.kind == Kind.CARD_MISMATCH:
            # only a corrected card (订正) corrects: a first report reaching the consumer late does not
            problems = _card_problems_since(run, org, card) if card.correction else None
            if problems is not None and not problems:
                new = run.store.close_corrected(case.case_id, f"报告卡 {card.card_no} 已与诊断一致",
                                                run.engine.actor, ev)
                run.out.append(OpenResult(new, False, True))
            else:
                run.add_evidence(case, ev, f"报告卡 {card.card_no}")
        else:
            run.close_reported(case, card, ev)
    _card_consistency(run, event, row, card, "card.mismatch", None)


def _card_problems(run: _Run, org: str, card: _Card, as_of: dt.datetime | None) -> list[str] | None:
    """What disagrees between ``card`` and the EMR diagnoses of its visit made up to ``as_of``
    (business time: the card's report time when the card arrives, the diagnosis time when a later
    diagnosis does), so the answer does not depend on how far the consumer lags behind the mirror.
    None: nothing to compare."""
    if not card.visit_id:
        return None
    dxs = [d for d in run.visit_diagnoses(org, card.patient_id, card.visit_id)
           if as_of is None or d.time is None or d.time <= as_of]
    if not dxs:
        return None
    same = [d for d in dxs if d.disease.code == card.disease.code]
    if not same:
        names = "、".join(dict.fromkeys(d.disease.name for d in dxs))
        return [f"报告病种 {card.disease.name} 与诊断（{names}）不一致"]
    latest = same[-1]
    problems = []
    if card.status and latest.status != card.status:
        problems.append(f"病例分类（{_status_label(card.status)}）与诊断状态（{_status_label(latest.status)}）不一致")
    onset = next((d.onset for d in reversed(same) if d.onset is not None), None)
    if card.onset is not None and onset is not None and abs((card.onset - onset).days) > run.pack.onset_tolerance_days:
        problems.append(f"发病日期（{card.onset.isoformat()}）与诊断记录（{onset.isoformat()}）不一致")
    return problems


def _card_problems_since(run: _Run, org: str, card: _Card) -> list[str] | None:
    """The card checked when it was reported and again at each later diagnosis of its visit the
    mirror already holds (a diagnosis committed before the card arrived does not check the card
    itself): the first disagreement found, [] when it agrees throughout, None: nothing to compare."""
    first = _card_problems(run, org, card, card.reported)
    if first or card.reported is None or not card.visit_id:
        return first
    later = sorted({d.time for d in run.visit_diagnoses(org, card.patient_id, card.visit_id)
                    if d.time is not None and d.time > card.reported})
    for when in later:
        problems = _card_problems(run, org, card, when)
        if problems:
            return problems
    return first


_STATUS_LABELS = {"1": "疑似病例", "2": "临床诊断病例", "3": "确诊病例", "4": "病原携带者", "5": "阳性检测结果"}


def _status_label(code: str) -> str:
    return _STATUS_LABELS.get(code, code)


def _card_consistency(run: _Run, event: Event, row: Row, card: _Card, rule: str,
                      as_of: dt.datetime | None) -> None:
    """``as_of`` None: the card arrives (checked since it was reported); else a diagnosis made then."""
    if not run.pack.enabled(Kind.CARD_MISMATCH):
        return
    problems = (_card_problems_since(run, event.org_code, card) if as_of is None
                else _card_problems(run, event.org_code, card, as_of))
    if not problems:
        return
    org = event.org_code
    case = run.store.find_open(org, row["patient_id"], card.disease.code)
    if case is not None and case.kind != Kind.CARD_MISMATCH:
        run.close_reported(case, card, run.evidence(event, row, rule))
    doctor = partial(run.responsible, org, card.visit_id, card.doctor_id, card.doctor_name, card.dept_code)
    sig_row = {**row, "visit_id": card.visit_id}
    run.signal(Kind.CARD_MISMATCH, Status.TO_CHECK, card.disease, event, sig_row, rule,
               f"报告卡 {card.card_no}：{'；'.join(problems)}，请核查并订正", doctor)


_HANDLERS: dict[str, Callable[[_Run, Event, Row], None]] = {
    "diagnosis": _diagnosis,
    "lab_result": _lab_result,
    "drug_order": _drug_order,
    "death_record": _death_record,
    "report_card": _report_card,
}
