"""Ground truth for the early-warning rules over generated rows (``cdcsync gen --truth FILE``).

Given the rows as the rules consumer sees them (validated and mapped: national codes; invalid rows
left out, as the stream quarantines them) in commit order, this works out which cases a correct
engine leaves for staff to act on, from the definitions in issue 15 / docs/surveillance.md and the
code sets of the rule pack. It is written apart from :mod:`cdcsync.surveil.rules` (a plain
in-memory walk, no database) so that ``cdcsync rules evaluate`` compares two readings of the rules.

Context is the whole generated data set (as when the rules run after the data was loaded, and as
the live stream sees it for this data: a visit's diagnoses are written before its tests, orders
and cards). Cases the hospital's own card closed (已报卡, 已订正) are not part of the truth: whether
such a case was briefly open depends on when the card arrived.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdcsync.surveil.pack import Disease, RulePack

Row = dict[str, Any]


@dataclass
class TruthCase:
    kind: str
    status: str
    disease: str
    patient_id: str
    visit_id: str | None
    # card_mismatch: other visits of the patient whose cards of this disease disagree too. One open
    # case per patient and disease takes the visit of whichever the engine meets first, which can
    # depend on how far it lags behind the mirror.
    other_visits: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "status": self.status, "disease": self.disease,
                               "patient_id": self.patient_id, "visit_id": self.visit_id}
        if self.other_visits:
            out["other_visits"] = sorted(self.other_visits)
        return out


class _Oracle:
    def __init__(self, pack: RulePack, rows: list[tuple[str, Row]]) -> None:
        self.pack = pack
        self.dx: dict[str, list[Row]] = {}
        self.cards: dict[str, list[Row]] = {}
        for table, row in rows:
            if row.get("modify_flag") == "3":
                continue
            if table == "diagnosis":
                self.dx.setdefault(row["visit_id"], []).append(row)
            elif table == "report_card":
                self.cards.setdefault(row["patient_id"], []).append(row)
        for v in self.dx.values():
            v.sort(key=lambda r: (r["diagnosis_time"], r["diagnosis_id"]))
        self.open: dict[tuple[str, str], TruthCase] = {}

    # what the data says
    def card_disease(self, card: Row) -> Disease | None:
        d = self.pack.disease(card.get("disease_code") or "")
        if d is None and card.get("other_disease_name"):
            d = self.pack.disease_by_name(card["other_disease_name"])
        return d

    def carded(self, patient: str, disease: str, *, with_death: bool = False) -> bool:
        return any((d := self.card_disease(c)) is not None and d.code == disease
                   and (not with_death or c.get("death_date") is not None) for c in self.cards.get(patient, []))

    def visit_dx(self, visit: str | None, as_of: Any = None) -> list[tuple[Disease, str, Row]]:
        """The visit's notifiable diagnoses made up to ``as_of`` (all when None)."""
        out = []
        for r in self.dx.get(visit or "", []):
            if as_of is not None and r.get("diagnosis_time") is not None and r["diagnosis_time"] > as_of:
                continue
            d = self.pack.disease_for_icd(r.get("diagnosis_code"))
            s = r.get("diagnosis_status_code")
            if d is not None and (s in self.pack.suspected_statuses or s in self.pack.confirmed_statuses):
                out.append((d, s, r))
        return out

    def card_bad_since(self, card: Row, disease: Disease) -> bool:
        """Disagrees when reported, or at any later diagnosis of its visit."""
        reported = card.get("report_time")
        if self.card_bad(card, disease, reported):
            return True
        if reported is None:
            return False
        later = {r["diagnosis_time"] for r in self.dx.get(card.get("visit_id") or "", [])
                 if r.get("diagnosis_time") is not None and r["diagnosis_time"] > reported}
        return any(self.card_bad(card, disease, t) for t in sorted(later))

    def card_bad(self, card: Row, disease: Disease, as_of: Any) -> bool:
        """The card disagrees with its visit's diagnoses made up to ``as_of``."""
        dxs = self.visit_dx(card.get("visit_id"), as_of) if card.get("visit_id") else []
        if not dxs:
            return False
        same = [(s, r) for d, s, r in dxs if d.code == disease.code]
        if not same:
            return True
        if card.get("diagnosis_status_code") and same[-1][0] != card["diagnosis_status_code"]:
            return True
        onset = next((r["onset_date"] for _, r in reversed(same) if r.get("onset_date") is not None), None)
        return (card.get("onset_date") is not None and onset is not None
                and abs((card["onset_date"] - onset).days) > self.pack.onset_tolerance_days)

    # case bookkeeping
    def open_case(self, kind: str, status: str, disease: str, row: Row, visit: str | None = None) -> None:
        key = (row["patient_id"], disease)
        if key not in self.open:
            self.open[key] = TruthCase(kind, status, disease, row["patient_id"], visit or row.get("visit_id"))

    def close(self, patient: str, disease: str) -> None:
        self.open.pop((patient, disease), None)

    # the events
    def diagnosis(self, row: Row) -> None:
        d = self.pack.disease_for_icd(row.get("diagnosis_code"))
        s = row.get("diagnosis_status_code")
        if d is None or (s not in self.pack.suspected_statuses and s not in self.pack.confirmed_statuses):
            return
        made = row.get("diagnosis_time")
        for card in self.cards.get(row["patient_id"], []):
            cd = self.card_disease(card)
            before = made is None or card.get("report_time") is None or card["report_time"] <= made
            if cd is not None and card.get("visit_id") == row["visit_id"] and before and self.card_bad(card, cd, made):
                self.mismatch(card, cd)
        if self.carded(row["patient_id"], d.code):
            case = self.open.get((row["patient_id"], d.code))
            if case is not None and case.kind not in ("card_mismatch", "death"):
                self.close(row["patient_id"], d.code)
            return
        case = self.open.get((row["patient_id"], d.code))
        if s in self.pack.suspected_statuses:
            self.open_case("suspected", "待确诊", d.code, row)
        elif case is not None and case.status != "待确认" and case.kind != "card_mismatch":
            case.status = "待确认"
        else:
            self.open_case("notifiable_diagnosis", "待确认", d.code, row)

    def lab(self, row: Row) -> None:
        if row.get("qualitative_result_code") not in self.pack.positive_results:
            return
        d = self.pack.disease_for_pathogen(row.get("pathogen_code")) or self.pack.disease_for_lab_item(
            row.get("lab_item_code"))
        if d is None:
            return
        if self.carded(row["patient_id"], d.code):
            case = self.open.get((row["patient_id"], d.code))
            if case is not None and case.kind not in ("card_mismatch", "death"):
                self.close(row["patient_id"], d.code)
            return
        statuses = [s for dd, s, _ in self.visit_dx(row.get("visit_id")) if dd.code == d.code]
        if any(s in self.pack.confirmed_statuses for s in statuses):
            return
        case = self.open.get((row["patient_id"], d.code))
        if case is not None and case.status == "待确诊" and case.kind == "suspected":
            case.status = "待确认"
            return
        self.open_case("positive_pathogen", "待确诊", d.code, row)

    def drug(self, row: Row) -> None:
        group = self.pack.drug_group(row.get("drug_code"))
        if group is None:
            return
        wanted = set(group.diseases)
        if any(d.code in wanted for d, _, _ in self.visit_dx(row.get("visit_id"))):
            return
        if any((d := self.card_disease(c)) is not None and d.code in wanted
               for c in self.cards.get(row["patient_id"], [])):
            return
        if any((row["patient_id"], code) in self.open for code in group.diseases):
            return
        self.open_case("special_drug", "待核查", group.diseases[0], row)

    def death(self, row: Row) -> None:
        found = [d for c in ("death_cause_code", "underlying_cause_code")
                 if (d := self.pack.disease_for_icd(row.get(c))) is not None]
        if found:
            for d in found:
                if not self.carded(row["patient_id"], d.code, with_death=True):
                    self.open_case("death", "待核查", d.code, row)
            return
        for (patient, _), case in self.open.items():
            if patient == row["patient_id"]:
                case.status = "待核查"

    def card(self, row: Row) -> None:
        d = self.card_disease(row)
        if d is None:
            return
        case = self.open.get((row["patient_id"], d.code))
        if case is not None:
            if case.kind == "death" and row.get("death_date") is None:
                pass
            elif case.kind == "card_mismatch":
                as_of = row.get("report_time")
                correction = row.get("card_category_code") == "2"  # 订正报告
                if (correction and row.get("visit_id") and self.visit_dx(row["visit_id"], as_of)
                        and not self.card_bad_since(row, d)):
                    self.close(row["patient_id"], d.code)
            else:
                self.close(row["patient_id"], d.code)
        if self.card_bad_since(row, d):
            self.mismatch(row, d)

    def mismatch(self, card: Row, d: Disease) -> None:
        case = self.open.get((card["patient_id"], d.code))
        if case is not None and case.kind != "card_mismatch":
            self.close(card["patient_id"], d.code)
        elif (case is not None and card.get("visit_id") and card["visit_id"] != case.visit_id
              and card["visit_id"] not in case.other_visits):
            case.other_visits.append(card["visit_id"])
        self.open_case("card_mismatch", "待核查", d.code, card, card.get("visit_id"))


def expected_cases(pack: RulePack, rows: Iterable[tuple[str, Row]]) -> list[TruthCase]:
    """The open cases after ``rows`` (table, mapped valid row) in commit order."""
    ordered = list(rows)
    oracle = _Oracle(pack, ordered)
    enabled = {str(k) for k in pack.kinds}
    handlers = {"diagnosis": oracle.diagnosis, "lab_result": oracle.lab, "drug_order": oracle.drug,
                "death_record": oracle.death, "report_card": oracle.card}
    for table, row in ordered:
        handler = handlers.get(table)
        if handler is not None and row.get("modify_flag") != "3":
            handler(row)
    return [c for c in oracle.open.values() if c.kind in enabled]


def write_truth(path: Path, cases: Iterable[TruthCase]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for case in sorted(cases, key=lambda c: (c.kind, c.patient_id, c.disease)):
            fh.write(json.dumps(case.as_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n
