"""Progress notes (emr.progress_note) and the long free text of inpatient records.

Inpatient notes grow from the catalogue's history and ward-round paragraphs to a target length;
some exceed 8 kB so that PostgreSQL TOASTs them (the change stream must carry those intact), and a
few carry characters outside the BMP.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from cdcsync.synth.catalog import Catalog, Condition
from cdcsync.synth.load import Group
from cdcsync.synth.model import Encounter
from cdcsync.synth.site import Site


@dataclass(frozen=True)
class Note:
    doc_type: str  # national document_type code
    title: str
    content: str
    time: dt.datetime
    suffix: str  # note id = <visit id>N<suffix>


def progress_note(site: Site, rng: random.Random, g: Group, enc: Encounter, note: Note) -> None:
    """One emr.progress_note row written by ``enc.doctor`` in ``enc.dept``."""
    g.add(
        "progress_note",
        {
            **site.common(note.time, rng),
            "note_id": f"{enc.visit_id}N{note.suffix}",
            "visit_id": enc.visit_id,
            "patient_id": enc.patient.patient_id,
            "document_type_code": site.codes.need("document_type", note.doc_type),
            "title": note.title,
            "content": note.content,
            "record_time": note.time,
            "dept_code": enc.dept,
            "author_id": enc.doctor.staff_id,
            "author_name": enc.doctor.name,
        },
    )


def long_note(catalog: Catalog, rng: random.Random, cond: Condition, *, complaint: str, days: int, length: int) -> str:
    """An inpatient note of at least ``length`` characters: case summary, history, then ward rounds."""
    sym = "、".join(cond.symptoms[:3])
    parts = [f"病例特点：患者主因“{complaint}”入院。"]
    if rng.random() < 0.05:
        parts.append(rng.choice(catalog.non_bmp_remarks))
    parts.append(f"患者于{days}天前无明显诱因出现{sym}，自行服用药物（具体不详）后症状无明显缓解，遂来我院就诊。")
    parts += catalog.history
    parts.append(f"初步诊断：{cond.diagnosis}。诊疗计划：完善相关检查，予抗感染及对症支持治疗，密切观察病情变化。")
    while sum(map(len, parts)) < length:
        parts.append(
            rng.choice(catalog.ward_round).format(
                title=rng.choice(catalog.round_titles),
                diag=cond.diagnosis,
                s=sym,
                t=f"{rng.uniform(36.2, 38.5):.1f}",
                wbc=f"{rng.uniform(3.5, 15):.1f}",
                crp=f"{rng.uniform(1, 80):.1f}",
                trend=rng.choice(("好转", "相仿", "下降")),
            )
        )
    return "".join(parts)
