"""Consistent snapshot: read every published ``emr`` table inside a slot's exported snapshot.

The slot is created with ``SNAPSHOT 'export'``; a second connection adopts that snapshot with
``SET TRANSACTION SNAPSHOT`` and COPYs each table. Every row committed before the slot's
consistent point is in the snapshot, every later commit is in the slot's stream: no gap, no
duplicate. Rows come out as op ``r`` Changes whose ids are built from the consistent point, the
table and the primary key. An interrupted snapshot is simply done again (new slot, new point):
the fold by primary key on the receiving side is unaffected.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
import psycopg

from cdcsync.db.migrate import PUBLICATION
from cdcsync.engine.checkpoint import LATEST_KEYS_CTE
from cdcsync.event import Change, dumps
from cdcsync.source.catalog import PkLookup
from cdcsync.source.pgoutput import tuple_data
from cdcsync.source.protocol import with_session_options
from cdcsync.source.typeconv import convert_each, converter_for

log = logging.getLogger(__name__)



def published_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1, 2",
        (PUBLICATION,)).fetchall()
    return [(str(s), str(t)) for s, t in rows]


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[str, int]]:
    rows = conn.execute(
        "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        (f'"{schema}"."{table}"',)).fetchall()
    return [(str(n), int(o)) for n, o in rows]


def _estimate(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    row = conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass",
                       (f'"{schema}"."{table}"',)).fetchone()
    return int(row[0]) if row else 0


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def row_key(pk_values: list[Any]) -> str:
    """Short, stable text for a primary key (its JSON hashed: no row values in ids)."""
    return hashlib.sha1(dumps(pk_values)).hexdigest()[:20]


class _Progress:
    """A progress bar on a terminal, a log line every 10 s otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._bar: Any = None
        self._next_log = time.monotonic() + 10.0
        if sys.stderr.isatty():
            self._bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            self._bar.__enter__()

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() >= self._next_log:
            self._next_log = time.monotonic() + 10.0
            log.info("snapshot %s: %d / ~%d rows", self.label, self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


@contextmanager
def snapshot_transaction(conninfo: str, snapshot_name: str) -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(with_session_options(conninfo, application_name="cdcsync-snapshot"))
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_name}'")
        yield conn
        conn.execute("COMMIT")
    finally:
        conn.close()


def read_snapshot(conninfo: str, snapshot_name: str, consistent_point: int, emit: Callable[[Change], None],
                  pks: PkLookup, tables: list[str] | None = None, stop: threading.Event | None = None,
                  deletes_for: str | None = None) -> int:
    """COPY the published tables (or ``tables``, plain names in schema emr) inside the exported
    snapshot, calling ``emit`` with one op ``r`` Change per row. With ``deletes_for`` (a
    destination), also one op ``d`` Change per key that destination holds
    (``cdcsync.delivered_keys``) and the snapshot does not: rows deleted while it could not
    stream. Returns the number of rows read."""
    total = 0
    started = dt.datetime.now(dt.UTC)
    with snapshot_transaction(conninfo, snapshot_name) as conn:
        targets = published_tables(conn)
        if tables:
            known = {t for _, t in targets}
            unknown = [t for t in tables if t not in known]
            if unknown:
                raise LookupError(f"表不在发布 {PUBLICATION} 中：{', '.join(unknown)}")
            targets = [(s, t) for s, t in targets if t in tables]
        for schema, table in targets:
            cols = _columns(conn, schema, table)
            names = [c for c, _ in cols]
            convs = [converter_for(oid) for _, oid in cols]
            pk_idx = [names.index(c) for c in pks(schema, table) if c in names]
            progress = _Progress(f"{schema}.{table}", _estimate(conn, schema, table))
            n = 0
            t0 = time.monotonic()
            try:
                select = ", ".join(_qi(c) for c in names)
                with conn.cursor().copy(f"COPY (SELECT {select} FROM {_qi(schema)}.{_qi(table)}) TO STDOUT") as cp:
                    cp.set_types(["text"] * len(names))
                    for rec in cp.rows():
                        bad: tuple[str, ...] | None = None
                        texts = [None if v is None else v.encode() for v in rec]
                        try:
                            vals = [None if v is None else conv(v) for v, conv in zip(texts, convs, strict=True)]
                        except Exception:  # a value that does not convert: the stage quarantines the row
                            vals, bad = convert_each(texts, convs, names)
                        row = dict(zip(names, vals, strict=True))
                        key = row_key([vals[i] for i in pk_idx]) if pk_idx else None
                        image = tuple_data(texts)
                        emit(Change("r", schema, table, None, row, consistent_point, 0, started, n, True, key,
                                    len(image), bad, image))
                        n += 1
                        if n % 1000 == 0:
                            progress.update(1000)
                            if stop is not None and stop.is_set():
                                log.info("snapshot of %s.%s interrupted at %d rows", schema, table, n)
                                return total + n
            finally:
                progress.close()
            if deletes_for is not None:
                pk_cols = [(c, oid) for c in pks(schema, table) for name, oid in cols if name == c]
                gone = _emit_gone(conn, deletes_for, schema, table, pk_cols, consistent_point, started, emit)
                if gone:
                    log.info("snapshot %s.%s: %d row(s) gone since delivered; sending deletes", schema, table, gone)
            total += n
            log.log(logging.INFO if n else logging.DEBUG, "snapshot %s.%s: %d rows in %.1fs", schema, table, n,
                    time.monotonic() - t0)
    return total


def _emit_gone(conn: psycopg.Connection[Any], destination: str, schema: str, table: str,
               pk_cols: list[tuple[str, int]], consistent_point: int, started: dt.datetime,
               emit: Callable[[Change], None]) -> int:
    """Emit a delete (before-image: the primary key) for every key ``destination`` holds that the
    snapshot has not. Runs in the snapshot's transaction, so it compares with exactly the rows
    just read; keys are compared typed (cast from the stored JSON to the column's type)."""
    if not pk_cols:
        return 0
    names = [c for c, _ in pk_cols]
    types = [str(conn.execute("SELECT format_type(%s, NULL)", (oid,)).fetchone()[0])  # type: ignore[index]
             for _, oid in pk_cols]
    typed = [f"(k.pk::jsonb ->> {_lit(c)})::{t}" for c, t in zip(names, types, strict=True)]
    match = " AND ".join(f"x.{_qi(c)} = {v}" for c, v in zip(names, typed, strict=True))
    query = (f"{LATEST_KEYS_CTE} SELECT {', '.join(v + '::text' for v in typed)} FROM latest k"
             f" WHERE k.pk::jsonb ?& %(cols)s"
             f" AND NOT EXISTS (SELECT 1 FROM {_qi(schema)}.{_qi(table)} x WHERE {match})")
    convs = [converter_for(oid) for _, oid in pk_cols]
    n = 0
    for rec in conn.execute(query, {"d": destination, "t": table, "cols": names}).fetchall():
        vals = [None if v is None else conv(str(v).encode()) for v, conv in zip(rec, convs, strict=True)]
        before = dict(zip(names, vals, strict=True))
        emit(Change("d", schema, table, before, None, consistent_point, 0, started, n, True, row_key(vals), 0))
        n += 1
    return n


def _lit(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


__all__ = ["published_tables", "read_snapshot", "row_key", "snapshot_transaction"]
