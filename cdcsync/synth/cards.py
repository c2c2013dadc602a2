"""Infectious-disease report cards (emr.report_card) and the exposure history behind them.

A visit whose condition is notifiable gets a card (suspected influenza and infectious diarrhoea
are left to the early-warning side); a death in hospital files a corrected card (订正) carrying the
death date. Cards are counted per report date for ``daily_stats``.
"""

from __future__ import annotations

import datetime as dt
import random

from cdcsync.synth import people
from cdcsync.synth.diagnoses import SUSPECTED, Diagnosis
from cdcsync.synth.load import Group, Row
from cdcsync.synth.model import Encounter
from cdcsync.synth.site import Site


def wants_card(enc: Encounter, status: str) -> bool:
    """Notifiable, and not a suspected case of a disease reported only once confirmed."""
    return bool(enc.cond.notifiable) and not (status == SUSPECTED and enc.cond.key in ("flu", "diarrhea"))


def report_card(
    site: Site, rng: random.Random, g: Group, enc: Encounter, dx: Diagnosis, *, positive: bool
) -> Row | None:
    """The card for the visit's main diagnosis ``dx``; None when the hospital has no local disease code."""
    c = site.codes
    cond, pat, doc = enc.cond, enc.patient, enc.doctor
    disease = c.get("notifiable_disease", *cond.notifiable)
    if disease is None:
        return None
    if cond.key == "tb":
        disease = c.get("notifiable_disease", "21302" if positive else "21304") or disease
    years = people.age_on(pat.person.birth_date, dx.onset)
    if years < 7:
        group = "01" if years >= 3 else "02"
    elif years < 23:
        group = "03"
    elif years >= 62:
        group = "16"
    else:
        group = rng.choice(("07", "09", "11", "15", "17", "18"))
    report = dx.time + dt.timedelta(minutes=rng.randint(20, 180))
    p = pat.person
    row = {
        **site.common(report, rng),
        "card_id": f"{enc.visit_id}C0",
        "card_no": f"{report:%Y}{site.tag}{site.next_serial():08d}",
        "card_category_code": c.need("card_category", "1"),
        "visit_id": enc.visit_id,
        "patient_id": pat.patient_id,
        "patient_name": p.name,
        "parent_name": p.contact_name if years <= 14 else None,
        "id_type_code": pat.id_type,
        "id_no": pat.id_no,
        "sex_code": pat.sex,
        "birth_date": p.birth_date,
        "age_years": years,
        "ethnicity_code": pat.ethnicity,
        "marital_status_code": pat.marital,
        "education_code": pat.education,
        "work_unit": pat.work_unit,
        "phone": p.phone if years >= 12 else p.contact_phone,
        "patient_belong_code": pat.belong,
        "current_addr_region_code": pat.region,
        "current_addr_detail": p.address,
        "population_group_code": c.need("population_group", group),
        "disease_code": disease,
        "other_disease_name": None,
        "diagnosis_code": dx.code,
        "diagnosis_status_code": c.need("diagnosis_status", dx.status),
        "case_type_code": c.get("case_type", "2" if cond.chronic else "1") if cond.key == "hbv" else None,
        "clinical_severity_code": c.get("clinical_severity", "1" if rng.random() < 0.8 else "2")
        if cond.key == "covid"
        else None,
        "onset_date": dx.onset,
        "diagnosis_time": dx.time,
        "death_date": None,
        "death_diagnosis_code": None,
        "lab_conclusion_code": c.get("lab_conclusion", "3") if positive and cond.key == "covid" else None,
        "infection_route_code": c.get("infection_route", cond.route) if cond.route else None,
        "contact_mode_code": c.get("contact_mode", cond.contact) if cond.contact and cond.route else None,
        "corrected_disease_name": None,
        "report_dept_code": enc.dept,
        "report_doctor_id": doc.staff_id,
        "report_doctor": doc.name,
        "report_time": report,
        "fill_date": report.date(),
        "remark": None,
    }
    g.add("report_card", row)
    site.count_card(report.date())
    return row


def exposure_history(site: Site, rng: random.Random, g: Group, enc: Encounter, *, onset: dt.date) -> None:
    """Half of the cases with a known exposure tell it (place, dates, the catalogue's text)."""
    cond = enc.cond
    if not cond.exposure or rng.random() > 0.5:
        return
    start = onset - dt.timedelta(days=rng.randint(2, 10))
    travel = rng.random() < 0.2
    g.add(
        "exposure_history",
        {
            **site.common(enc.time, rng),
            "exposure_id": f"{enc.visit_id}X01",
            "visit_id": enc.visit_id,
            "patient_id": enc.patient.patient_id,
            "contact_mode_code": site.codes.get("contact_mode", cond.contact) if cond.contact else None,
            "case_contact_flag": True,
            "travel_country_code": None,
            "travel_region_code": rng.choice(site.regions).code if travel else None,
            "place_desc": rng.choice(site.catalog.exposure_places),
            "start_date": start,
            "end_date": start + dt.timedelta(days=rng.randint(0, 2)),
            "exposure_desc": cond.exposure,
            "record_time": enc.time + dt.timedelta(minutes=8),
            "recorder_id": None,
        },
    )


def death_correction(site: Site, rng: random.Random, enc: Encounter, card: Row, *, died: dt.datetime) -> Row:
    """The corrected card (订正) for a reported case who died: the original card with the death added.

    ``enc`` is the visit as seen at discharge (its time is when the death was recorded).
    """
    c = site.codes
    ddx = c.get("death_diagnosis", enc.cond.death_dx or "J96.0", "J96.0", "J18.9")
    report = enc.time + dt.timedelta(minutes=rng.randint(10, 60))
    site.count_card(report.date())
    return {
        **card,
        **site.common(report, rng),
        "card_id": f"{enc.visit_id}C1",
        "card_category_code": c.need("card_category", "2"),
        "death_date": died.date(),
        "death_diagnosis_code": ddx,
        "report_time": report,
        "fill_date": report.date(),
        "remark": "订正：患者死亡",
    }
