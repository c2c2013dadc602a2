"""The rule kinds on real rows: rows in a real mirror, events through the validation and mapping
stage, the engine writing cases through the case store (tests/surveil_rows.py)."""

from __future__ import annotations

import datetime as dt

import psycopg

from cdcsync.surveil.cases import CaseStore, Kind, Status
from tests.surveil_rows import Mirror


def _one(m: Mirror) -> tuple[Kind, Status, str, str, str | None]:
    cases = m.cases()
    assert len(cases) == 1, cases
    c = cases[0]
    return c.kind, c.status, c.disease_code, c.patient_id, c.visit_id


def test_notifiable_diagnosis_opens_to_confirm_and_the_card_closes_it(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "A15.000")  # local 国家临床版 code → A15.0 肺结核, confirmed
    out = m.run()
    assert [r.created for r in out] == [True]
    case = m.cases()[0]
    assert (case.kind, case.status, case.disease_code, case.disease_name, case.disease_class) == (
        Kind.NOTIFIABLE_DIAGNOSIS, Status.TO_CONFIRM, "213", "肺结核", "乙")
    assert (case.doctor_id, case.doctor_name, case.dept_code, case.visit_id) == ("D002", "李医生", "0302", "V1")
    assert case.due_at - case.signal_at == dt.timedelta(hours=24)
    m.diagnosis("V1", "P1", "A15.0")  # a second row for the same disease: evidence, no second case
    m.run()
    assert len(m.cases()) == 1
    m.card("V1", "P1", "21302")  # 病原学阳性肺结核 falls under 肺结核
    m.run()
    case = m.cases()[0]
    assert case.status == Status.REPORTED and case.card_no and case.card_no.startswith("NO")
    with psycopg.connect(migrated_db) as conn:
        detail = CaseStore(conn).detail(case.case_id)
    assert [h.action for h in detail.history] == ["open", "evidence", "reported"]
    assert [e.table_name for e in detail.evidence] == ["diagnosis", "diagnosis", "report_card"]


def test_no_case_when_the_hospital_already_reported_it(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.card("V1", "P1", "227")
    m.diagnosis("V1", "P1", "U07.1")
    m.run()
    assert m.cases() == []


def test_class_a_and_managed_as_class_a_are_due_in_two_hours(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1", doctor="D009")
    m.diagnosis("V1", "P1", "A22.1", doctor=None)  # 肺炭疽: managed as class A; no doctor on the row
    m.visit("V2", "P2")
    m.diagnosis("V2", "P2", "A00.9")  # 霍乱 甲类
    m.visit("V3", "P3")
    m.diagnosis("V3", "P3", "B04")  # 猴痘 乙类
    m.run()
    by = {c.patient_id: c for c in m.cases()}
    assert by["P1"].disease_code == "21101" and by["P1"].due_at - by["P1"].signal_at == dt.timedelta(hours=2)
    assert (by["P1"].doctor_id, by["P1"].doctor_name, by["P1"].dept_code) == ("D009", "王医生", "0301")  # the visit's
    assert by["P2"].disease_class == "甲" and by["P2"].due_at - by["P2"].signal_at == dt.timedelta(hours=2)
    assert by["P3"].disease_name == "猴痘" and by["P3"].disease_class == "乙"
    assert by["P3"].due_at - by["P3"].signal_at == dt.timedelta(hours=24)


def test_non_notifiable_diagnosis_opens_nothing(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "J18.900")
    m.diagnosis("V1", "P1", "I10")
    m.run()
    assert m.cases() == []
