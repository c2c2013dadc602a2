"""Deliberate faults: a share of each day's rows made invalid, in kinds the validators catch.

One fault per row, chosen among rows of the kind's table (:data:`~cdcsync.synth.model.INVALID_KINDS`);
the primary keys of the spoiled rows are returned so tests can find them without looking at
patient values.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from decimal import Decimal

from cdcsync.synth import people
from cdcsync.synth.codes import Codes
from cdcsync.synth.load import Group, Row
from cdcsync.synth.model import INVALID_KINDS, InvalidKey


def expected_invalid(rows_per_table: Mapping[str, int], ratio: float) -> dict[str, int]:
    """How many invalid rows of each kind a day with these row counts gets (an upper bound)."""
    n = rows_per_table.get
    return {
        "bad_id_check_digit": round(ratio * n("patient", 0)),
        "unknown_local_code": round(ratio * n("patient", 0) / 2) + round(ratio * n("visit", 0) / 2),
        "vital_out_of_range": round(ratio * n("vital_sign", 0)),
        "birth_after_visit": round(ratio * n("visit", 0)),
        "discharge_before_admission": round(ratio * n("discharge", 0)),
    }


def spoil(codes: Codes, rng: random.Random, groups: list[Group], ratio: float) -> dict[str, list[InvalidKey]]:
    """Make ``ratio`` of the day's rows invalid in place, one fault per row; the spoiled rows' keys by kind."""
    rows: dict[str, list[Row]] = {}
    for g in groups:
        for table, batch in g.rows.items():
            rows.setdefault(table, []).extend(batch)
    want = expected_invalid({t: len(r) for t, r in rows.items()}, ratio)
    out: dict[str, list[InvalidKey]] = {k: [] for k in INVALID_KINDS}
    c = codes
    id_card = c.need("id_type", "01")
    pts = [r for r in rows.get("patient", []) if r["id_type_code"] == id_card]
    n_bad, n_sex = want["bad_id_check_digit"], round(ratio * len(rows.get("patient", [])) / 2)
    picked = rng.sample(pts, min(len(pts), n_bad + n_sex))
    bad_sex = c.unknown("sex", ("男", "W", "Z"))
    for i, r in enumerate(picked):
        if i < n_bad:
            r["id_no"] = people.corrupt_check_digit(r["id_no"])
            out["bad_id_check_digit"].append(("patient", (r["org_code"], r["patient_id"])))
        else:
            r["sex_code"] = bad_sex
            out["unknown_local_code"].append(("patient", (r["org_code"], r["patient_id"])))
    visits = rows.get("visit", [])
    n_dept, n_birth = round(ratio * len(visits) / 2), want["birth_after_visit"]
    bad_dept = c.unknown("department", ("9999", "XXXX"))
    for i, r in enumerate(rng.sample(visits, min(len(visits), n_dept + n_birth))):
        key = ("visit", (r["org_code"], r["visit_id"]))
        if i < n_dept:
            r["dept_code"] = bad_dept
            out["unknown_local_code"].append(key)
        else:
            r["birth_date"] = r["visit_time"].date() + dt.timedelta(days=rng.randint(1, 400))
            r["age_years"] = r["age_months"] = None
            out["birth_after_visit"].append(key)
    vitals = rows.get("vital_sign", [])
    for r in rng.sample(vitals, min(len(vitals), want["vital_out_of_range"])):
        # Typical keying slips: a missing decimal point or a dropped digit.
        r["temperature"] = Decimal(rng.choice(("365.0", "372.0", "3.7", "47.5", "29.0")))
        out["vital_out_of_range"].append(("vital_sign", (r["org_code"], r["vital_sign_id"])))
    dis = rows.get("discharge", [])
    for r in rng.sample(dis, min(len(dis), want["discharge_before_admission"])):
        r["admission_time"] = r["discharge_time"] + dt.timedelta(hours=rng.randint(2, 6))
        r["inpatient_days"] = 0
        out["discharge_before_admission"].append(("discharge", (r["org_code"], r["discharge_id"])))
    return out
