"""Minimum necessary: what the hospital keeps back, counted and shown.

Only the dataset spec's tables are published (``cdcsync.db.migrate.sync_publication``), and the
validation stage leaves every column the spec does not name out of the event (and out of the
quarantine's copy of the row). This module keeps the count of those columns per destination,
table and column, writes one log line per table and column the first time one is seen in a
process (names only, never values), persists the counts in ``cdcsync.dropped_columns`` for
``cdcsync status``, and lists from the catalog what is not sent at all: ``emr`` tables outside
the publication, and columns of published spec tables that the spec does not name.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any

import psycopg

from cdcsync.db.migrate import PUBLICATION, SCHEMA
from cdcsync.spec import Spec

log = logging.getLogger(__name__)

_warned: set[tuple[str, str]] = set()  # (table, column) already logged by this process
_warned_lock = threading.Lock()
_counters: weakref.WeakSet[DroppedColumns] = weakref.WeakSet()


def warn_once(table: str, column: str) -> None:
    """One warning per table and column and process (the names only)."""
    with _warned_lock:
        if (table, column) in _warned:
            return
        _warned.add((table, column))
    log.warning("column %s.%s.%s is not in the dataset spec: it is left out of every event (minimum necessary)",
                SCHEMA, table, column)


class DroppedColumns:
    """Rows whose columns the stage left out, per (table, column), since the last :meth:`take`.
    ``note`` runs on the pipeline thread (only for rows with such columns), ``take`` on the one
    that persists the counts."""

    def __init__(self, destination: str | None = None) -> None:
        self.destination = destination  # None: counted and logged, not persisted
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        _counters.add(self)

    def note(self, table: str, columns: Iterable[str]) -> None:
        with self._lock:
            counts = self._counts
            for column in columns:
                key = (table, column)
                counts[key] = counts.get(key, 0) + 1
        for column in columns:
            warn_once(table, column)

    def take(self) -> dict[tuple[str, str], int]:
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def peek(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def flush(self, conn: psycopg.Connection[Any]) -> int:
        """Add the counts to ``cdcsync.dropped_columns``; the number of (table, column) pairs."""
        if self.destination is None:
            return 0
        counts = self.take()
        if not counts:
            return 0
        try:
            with conn.transaction():
                conn.cursor().executemany(
                    "INSERT INTO cdcsync.dropped_columns AS d (destination, table_name, column_name, rows)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (destination, table_name, column_name)"
                    " DO UPDATE SET rows = d.rows + EXCLUDED.rows, last_seen = now()",
                    [(self.destination, t, c, n) for (t, c), n in sorted(counts.items())])
        except BaseException:
            with self._lock:  # keep them for the next attempt
                for key, n in counts.items():
                    self._counts[key] = self._counts.get(key, 0) + n
            raise
        return len(counts)


def flush_all(conninfo: str) -> None:
    """Persist every live counter of this process that has counts (a no-op otherwise)."""
    pending = [c for c in list(_counters) if c.destination is not None and c.peek()]
    if not pending:
        return
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for counter in pending:
                counter.flush(conn)
    except psycopg.Error as exc:  # status loses a few seconds of counts at worst; the stream goes on
        log.warning("cannot record dropped column counts: %s", str(exc).strip().splitlines()[0] if str(exc) else exc)


def dropped_counts(conn: psycopg.Connection[Any], destination: str) -> dict[str, dict[str, int]]:
    """{table: {column: rows}} left out for ``destination`` so far (empty before the migration)."""
    if conn.execute("SELECT to_regclass('cdcsync.dropped_columns')").fetchone() in (None, (None,)):
        return {}
    out: dict[str, dict[str, int]] = {}
    for table, column, rows in conn.execute(
            "SELECT table_name, column_name, rows FROM cdcsync.dropped_columns WHERE destination = %s"
            " ORDER BY 1, 2", (destination,)).fetchall():
        out.setdefault(str(table), {})[str(column)] = int(rows)
    return out


def not_sent(conn: psycopg.Connection[Any], spec: Spec) -> dict[str, Any]:
    """From the catalog: ``emr`` tables the publication leaves out, and columns of published spec
    tables the spec does not name (both never leave the hospital)."""
    published = {str(t) for (t,) in conn.execute(
        "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s",
        (PUBLICATION, SCHEMA)).fetchall()}
    columns: dict[str, list[str]] = {}
    tables: list[str] = []
    for table, cols in conn.execute(
            "SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') GROUP BY c.relname ORDER BY 1",
            (SCHEMA,)).fetchall():
        name = str(table)
        if name not in published:
            tables.append(name)
        elif spec.has_table(name):
            extra = [str(c) for c in cols if not spec.table(name).has_field(str(c))]
            if extra:
                columns[name] = extra
    return {"tables_not_published": tables, "columns_not_sent": columns}
