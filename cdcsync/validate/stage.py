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
* minimum necessary: columns the spec does not name are left out of both images (so out of the
  event and of the quarantine's copy), counted per table and column and logged once
  (:mod:`cdcsync.validate.minimal`). The common case costs a length test: a row of a table whose
  last full check found exactly the spec's columns, and that has as many columns, is taken as is
  (a full check of each table's next row every second catches a column renamed meanwhile).
* tables that are not in the dataset spec are forwarded untouched: only the spec's tables are
  published, so such a table streams only when a DBA added it to the publication on purpose.
* a change the decoder could not fully convert (``Change.undecodable``: text that is not UTF-8,
  JSON Python cannot hold) is quarantined under ``SYS002`` naming the column, unless the column
  is one the spec leaves out anyway.

The rules in force come from a :class:`~cdcsync.validate.reload.RulesHolder`; a new set is picked
up at a transaction boundary (first change with a new commit LSN), never inside a transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cdcsync.config import Settings
from cdcsync.event import Change, Event, EventIds, Rejection, Row
from cdcsync.validate import Violation
from cdcsync.validate.compiler import CompiledTable, Validators, beijing_now
from cdcsync.validate.minimal import DroppedColumns
from cdcsync.validate.reload import RulesHolder

_MAX_LISTED = 8
log = logging.getLogger(__name__)
_time = time.time
_monotonic = time.monotonic


@dataclass(slots=True, frozen=True)
class StageRejection(Rejection):
    """A Rejection that also keeps every violation (first one = the headline)."""

    violations: tuple[Violation, ...] = ()


INTERNAL_RULE = "SYS001"  # the validator itself failed on a row (a bug, not bad data)
UNDECODABLE_RULE = "SYS002"  # a value the decoder could not convert (not UTF-8, unparseable)


def rejection_from(violations: list[Violation]) -> StageRejection:
    first = violations[0]
    message = first.message
    rest = violations[1:]
    if rest:
        listed = "、".join(f"{v.rule_id}({v.field})" if v.field else v.rule_id for v in rest[:_MAX_LISTED])
        more = f"等{len(rest)}项" if len(rest) > _MAX_LISTED else ""
        message = f"{message}；另有：{listed}{more}"
    return StageRejection(first.rule_id, first.field, message, tuple(violations))


def transform_for(settings: Settings, holder: RulesHolder, destination: str | None = None) -> ValidationStage:
    """THE transform of every path that sends data (daemon stream and snapshot, ``drain``,
    ``cdcsync snapshot``, quarantine retry): the rules of ``holder``, origin = org_code + the
    database name of ``settings`` (:attr:`~cdcsync.config.DatabaseSettings.dbname`). One stage per
    pipeline: it tracks the transaction it is in, so that a transaction is checked with one set.
    ``destination``: where the counts of left-out columns are recorded (None: logged only)."""
    return ValidationStage(holder, settings.org_code, settings.database.dbname, destination=destination)


class ValidationStage:
    """Transform: validate and map one Change; the Event envelope follows the engine's scheme."""

    def __init__(self, holder: RulesHolder, org_code: str, db: str, schema: str = "emr",
                 destination: str | None = None) -> None:
        self.holder = holder
        self.org_code = org_code
        self.db = db
        self.schema = schema
        self.origin = f"{org_code}.{db}"  # Transform.origin: also the prefix of quarantined ids
        self.dropped = DroppedColumns(destination)  # columns left out (persisted when destination is set)
        self._rules: Validators = holder.current()
        self._tables: Mapping[str, CompiledTable] = self._rules.tables
        # Tables whose last fully checked row held exactly the spec's columns (emptied every second).
        self._exact: dict[str, CompiledTable] = {}
        self._tx_lsn = -1
        self._now = beijing_now()
        self._now_at = time.monotonic()
        self._ids = EventIds(self.origin)

    def rules_at(self, lsn: int) -> Validators:
        """The rules this stage checks the changes of transaction ``lsn`` (``Change.lsn``) with,
        picked up at its first change as ``__call__`` does: for a caller that looks at a change
        before deciding to transform it (the rules consumer's pre-filter), so both use the same
        code tables."""
        if lsn != self._tx_lsn:
            self._tx_lsn = lsn
            rules = self.holder.current()
            if rules is not self._rules:
                self._rules = rules
                self._tables = rules.tables
                self._exact = {}
        return self._rules

    def __call__(self, change: Change) -> Event | Rejection:
        lsn = change.lsn
        if lsn != self._tx_lsn:  # a new transaction: pick up the rules in force
            self._tx_lsn = lsn
            rules = self.holder.current()
            if rules is not self._rules:
                self._rules = rules
                self._tables = rules.tables
                self._exact = {}
        else:
            rules = self._rules
        if change.undecodable is not None:
            rejected = self._undecodable(change)
            if rejected is not None:
                return rejected
        mono = _monotonic()  # beijing_now() costs ~1 µs: a validation time exact to the second is plenty
        if mono - self._now_at >= 1.0:
            self._now = beijing_now()
            self._now_at = mono
            self._exact = {}  # look at every table's full column set again (a rename keeps the count)
        before = change.before
        after = change.after
        # Minimum necessary, the common case in a few tests: see _minimal for the rest.
        compiled = self._exact.get(change.table) if change.schema == self.schema else None
        if (compiled is None or (after is not None and len(after) != compiled.ncols)
                or (before is not None and len(before) != compiled.ncols)):
            compiled = self._tables.get(change.table) if change.schema == self.schema else None
            if compiled is None:
                return self._event(change, before, after, rules)
            self._minimal(change, compiled)
            before = change.before
            after = change.after
        op = change.op
        if op == "d" or op == "t":
            return self._event(change, compiled.map_only(before) if before is not None else None, after, rules)
        if after is None:  # pragma: no cover - c/u/r always have an after-image
            return self._event(change, before, None, rules)
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
            rules.mapping_version, rules.spec_version, change.image,
        )

    def _minimal(self, change: Change, compiled: CompiledTable) -> None:
        """Leave the columns the spec does not name out of both images of ``change`` (in place:
        nothing after the stage sees them), count them; remember the table when the row held
        exactly the spec's columns, so that its next rows only need the length test."""
        allowed = compiled.columns
        exact = change.before is not None or change.after is not None  # a truncate proves nothing
        dropped: dict[str, None] = {}
        for image in (change.before, change.after):
            if image is None:
                continue
            if len(image) != compiled.ncols:
                exact = False
            for column in image:
                if column not in allowed:
                    dropped[column] = None
        if dropped:
            exact = False
            if change.before is not None:
                change.before = {k: v for k, v in change.before.items() if k in allowed}
            if change.after is not None:
                change.after = {k: v for k, v in change.after.items() if k in allowed}
            self.dropped.note(change.table, list(dropped))
        if exact:
            self._exact[change.table] = compiled

    def _undecodable(self, change: Change) -> StageRejection | None:
        """SYS002 for a change with a value the decoder could not convert, naming the column;
        None when every such column is one the spec leaves out anyway."""
        compiled = self._tables.get(change.table) if change.schema == self.schema else None
        names = change.undecodable or ()
        if compiled is not None:
            self._minimal(change, compiled)  # the quarantine keeps no column the spec leaves out
            names = tuple(n for n in names if n in compiled.columns)
        if not names:
            return None
        labels = "、".join(
            f"{compiled.table.field(n).comment}（{n}）" if compiled is not None else n for n in names)
        message = (f"字段 {labels} 的值无法解码（不是有效的 UTF-8 文本，或无法转换为该类型），记录已隔离；"
                   f"请检查写入该字段的程序")
        return StageRejection(UNDECODABLE_RULE, names[0], message, ())

    def _event(self, change: Change, before: Row | None, after: Row | None, rules: Validators) -> Event:
        return Event(
            self._ids(change), change.op, before, after, self.org_code, self.db, change.schema, change.table,
            change.lsn, change.tx_id, change.commit_ts, change.snapshot, int(_time() * 1000),
            rules.mapping_version, rules.spec_version, change.image,
        )
