"""The case store of one rule-engine call (:meth:`cdcsync.surveil.rules.RuleEngine.apply`): the
open cases of the call's patients read in one query instead of one ``find_open`` per signal.

Split from :mod:`cdcsync.surveil.rules` (the rule logic) because it is only about round trips.
"""

from __future__ import annotations

from typing import Any

import psycopg

from cdcsync.surveil.cases import Actor, Case, CaseClosed, CaseStore, Evidence, OpenResult, Signal, Status


class StaleCase(Exception):
    """A case the batch's prefetch found open was closed meanwhile by someone else (a doctor's
    action on the reminders API): the handler runs again, reading the case tables."""


_Key = tuple[str, str, str]  # (org_code, patient_id, disease_code)


class BatchStore(CaseStore):
    """The :class:`CaseStore` of one ``apply`` call, with the open cases of the call's patients
    read in one query (:meth:`load_open`) instead of one ``find_open`` per signal.

    Conservative: a key the call writes to (a case opened, upgraded, closed, evidence added) is
    read from the table again afterwards, so the cache only ever answers for keys nothing in this
    transaction touched. A case closed by another session after the prefetch surfaces as
    :class:`StaleCase` on the write (the store's own savepoint undid it) and the handler is re-run."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self.known: set[tuple[str, str]] = set()  # (org, patient) whose open cases are in ``cached``
        self.cached: dict[_Key, Case] = {}
        self.by_id: dict[int, _Key] = {}
        self.dirty: set[_Key] = set()
        self.touched_events: set[str] = set()  # event ids added as evidence in this call

    def load_open(self, org: str, patients: list[str]) -> None:
        for case in self.open_cases_of_patients(org, patients):
            key = (case.org_code, case.patient_id, case.disease_code)
            self.cached[key] = case
            self.by_id[case.case_id] = key
        self.known.update((org, p) for p in patients)

    def find_open(self, org_code: str, patient_id: str, disease_code: str) -> Case | None:
        key = (org_code, patient_id, disease_code)
        if (org_code, patient_id) in self.known and key not in self.dirty:
            return self.cached.get(key)
        return super().find_open(org_code, patient_id, disease_code)

    def open_or_add(self, signal: Signal) -> OpenResult:
        self.dirty.add((signal.org_code, signal.patient_id, signal.disease_code))
        self.touched_events.add(signal.evidence.event_id)
        return super().open_or_add(signal)

    def _writing(self, case_id: int, evidence: Evidence | None) -> bool:
        """Mark the case's key as written; True when the case came from the prefetch."""
        if evidence is not None:
            self.touched_events.add(evidence.event_id)
        key = self.by_id.get(case_id)
        if key is None:
            return False
        fresh = key not in self.dirty
        self.dirty.add(key)
        return fresh

    def upgrade(self, case_id: int, to: Status, actor: Actor, reason: str,
                evidence: Evidence | None = None) -> Case:
        cached = self._writing(case_id, evidence)
        try:
            return super().upgrade(case_id, to, actor, reason, evidence)
        except CaseClosed:
            if cached:
                raise StaleCase from None
            raise

    def close_reported(self, case_id: int, card_no: str, actor: Actor, reason: str | None = None,
                       evidence: Evidence | None = None) -> Case:
        cached = self._writing(case_id, evidence)
        try:
            return super().close_reported(case_id, card_no, actor, reason, evidence)
        except CaseClosed:
            if cached:
                raise StaleCase from None
            raise

    def close_corrected(self, case_id: int, reason: str, actor: Actor, evidence: Evidence | None = None) -> Case:
        cached = self._writing(case_id, evidence)
        try:
            return super().close_corrected(case_id, reason, actor, evidence)
        except CaseClosed:
            if cached:
                raise StaleCase from None
            raise
