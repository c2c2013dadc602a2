"""Visit rows: the visit itself, its symptoms, vital signs and the outpatient record.

What the patient presents with (fever, days since onset, chief complaint, onset date) is drawn once
per visit into a :class:`Presentation` and shared by these rows, the diagnoses and the admission.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from cdcsync.synth import people
from cdcsync.synth.catalog import EMERGENCY, INPATIENT, OUTPATIENT
from cdcsync.synth.load import Group, Row
from cdcsync.synth.model import Encounter, dec
from cdcsync.synth.notes import Note, progress_note
from cdcsync.synth.site import Site

VISIT_PREFIX = {OUTPATIENT: "MZ", EMERGENCY: "JZ", INPATIENT: "ZY"}  # visit id prefix by visit type


@dataclass(frozen=True)
class Presentation:
    """How the patient presents at this visit."""

    fever: bool
    days: int  # since onset, as the chief complaint says
    complaint: str
    onset: dt.date


def visit_row(
    site: Site, rng: random.Random, enc: Encounter, p: Presentation, *, fever_clinic: bool, inpatient_no: str | None
) -> Row:
    """The emr.visit row; outpatient and emergency visits end the same day, admissions at discharge."""
    pat, t, kind = enc.patient, enc.time, enc.kind
    birth = pat.person.birth_date
    end = None
    if kind == OUTPATIENT:
        end = t + dt.timedelta(minutes=rng.randint(10, 90))
    elif kind == EMERGENCY:
        end = t + dt.timedelta(minutes=rng.randint(40, 360))
    return {
        **site.common(t, rng),
        "visit_id": enc.visit_id,
        "patient_id": pat.patient_id,
        "visit_type_code": site.codes.need("visit_type", kind),
        "outpatient_no": None if kind == INPATIENT else f"MZ{pat.patient_id[1:]}",
        "inpatient_no": inpatient_no,
        "visit_time": t,
        "visit_end_time": end,
        "dept_code": enc.dept,
        "dept_name": site.depts[enc.dept].name,
        "doctor_id": enc.doctor.staff_id,
        "doctor_name": enc.doctor.name,
        "birth_date": birth,
        "age_years": people.age_on(birth, t.date()),
        "age_months": people.infant_months(birth, t.date()),
        "chief_complaint": p.complaint,
        "first_visit_flag": pat.visits == 0,
        "fever_clinic_flag": fever_clinic,
        "payment_method_code": site.codes.get("payment_method", rng.choice(("01", "02", "03", "07"))),
    }


def symptoms(site: Site, rng: random.Random, g: Group, enc: Encounter, p: Presentation) -> None:
    """Up to three of the condition's symptoms (fever only when the patient has it)."""
    t, vid = enc.time, enc.visit_id
    for si, sym in enumerate(s for s in enc.cond.symptoms if s != "发热" or p.fever):
        if si >= 3:
            break
        g.add(
            "symptom",
            {
                **site.common(t, rng),
                "symptom_id": f"{vid}S{si:02d}",
                "visit_id": vid,
                "patient_id": enc.patient.patient_id,
                "chief_complaint_flag": si == 0,
                "symptom_code": None,
                "symptom_name": sym,
                "symptom_desc": f"{sym}{p.days}天" if si == 0 else None,
                "onset_time": dt.datetime.combine(p.onset, dt.time(8)),
                "duration_days": (t.date() - p.onset).days,
                "record_time": t + dt.timedelta(minutes=5),
                "recorder_id": enc.doctor.staff_id,
            },
        )


def vitals(site: Site, rng: random.Random, g: Group, enc: Encounter, *, fever: bool, n: int = 1) -> None:
    """``n`` vital-sign measurements a few hours apart from ``enc.time`` (the first one febrile if ``fever``)."""
    t, vid = enc.time, enc.visit_id
    years = people.age_on(enc.patient.person.birth_date, t.date())
    child = years < 12
    for i in range(n):
        mt = t + dt.timedelta(minutes=3 + i * rng.randint(180, 300))
        temp = rng.uniform(37.6, 40.1) if fever and i == 0 else rng.uniform(36.1, 37.2)
        if child:
            weight, height = 3.5 + years * 2.6 + rng.uniform(-1, 2), 55 + years * 6.5 + rng.uniform(-3, 3)
        else:
            weight, height = rng.uniform(45, 90), rng.uniform(150, 185)
        g.add(
            "vital_sign",
            {
                **site.common(mt, rng),
                "vital_sign_id": f"{vid}V{mt:%m%d%H%M}{i}",
                "visit_id": vid,
                "patient_id": enc.patient.patient_id,
                "measure_time": mt,
                "temperature": dec(temp),
                "pulse": rng.randint(90, 130) if child else rng.randint(62, 105) + (15 if fever else 0),
                "resp_rate": rng.randint(20, 32) if child else rng.randint(14, 22),
                "sbp": None if child else rng.randint(100, 165),
                "dbp": None if child else rng.randint(60, 98),
                "spo2": dec(rng.uniform(88, 95) if enc.cond.key in ("pneumonia", "copd") else rng.uniform(95, 100)),
                "weight": dec(weight),
                "height": dec(height),
                "recorder_id": None,
            },
        )


def outpatient_record(site: Site, rng: random.Random, g: Group, enc: Encounter, p: Presentation) -> None:
    """The short outpatient/emergency medical record (门（急）诊病历)."""
    cond = enc.cond
    text = (
        f"主诉：{p.complaint}。现病史：患者{p.days}天前出现{'、'.join(cond.symptoms[:2])}，今日来我院"
        f"{site.depts[enc.dept].name}就诊。既往史：否认特殊病史，否认药物过敏史。"
        f"{rng.choice(site.catalog.non_bmp_remarks) if rng.random() < 0.02 else ''}"
        f"查体：神志清楚，{'体温升高，' if p.fever else ''}咽部{'充血' if cond.respiratory else '无充血'}。"
        f"初步诊断：{cond.diagnosis}。处理：对症治疗，嘱多饮水、注意休息，如症状加重及时复诊。"
    )
    note = Note("01", "门（急）诊病历", text, enc.time + dt.timedelta(minutes=20), suffix="01")
    progress_note(site, rng, g, enc, note)
