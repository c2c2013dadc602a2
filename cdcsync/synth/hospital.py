"""A synthetic hospital day as rows of the ``emr.*`` mirror tables, seeded and deterministic.

Every coded value is a key of the hospital's local code table (looked up through the national
code it maps to), so valid rows map cleanly. A configurable share of rows is made invalid on
purpose, one fault per row, in kinds the validators catch (see :data:`INVALID_KINDS`); their
primary keys are returned so tests can find them without looking at patient values.

:class:`Hospital` runs the days: inpatients from earlier days get their ward round or leave,
then the day's visits arrive, each one clinical encounter written in one transaction (a
:class:`~cdcsync.synth.load.Group`). The rows of an encounter come from the modules beside this
one: :mod:`~cdcsync.synth.patients`, :mod:`~cdcsync.synth.visits`, :mod:`~cdcsync.synth.labs`,
:mod:`~cdcsync.synth.diagnoses`, :mod:`~cdcsync.synth.orders`, :mod:`~cdcsync.synth.cards`,
:mod:`~cdcsync.synth.notes`, :mod:`~cdcsync.synth.inpatient`; what the hospital treats comes from
``catalog.yaml`` (:mod:`~cdcsync.synth.catalog`). The same seed and dates give the same rows.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

from cdcsync.synth import people
from cdcsync.synth.cards import exposure_history, report_card, wants_card
from cdcsync.synth.catalog import EMERGENCY, INPATIENT, OUTPATIENT, Catalog, Condition, load_catalog
from cdcsync.synth.census import count_visit, daily_stats
from cdcsync.synth.codes import Codes, SynthError, load_codes
from cdcsync.synth.diagnoses import CLINICAL, Diagnosis, add_diagnosis, diagnosis_status
from cdcsync.synth.faults import expected_invalid, spoil
from cdcsync.synth.inpatient import admit, discharge, ward_round
from cdcsync.synth.labs import exam_reports, lab_reports
from cdcsync.synth.load import Group
from cdcsync.synth.model import INVALID_KINDS, Census, DayResult, Encounter, GenResult, InvalidKey, Stay
from cdcsync.synth.orders import drug_orders
from cdcsync.synth.patients import Patients
from cdcsync.synth.site import Site, base_group, day_fraction
from cdcsync.synth.surveil import scenario_groups
from cdcsync.synth.visits import VISIT_PREFIX, Presentation, outpatient_record, symptoms, visit_row, vitals

__all__ = [
    "EMERGENCY",
    "INPATIENT",
    "INVALID_KINDS",
    "OUTPATIENT",
    "Census",
    "Codes",
    "DayResult",
    "GenResult",
    "Hospital",
    "InvalidKey",
    "SynthError",
    "expected_invalid",
    "generate",
    "iter_days",
    "load_codes",
]


class Hospital:
    """Generates days in order; state (inpatients, known patients) carries from day to day."""

    def __init__(
        self,
        codes: Codes,
        org_code: str,
        start: dt.date,
        *,
        seed: int = 1,
        patients: int = 2000,
        invalid_ratio: float = 0.02,
        now: dt.datetime | None = None,
        catalog: Catalog | None = None,
        surveillance: bool = False,
    ) -> None:
        self.seed = seed
        self.surveillance = surveillance  # add the early-warning scenarios (cdcsync.synth.surveil) each day
        self.patients = patients  # visits a day
        self.ratio = invalid_ratio
        self.site = Site(codes, catalog or load_catalog(), org_code, start, seed=seed, now=now)
        self.register = Patients(self.site)
        self.stays: list[Stay] = []
        self.first_day: dt.date | None = None

    def base_group(self, when: dt.datetime) -> Group:
        """Departments and staff, dated ``when`` (written once, before the first day)."""
        return base_group(self.site, when, self.seed)

    # ---- days

    def day(self, day: dt.date) -> DayResult:
        rng = random.Random(f"{self.seed}:{day.isoformat()}")
        census = Census()
        groups: list[Group] = []
        if self.first_day is None:
            self.first_day = day
            groups += self._seed_census(rng, day, census)
        staying: list[Stay] = []
        for stay in self.stays:
            if stay.leave_on <= day:
                groups.append(discharge(self.site, rng, day, stay, census))
            else:
                if stay.admitted.date() < day:
                    groups.append(ward_round(self.site, rng, day, stay))
                staying.append(stay)
        self.stays = staying
        kinds = rng.choices((OUTPATIENT, EMERGENCY, INPATIENT), weights=(78, 14, 8), k=self.patients)
        for kind in kinds:
            t = self.site.clock(day, day_fraction(kind, rng))
            groups.append(self._encounter(rng, day, kind, t, census))
        scenarios = scenario_groups(self, rng, day, census) if self.surveillance else []
        census.in_hospital = len(self.stays)
        # Cards count on the day they were reported (a late-evening visit's card may fall on the next day).
        census.cards = self.site.cards.pop(day, 0)
        groups.sort(key=lambda g: g.time)
        invalid = spoil(self.site.codes, rng, groups, self.ratio)
        groups.extend(scenarios)  # after the faults: a scenario is never spoiled
        groups.append(daily_stats(self.site, rng, day, census))
        return DayResult(day, groups, invalid, census)

    def _seed_census(self, rng: random.Random, day: dt.date, census: Census) -> list[Group]:
        """Inpatients already in hospital when generation starts (admitted on earlier days)."""
        groups = []
        per_day = self.patients * 0.06
        for back in range(12, 0, -1):
            d = day - dt.timedelta(days=back)
            for _ in range(round(per_day * (1 - back / 13))):
                t = dt.datetime.combine(d, dt.time()) + dt.timedelta(seconds=int(day_fraction(INPATIENT, rng) * 86400))
                g = self._encounter(rng, d, INPATIENT, t, census, admitted_before=True)
                stay = self.stays[-1]
                stay.leave_on = max(stay.leave_on, day)
                groups.append(g)
        return groups

    # ---- one encounter

    def encounter_at(self, rng: random.Random, kind: str, t: dt.datetime, census: Census) -> Group:
        """One new visit of ``kind`` starting at ``t`` (the live phase: see :mod:`cdcsync.synth.live`)."""
        return self._encounter(rng, t.date(), kind, t, census)

    def _choose(self, rng: random.Random, kind: str) -> Condition:
        conds = [cd for cd in self.site.conditions if kind in cd.weight]
        return rng.choices(conds, weights=[cd.weight[kind] for cd in conds])[0]

    def encounter(self, rng: random.Random, day: dt.date, kind: str, t: dt.datetime, census: Census, *,
                  cond: Condition, status: str | None = None) -> Group:
        """One visit of a given condition (``status``: the main diagnosis' national status, forced)."""
        return self._encounter(rng, day, kind, t, census, cond=cond, status=status)

    def _encounter(
        self,
        rng: random.Random,
        day: dt.date,
        kind: str,
        t: dt.datetime,
        census: Census,
        *,
        admitted_before: bool = False,
        cond: Condition | None = None,
        status: str | None = None,
    ) -> Group:
        """One visit and everything written with it; ``admitted_before``: a seeded inpatient, not counted."""
        site = self.site
        cond = cond or self._choose(rng, kind)
        g = Group(t)
        pat = self.register.for_visit(rng, g, cond, day=day if not admitted_before else t.date(), when=t)
        p = self._present(rng, cond, t, pat.person.birth_date)
        inpatient = kind == INPATIENT
        dept = site.dept_for(cond, rng, beds=inpatient)
        doc = site.doctor(dept, rng)
        n = site.next_serial()
        enc = Encounter(f"{VISIT_PREFIX[kind]}{t:%y%m%d}{site.tag}{n:07d}", pat, kind, t, dept, doc, cond)
        ipno = f"{site.tag}{n:07d}" if inpatient else None
        fever_clinic = not inpatient and p.fever and cond.respiratory
        g.add("visit", visit_row(site, rng, enc, p, fever_clinic=fever_clinic, inpatient_no=ipno))
        pat.visits += 1
        if not admitted_before:
            count_visit(census, kind, fever_clinic=fever_clinic)
        symptoms(site, rng, g, enc, p)
        vitals(site, rng, g, enc, fever=p.fever)
        positive = bool(cond.labs) and rng.random() < cond.positive
        lab_reports(site, rng, g, enc, positive=positive)
        exam_reports(site, rng, g, enc)
        main = self._main_diagnosis(rng, g, enc, p, positive=positive, status=status)
        drug_orders(site, rng, g, enc)
        card = report_card(site, rng, g, enc, main, positive=positive) if wants_card(enc, main.status) else None
        exposure_history(site, rng, g, enc, onset=p.onset)
        if inpatient:
            stay = admit(site, rng, g, enc, p, inpatient_no=ipno or "", diag_local=main.code, card=card)
            self.stays.append(stay)
        else:
            outpatient_record(site, rng, g, enc, p)
        return g

    @staticmethod
    def _present(rng: random.Random, cond: Condition, t: dt.datetime, birth: dt.date) -> Presentation:
        fever = rng.random() < cond.fever
        days = rng.randint(1, 6)
        onset = (t - dt.timedelta(days=days)).date() if not cond.chronic else (t - dt.timedelta(days=30)).date()
        return Presentation(fever, days, cond.complaint.format(d=days), max(onset, birth))

    def _main_diagnosis(
        self, rng: random.Random, g: Group, enc: Encounter, p: Presentation, *, positive: bool,
        status: str | None = None,
    ) -> Diagnosis:
        """The visit's diagnosis (written to ``g``), and hypertension as a second one for some older patients."""
        site, cond = self.site, enc.cond
        icd = rng.choice(site.codes.with_prefix("icd10", cond.icd))[0]
        drawn = diagnosis_status(rng, cond, positive=positive)
        status = status or drawn  # draw anyway: a forced status leaves the random sequence as it was
        category = "2" if enc.kind == INPATIENT else "1"  # national diagnosis_category: admission / outpatient
        diag_t = enc.time + dt.timedelta(minutes=rng.randint(15, 180))
        main = Diagnosis(category, 1, icd, cond.diagnosis, status, p.onset, diag_t)
        add_diagnosis(site, rng, g, enc, main)
        birth = enc.patient.person.birth_date
        if people.age_on(birth, enc.time.date()) >= 55 and cond.key != "hypertension" and rng.random() < 0.3:
            htn = site.codes.with_prefix("icd10", ("I10",))
            if htn:
                since = birth + dt.timedelta(days=365 * 40)
                add_diagnosis(
                    site, rng, g, enc, Diagnosis(category, 2, htn[0][0], "原发性高血压", CLINICAL, since, diag_t)
                )
        return main


def iter_days(hospital: Hospital, start: dt.date, days: int | None) -> Iterator[DayResult]:
    """Day after day from ``start``; forever when ``days`` is None."""
    i = 0
    while days is None or i < days:
        yield hospital.day(start + dt.timedelta(days=i))
        i += 1


def generate(
    codes: Codes,
    org_code: str,
    start: dt.date,
    *,
    days: int = 1,
    seed: int = 1,
    patients: int = 2000,
    invalid_ratio: float = 0.02,
    now: dt.datetime | None = None,
) -> GenResult:
    """All rows of ``days`` hospital days (plus dept/staff base rows), deterministic for a seed."""
    hosp = Hospital(codes, org_code, start, seed=seed, patients=patients, invalid_ratio=invalid_ratio, now=now)
    result = GenResult()
    result.add_group(hosp.base_group(dt.datetime.combine(start, dt.time()) - dt.timedelta(days=30)))
    for day in iter_days(hosp, start, days):
        for g in day.groups:
            result.add_group(g)
        for kind, keys in day.invalid.items():
            result.invalid[kind].extend(keys)
        result.census[day.date] = day.census
    return result
