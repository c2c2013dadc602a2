"""Writing generated rows into the ``emr.*`` mirror tables, the way a HIS vendor would.

Bulk mode (:func:`load_bulk`) uses COPY in transactions of about :data:`BULK_TX_ROWS` rows, table
by table; updates (a discharge closing its visit) follow as UPDATEs. Steady mode
(:func:`load_steady`) writes one clinical encounter per transaction at a target rate (rows/s),
which is what the change stream sees from a busy hospital.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from cdcsync.spec import Spec, Table

BULK_TX_ROWS = 5000
Row = dict[str, Any]


class LoadError(RuntimeError):
    """Writing to the mirror database failed in a way the user can act on (one line, Chinese)."""


@dataclass(frozen=True)
class Update:
    """An UPDATE of one row by primary key (e.g. a visit closed at discharge)."""

    table: str
    key: Mapping[str, Any]
    values: Mapping[str, Any]


@dataclass
class Group:
    """Rows written together by the HIS in one transaction: one encounter or one base-data batch."""

    time: Any  # datetime of the business event; groups are replayed in this order
    rows: dict[str, list[Row]] = field(default_factory=dict)
    updates: list[Update] = field(default_factory=list)

    def add(self, table: str, row: Row) -> Row:
        self.rows.setdefault(table, []).append(row)
        return row

    @property
    def row_count(self) -> int:
        return sum(len(v) for v in self.rows.values()) + len(self.updates)

    def times(self) -> list[tuple[str, str, dt.datetime]]:
        """(table, column, value) of every timestamp the group writes, rows and updates."""
        out = [(t, k, v) for t, rows in self.rows.items() for row in rows for k, v in row.items()
               if type(v) is dt.datetime]
        return out + [(u.table, k, v) for u in self.updates for k, v in u.values.items() if type(v) is dt.datetime]


def _check_keys(table: Table, rows: Sequence[Row]) -> None:
    known = set(table.field_names)
    for row in rows:
        extra = row.keys() - known
        if extra:  # a generator bug, not user input
            raise ValueError(f"emr.{table.name}: generated unknown columns {sorted(extra)}")


def _copy(cur: psycopg.Cursor[Any], table: Table, rows: Sequence[Row]) -> None:
    names = table.field_names
    stmt = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
        sql.Identifier("emr"), sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with cur.copy(stmt) as copy:
        for row in rows:
            copy.write_row([row.get(n) for n in names])


def _update_stmt(table: Table, upd: Update) -> sql.Composed:
    return sql.SQL("UPDATE {}.{} SET {} WHERE {}").format(
        sql.Identifier("emr"),
        sql.Identifier(table.name),
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in upd.values),
        sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in upd.key),
    )


def _apply_updates(cur: psycopg.Cursor[Any], spec: Spec, updates: Sequence[Update]) -> None:
    for upd in updates:
        stmt = _update_stmt(spec.table(upd.table), upd)
        cur.execute(stmt, [*upd.values.values(), *upd.key.values()])
        if cur.rowcount != 1:
            raise LoadError(f"更新 emr.{upd.table} 时未找到对应记录（主键 {dict(upd.key)}）")


def _friendly(exc: psycopg.Error) -> LoadError:
    if isinstance(exc, psycopg.errors.UniqueViolation):
        table = exc.diag.table_name or "?"
        return LoadError(
            f"emr.{table} 中已存在相同主键的记录：该日期的模拟数据可能已经生成过，请换用 --date 或先清空镜像表"
        )
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return LoadError("镜像库中缺少 emr.* 表：请先执行 cdcsync db init")
    return LoadError(f"写入镜像库失败：{exc.sqlstate or ''} {type(exc).__name__}")


def _chunks(rows: Sequence[Row], size: int) -> Iterator[Sequence[Row]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def load_bulk(
    conn: psycopg.Connection[Any],
    spec: Spec,
    rows: Mapping[str, Sequence[Row]],
    updates: Sequence[Update] = (),
    *,
    tx_rows: int = BULK_TX_ROWS,
) -> int:
    """COPY ``rows`` (table → rows) in spec table order, then apply ``updates``; rows written."""
    written = 0
    try:
        for table in spec.tables:
            batch = rows.get(table.name)
            if not batch:
                continue
            _check_keys(table, batch)
            for chunk in _chunks(batch, tx_rows):
                with conn.transaction(), conn.cursor() as cur:
                    _copy(cur, table, chunk)
                written += len(chunk)
        for i in range(0, len(updates), tx_rows):
            with conn.transaction(), conn.cursor() as cur:
                _apply_updates(cur, spec, updates[i : i + tx_rows])
    except psycopg.Error as exc:
        raise _friendly(exc) from None
    return written


def _insert_stmt(table: Table) -> sql.Composed:
    names = table.field_names
    return sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
        sql.Identifier("emr"),
        sql.Identifier(table.name),
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )


def write_group(conn: psycopg.Connection[Any], spec: Spec, group: Group) -> int:
    """One encounter in one transaction (INSERTs + UPDATEs); rows written."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            for table in spec.tables:
                batch = group.rows.get(table.name)
                if not batch:
                    continue
                _check_keys(table, batch)
                names = table.field_names
                cur.executemany(_insert_stmt(table), [[r.get(n) for n in names] for r in batch])
            _apply_updates(cur, spec, group.updates)
    except psycopg.Error as exc:
        raise _friendly(exc) from None
    return group.row_count


@dataclass
class SteadyResult:
    rows: int = 0
    transactions: int = 0
    seconds: float = 0.0
    interrupted: bool = False


def load_steady(
    conn: psycopg.Connection[Any],
    spec: Spec,
    groups: Iterable[Group],
    rate: float,
    duration: float | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[SteadyResult], None] | None = None,
) -> SteadyResult:
    """Write ``groups`` one transaction each, pacing so rows/s stays near ``rate``.

    Stops when the groups run out, after ``duration`` seconds, or on Ctrl-C (the transaction in
    flight is rolled back; everything before it is committed).
    """
    result = SteadyResult()
    start = clock()
    last_report = start
    try:
        for group in groups:
            now = clock()
            if duration is not None and now - start >= duration:
                break
            # Ahead of schedule: wait until the rows already written are "due".
            due = start + result.rows / rate
            if due > now:
                sleep(due - now)
            result.rows += write_group(conn, spec, group)
            result.transactions += 1
            if on_progress is not None and clock() - last_report >= 5:
                last_report = clock()
                result.seconds = last_report - start
                on_progress(result)
    except KeyboardInterrupt:
        result.interrupted = True
    result.seconds = clock() - start
    return result


def drop_existing(conn: psycopg.Connection[Any], spec: Spec, group: Group, tables: Sequence[str]) -> int:
    """Remove from ``group`` the rows of ``tables`` whose primary key is already in the mirror.

    Base data (departments, staff) is shared by every generated day; a second run must not trip
    over the first run's rows. Returns how many rows were dropped.
    """
    dropped = 0
    for name in tables:
        rows = group.rows.get(name)
        if not rows:
            continue
        table = spec.table(name)
        pk = table.primary_key
        stmt = sql.SQL("SELECT {} FROM {}.{}").format(
            sql.SQL(", ").join(map(sql.Identifier, pk)), sql.Identifier("emr"), sql.Identifier(name)
        )
        try:
            existing = {tuple(r) for r in conn.execute(stmt).fetchall()}
        except psycopg.Error as exc:
            raise _friendly(exc) from None
        kept = [r for r in rows if tuple(r.get(k) for k in pk) not in existing]
        dropped += len(rows) - len(kept)
        group.rows[name] = kept
    return dropped
