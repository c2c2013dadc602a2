"""The Event envelope around a change as it is: the engine's transform for its own tests and
benchmarks (an upstream platform refuses its batches: no validation, no mapping, no versions).
Every real path uses :func:`cdcsync.validate.stage.transform_for`."""

from __future__ import annotations

import time

from cdcsync.config import Settings
from cdcsync.event import Change, Event, EventIds, Rejection

_time = time.time


class PassThroughTransform:
    """A :class:`~cdcsync.event.Transform` that validates and maps nothing."""

    def __init__(self, org_code: str, db: str) -> None:
        self.org_code = org_code
        self.db = db
        self.origin = f"{org_code}.{db}"
        self._ids = EventIds(self.origin)

    @classmethod
    def for_settings(cls, settings: Settings) -> PassThroughTransform:
        return cls(settings.org_code, settings.database.dbname)

    def __call__(self, change: Change) -> Event | Rejection:
        lsn = change.lsn
        ids = self._ids
        # EventIds' cached prefix for the common case (same transaction as the previous change)
        eid = ids.prefix + str(change.ordinal) if lsn == ids.lsn and not change.snapshot else ids(change)
        return Event(
            eid, change.op, change.before, change.after, self.org_code, self.db,
            change.schema, change.table, lsn, change.tx_id, change.commit_ts, change.snapshot,
            int(_time() * 1000), None, None, change.image,  # positional: keywords cost in this hot path
        )
