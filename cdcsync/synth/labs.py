"""Laboratory and examination reports: lab_report with its lab_result rows, exam_report.

Which panels and exams a visit gets comes from the condition in the catalogue; an item the hospital
has no local code for is left out. Pathogen tests are positive when the visit's case is (one draw
per visit), bacterial conditions push the white-cell count and CRP up.
"""

from __future__ import annotations

import datetime as dt
import random

from cdcsync.synth.catalog import LabItem
from cdcsync.synth.load import Group, Row
from cdcsync.synth.model import Encounter, dec
from cdcsync.synth.site import Site


def lab_reports(site: Site, rng: random.Random, g: Group, enc: Encounter, *, positive: bool) -> None:
    """The condition's lab panels (each ordered with some probability) and their results."""
    c = site.codes
    for li, lab in enumerate(enc.cond.labs):
        if rng.random() > (0.85 if lab.pathogen else 0.6):
            continue
        items: list[tuple[LabItem | None, str]] = []
        if lab.pathogen:
            if c.get("lab_item", lab.pathogen.item) is None:
                continue
            items.append((None, lab.pathogen.item))
        items += [(it, it.loinc) for it in lab.items if c.get("lab_item", it.loinc) is not None]
        if not items:
            continue
        specimen = c.get("specimen_type", *lab.specimen) or c.need("specimen_type", "18")
        apply = enc.time + dt.timedelta(minutes=rng.randint(5, 20))
        sample = apply + dt.timedelta(minutes=rng.randint(5, 30))
        receive = sample + dt.timedelta(minutes=rng.randint(5, 30))
        report = receive + dt.timedelta(minutes=rng.randint(20, 150))
        rid = f"{enc.visit_id}L{li:02d}"
        g.add(
            "lab_report",
            {
                **site.common(report, rng),
                "lab_report_id": rid,
                "visit_id": enc.visit_id,
                "patient_id": enc.patient.patient_id,
                "visit_type_code": c.need("visit_type", enc.kind),
                "apply_no": f"SQ{rid}",
                "report_name": lab.report,
                "apply_dept_code": enc.dept,
                "apply_doctor_id": enc.doctor.staff_id,
                "apply_time": apply,
                "specimen_no": f"{rng.randrange(10**11, 10**12)}",
                "specimen_type_code": specimen,
                "sample_time": sample,
                "receive_time": receive,
                "report_time": report,
                "report_doctor_id": None,
                "audit_doctor_id": None,
                "audit_time": report + dt.timedelta(minutes=rng.randint(2, 20)),
            },
        )
        for ii, (item, loinc) in enumerate(items):
            local = c.need("lab_item", loinc)
            row: Row = {
                **site.common(report, rng),
                "lab_result_id": f"{rid}R{ii:02d}",
                "lab_report_id": rid,
                "visit_id": enc.visit_id,
                "patient_id": enc.patient.patient_id,
                "lab_item_code": local,
                "lab_item_name": c.name("lab_item", local),
                "report_time": report,
            }
            if item is None:
                assert lab.pathogen is not None
                row.update(
                    result_value="阳性" if positive else "阴性",
                    qualitative_result_code=c.need("qualitative_result", "2" if positive else "1"),
                    reference_range="阴性",
                    abnormal_flag_code=c.need("abnormal_flag", "A" if positive else "N"),
                    test_method=lab.pathogen.method,
                )
                if positive:
                    row["pathogen_code"] = c.get("pathogen", lab.pathogen.taxon)
                    if lab.ct:
                        row["ct_value"] = dec(rng.uniform(16, 35), 2)
            else:
                bacterial = enc.cond.key in ("pneumonia", "dysentery", "uti", "copd")
                span = item.high - item.low
                hi_bias = 1.6 if bacterial and item.loinc in ("6690-2", "751-8", "1988-5", "33959-8") else 0.0
                value = item.low + span * (rng.uniform(0.1, 0.95) + hi_bias * rng.random())
                flag = "H" if value > item.high else "L" if value < item.low else "N"
                places = 2 if span < 5 else 1
                row.update(
                    result_value=f"{value:.{places}f}",
                    result_numeric=dec(value, places),
                    result_unit=item.unit,
                    reference_range=f"{item.low:g}-{item.high:g}",
                    reference_low=dec(item.low, 2),
                    reference_high=dec(item.high, 2),
                    abnormal_flag_code=c.need("abnormal_flag", flag),
                    test_method=None,
                )
            g.add("lab_result", row)


def exam_reports(site: Site, rng: random.Random, g: Group, enc: Encounter) -> None:
    """The condition's imaging/endoscopy exams (each done with some probability), with its typical finding."""
    for ei, ex in enumerate(enc.cond.exams):
        local = site.codes.get("exam_type", ex.type)
        if local is None or rng.random() > 0.75:
            continue
        apply = enc.time + dt.timedelta(minutes=rng.randint(5, 30))
        done = apply + dt.timedelta(minutes=rng.randint(10, 90))
        report = done + dt.timedelta(minutes=rng.randint(20, 120))
        g.add(
            "exam_report",
            {
                **site.common(report, rng),
                "exam_report_id": f"{enc.visit_id}E{ei:02d}",
                "visit_id": enc.visit_id,
                "patient_id": enc.patient.patient_id,
                "visit_type_code": site.codes.need("visit_type", enc.kind),
                "exam_type_code": local,
                "exam_item_code": f"JC{ei + 1:04d}",
                "exam_item_name": ex.item,
                "exam_part": ex.part,
                "apply_dept_code": enc.dept,
                "apply_doctor_id": enc.doctor.staff_id,
                "apply_time": apply,
                "exam_time": done,
                "report_time": report,
                "findings": f"{ex.part}：{ex.finding}。余未见明显异常。",
                "conclusion": f"{ex.finding}，考虑{enc.cond.diagnosis}，请结合临床。",
                "abnormal_flag_code": site.codes.need("abnormal_flag", "A"),
                "report_doctor_id": None,
                "audit_doctor_id": None,
            },
        )
