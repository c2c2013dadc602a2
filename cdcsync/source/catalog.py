"""What the source database's catalog tells the engine about its tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

PkLookup = Callable[[str, str], tuple[str, ...]]  # (schema, table) -> primary key columns


class PrimaryKeys:
    """Primary key columns per table (catalog lookup, cached): REPLICA IDENTITY FULL flags every
    column as key in pgoutput, so the real key comes from pg_index."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._cache: dict[tuple[str, str], tuple[str, ...]] = {}

    def __call__(self, schema: str, table: str) -> tuple[str, ...]:
        key = (schema, table)
        if key not in self._cache:
            with self.conn.transaction():
                rows = self.conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                    " AND a.attnum = ANY(i.indkey) WHERE i.indisprimary AND i.indrelid = %s::regclass"
                    " ORDER BY array_position(i.indkey::int2[], a.attnum)",
                    (f'"{schema}"."{table}"',)).fetchall()
            self._cache[key] = tuple(r[0] for r in rows)
        return self._cache[key]
