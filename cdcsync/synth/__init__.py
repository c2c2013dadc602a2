"""Synthetic hospital: realistic, seeded HIS data for the emr.* mirror (``cdcsync gen``).

Before the flow ``source/ → validate/ + mapping/ → engine/ → sink/``: it plays the HIS, writing
the rows the flow then carries (the ``sim`` extra; tests, benchmarks, the demo).

- ``catalog.yaml`` / :mod:`.catalog`: conditions, lab panels, drugs, departments and text pools;
  :mod:`.codes`: the hospital's local codes, found through the national ones the catalogue names.
- :mod:`.hospital`: :class:`Hospital` runs the days (ward rounds, discharges, the day's visits,
  faults, census); :func:`generate` collects them in memory.
- One module per kind of row: :mod:`.site` (departments, staff, common columns), :mod:`.patients`,
  :mod:`.visits` (visit, symptoms, vital signs), :mod:`.diagnoses`, :mod:`.labs` (lab and exam
  reports), :mod:`.orders`, :mod:`.notes`, :mod:`.cards` (report cards, exposure history),
  :mod:`.inpatient` (admission, ward round, discharge, death), :mod:`.census` (daily_stats),
  :mod:`.faults` (the deliberately invalid rows); :mod:`.model` holds the shared state types and
  :mod:`.people` the invented persons.
- :mod:`.load` writes generated rows (COPY or one transaction per encounter); :mod:`.cli` is the command.
"""

from cdcsync.synth.hospital import INVALID_KINDS, Codes, GenResult, Hospital, expected_invalid, generate, load_codes

__all__ = ["INVALID_KINDS", "Codes", "GenResult", "Hospital", "expected_invalid", "generate", "load_codes"]
