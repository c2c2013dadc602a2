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


def test_suspected_opens_to_diagnose_and_a_confirming_diagnosis_upgrades_it(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "J11.100", status="YS")  # local 疑似 code → 1; flu
    m.run()
    assert _one(m) == (Kind.SUSPECTED, Status.TO_DIAGNOSE, "301", "P1", "V1")
    m.diagnosis("V1", "P1", "J10.1", status="QZ")  # confirmed
    m.run()
    assert _one(m) == (Kind.SUSPECTED, Status.TO_CONFIRM, "301", "P1", "V1")
    with psycopg.connect(migrated_db) as conn:
        history = CaseStore(conn).history(m.cases()[0].case_id)
    assert [(h.action, h.from_status, h.to_status) for h in history] == [
        ("open", None, "待确诊"), ("upgrade", "待确诊", "待确认")]


def test_a_positive_pathogen_upgrades_a_suspected_case(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "U07.1", status="1")
    m.run()
    m.lab("V1", "P1", "LIS-COV2", "2", "WSW-COV2")
    m.run()
    assert _one(m) == (Kind.SUSPECTED, Status.TO_CONFIRM, "227", "P1", "V1")


def test_positive_pathogen_without_diagnosis_opens_to_diagnose_and_negatives_do_not(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.lab("V1", "P1", "LIS-FLUA", "2", "WSW-FLUA")  # influenza A detected, no diagnosis
    m.visit("V2", "P2")
    m.lab("V2", "P2", "LIS-FLUA", "1")  # negative
    m.visit("V3", "P3")
    m.lab("V3", "P3", "LIS-COV2", "2", "WSW-COV2")  # positive, but the visit has a confirmed diagnosis
    m.diagnosis("V3", "P3", "U07.1")
    m.visit("V4", "P4")
    m.lab("V4", "P4", "LIS-COV2", "5")  # 检出, pathogen not given: the lab item tells the disease
    m.run()
    by = {c.patient_id: c for c in m.cases()}
    assert set(by) == {"P1", "P3", "P4"}
    assert (by["P1"].kind, by["P1"].status, by["P1"].disease_code) == (
        Kind.POSITIVE_PATHOGEN, Status.TO_DIAGNOSE, "301")
    assert by["P1"].doctor_id == "D003" and by["P1"].dept_code == "0301"  # who ordered the test
    assert (by["P3"].kind, by["P3"].status) == (Kind.NOTIFIABLE_DIAGNOSIS, Status.TO_CONFIRM)
    assert (by["P4"].kind, by["P4"].disease_code) == (Kind.POSITIVE_PATHOGEN, "227")


def test_special_drug_without_matching_diagnosis_is_to_check(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.drug("V1", "P1", "YP000123")  # 奥司他韦, no diagnosis at all
    m.visit("V2", "P2")
    m.diagnosis("V2", "P2", "J11.1")  # flu diagnosed …
    m.card("V2", "P2", "301")  # … and reported
    m.drug("V2", "P2", "YP000123")  # oseltamivir with a matching diagnosis: nothing
    m.visit("V3", "P3")
    m.diagnosis("V3", "P3", "J18.9")  # pneumonia is not a match
    m.drug("V3", "P3", "YP000123")
    m.run()
    by = {c.patient_id: c for c in m.cases()}
    assert set(by) == {"P1", "P3"}
    assert (by["P1"].kind, by["P1"].status, by["P1"].disease_code) == (Kind.SPECIAL_DRUG, Status.TO_CHECK, "301")
    assert (by["P1"].doctor_id, by["P1"].dept_code) == ("D004", "0302")
    # the diagnosis arrives later: the case now needs a report
    m.diagnosis("V1", "P1", "J10.1")
    m.run()
    assert {c.patient_id: c for c in m.cases()}["P1"].status == Status.TO_CONFIRM


def test_death_with_a_notifiable_cause_or_with_an_open_case(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.death("V1", "P1", "J18.900", underlying="B24")  # AIDS as the underlying cause, never reported
    m.visit("V2", "P2")
    m.diagnosis("V2", "P2", "A15.0")
    m.run()
    m.death("V2", "P2", "I21.9")  # no notifiable cause, but an open TB case
    m.visit("V3", "P3")
    m.death("V3", "P3", "I21.9")  # nothing notifiable and no open case
    m.visit("V4", "P4")
    m.card("V4", "P4", "227", death=dt.date(2026, 11, 20))
    m.death("V4", "P4", "U07.100")  # the card already carries the death
    m.run()
    by = {c.patient_id: c for c in m.cases()}
    assert set(by) == {"P1", "P2"}
    assert (by["P1"].kind, by["P1"].status, by["P1"].disease_code) == (Kind.DEATH, Status.TO_CHECK, "202")
    assert (by["P2"].kind, by["P2"].status) == (Kind.NOTIFIABLE_DIAGNOSIS, Status.TO_CHECK)
    # a corrected card with the death date closes the death case
    m.card("V1", "P1", "20201", death=dt.date(2026, 11, 20), category="DZ")
    m.run()
    assert {c.patient_id: c for c in m.cases()}["P1"].status == Status.REPORTED


def test_report_card_disagreeing_with_the_emr_is_to_check(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "B16.9")  # hepatitis B, confirmed
    m.card("V1", "P1", "20302", status="1")  # classification 疑似 on the card
    m.visit("V2", "P2")
    m.diagnosis("V2", "P2", "A09.0", onset=dt.date(2026, 11, 18))
    m.card("V2", "P2", "310", onset=dt.date(2026, 11, 10))  # onset date off by eight days
    m.visit("V3", "P3")
    m.diagnosis("V3", "P3", "B05.9")  # measles in the EMR …
    m.card("V3", "P3", "303")  # … rubella on the card
    m.visit("V4", "P4")
    m.diagnosis("V4", "P4", "A01.0")
    m.card("V4", "P4", "21401")  # agrees: nothing
    m.run()
    cases = m.cases()
    mismatch = {c.patient_id: c for c in cases if c.kind == Kind.CARD_MISMATCH}
    assert set(mismatch) == {"P1", "P2", "P3"}
    assert all(c.status == Status.TO_CHECK and c.visit_id == f"V{c.patient_id[1]}" for c in mismatch.values())
    assert mismatch["P3"].disease_code == "303"
    # measles itself was never reported: that case stays to confirm; the others were closed by their cards
    open_other = [(c.patient_id, c.kind, c.disease_code) for c in cases if c.kind != Kind.CARD_MISMATCH and c.is_open]
    assert open_other == [("P3", Kind.NOTIFIABLE_DIAGNOSIS, "206")]
    # a corrected card that agrees closes the mismatch as 已订正
    m.card("V1", "P1", "20302", status="3", category="DZ")
    m.run()
    assert {c.patient_id: c for c in m.cases() if c.kind == Kind.CARD_MISMATCH}["P1"].status == Status.CORRECTED


def test_a_replayed_batch_changes_nothing(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "B08.4")  # 手足口病 丙类
    m.run()
    before = m.cases()
    m.seen.clear()  # the consumer crashed before its checkpoint: the same events again
    m.run()
    assert m.cases() == before and before[0].disease_class == "丙"


def test_a_replayed_event_does_not_reopen_a_closed_case(migrated_db: str) -> None:
    from cdcsync.surveil.cases import Actor, standalone_store

    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "B01.9")  # 水痘: an "other" disease of the NNDRS
    m.run()
    case = m.cases()[0]
    assert (case.disease_class, case.disease_name) == ("其他", "水痘")
    with standalone_store(migrated_db) as store:
        store.close_excluded(case.case_id, "复核为带状疱疹", Actor("D001", "doctor"))
    m.seen.clear()
    m.run()
    assert [c.status for c in m.cases()] == [Status.EXCLUDED]


def test_a_revoked_diagnosis_corrects_the_case_it_alone_opened(migrated_db: str) -> None:
    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    dx = m.diagnosis("V1", "P1", "B26.9")  # mumps
    m.visit("V2", "P2")
    dx2 = m.diagnosis("V2", "P2", "B05.9")  # measles …
    m.lab("V2", "P2", "LIS-COV2", "2", "WSW-COV2")  # (other disease: no bearing)
    m.diagnosis("V2", "P2", "B05.9", seq=77)  # … recorded twice
    m.run()
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for d in (dx, dx2):
            conn.execute("UPDATE emr.diagnosis SET modify_flag = '3' WHERE diagnosis_id = %s", (d["diagnosis_id"],))
    m.run()
    by = {(c.patient_id, c.disease_code): c for c in m.cases()}
    assert by[("P1", "302")].status == Status.CORRECTED and by[("P1", "302")].close_reason
    assert by[("P2", "206")].status == Status.TO_CONFIRM  # the other record still stands


def test_an_imported_nndrs_card_closes_the_case(migrated_db: str) -> None:
    from cdcsync.surveil.nndrs import close_by_nndrs
    from cdcsync.surveil.pack import load_pack

    m = Mirror(migrated_db)
    m.insert("patient", {"org_code": "12110000400000000X", "patient_id": "P1", "name": "赵六", "sex_code": "M",
                         "birth_date": dt.date(1980, 1, 1), "id_type_code": "01", "id_no": "11010119800101001X",
                         "modify_flag": "1", "collect_time": dt.datetime(2026, 11, 20),
                         "update_time": dt.datetime(2026, 11, 20)})
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "B26.9")  # mumps, by ID number on the NNDRS card
    m.visit("V2", "P2")
    m.diagnosis("V2", "P2", "B05.9")  # measles, the NNDRS card is for rubella: stays open
    m.run()
    with psycopg.connect(migrated_db) as conn:
        for card_id, id_no, name, code in (("N1", "11010119800101001x", "流行性腮腺炎", "302"),
                                           ("N2", None, "风疹", "303")):
            conn.execute("INSERT INTO recon.nndrs_card (card_id, card_no, id_no, disease_name, disease_code,"
                         " source_file, source_line) VALUES (%s, %s, %s, %s, %s, 'x.csv', 1)",
                         (card_id, f"C{card_id}", id_no, name, code))
        assert close_by_nndrs(conn, load_pack()) == 1
        conn.commit()
    by = {c.patient_id: c for c in m.cases()}
    assert (by["P1"].status, by["P1"].card_no) == (Status.REPORTED, "CN1")
    assert by["P2"].status == Status.TO_CONFIRM


def test_an_event_the_rules_cannot_read_is_skipped_not_fatal(migrated_db: str, caplog: object) -> None:
    import logging

    from cdcsync.event import Event

    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "B26.9")
    with psycopg.connect(migrated_db) as conn:
        from cdcsync.surveil.mirror import mirror_events
        from tests.surveil_rows import ORG, holder

        good = list(mirror_events(conn, holder(), ORG, "emr"))
        conn.rollback()
        broken = Event("x:1:0", "c", None, {**good[0].after, "patient_id": None, "diagnosis_code": "A00.9"},  # type: ignore[dict-item]
                       ORG, "emr", "emr", "diagnosis", 1, 1, good[0].commit_ts, False, 0)
        with caplog.at_level(logging.ERROR), conn.transaction():  # type: ignore[attr-defined]
            m.engine.apply(conn, [broken, *good])
    assert m.engine.errors == 1 and "skipped" in caplog.text  # type: ignore[attr-defined]
    assert [(c.patient_id, c.disease_code) for c in m.cases()] == [("P1", "302")]
