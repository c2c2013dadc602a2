"""Where the reference platform keeps what it accepted: SQLite (``received.sqlite``) or counters only."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Protocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,
    table_name  TEXT NOT NULL,
    op          TEXT NOT NULL,
    payload     TEXT NOT NULL,   -- the event as received (JSON)
    batch_id    TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_table_idx ON events (table_name);
CREATE TABLE IF NOT EXISTS batches (
    batch_id        TEXT PRIMARY KEY,
    digest          TEXT NOT NULL,   -- SM3 of the event ids: same batch id, other events = conflict
    org_code        TEXT NOT NULL,
    n_events        INTEGER NOT NULL,
    received_at     TEXT NOT NULL,
    spec_version    TEXT NOT NULL DEFAULT '',  -- dataset spec the batch's rows were validated against
    mapping_version TEXT NOT NULL DEFAULT ''   -- code tables its rows were mapped with
);
"""
# Columns added after the first release: (name, definition) for ALTER TABLE on an older file.
_ADDED_BATCH_COLUMNS = (("spec_version", "TEXT NOT NULL DEFAULT ''"), ("mapping_version", "TEXT NOT NULL DEFAULT ''"))


# One accepted event: (id, table_name, op, payload), payload being the event's JSON exactly as
# the hospital sent it ("" for a store that keeps none). A plain tuple: the platform builds one
# per event, and a dataclass would cost more than the checks.
StoredEvent = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class BatchHead:
    """What the platform keeps about a batch besides its events (its header)."""

    batch_id: str
    org_code: str
    spec_version: str
    mapping_version: str


class BatchConflict(Exception):
    """The batch id was received before with a different payload."""


class Store(Protocol):
    keeps_payload: ClassVar[bool]  # False: the platform need not extract (or UTF-8-check) event texts

    def put_batch(self, head: BatchHead, digest: str, events: Sequence[StoredEvent]) -> set[str]:
        """Store the events not seen before, in one transaction; return the ids already held."""
        ...

    def counts(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SqliteStore:
    """One transaction per batch; `INSERT` only ids not yet held, so duplicates are dropped."""

    keeps_payload: ClassVar[bool] = True

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process kill
        self._db.executescript(SCHEMA)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(batches)")}
        for name, definition in _ADDED_BATCH_COLUMNS:
            if name not in have:  # a received.sqlite written by an older version
                self._db.execute(f"ALTER TABLE batches ADD COLUMN {name} {definition}")

    def put_batch(self, head: BatchHead, digest: str, events: Sequence[StoredEvent]) -> set[str]:
        batch_id = head.batch_id
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT digest FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
                if row is not None and row[0] != digest:
                    raise BatchConflict(batch_id)
                ids = [e[0] for e in events]
                held: set[str] = set()
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    held.update(r[0] for r in db.execute(f"SELECT id FROM events WHERE id IN ({marks})", chunk))
                now = _now()
                fresh: dict[str, StoredEvent] = {}
                for e in events:
                    if e[0] not in held and e[0] not in fresh:
                        fresh[e[0]] = e
                dupes = held | {e[0] for e in events if e[0] in fresh and fresh[e[0]] is not e}
                db.executemany(
                    "INSERT INTO events (id, table_name, op, payload, batch_id, received_at) VALUES (?,?,?,?,?,?)",
                    [(*e, batch_id, now) for e in fresh.values()],
                )
                if row is None:
                    db.execute(
                        "INSERT INTO batches (batch_id, digest, org_code, n_events, received_at, spec_version,"
                        " mapping_version) VALUES (?,?,?,?,?,?,?)",
                        (batch_id, digest, head.org_code, len(events), now, head.spec_version, head.mapping_version),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return dupes

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT table_name, count(*) FROM events GROUP BY table_name").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CountingStore:
    """``--store none``: remembers batch digests and counts per table; keeps no event (benchmarks)."""

    keeps_payload: ClassVar[bool] = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._digests: dict[str, str] = {}
        self._counts: Counter[str] = Counter()

    def put_batch(self, head: BatchHead, digest: str, events: Sequence[StoredEvent]) -> set[str]:
        with self._lock:
            old = self._digests.get(head.batch_id)
            if old is not None and old != digest:
                raise BatchConflict(head.batch_id)
            self._digests[head.batch_id] = digest
            self._counts.update(e[1] for e in events)
            return set()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        pass
