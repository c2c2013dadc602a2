"""Drug orders (emr.drug_order): prescriptions for outpatients, long-term orders for inpatients.

The drugs come from the condition in the catalogue; the first is always ordered, the others often;
a drug the hospital has no local code for is left out.
"""

from __future__ import annotations

import datetime as dt
import random

from cdcsync.synth.catalog import INPATIENT
from cdcsync.synth.load import Group
from cdcsync.synth.model import Encounter, dec
from cdcsync.synth.site import Site


def drug_orders(site: Site, rng: random.Random, g: Group, enc: Encounter) -> None:
    """The condition's drugs as orders of ``enc.doctor``, ten to forty minutes into the visit."""
    long_term = enc.kind == INPATIENT
    for di, drug in enumerate(enc.cond.drugs):
        local = site.codes.get("drug", drug.atc)
        if local is None or (di > 0 and rng.random() < 0.3):
            continue
        order = enc.time + dt.timedelta(minutes=rng.randint(10, 40))
        days = drug.days if not long_term else min(drug.days, 14)
        g.add(
            "drug_order",
            {
                **site.common(order, rng),
                "drug_order_id": f"{enc.visit_id}M{di:02d}",
                "visit_id": enc.visit_id,
                "patient_id": enc.patient.patient_id,
                "visit_type_code": site.codes.need("visit_type", enc.kind),
                "prescription_no": None if long_term else f"CF{enc.visit_id}",
                "order_category_code": site.codes.need("order_category", "1" if long_term else "2"),
                "drug_code": local,
                "drug_name": drug.name,
                "drug_spec": drug.spec,
                "dosage_form": drug.form,
                "dose": dec(drug.dose, 4),
                "dose_unit": drug.unit,
                "frequency": drug.freq,
                "route_code": site.codes.need("route", drug.route),
                "days": days,
                "total_quantity": dec(drug.dose * drug.per_day * days, 4),
                "quantity_unit": drug.unit,
                "order_time": order,
                "start_time": order,
                "stop_time": None if long_term else order + dt.timedelta(days=days),
                "dept_code": enc.dept,
                "doctor_id": enc.doctor.staff_id,
            },
        )
