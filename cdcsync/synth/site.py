"""The hospital as a place: its codes, regions, departments and staff, id serials and clock.

A :class:`Site` is what every row builder needs besides the encounter: the local codes
(:class:`~cdcsync.synth.codes.Codes`), the catalogue, the organisation code, the columns every
mirror row carries (:meth:`Site.common`), the serial behind visit/patient/card ids, and the report
cards counted per day for ``daily_stats``. :func:`base_group` writes the departments and staff.
"""

from __future__ import annotations

import datetime as dt
import random

from cdcsync.synth import people
from cdcsync.synth.catalog import EMERGENCY, Catalog, Condition
from cdcsync.synth.codes import Codes, SynthError
from cdcsync.synth.load import Group, Row
from cdcsync.synth.model import Dept, Doctor

# A backfilled row reaches the mirror at least this long after it happened (the demo's HIS share).
BACKFILL_LAG = dt.timedelta(hours=3)
# The longest an encounter's own rows (labs, notes, an inpatient's vitals, the card) trail its start
# in the catalogue; tests/test_synth.py measures it. Planned times (a drug's stop time) are not rows
# that happened, so they may lie ahead.
ENCOUNTER_TAIL = dt.timedelta(hours=11)
COLLECT_DELAY = dt.timedelta(seconds=600)  # the longest the HIS takes to collect a row (Site.common)


def backfill_day(now: dt.datetime) -> dt.date:
    """The day ``gen`` and the demo backfill by default: yesterday. Today may be minutes old (a run
    just after midnight) and cannot hold rows that happened hours ago; yesterday always can."""
    return now.date() - dt.timedelta(days=1)


class Site:
    """Per-hospital state that outlives a day; the row builders read it and draw ids from it."""

    def __init__(
        self, codes: Codes, catalog: Catalog, org_code: str, start: dt.date, *, seed: int, now: dt.datetime | None
    ) -> None:
        self.codes = codes
        self.catalog = catalog
        self.org = org_code
        self.now = now
        # Ids carry the first generated date so runs starting on different dates never collide.
        self.tag = f"{start:%y%m%d}"
        self.cards: dict[dt.date, int] = {}  # report cards by report date, popped into daily_stats
        self._serial = 0
        self.flag_new = codes.need("modify_flag", "1")
        self.flag_upd = codes.need("modify_flag", "2")
        self.conditions = [cd for cd in catalog.conditions if codes.with_prefix("icd10", cd.icd)]
        self.regions = self._load_regions()
        self.home = self.regions[0]
        rng = random.Random(f"{seed}:base")
        self.depts = self._make_depts()
        self.staff = self._make_staff(rng)

    # ---- base data

    def _load_regions(self) -> list[people.Region]:
        dom = self.codes.tables.national.get("region")
        names = {c.code: c.name for c in dom} if dom else {}
        out = []
        for local, nat in self.codes.tables.local["region"].map.items():
            if local != nat or nat.endswith("00") or nat[:2] + "0000" not in names:
                continue
            prov = names[nat[:2] + "0000"]
            out.append(people.Region(local, prov, names.get(nat[:4] + "00", prov), names.get(nat, "")))
        if not out:
            raise SynthError("值域 region 的本地代码表中没有县级行政区划代码")
        return out

    def _make_depts(self) -> dict[str, Dept]:
        dom = self.codes.tables.national["department"]
        out: dict[str, Dept] = {}
        for local, nat in self.codes.tables.local["department"].map.items():
            name = self.catalog.dept_names.get(local) or (dom.name_of(nat) or nat).removesuffix("专业")
            out[local] = Dept(name, nat, nat not in self.catalog.depts_without_beds)
        return out

    def _make_staff(self, rng: random.Random) -> dict[str, list[Doctor]]:
        staff: dict[str, list[Doctor]] = {}
        n = 0
        for dept in self.depts:
            team = []
            for _ in range(rng.randint(3, 6)):
                n += 1
                male = rng.random() < 0.5
                team.append(
                    Doctor(f"D{n:05d}", people.full_name(rng, male, non_bmp_ratio=0), rng.choice(self.catalog.titles))
                )
            staff[dept] = team
        return staff

    # ---- what every builder uses

    def common(self, t: dt.datetime, rng: random.Random, *, updated: bool = False) -> Row:
        """The columns every mirror row carries; the HIS collects a row a few minutes after ``t``."""
        ct = t + dt.timedelta(seconds=rng.randint(30, int(COLLECT_DELAY.total_seconds())))
        return {
            "org_code": self.org,
            "modify_flag": self.flag_upd if updated else self.flag_new,
            "collect_time": ct,
            "update_time": ct,
        }

    def next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def count_card(self, report_date: dt.date) -> None:
        self.cards[report_date] = self.cards.get(report_date, 0) + 1

    def dept_for(self, cond: Condition, rng: random.Random, *, beds: bool = False) -> str:
        """A department for ``cond`` in the catalogue's order of preference (with beds for inpatients)."""
        for nat in cond.depts:
            locs = [loc for loc, d in self.depts.items() if d.national == nat and (d.beds or not beds)]
            if locs:
                return rng.choice(locs)
        locs = [loc for loc, d in self.depts.items() if d.beds or not beds]
        return rng.choice(locs)

    def doctor(self, dept: str, rng: random.Random) -> Doctor:
        return rng.choice(self.staff[dept])

    def clock(self, day: dt.date, frac: float) -> dt.datetime:
        """A moment of ``day`` at fraction ``frac`` of it. With ``now``, the day is squeezed so that a
        visit and all its rows lie :data:`BACKFILL_LAG` before ``now`` (a day too young for that, today
        just after midnight, gets its first minute and rows ahead of ``now``: ``gen`` backfills
        yesterday by default for this reason)."""
        start = dt.datetime.combine(day, dt.time())
        span = 86400.0
        if self.now is not None:
            room = (self.now - BACKFILL_LAG - ENCOUNTER_TAIL - start).total_seconds()
            span = min(span, max(60.0, room))
        return start + dt.timedelta(seconds=int(frac * span))


