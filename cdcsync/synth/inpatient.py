"""Inpatients: admission, the daily ward round, discharge or death.

An admission (:func:`admit`) opens a :class:`~cdcsync.synth.model.Stay`; on each later day the
stay gets a ward round (:func:`ward_round`) until the day it ends (:func:`discharge`), which writes
the discharge, its diagnosis, the home page, the UPDATE closing the visit, and for a death the
death record and the corrected report card.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from cdcsync.synth import people
from cdcsync.synth.cards import death_correction
from cdcsync.synth.catalog import INPATIENT
from cdcsync.synth.diagnoses import CLINICAL, CONFIRMED, Diagnosis, add_diagnosis
from cdcsync.synth.load import Group, Row, Update
from cdcsync.synth.model import Census, Encounter, Stay, dec
from cdcsync.synth.notes import Note, long_note, progress_note
from cdcsync.synth.site import Site
from cdcsync.synth.visits import Presentation, vitals

DISCHARGED, TRANSFERRED, DIED = "1", "2", "5"  # national discharge_mode codes


@dataclass(frozen=True)
class Leaving:
    """How a stay ends."""

    days: int  # inpatient days
    mode: str  # national discharge_mode code
    transfer: str | None  # local org code of the hospital the patient is transferred to


def admit(
    site: Site,
    rng: random.Random,
    g: Group,
    enc: Encounter,
    p: Presentation,
    *,
    inpatient_no: str,
    diag_local: str,
    card: Row | None,
) -> Stay:
    """The admission record and first progress note of ``enc``; the stay, with its length and outcome drawn."""
    cond, t, doc = enc.cond, enc.time, enc.doctor
    route = site.codes.need("admission_route", "1" if rng.random() < 0.4 else "2")
    ward, bed = rng.choice(site.catalog.wards), f"{rng.randint(1, 60):02d}"
    g.add(
        "admission",
        {
            **site.common(t, rng),
            "admission_id": f"{enc.visit_id}A",
            "visit_id": enc.visit_id,
            "patient_id": enc.patient.patient_id,
            "inpatient_no": inpatient_no,
            "admission_time": t,
            "dept_code": enc.dept,
            "ward": ward,
            "bed_no": bed,
            "admission_route_code": route,
            "admission_condition_code": site.codes.need("admission_condition", "1"),
            "chief_complaint": p.complaint,
            "present_illness": f"患者{p.days}天前出现{'、'.join(cond.symptoms[:3])}。{site.catalog.history[0]}",
            "past_history": site.catalog.history[1],
            "epidemiological_history": cond.exposure or "否认传染病患者接触史，否认疫区旅居史。",
            "admission_diagnosis_code": diag_local,
            "admission_diagnosis_name": cond.diagnosis,
            "doctor_id": doc.staff_id,
            "record_time": t + dt.timedelta(hours=rng.randint(1, 8)),
        },
    )
    length = 3000 if rng.random() < 0.3 else rng.randint(500, 1500)
    first_note = Note(
        "03",
        "首次病程记录",
        content=long_note(site.catalog, rng, cond, complaint=p.complaint, days=p.days, length=length),
        time=t + dt.timedelta(hours=rng.randint(1, 8)),  # drawn after the text: keeps the seeded sequence
        suffix="00",
    )
    progress_note(site, rng, g, enc, first_note)
    los = rng.randint(*cond.los)
    dies = rng.random() < cond.severe * (0.5 if people.age_on(enc.patient.person.birth_date, t.date()) > 65 else 0.15)
    return Stay(
        enc,
        inpatient_no,
        ward,
        bed,
        leave_on=t.date() + dt.timedelta(days=los),
        dies=dies,
        diag_local=diag_local,
        card=card,
        admission_route=route,
    )


def ward_round(site: Site, rng: random.Random, day: dt.date, stay: Stay) -> Group:
    """The morning ward round of ``day``: a progress note and two or three vital-sign measurements."""
    t = site.clock(day, (8 + rng.random() * 2) / 24)
    g = Group(t)
    enc = stay.encounter.at(t, site.doctor(stay.encounter.dept, rng))
    cond = enc.cond
    content = long_note(
        site.catalog, rng, cond, complaint=cond.complaint.format(d=3), days=3, length=rng.randint(200, 600)
    )
    doc_type = "04" if rng.random() < 0.7 else "05"
    progress_note(site, rng, g, enc, Note(doc_type, "日常病程记录", content, t, suffix=f"{day:%y%m%d}"))
    vitals(site, rng, g, enc, fever=False, n=rng.randint(2, 3))
    return g


def discharge(site: Site, rng: random.Random, day: dt.date, stay: Stay, census: Census) -> Group:
    """The discharge (or death) of ``stay`` on ``day``: discharge, diagnosis, home page, visit update, death rows."""
    t = site.clock(day, (9 + rng.random() * 3) / 24)
    if t <= stay.admitted:
        t = stay.admitted + dt.timedelta(hours=1)
    g = Group(t)
    c = site.codes
    doc = site.doctor(stay.encounter.dept, rng)
    enc = stay.encounter.at(t, doc)
    cond, pat, vid = enc.cond, enc.patient, enc.visit_id
    days = (t.date() - stay.admitted.date()).days
    mode = DIED if stay.dies else TRANSFERRED if rng.random() < 0.03 else DISCHARGED
    out = Leaving(days, mode, c.get("org", "12110000400000000X") if mode == TRANSFERRED else None)
    census.discharges += 1
    g.add(
        "discharge",
        {
            **site.common(t, rng),
            "discharge_id": f"{vid}O",
            "visit_id": vid,
            "patient_id": pat.patient_id,
            "inpatient_no": stay.inpatient_no,
            "admission_time": stay.admitted,
            "discharge_time": t,
            "dept_code": enc.dept,
            "inpatient_days": out.days,
            "discharge_mode_code": c.need("discharge_mode", out.mode),
            "transfer_org_code": out.transfer,
            "discharge_diagnosis_code": stay.diag_local,
            "discharge_diagnosis_name": cond.diagnosis,
            "treatment_summary": f"入院后完善相关检查，明确诊断为{cond.diagnosis}，予规范治疗。",
            "discharge_condition": "患者病情危重，经抢救无效死亡。"
            if stay.dies
            else "患者症状明显好转，生命体征平稳。",
            "discharge_advice": None if stay.dies else "注意休息，按时服药，1周后门诊复查。",
            "doctor_id": doc.staff_id,
            "record_time": t + dt.timedelta(hours=1),
        },
    )
    dx = Diagnosis(
        category="6" if stay.dies else "5",
        seq=1,
        code=stay.diag_local,
        name=cond.diagnosis,
        status=CONFIRMED if cond.notifiable else CLINICAL,
        onset=stay.admitted.date(),
        time=t,
        suffix="O",
    )
    add_diagnosis(site, rng, g, enc, dx)
    _home_page(site, rng, g, enc, stay, out)
    g.updates.append(
        Update(
            "visit",
            {"org_code": site.org, "visit_id": vid},
            {
                "visit_end_time": t,
                "modify_flag": site.flag_upd,
                "update_time": t + dt.timedelta(minutes=rng.randint(1, 30)),
            },
        )
    )
    if stay.dies:
        _death(site, rng, g, enc, stay, census)
    return g


def _home_page(site: Site, rng: random.Random, g: Group, enc: Encounter, stay: Stay, out: Leaving) -> None:
    """The medical record home page (病案首页) summarising the stay."""
    c, cond, pat, vid, t, doc = site.codes, enc.cond, enc.patient, enc.visit_id, enc.time, enc.doctor
    p = pat.person
    years = people.age_on(p.birth_date, stay.admitted.date())
    months = people.infant_months(p.birth_date, stay.admitted.date())
    proc = c.get("procedure", "47.01") if cond.procedure else None
    g.add(
        "medical_record_home",
        {
            **site.common(t, rng),
            "home_page_id": f"{vid}H",
            "visit_id": vid,
            "patient_id": pat.patient_id,
            "inpatient_no": stay.inpatient_no,
            "admission_times": max(1, pat.visits),
            "payment_method_code": c.get("payment_method", "01"),
            "name": p.name,
            "sex_code": pat.sex,
            "birth_date": p.birth_date,
            "age_years": years,
            "age_months": months,
            "nationality_code": c.need("nationality", "USA" if pat.id_type == c.get("id_type", "03") else "CHN"),
            "ethnicity_code": pat.ethnicity,
            "id_type_code": pat.id_type,
            "id_no": pat.id_no,
            "occupation_code": pat.occupation,
            "marital_status_code": pat.marital,
            "current_addr_region_code": pat.region,
            "current_addr_detail": p.address,
            "phone": p.phone if years >= 12 else None,
            "work_unit": pat.work_unit,
            "contact_name": p.contact_name,
            "contact_relation_code": pat.relation,
            "contact_phone": p.contact_phone,
            "admission_route_code": stay.admission_route,
            "admission_time": stay.admitted,
            "admission_dept_code": enc.dept,
            "discharge_time": t,
            "discharge_dept_code": enc.dept,
            "inpatient_days": out.days,
            "outpatient_diagnosis_code": stay.diag_local,
            "outpatient_diagnosis_name": cond.diagnosis,
            "main_diagnosis_code": stay.diag_local,
            "main_diagnosis_name": cond.diagnosis,
            "admission_condition_code": c.need("admission_condition", "1"),
            "main_procedure_code": proc,
            "main_procedure_name": "腹腔镜下阑尾切除术" if proc else None,
            "main_procedure_date": stay.admitted.date() if proc else None,
            "abo_blood_type_code": c.get("blood_type", "5"),
            "rh_blood_type_code": c.get("rh_blood_type", "3"),
            "discharge_mode_code": c.need("discharge_mode", out.mode),
            "transfer_org_code": out.transfer,
            "attending_doctor_id": doc.staff_id,
            "total_cost": dec(out.days * rng.uniform(800, 3500), 2),
        },
    )


def _death(site: Site, rng: random.Random, g: Group, enc: Encounter, stay: Stay, census: Census) -> None:
    """The death record, and the corrected report card when the case had one."""
    c, cond, pat, vid, t, doc = site.codes, enc.cond, enc.patient, enc.visit_id, enc.time, enc.doctor
    census.deaths += 1
    death_t = t - dt.timedelta(minutes=rng.randint(30, 120))
    if death_t <= stay.admitted:
        death_t = t
    cause = c.get("death_cause", cond.death_dx or "J18.9", "J18.9") or c.need("death_cause", "A41.9")
    g.add(
        "death_record",
        {
            **site.common(t, rng),
            "death_record_id": f"{vid}W",
            "visit_id": vid,
            "patient_id": pat.patient_id,
            "visit_type_code": c.need("visit_type", INPATIENT),
            "inpatient_no": stay.inpatient_no,
            "admission_time": stay.admitted,
            "death_time": death_t,
            "dept_code": enc.dept,
            "death_cause_code": cause,
            "death_cause_name": c.name("death_cause", cause),
            "underlying_cause_code": stay.diag_local,
            "underlying_cause_name": cond.diagnosis,
            "death_diagnosis_name": f"{c.name('death_cause', cause)}；{cond.diagnosis}",
            "rescue_summary": "患者病情突然加重，予气管插管、心肺复苏等抢救措施，抢救无效，宣布临床死亡。",
            "autopsy_flag": False,
            "doctor_id": doc.staff_id,
            "record_time": t,
        },
    )
    if stay.card is not None:
        g.add("report_card", death_correction(site, rng, enc, stay.card, died=death_t))
