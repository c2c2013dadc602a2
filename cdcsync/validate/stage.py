"""The validation + mapping stage of the pipeline (the engine's ``Transform``).

``ValidationStage(change) -> Event | Rejection``:

* insert, update, snapshot read (``c``/``u``/``r``): the after-image is validated against the
  compiled spec and mapped; any violation ⇒ :class:`StageRejection` (headline = the first
  violation; the message lists the other rule ids and fields, never values). The before-image of
  an update is mapped without validation.
* delete, truncate (``d``/``t``): forwarded without validating values (the row is gone); the
  before-image's coded fields are mapped where they can be.
* the mapped row carries the national code in ``<field>`` and the local code in
  ``<field>_local`` for every coded field; the event records ``mapping_version`` and
  ``spec_version``.
* tables that are not in the dataset spec are forwarded untouched.

The rules in force come from a :class:`~cdcsync.mapping.reload.RulesHolder`; a new set is picked
up at a transaction boundary (first change with a new commit LSN), never inside a transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdcsync.config import Settings
from cdcsync.event import Change, Event, Rejection, Row
from cdcsync.mapping.reload import RulesHolder
from cdcsync.pipeline import EventIds  # the engine owns the id scheme
from cdcsync.validate import Violation
from cdcsync.validate.compiler import CompiledTable, Validators, beijing_now

_MAX_LISTED = 8
log = logging.getLogger(__name__)
_time = time.time
_monotonic = time.monotonic


@dataclass(slots=True, frozen=True)
class StageRejection(Rejection):
    """A Rejection that also keeps every violation (first one = the headline)."""

    violations: tuple[Violation, ...] = ()


INTERNAL_RULE = "SYS001"  # the validator itself failed on a row (a bug, not bad data)


def rejection_from(violations: list[Violation]) -> StageRejection:
    first = violations[0]
    message = first.message
    rest = violations[1:]
    if rest:
        listed = "、".join(f"{v.rule_id}({v.field})" if v.field else v.rule_id for v in rest[:_MAX_LISTED])
        more = f"等{len(rest)}项" if len(rest) > _MAX_LISTED else ""
        message = f"{message}；另有：{listed}{more}"
    return StageRejection(first.rule_id, first.field, message, tuple(violations))


def transform_for(settings: Settings, holder: RulesHolder) -> ValidationStage:
    """THE transform of every path that sends data (daemon stream and snapshot, ``drain``,
    ``cdcsync snapshot``, quarantine retry): the rules of ``holder``, origin = org_code + the
    database name of ``settings`` (:attr:`~cdcsync.config.DatabaseSettings.dbname`). One stage per
    pipeline: it tracks the transaction it is in, so that a transaction is checked with one set."""
    return ValidationStage(holder, settings.org_code, settings.database.dbname)


class ValidationStage:
    """Transform: validate and map one Change; the Event envelope follows the engine's scheme."""

    def __init__(self, holder: RulesHolder, org_code: str, db: str, schema: str = "emr") -> None:
        self.holder = holder
        self.org_code = org_code
        self.db = db
        self.schema = schema
        self.origin = f"{org_code}.{db}"  # Transform.origin: also the prefix of quarantined ids
        self._rules: Validators = holder.current()
        self._tables: Mapping[str, CompiledTable] = self._rules.tables
        self._tx_lsn = -1
        self._now = beijing_now()
        self._now_at = time.monotonic()
        self._ids = EventIds(self.origin)

    @property
    def rules(self) -> Validators:
        return self._rules

    def _clock(self) -> Any:
        # beijing_now() costs ~1 µs; a validation time exact to the second is plenty.
        mono = _monotonic()
        if mono - self._now_at >= 1.0:
            self._now = beijing_now()
            self._now_at = mono
        return self._now

    def __call__(self, change: Change) -> Event | Rejection:
        lsn = change.lsn
        if lsn != self._tx_lsn:  # a new transaction: pick up the rules in force
            self._tx_lsn = lsn
            self._rules = rules = self.holder.current()
            self._tables = rules.tables
        else:
            rules = self._rules
        compiled = self._tables.get(change.table) if change.schema == self.schema else None
        if compiled is None:
            return self._event(change, change.before, change.after, rules)
        op = change.op
        before = change.before
        if op == "d" or op == "t":
            return self._event(change, compiled.map_only(before) if before is not None else None,
                               change.after, rules)
        after = change.after
        if after is None:  # pragma: no cover - c/u/r always have an after-image
            return self._event(change, before, None, rules)
        mono = _monotonic()  # self._clock() inline (hot path)
        if mono - self._now_at >= 1.0:
            self._now = beijing_now()
            self._now_at = mono
        try:
            mapped, violations = compiled.check(after, self._now)
            if violations:
                return rejection_from(violations)
            if before is not None:
                before = compiled.map_only(before)
        except Exception as exc:  # a checker bug must cost one row (quarantined), never the stream
            # Type only: an exception's text may quote the row's values.
            log.error("validation of a %s row failed (%s); row quarantined", change.table, type(exc).__name__)
            message = f"校验程序内部错误（{type(exc).__name__}），记录已隔离，请联系维护人员"
            return StageRejection(INTERNAL_RULE, None, message, ())
        ids = self._ids
        # EventIds inline for the common case (same transaction as the previous change)
        eid = ids.prefix + str(change.ordinal) if lsn == ids.lsn and not change.snapshot else ids(change)
        return Event(
            eid, op, before, mapped, self.org_code, self.db, change.schema, change.table,
            lsn, change.tx_id, change.commit_ts, change.snapshot, int(_time() * 1000),
            rules.mapping_version, rules.spec_version,
        )

    def _event(self, change: Change, before: Row | None, after: Row | None, rules: Validators) -> Event:
        return Event(
            self._ids(change), change.op, before, after, self.org_code, self.db, change.schema, change.table,
            change.lsn, change.tx_id, change.commit_ts, change.snapshot, int(_time() * 1000),
            rules.mapping_version, rules.spec_version,
        )
