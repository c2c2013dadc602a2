"""Events from the rows already in the mirror, for running the rules outside the stream.

``mirror_events`` reads the rows of the tables the rules look at, in the order they were written
(inserting transaction id, then the dataset spec's table order, then the row's position), and
passes each through the same validation + mapping stage as the stream, so that a rule sees exactly
what it would have seen live: national codes, invalid rows left out (the stream quarantines
them). Used by ``cdcsync rules evaluate --run`` and the tests; the stream consumer does not need it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cdcsync.event import Change, Event
from cdcsync.surveil.rules import KEYS
from cdcsync.validate.reload import RulesHolder
from cdcsync.validate.stage import ValidationStage

RULE_TABLES: tuple[str, ...] = ("diagnosis", "lab_result", "drug_order", "death_record", "report_card")


def mirror_events(conn: psycopg.Connection[Any], holder: RulesHolder, org_code: str, db: str,
                  tables: Sequence[str] = RULE_TABLES, rejected: list[str] | None = None) -> Iterator[Event]:
    """Events (op ``c``) for the rows of ``tables``, in write order. Rows the stage rejects are
    skipped; their ``table:key`` goes to ``rejected`` when given (no values)."""
    order = {t: i for i, t in enumerate(holder.spec.table_names)}
    rows: list[tuple[int, int, int, str, dict[str, Any]]] = []
    with conn.cursor(row_factory=dict_row) as cur:
        for table in tables:
            cur.execute(sql.SQL("SELECT xmin::text::bigint AS _xid, ctid::text AS _ctid, * FROM emr.{}")
                        .format(sql.Identifier(table)))
            for n, row in enumerate(cur.fetchall()):
                xid = int(row.pop("_xid"))
                row.pop("_ctid")
                rows.append((xid, order.get(table, 99), n, table, row))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    stage = ValidationStage(holder, org_code, db)
    now = dt.datetime.now(dt.UTC)
    ordinal = 0
    last_xid = -1
    for xid, _, _, table, row in rows:
        if xid != last_xid:
            last_xid, ordinal = xid, 0
        change = Change("c", "emr", table, None, row, xid, xid, now, ordinal)
        ordinal += 1
        out = stage(change)
        if isinstance(out, Event):
            yield out
        elif rejected is not None:
            rejected.append(f"{table}:{row.get(KEYS.get(table, ''))}")
