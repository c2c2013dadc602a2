"""The live phase: encounters happening now, written as the HIS writes them during the day.

``cdcsync gen --rate R --live`` (and the demo's live phase) writes one encounter per transaction,
each with business times ending at the moment of writing: the encounter's rows keep their order and
their spacing, squeezed into :data:`LIVE_SPAN_S` seconds (a visit's lab, diagnosis and report card
take hours in the backfilled day; a short live phase has no hours to spend), and none lies in the
future (validators reject future times). Ids carry a tag of the start time so they never collide
with the backfilled day. At the end the day's ``emr.daily_stats`` row is brought up to date with the
live visits (written, when the day has none yet), as a HIS refreshing its running statistics would.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from cdcsync.synth.catalog import EMERGENCY, INPATIENT, OUTPATIENT
from cdcsync.synth.codes import Codes
from cdcsync.synth.hospital import Hospital
from cdcsync.synth.load import Group
from cdcsync.synth.model import Census

LIVE_SPAN_S = 30.0


def retime(group: Group, now: dt.datetime, span_s: float = LIVE_SPAN_S) -> Group:
    """Move every timestamp of ``group`` so the latest is ``now`` and all fit in ``span_s`` seconds."""
    stamps = [v for _, _, v in group.times()]
    if not stamps:
        return group
    last = max(stamps)
    spread = (last - min(stamps)).total_seconds()
    factor = max(1.0, spread / span_s)

    def move(v: Any) -> Any:
        if type(v) is not dt.datetime:
            return v
        return (now - (last - v) / factor).replace(microsecond=0)

    for rows in group.rows.values():
        for row in rows:
            for k, v in row.items():
                row[k] = move(v)
    for u in group.updates:
        for k, v in list(u.values.items()):
            u.values[k] = move(v)  # type: ignore[index]
    group.time = move(group.time)
    return group


def live_groups(codes: Codes, org_code: str, *, seed: int, patients: int, census: Census,
                clock: Callable[[], dt.datetime], seconds: float | None = None) -> Iterator[Group]:
    """Encounters starting now, each retimed to the moment it is made, for ``seconds`` (None: until the
    caller stops). Stopping here rather than in the writer keeps ``census`` equal to what was written:
    every encounter made is counted, so every one made must be written."""
    deadline = None if seconds is None else time.monotonic() + seconds
    start = clock()
    hosp = Hospital(codes, org_code, start.date(), seed=seed, patients=patients, invalid_ratio=0.0, now=None)
    hosp.site.tag = f"L{start:%H%M%S}"  # ids differ from the backfilled day's (tag = its date)
    rng = random.Random(f"{seed}:live:{start:%H%M%S}")
    while deadline is None or time.monotonic() < deadline:
        kind = rng.choices((OUTPATIENT, EMERGENCY, INPATIENT), weights=(78, 14, 8))[0]
        now = clock()
        group = hosp.encounter_at(rng, kind, now - dt.timedelta(minutes=1), census)
        census.cards += len(group.rows.get("report_card", []))
        yield retime(group, now)


def update_daily_stats(conn: psycopg.Connection[Any], codes: Codes, org_code: str, day: dt.date,
                       census: Census, when: dt.datetime) -> bool:
    """Add the live visits to the day's statistics row, as a HIS refreshing its running statistics
    would; the first refresh of a day writes its row. True when the day already had a row."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO emr.daily_stats AS s (org_code, stat_date, outpatient_count, emergency_count,"
            " fever_clinic_count, inpatient_count, admission_count, discharge_count, death_count,"
            " report_card_count, modify_flag, collect_time, update_time)"
            " VALUES (%(org)s, %(day)s, %(out)s, %(emg)s, %(fever)s, %(adm)s, %(adm)s, 0, 0, %(cards)s,"
            " %(new)s, %(when)s, %(when)s)"
            " ON CONFLICT (org_code, stat_date) DO UPDATE SET"
            " outpatient_count = s.outpatient_count + excluded.outpatient_count,"
            " emergency_count = s.emergency_count + excluded.emergency_count,"
            " fever_clinic_count = coalesce(s.fever_clinic_count, 0) + excluded.fever_clinic_count,"
            " admission_count = coalesce(s.admission_count, 0) + excluded.admission_count,"
            " report_card_count = coalesce(s.report_card_count, 0) + excluded.report_card_count,"
            " modify_flag = %(upd)s, collect_time = excluded.collect_time, update_time = excluded.update_time"
            " RETURNING xmax <> 0",  # xmax is set on the updated version only
            {"org": org_code, "day": day, "out": census.outpatient, "emg": census.emergency,
             "fever": census.fever_clinic, "adm": census.admissions, "cards": census.cards,
             "new": codes.need("modify_flag", "1"), "upd": codes.need("modify_flag", "2"), "when": when},
        ).fetchone()
        return bool(row and row[0])
