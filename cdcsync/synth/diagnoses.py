"""Diagnoses (emr.diagnosis): the main diagnosis of a visit, a comorbidity, the discharge diagnosis.

Whether a case is suspected, clinically diagnosed or confirmed (:func:`diagnosis_status`) drives
the report card as well; the early-warning side lives on the suspected ones.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from cdcsync.synth.catalog import Condition
from cdcsync.synth.load import Group
from cdcsync.synth.model import Encounter
from cdcsync.synth.site import Site

SUSPECTED, CLINICAL, CONFIRMED = "1", "2", "3"  # national diagnosis_status codes


@dataclass(frozen=True)
class Diagnosis:
    category: str  # national diagnosis_category code
    seq: int  # 1 = main diagnosis
    code: str  # local ICD-10 code
    name: str
    status: str  # national diagnosis_status code
    onset: dt.date
    time: dt.datetime
    suffix: str = ""  # diagnosis id = <visit id>D<suffix><seq>; "O" for the discharge diagnoses


def diagnosis_status(rng: random.Random, cond: Condition, *, positive: bool) -> str:
    """Confirmed by a positive pathogen test; suspected for some notifiable cases (always for 发热待查)."""
    if positive:
        return CONFIRMED
    if cond.key == "fever" or (cond.notifiable and rng.random() < cond.suspected):
        return SUSPECTED  # suspected case: the early-warning side's main customer
    return CLINICAL


def add_diagnosis(site: Site, rng: random.Random, g: Group, enc: Encounter, dx: Diagnosis) -> None:
    """One emr.diagnosis row made by ``enc.doctor`` in ``enc.dept``."""
    g.add(
        "diagnosis",
        {
            **site.common(dx.time, rng),
            "diagnosis_id": f"{enc.visit_id}D{dx.suffix}{dx.seq:02d}",
            "visit_id": enc.visit_id,
            "patient_id": enc.patient.patient_id,
            "visit_type_code": site.codes.need("visit_type", enc.kind),
            "diagnosis_category_code": site.codes.need("diagnosis_category", dx.category),
            "diagnosis_seq": dx.seq,
            "main_diagnosis_flag": dx.seq == 1,
            "diagnosis_code": dx.code,
            "diagnosis_name": dx.name,
            "diagnosis_status_code": site.codes.need("diagnosis_status", dx.status),
            "onset_date": dx.onset,
            "diagnosis_time": dx.time,
            "dept_code": enc.dept,
            "doctor_id": enc.doctor.staff_id,
            "doctor_name": enc.doctor.name,
        },
    )
