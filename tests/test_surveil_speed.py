"""What makes the rules consumer fast must not change what it decides: the pre-filter before the
validation stage, the per-batch prefetch of open cases (and what happens when one of them is
closed meanwhile by a doctor), the one-statement case opening and the batch savepoint."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from cdcsync.event import Change
from cdcsync.surveil import rules
from cdcsync.surveil.cases import Action, Actor, CaseStore, Kind, Status
from cdcsync.surveil.consumer import _Prefilter
from cdcsync.surveil.pack import load_pack
from cdcsync.surveil.rules import RuleEngine, holder_mapper
from cdcsync.validate.stage import ValidationStage
from tests.surveil_rows import ORG, T0, Mirror, holder


def _change(table: str, row: dict[str, Any], op: str = "c", lsn: int = 100) -> Change:
    return Change(op, "emr", table, row if op == "d" else None, None if op == "d" else row, lsn, 1,
                  dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC), 0)


def test_the_prefilter_asks_the_engine_about_the_mapped_national_code() -> None:
    engine = RuleEngine(load_pack(), mapper=holder_mapper(holder()))
    pre = _Prefilter(ValidationStage(holder(), ORG, "emr"))
    dx = {"org_code": ORG, "diagnosis_code": "A15.000"}  # local 国家临床版 code of 肺结核 (A15.0)
    assert pre(engine, _change("diagnosis", dx))
    assert not pre(engine, _change("diagnosis", {**dx, "diagnosis_code": "J18.900"}))  # pneumonia
    assert not pre(engine, _change("diagnosis", {**dx, "diagnosis_code": "NO-SUCH-CODE"}))  # the stage rejects it
    assert pre(engine, _change("diagnosis", {**dx, "diagnosis_code": "J18.900"}, op="d"))  # deletes always pass
    lab = {"org_code": ORG, "lab_item_code": "LIS-FLUA", "pathogen_code": "WSW-FLUA"}
    assert pre(engine, _change("lab_result", {**lab, "qualitative_result_code": "2"}))  # positive
    assert not pre(engine, _change("lab_result", {**lab, "qualitative_result_code": "1"}))  # negative
    assert pre(engine, _change("death_record", {"org_code": ORG}))  # no deciding column: always
    assert pre(object(), _change("diagnosis", {**dx, "diagnosis_code": "J18.900"}))  # an engine without relevant()


def test_a_prefetched_case_closed_meanwhile_is_read_again(migrated_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A doctor excludes the suspected case between the batch's prefetch and the confirming
    diagnosis: the engine must not act on the closed case (as it would not have without the
    prefetch) but open a new 待确认 case."""
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "A15.000", status="1")  # suspected
    m.run()
    [suspected] = m.cases()
    assert suspected.status == Status.TO_DIAGNOSE
    m.diagnosis("V1", "P1", "A15.000", t=T0 + dt.timedelta(hours=1))  # confirmed
    original = rules._Run.prefetch
    closed: list[int] = []

    def prefetch_then_exclude(run: Any, events: Any) -> None:
        original(run, events)
        if not closed:
            with psycopg.connect(migrated_db, autocommit=True) as other:
                CaseStore(other).apply_action(suspected.case_id, Action("exclude", reason="复核排除"),
                                              Actor("D002", "doctor"))
            closed.append(suspected.case_id)

    monkeypatch.setattr(rules._Run, "prefetch", prefetch_then_exclude)
    out = m.run()
    assert closed and m.engine.errors == 0
    cases = m.cases()
    assert [(c.kind, c.status) for c in cases] == [(Kind.SUSPECTED, Status.EXCLUDED),
                                                  (Kind.NOTIFIABLE_DIAGNOSIS, Status.TO_CONFIRM)]
    assert [r.created for r in out] == [True]
    with psycopg.connect(migrated_db) as conn:
        hist = [h.action for h in CaseStore(conn).history(suspected.case_id)]
    assert hist == ["open", "exclude"]  # nothing of the redone attempt stayed on the closed case


def test_a_new_case_is_written_with_its_evidence_and_history(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "A00.9")  # 霍乱
    m.diagnosis("V1", "P1", "A00.9")  # the same disease again: evidence on the open case
    m.run()
    [case] = m.cases()
    with psycopg.connect(migrated_db) as conn:
        detail = CaseStore(conn).detail(case.case_id)
    assert [(h.action, h.from_status, h.to_status, h.actor_role) for h in detail.history] == [
        ("open", None, "待确认", "rules"), ("evidence", "待确认", "待确认", "rules")]
    assert detail.history[0].detail == {"event_id": detail.evidence[0].event_id, "rule_id": "diagnosis.notifiable"}
    assert [(e.table_name, e.rule_id) for e in detail.evidence] == [("diagnosis", "diagnosis.notifiable")] * 2
    assert detail.evidence[0].row_key == {"org_code": ORG, "diagnosis_id": "V1D1"}
    m.seen.clear()
    m.run()  # replayed: nothing new
    with psycopg.connect(migrated_db) as conn:
        assert len(CaseStore(conn).history(case.case_id)) == 2
