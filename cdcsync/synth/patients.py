"""Patients: who comes to the hospital, registered (emr.patient) on their first visit.

A fifth of the visits are by a returning patient of an age that fits the condition; the others
register a new person (name, GB 11643 id number, address, occupation, ...) drawn by
:mod:`cdcsync.synth.people` from the hospital's regions.
"""

from __future__ import annotations

import datetime as dt
import random

from cdcsync.synth import people
from cdcsync.synth.catalog import Condition
from cdcsync.synth.load import Group, Row
from cdcsync.synth.model import Patient
from cdcsync.synth.site import Site


class Patients:
    """The hospital's patient register; ``known`` carries from day to day (bounded)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.known: list[Patient] = []

    def _new(self, rng: random.Random, day: dt.date, cond: Condition, when: dt.datetime) -> tuple[Patient, Row]:
        """A new person of an age that fits ``cond``, and the emr.patient row registering them."""
        site, cat = self.site, self.site.catalog
        age = rng.uniform(*cond.age)
        person = people.make_person(rng, site.regions, day, age_years=age, non_bmp_ratio=0.004)
        years = people.age_on(person.birth_date, day)
        c = site.codes
        region = site.home if rng.random() < 0.7 else rng.choice(site.regions)
        hn = c.national("region", site.home.code)
        rn = c.national("region", region.code)
        belong_nat = "1" if rn == hn else "2" if rn[:4] == hn[:4] else "3" if rn[:2] == hn[:2] else "4"
        if years < 16:
            occupation = c.get("occupation", "31") if years >= 6 else None
            marital = c.get("marital_status", "10")
            education = c.get("education", "80") if years >= 7 else None
            work = f"{region.county}{rng.choice(cat.school_units)}" if years >= 3 else None
            relation = c.need("relationship", rng.choice(("51", "52")))
        else:
            occ_nat = (
                "80"
                if years >= 62
                else "31"
                if years < 23
                else rng.choice(("11", "13", "17", "21", "24", "27", "51", "54", "70", "90"))
            )
            occupation = c.get("occupation", occ_nat)
            marital = c.get("marital_status", "10" if years < 25 else rng.choice(("20", "20", "20", "20", "30", "40")))
            education = c.get("education", rng.choice(("20", "30", "40", "60", "70", "80")))
            work = None if occ_nat in ("80", "70", "90") else f"{region.city}{rng.choice(cat.work_units)}"
            relation = c.need("relationship", rng.choice(("10", "20", "30")))
        foreign = years >= 18 and rng.random() < 0.01
        id_type = c.need("id_type", "03" if foreign else "01")
        id_no = f"E{rng.randrange(10**7, 10**8)}" if foreign else person.id_no
        pat = Patient(
            patient_id=f"P{site.tag}{site.next_serial():07d}",
            person=person,
            sex=c.need("sex", "1" if person.male else "2"),
            id_type=id_type,
            id_no=id_no,
            region=region.code,
            belong=c.need("patient_belong", belong_nat),
            occupation=occupation,
            marital=marital,
            education=education,
            ethnicity=c.need("ethnicity", "01")
            if rng.random() < 0.92
            else rng.choice(c.all("ethnicity", "03", "08", "11", "15")),
            work_unit=work,
            relation=relation,
        )
        row = {
            **site.common(when, rng),
            "patient_id": pat.patient_id,
            "health_card_no": None,
            "name": person.name,
            "sex_code": pat.sex,
            "birth_date": person.birth_date,
            "id_type_code": id_type,
            "id_no": id_no,
            "ethnicity_code": pat.ethnicity,
            "nationality_code": c.need("nationality", "USA" if foreign else "CHN"),
            "marital_status_code": marital,
            "occupation_code": occupation,
            "education_code": education,
            "abo_blood_type_code": c.get("blood_type", rng.choice(("1", "2", "3", "4", "5", "6"))),
            "rh_blood_type_code": c.get("rh_blood_type", "2" if rng.random() < 0.9 else "3"),
            "phone": None if years < 12 else person.phone,
            "current_addr_region_code": region.code,
            "current_addr_detail": people.street_address(region, rng),
            "household_addr_region_code": region.code if rng.random() < 0.8 else rng.choice(site.regions).code,
            "household_addr_detail": person.address,
            "postal_code": cat.postal_prefixes.get(region.code[:2], "100") + f"{rng.randrange(1000):03d}",
            "work_unit": work,
            "contact_name": person.contact_name,
            "contact_relation_code": relation,
            "contact_phone": person.contact_phone,
            "register_time": when,
        }
        return pat, row

    def for_visit(self, rng: random.Random, g: Group, cond: Condition, *, day: dt.date, when: dt.datetime) -> Patient:
        """A returning patient of a fitting age (one visit in five), else a new one registered in ``g``."""
        if self.known and rng.random() < 0.2:
            pat = rng.choice(self.known)
            if cond.age[0] <= people.age_on(pat.person.birth_date, day) <= cond.age[1] + 5:
                return pat
        pat, row = self._new(rng, day, cond, when)
        g.add("patient", row)
        self.known.append(pat)
        if len(self.known) > 20000:  # bounded memory in steady mode
            del self.known[:10000]
        return pat
