"""Surveillance scenarios: encounters that exercise every early-warning rule kind, and the
negatives that must not open a case (``cdcsync gen --truth``).

The everyday hospital already writes notifiable diagnoses with their report cards; these
scenarios add, each day, what a correct rule engine must catch or leave alone: a notifiable
diagnosis nobody reported, a suspected case without a test, a positive pathogen test under an
unrelated diagnosis, a negative test, an anti-TB drug without a TB diagnosis, oseltamivir with a
reported influenza diagnosis, a death from an unreported notifiable disease, a report card that
disagrees with the EMR, and a disease the HIS already reported with its own card. They are added
after the day's faults are drawn, so they are never spoiled. The ground truth itself is computed
over all rows of the day (:mod:`cdcsync.synth.truth`), not taken from here.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from cdcsync.synth.catalog import EMERGENCY, OUTPATIENT, Condition
from cdcsync.synth.diagnoses import CONFIRMED, SUSPECTED
from cdcsync.synth.load import Group, Row
from cdcsync.synth.model import Census

if TYPE_CHECKING:
    from cdcsync.synth.hospital import Hospital


def _set_status(h: Hospital, g: Group, status: str) -> None:
    for row in g.rows.get("diagnosis", []):
        if row.get("diagnosis_seq") == 1:
            row["diagnosis_status_code"] = h.site.codes.need("diagnosis_status", status)


def _drop(g: Group, *tables: str) -> None:
    for t in tables:
        g.rows.pop(t, None)


def _visit_of(g: Group) -> Row:
    return g.rows["visit"][0]


def _lab(h: Hospital, rng: random.Random, g: Group, item: str, taxon: str, *, positive: bool) -> None:
    c, site = h.site.codes, h.site
    v = _visit_of(g)
    local_item = c.get("lab_item", item)
    if local_item is None:
        return
    report = v["visit_time"] + dt.timedelta(minutes=rng.randint(40, 120))
    rid = f"{v['visit_id']}LS"
    g.add("lab_report", {
        **site.common(report, rng), "lab_report_id": rid, "visit_id": v["visit_id"], "patient_id": v["patient_id"],
        "visit_type_code": v["visit_type_code"], "report_name": c.name("lab_item", local_item),
        "apply_dept_code": v["dept_code"], "apply_doctor_id": v["doctor_id"],
        "specimen_type_code": c.get("specimen_type", "18", "01") or next(iter(c.tables.local["specimen_type"].map)),
        "report_time": report})
    row: Row = {
        **site.common(report, rng), "lab_result_id": f"{rid}R00", "lab_report_id": rid, "visit_id": v["visit_id"],
        "patient_id": v["patient_id"], "lab_item_code": local_item, "lab_item_name": c.name("lab_item", local_item),
        "result_value": "阳性" if positive else "阴性",
        "qualitative_result_code": c.need("qualitative_result", "2" if positive else "1"), "report_time": report}
    if positive:
        row["pathogen_code"] = c.get("pathogen", taxon)
    g.add("lab_result", row)


def _drug(h: Hospital, rng: random.Random, g: Group, atc: str, name: str) -> None:
    c, site = h.site.codes, h.site
    v = _visit_of(g)
    local = c.get("drug", atc)
    if local is None:
        return
    order = v["visit_time"] + dt.timedelta(minutes=rng.randint(10, 40))
    g.add("drug_order", {
        **site.common(order, rng), "drug_order_id": f"{v['visit_id']}MS", "visit_id": v["visit_id"],
        "patient_id": v["patient_id"], "visit_type_code": v["visit_type_code"],
        "order_category_code": c.need("order_category", "2"), "drug_code": local, "drug_name": name,
        "order_time": order, "dept_code": v["dept_code"], "doctor_id": v["doctor_id"]})


def _death(h: Hospital, rng: random.Random, g: Group, cause: str) -> None:
    c, site = h.site.codes, h.site
    v = _visit_of(g)
    table = c.tables.local["death_cause"]
    dom = c.tables.national.get("death_cause")
    local = c.get("death_cause", cause) or (cause if table.passthrough and dom is not None and cause in dom else None)
    if local is None:
        return
    died = v["visit_time"] + dt.timedelta(minutes=rng.randint(60, 180))
    g.add("death_record", {
        **site.common(died, rng), "death_record_id": f"{v['visit_id']}W", "visit_id": v["visit_id"],
        "patient_id": v["patient_id"], "visit_type_code": v["visit_type_code"], "death_time": died,
        "dept_code": v["dept_code"], "death_cause_code": local,
        "death_cause_name": (dom.name_of(cause) if dom else None) or cause,
        "doctor_id": v["doctor_id"], "record_time": died + dt.timedelta(minutes=30)})


def _unreported(h: Hospital, rng: random.Random, g: Group) -> None:
    _set_status(h, g, CONFIRMED)
    _drop(g, "report_card")


def _suspected(h: Hospital, rng: random.Random, g: Group) -> None:
    _set_status(h, g, SUSPECTED)
    _drop(g, "report_card", "lab_report", "lab_result")


def _positive_lab(h: Hospital, rng: random.Random, g: Group) -> None:
    _lab(h, rng, g, "92142-9", "11320", positive=True)


def _negative_lab(h: Hospital, rng: random.Random, g: Group) -> None:
    _lab(h, rng, g, "92142-9", "11320", positive=False)


def _tb_drug(h: Hospital, rng: random.Random, g: Group) -> None:
    _drug(h, rng, g, "J04AC01", "异烟肼")


def _flu_drug(h: Hospital, rng: random.Random, g: Group) -> None:
    if not g.rows.get("report_card"):
        return  # no local disease code for a card: the negative would not be one
    _drug(h, rng, g, "J05AH02", "奥司他韦")


def _death_unreported(h: Hospital, rng: random.Random, g: Group) -> None:
    _death(h, rng, g, "B24")


def _card_mismatch(h: Hospital, rng: random.Random, g: Group) -> None:
    for card in g.rows.get("report_card", []):
        card["diagnosis_status_code"] = h.site.codes.need("diagnosis_status", SUSPECTED)


def _reported(h: Hospital, rng: random.Random, g: Group) -> None:
    """The HIS's own card, consistent with the diagnosis: nothing to do."""


