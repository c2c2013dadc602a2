"""The day's census: visits counted as they happen, and the emr.daily_stats row that reports them.

Counts follow what the rows say (visits by type and time, discharges, deaths, report cards by
report date, inpatients at midnight), so the reconciliation views can check them against the rows.
"""

from __future__ import annotations

import datetime as dt
import random

from cdcsync.synth.catalog import EMERGENCY, OUTPATIENT
from cdcsync.synth.load import Group
from cdcsync.synth.model import Census
from cdcsync.synth.site import COLLECT_DELAY, Site


def count_visit(census: Census, kind: str, *, fever_clinic: bool) -> None:
    if kind == OUTPATIENT:
        census.outpatient += 1
    elif kind == EMERGENCY:
        census.emergency += 1
    else:
        census.admissions += 1
    census.fever_clinic += fever_clinic


def daily_stats(site: Site, rng: random.Random, day: dt.date, census: Census) -> Group:
    """The daily_stats row of ``day``, written half an hour after midnight (or just before ``now``, if
    earlier: collected by ``now``)."""
    end = dt.datetime.combine(day, dt.time()) + dt.timedelta(days=1, minutes=30)
    if site.now is not None:
        end = min(end, site.now - COLLECT_DELAY)
    stats = Group(end)
    stats.add(
        "daily_stats",
        {
            **site.common(end, rng),
            "stat_date": day,
            "outpatient_count": census.outpatient,
            "emergency_count": census.emergency,
            "fever_clinic_count": census.fever_clinic,
            "inpatient_count": census.in_hospital,
            "admission_count": census.admissions,
            "discharge_count": census.discharges,
            "death_count": census.deaths,
            "report_card_count": census.cards,
        },
    )
    return stats
