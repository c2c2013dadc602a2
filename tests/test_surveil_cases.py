"""The case store (sql/030_surveil_cases.sql, cdcsync/surveil/cases.py): one open case per patient
and disease, evidence without duplicates, bounded actions recorded in the history, nothing deleted."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from cdcsync.db.migrate import apply_migrations
from cdcsync.surveil.cases import (
    Action,
    Actor,
    CaseClosed,
    CaseError,
    CaseFilter,
    CaseNotFound,
    CaseStore,
    Evidence,
    Kind,
    Signal,
    Status,
    standalone_store,
)
from tests.test_roles import REPO, login, refused

NOW = dt.datetime.now(dt.UTC)
DOCTOR = Actor("D001", "doctor")


def signal(patient: str = "P1", disease: str = "0301", event: str = "e1", *, kind: Kind = Kind.NOTIFIABLE_DIAGNOSIS,
           status: Status = Status.TO_CONFIRM, hours: float = 24) -> Signal:
    return Signal(kind=kind, status=status, disease_code=disease, disease_name="病毒性肝炎", disease_class="乙",
                  org_code="H1", patient_id=patient, visit_id="V1", doctor_id="D001", doctor_name="张医生",
                  dept_code="0301", signal_at=NOW, due_hours=hours,
                  evidence=Evidence(event, "diagnosis", {"org_code": "H1", "diagnosis_id": event}, "R1"),
                  reason="诊断属于法定传染病", pack_version="test-1")


def test_one_open_case_per_patient_and_disease_and_evidence_once(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        store = CaseStore(conn)
        with conn.transaction():  # the consumer's transaction: the store nests in it
            first = store.open_or_add(signal())
            again = store.open_or_add(signal())  # replay of the same event
            more = store.open_or_add(signal(event="e2"))
            other = store.open_or_add(signal(disease="0302"))
        assert first.created and not again.created and not again.evidence_added
        assert more.case.case_id == first.case.case_id and more.evidence_added
        assert other.created and other.case.case_id != first.case.case_id
        assert first.case.due_at - first.case.signal_at == dt.timedelta(hours=24)
        detail = store.detail(first.case.case_id)
        assert [e.event_id for e in detail.evidence] == ["e1", "e2"]
        assert [h.action for h in detail.history] == ["open", "evidence"]
        assert detail.history[0].actor == "rules:test-1" and detail.history[0].to_status == "待确认"
        conn.commit()


def test_a_rolled_back_consumer_transaction_leaves_nothing(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        store = CaseStore(conn)
        with pytest.raises(RuntimeError), conn.transaction():
            store.open_or_add(signal())
            raise RuntimeError("crash before the checkpoint")
        assert store.list(CaseFilter()) == []


def test_actions_record_history_and_close_for_good(migrated_db: str) -> None:
    with standalone_store(migrated_db) as store:
        case = store.open_or_add(signal(hours=2)).case
        acked = store.apply_action(case.case_id, Action("ack"), DOCTOR)
        assert acked.acked_by == "D001" and acked.status == Status.TO_CONFIRM
        with pytest.raises(CaseError, match="不能晚于"):
            store.apply_action(case.case_id, Action("snooze", until=NOW + dt.timedelta(hours=3)), DOCTOR)
        with pytest.raises(CaseError, match="晚于当前时间"):
            store.apply_action(case.case_id, Action("snooze", until=NOW - dt.timedelta(minutes=1)), DOCTOR)
        until = NOW + dt.timedelta(hours=1)
        assert store.apply_action(case.case_id, Action("snooze", until=until), DOCTOR).snooze_until == until
        with pytest.raises(CaseError, match="原因"):
            store.apply_action(case.case_id, Action("exclude", reason="  "), DOCTOR)
        with pytest.raises(CaseError, match="编号"):
            store.apply_action(case.case_id, Action("reported"), DOCTOR)
        with pytest.raises(CaseError, match="未知操作"):
            store.apply_action(case.case_id, Action("delete"), DOCTOR)
        done = store.apply_action(case.case_id, Action("reported", card_no="C-2026-1"), DOCTOR)
        assert done.status == Status.REPORTED and done.card_no == "C-2026-1" and done.closed_at is not None
        with pytest.raises(CaseClosed):
            store.apply_action(case.case_id, Action("exclude", reason="误诊"), DOCTOR)
        with pytest.raises(CaseNotFound):
            store.apply_action(999, Action("ack"), DOCTOR)
        hist = store.history(case.case_id)
        assert [(h.action, h.from_status, h.to_status, h.actor) for h in hist] == [
            ("open", None, "待确认", "rules:test-1"), ("ack", "待确认", "待确认", "D001"),
            ("snooze", "待确认", "待确认", "D001"), ("reported", "待确认", "已报卡", "D001")]
        # closed: a new signal opens a new case
        again = store.open_or_add(signal(event="e9"))
        assert again.created and again.case.case_id != case.case_id
        excluded = store.apply_action(again.case.case_id, Action("exclude", reason="复核后排除"),
                                      Actor("F01", "public_health"))
        assert excluded.close_reason == "复核后排除"


def test_filters_for_doctor_department_status_and_counts(migrated_db: str) -> None:
    with standalone_store(migrated_db) as store:
        a = store.open_or_add(signal("P1")).case
        b = store.open_or_add(signal("P2", kind=Kind.SUSPECTED, status=Status.TO_DIAGNOSE, hours=-1)).case
        store.apply_action(a.case_id, Action("snooze", until=NOW + dt.timedelta(hours=1)), DOCTOR)
        assert [c.case_id for c in store.list(CaseFilter(doctor_id="D001"))] == [b.case_id, a.case_id]
        assert store.list(CaseFilter(doctor_id="nobody")) == []
        assert [c.case_id for c in store.list(CaseFilter(statuses=[Status.TO_DIAGNOSE]))] == [b.case_id]
        assert [c.case_id for c in store.list(CaseFilter(actionable_at=NOW))] == [b.case_id]
        assert [c.case_id for c in store.list(CaseFilter(before_id=b.case_id))] == [a.case_id]
        assert [c.case_id for c in store.list(CaseFilter(after_id=0, limit=1))] == [a.case_id]
        assert store.list(CaseFilter(since=NOW + dt.timedelta(days=1))) == []
        assert store.counts() == (2, 1)


def test_nothing_is_deleted_and_history_is_append_only(migrated_db: str) -> None:
    with standalone_store(migrated_db) as store:
        case = store.open_or_add(signal()).case
    with psycopg.connect(migrated_db, autocommit=True) as conn:  # even the owner
        for stmt in (f"DELETE FROM cdcsync.surveil_case WHERE case_id = {case.case_id}",
                     "TRUNCATE cdcsync.surveil_case_history",
                     "UPDATE cdcsync.surveil_case_history SET reason = 'x'",
                     "DELETE FROM cdcsync.surveil_case_evidence",
                     f"UPDATE cdcsync.surveil_case SET patient_id = 'P9' WHERE case_id = {case.case_id}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)
    apply_migrations(migrated_db, REPO / "sql")  # db init again re-grants broadly, then narrows
    with login(migrated_db, "cdcsync_daemon") as daemon:
        assert refused(daemon, "DELETE FROM cdcsync.surveil_case_history")
        with psycopg.connect(daemon) as conn:
            CaseStore(conn).open_or_add(signal("P7"))
    with login(migrated_db, "cdcsync_api") as api:
        with standalone_store(api) as store:
            store.apply_action(case.case_id, Action("ack"), Actor("D002", "his"))
        assert refused(api, "DELETE FROM cdcsync.surveil_case")
    with login(migrated_db, "cdcsync_his") as his:
        assert refused(his, "SELECT * FROM cdcsync.surveil_case")


def _old(patient: str, days_ago: float) -> Signal:
    import dataclasses

    return dataclasses.replace(signal(patient, event=f"e-{patient}"), signal_at=NOW - dt.timedelta(days=days_ago))


def test_cases_long_past_their_due_time_expire_with_a_history_row(migrated_db: str) -> None:
    rules = Actor("rules:test-1", "rules")
    with psycopg.connect(migrated_db) as conn:
        store = CaseStore(conn)
        stale = store.open_or_add(_old("P1", 10)).case  # due 9 days ago
        recent = store.open_or_add(_old("P2", 3)).case  # due 2 days ago: overdue, not expired
        fresh = store.open_or_add(signal("P3")).case  # due tomorrow
        conn.commit()
        assert store.expire_overdue(dt.timedelta(days=7), rules) == [stale.case_id]
        conn.commit()
        assert store.expire_overdue(dt.timedelta(days=7), rules) == []  # once
        expired = store.get(stale.case_id)
        assert expired.status == Status.EXPIRED and expired.closed_at is not None and not expired.is_open
        assert "7 天" in (expired.close_reason or "")
        [*_, last] = store.history(stale.case_id)
        assert (last.action, last.from_status, last.to_status, last.actor) == (
            "expire", "待确认", "已过期", "rules:test-1")
        assert store.get(recent.case_id).is_open and store.get(fresh.case_id).is_open
        assert store.counts() == (2, 1)  # no longer on anybody's list of open cases
        with pytest.raises(CaseError):  # closed for good, like any closed case
            store.apply_action(stale.case_id, Action("ack"), DOCTOR)
        conn.rollback()
        again = store.open_or_add(signal("P1", event="e-new"))  # a new signal opens a new case
        assert again.created and again.case.case_id != stale.case_id
        row = conn.execute("SELECT sum(overdue), sum(overdue_open) FROM recon.pending_cases"
                           " WHERE status = '已过期'").fetchone()
        assert row is not None and (row[0], row[1]) == (1, 0)  # still counted as overdue
        conn.commit()