# (condition key, visit kind, diagnosis status to force or None, what to change)
SCENARIOS: tuple[tuple[str, str, str | None, Callable[[Hospital, random.Random, Group], None]], ...] = (
    ("hfmd", OUTPATIENT, CONFIRMED, _unreported),
    ("covid", EMERGENCY, SUSPECTED, _suspected),
    ("uri", OUTPATIENT, None, _positive_lab),
    ("uri", OUTPATIENT, None, _negative_lab),
    ("pneumonia", OUTPATIENT, None, _tb_drug),
    ("flu", OUTPATIENT, CONFIRMED, _flu_drug),
    ("pneumonia", EMERGENCY, None, _death_unreported),
    ("tb", OUTPATIENT, CONFIRMED, _card_mismatch),
    ("dysentery", OUTPATIENT, CONFIRMED, _reported),
)


def scenario_groups(h: Hospital, rng: random.Random, day: dt.date, census: Census) -> list[Group]:
    """One encounter per scenario whose condition the hospital's code tables know."""
    by_key: dict[str, Condition] = {cd.key: cd for cd in h.site.conditions}
    groups = []
    for key, kind, status, change in SCENARIOS:
        cond = by_key.get(key)
        if cond is None:
            continue
        t = h.site.clock(day, rng.uniform(0.35, 0.7))
        g = h.encounter(rng, day, kind, t, census, cond=cond, status=status)
        change(h, rng, g)
        groups.append(g)
    return groups
