"""State of the synthetic hospital: patients, encounters, inpatient stays, the day's census, results.

Plain dataclasses shared by the row builders (visits, diagnoses, labs, orders, notes, cards,
inpatient). An :class:`Encounter` carries what every clinical row of one visit repeats (visit id,
patient, visit type, time, department, doctor, condition), so builders take it instead of a long
list of positional arguments.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import NamedTuple

from cdcsync.synth import people
from cdcsync.synth.catalog import Condition
from cdcsync.synth.load import Group, Row, Update

# kind -> the table whose rows carry it. "unknown_local_code" hits patient.sex_code and visit.dept_code.
INVALID_KINDS: dict[str, tuple[str, ...]] = {
    "bad_id_check_digit": ("patient",),
    "unknown_local_code": ("patient", "visit"),
    "vital_out_of_range": ("vital_sign",),
    "birth_after_visit": ("visit",),
    "discharge_before_admission": ("discharge",),
}
InvalidKey = tuple[str, tuple[str, ...]]  # (table, primary key values)


class Dept(NamedTuple):
    """A department of the hospital, keyed by its local code."""

    name: str
    national: str
    beds: bool


class Doctor(NamedTuple):
    staff_id: str
    name: str
    title: str


@dataclass
class Patient:
    patient_id: str
    person: people.Person
    sex: str  # local sex code
    id_type: str
    id_no: str
    region: str  # local region code of the current address
    belong: str
    occupation: str | None
    marital: str | None
    education: str | None
    ethnicity: str
    work_unit: str | None
    relation: str
    visits: int = 0


@dataclass(frozen=True)
class Encounter:
    """One visit as every clinical row of it sees it."""

    visit_id: str
    patient: Patient
    kind: str  # national visit_type code
    time: dt.datetime
    dept: str  # local department code
    doctor: Doctor
    cond: Condition

    def at(self, time: dt.datetime, doctor: Doctor) -> Encounter:
        """The same visit seen later by another doctor (a ward round, the discharge)."""
        return replace(self, time=time, doctor=doctor)


@dataclass
class Stay:
    """An inpatient from admission until discharge (or death)."""

    encounter: Encounter  # as admitted: time = admission time
    inpatient_no: str
    ward: str
    bed: str
    leave_on: dt.date
    dies: bool
    diag_local: str
    card: Row | None = None
    admission_route: str = ""

    @property
    def admitted(self) -> dt.datetime:
        return self.encounter.time


@dataclass
class Census:
    """What the day's daily_stats row must say."""

    outpatient: int = 0
    emergency: int = 0
    fever_clinic: int = 0
    admissions: int = 0
    discharges: int = 0
    deaths: int = 0
    cards: int = 0
    in_hospital: int = 0


@dataclass
class DayResult:
    date: dt.date
    groups: list[Group]
    invalid: dict[str, list[InvalidKey]]
    census: Census


@dataclass
class GenResult:
    rows: dict[str, list[Row]] = field(default_factory=dict)
    updates: list[Update] = field(default_factory=list)
    invalid: dict[str, list[InvalidKey]] = field(default_factory=lambda: {k: [] for k in INVALID_KINDS})
    census: dict[dt.date, Census] = field(default_factory=dict)

    def add_group(self, group: Group) -> None:
        for table, rows in group.rows.items():
            self.rows.setdefault(table, []).extend(rows)
        self.updates.extend(group.updates)

    @property
    def counts(self) -> dict[str, int]:
        return {t: len(r) for t, r in self.rows.items()}

    @property
    def invalid_counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.invalid.items()}


def dec(x: float, places: int = 1) -> Decimal:
    """``x`` with ``places`` decimals as a Decimal (for numeric columns)."""
    return Decimal(f"{x:.{places}f}")
