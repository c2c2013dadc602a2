"""Rows in a real mirror for the rule tests, and the rules run over them the way the stream would:
each ``run()`` turns the rows written since the last one into events through the validation and
mapping stage (cdcsync.surveil.mirror) and applies the engine in one transaction."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import psycopg
from psycopg import sql

from cdcsync.surveil.cases import Case, CaseFilter, CaseStore, OpenResult
from cdcsync.surveil.mirror import mirror_events
from cdcsync.surveil.pack import RulePack, load_pack
from cdcsync.surveil.rules import RuleEngine, holder_mapper
from cdcsync.validate.reload import RulesHolder

ORG = "12110000400000000X"  # the example hospital (mappings/local/example/org.yaml)
T0 = dt.datetime(2026, 11, 20, 9, 0)  # Beijing local time, as the HIS writes it
_HOLDER: RulesHolder | None = None


def holder() -> RulesHolder:
    global _HOLDER
    if _HOLDER is None:
        _HOLDER = RulesHolder.load()
    return _HOLDER


def _common(t: dt.datetime) -> dict[str, Any]:
    return {"org_code": ORG, "modify_flag": "1", "collect_time": t, "update_time": t}


class Mirror:
    """Writes emr.* rows with the local codes of the example hospital; runs the rules."""

    def __init__(self, dsn: str, pack: RulePack | None = None) -> None:
        self.dsn = dsn
        self.engine = RuleEngine(pack or load_pack(), mapper=holder_mapper(holder()))
        self.seen: set[str] = set()
        self._n = itertools.count(1)

    def insert(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            names = list(row)
            conn.execute(sql.SQL("INSERT INTO emr.{} ({}) VALUES ({})").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names)),
                sql.SQL(", ").join(sql.Placeholder() * len(names))), [row[n] for n in names])
        return row

    def visit(self, visit_id: str, patient: str, *, doctor: str = "D001", dept: str = "0301",
              t: dt.datetime = T0) -> dict[str, Any]:
        return self.insert("visit", {**_common(t), "visit_id": visit_id, "patient_id": patient, "visit_type_code": "MZ",
                                     "visit_time": t, "dept_code": dept, "doctor_id": doctor, "doctor_name": "王医生"})

    def diagnosis(self, visit_id: str, patient: str, icd: str, status: str = "3", *, doctor: str | None = "D002",
                  onset: dt.date | None = dt.date(2026, 11, 18), t: dt.datetime = T0, seq: int | None = None
                  ) -> dict[str, Any]:
        n = seq or next(self._n)
        return self.insert("diagnosis", {
            **_common(t), "diagnosis_id": f"{visit_id}D{n}", "visit_id": visit_id, "patient_id": patient,
            "visit_type_code": "MZ", "diagnosis_category_code": "MZZD", "diagnosis_code": icd,
            "diagnosis_name": "诊断", "diagnosis_status_code": status, "onset_date": onset,
            "diagnosis_time": t + dt.timedelta(minutes=10), "dept_code": "0302" if doctor else None,
            "doctor_id": doctor, "doctor_name": "李医生" if doctor else None})

    def lab(self, visit_id: str, patient: str, item: str, qual: str, pathogen: str | None = None, *,
            doctor: str | None = "D003", t: dt.datetime = T0) -> dict[str, Any]:
        n = next(self._n)
        rep = f"{visit_id}L{n}"
        self.insert("lab_report", {
            **_common(t), "lab_report_id": rep, "visit_id": visit_id, "patient_id": patient, "visit_type_code": "MZ",
            "report_name": "病原学检测", "apply_dept_code": "0301", "apply_doctor_id": doctor,
            "specimen_type_code": "QX", "report_time": t + dt.timedelta(hours=1)})
        return self.insert("lab_result", {
            **_common(t), "lab_result_id": f"{rep}R1", "lab_report_id": rep, "visit_id": visit_id,
            "patient_id": patient, "lab_item_code": item, "lab_item_name": "检测", "result_value": qual,
            "qualitative_result_code": qual, "pathogen_code": pathogen, "report_time": t + dt.timedelta(hours=1)})

    def drug(self, visit_id: str, patient: str, drug: str, *, doctor: str = "D004", t: dt.datetime = T0
             ) -> dict[str, Any]:
        return self.insert("drug_order", {
            **_common(t), "drug_order_id": f"{visit_id}M{next(self._n)}", "visit_id": visit_id,
            "patient_id": patient, "visit_type_code": "MZ", "order_category_code": "LS", "drug_code": drug,
            "drug_name": "药品", "order_time": t + dt.timedelta(minutes=30), "dept_code": "0302",
            "doctor_id": doctor})

    def death(self, visit_id: str, patient: str, cause: str, underlying: str | None = None, *,
              t: dt.datetime = T0) -> dict[str, Any]:
        return self.insert("death_record", {
            **_common(t), "death_record_id": f"{visit_id}X{next(self._n)}", "visit_id": visit_id,
            "patient_id": patient, "visit_type_code": "ZY", "death_time": t, "death_cause_code": cause,
            "underlying_cause_code": underlying, "dept_code": "0301", "doctor_id": "D005"})

    def card(self, visit_id: str | None, patient: str, disease: str, status: str = "3", *,
             onset: dt.date = dt.date(2026, 11, 18), death: dt.date | None = None, category: str = "CC",
             t: dt.datetime = T0, card_id: str | None = None) -> dict[str, Any]:
        cid = card_id or f"{visit_id or patient}C{next(self._n)}"
        return self.insert("report_card", {
            **_common(t), "card_id": cid, "card_no": f"NO{cid}", "card_category_code": category,
            "visit_id": visit_id, "patient_id": patient, "patient_name": "张三", "sex_code": "M", "age_years": 40,
            "patient_belong_code": "BXQ", "current_addr_region_code": "110101", "population_group_code": "SY",
            "disease_code": disease, "diagnosis_status_code": status, "onset_date": onset,
            "diagnosis_time": t + dt.timedelta(minutes=20), "death_date": death,
            "death_diagnosis_code": "J96.0" if death else None, "report_doctor_id": "D002",
            "report_doctor": "李医生", "report_time": t + dt.timedelta(hours=2)})

    def run(self) -> list[OpenResult]:
        """The rules over the rows written since the last run, in one transaction (as the consumer)."""
        with psycopg.connect(self.dsn) as conn:
            events = [e for e in mirror_events(conn, holder(), ORG, "emr") if e.id not in self.seen]
            conn.rollback()
            with conn.transaction():
                out = self.engine.apply(conn, events)
            self.seen.update(e.id for e in events)
        return out

    def cases(self) -> list[Case]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return sorted(CaseStore(conn).list(CaseFilter(limit=1000)), key=lambda c: c.case_id)