def day_fraction(kind: str, rng: random.Random) -> float:
    """When in the day a visit of ``kind`` starts: emergencies around the clock, clinics in office hours."""
    if kind == EMERGENCY:
        return rng.random()
    hour = rng.choices((8, 9, 10, 11, 13, 14, 15, 16), weights=(14, 18, 16, 10, 6, 12, 12, 8))[0]
    return (hour + rng.random()) / 24


def base_group(site: Site, when: dt.datetime, seed: int) -> Group:
    """The dept and staff rows (base data every day's rows refer to), dated ``when``."""
    g = Group(when)
    rng = random.Random(f"{seed}:base-rows")
    nat_to_local = {d.national: loc for loc, d in reversed(site.depts.items())}
    for local, dept in site.depts.items():
        parent = dept.national.split(".")[0] if "." in dept.national else None
        g.add(
            "dept",
            {
                **site.common(when, rng),
                "dept_code": local,
                "dept_name": dept.name,
                "parent_dept_code": nat_to_local.get(parent) if parent else None,
                "outpatient_flag": True,
                "inpatient_flag": dept.beds,
                "bed_count": rng.randint(30, 60) if dept.beds else 0,
                "active_flag": True,
            },
        )
    sexes = (site.codes.need("sex", "1"), site.codes.need("sex", "2"))
    for dept_code, team in site.staff.items():
        for doc in team:
            g.add(
                "staff",
                {
                    **site.common(when, rng),
                    "staff_id": doc.staff_id,
                    "staff_name": doc.name,
                    "sex_code": rng.choice(sexes),
                    "dept_code": dept_code,
                    "title_name": doc.title,
                    "practice_cert_no": f"1{rng.randrange(10**13, 10**14)}",
                    "phone": people.mobile(rng),
                    "active_flag": True,
                },
            )
    return g
