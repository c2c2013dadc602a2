"""The emr.* schema that the migrations create agrees with the dataset spec, field by field."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from cdcsync.spec import Field, load_spec

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")

# information_schema.columns.data_type for each spec type
DATA_TYPES = {
    "varchar": "character varying",
    "text": "text",
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "numeric": "numeric",
    "boolean": "boolean",
    "date": "date",
    "time": "time without time zone",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "jsonb": "jsonb",
}


def _read_catalog(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        columns = conn.execute(
            """
            SELECT c.table_name, c.column_name, c.ordinal_position, c.data_type,
                   c.character_maximum_length, c.numeric_precision, c.numeric_scale, c.is_nullable,
                   col_description(format('emr.%I', c.table_name)::regclass, c.ordinal_position)
            FROM information_schema.columns c
            WHERE c.table_schema = 'emr'
            ORDER BY c.table_name, c.ordinal_position
            """
        ).fetchall()
        tables = conn.execute(
            """
            SELECT cl.relname, cl.relreplident, obj_description(cl.oid, 'pg_class')
            FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace
            WHERE n.nspname = 'emr' AND cl.relkind IN ('r', 'p')
            """
        ).fetchall()
        pkeys = conn.execute(
            """
            SELECT cl.relname, array_agg(a.attname ORDER BY k.ord)
            FROM pg_constraint con
            JOIN pg_class cl ON cl.oid = con.conrelid
            JOIN pg_namespace n ON n.oid = cl.relnamespace
            CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum = k.attnum
            WHERE n.nspname = 'emr' AND con.contype = 'p'
            GROUP BY cl.relname
            """
        ).fetchall()
        indexed = conn.execute(
            """
            SELECT cl.relname, a.attname
            FROM pg_index i
            JOIN pg_class cl ON cl.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = cl.relnamespace
            JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum = i.indkey[0]
            WHERE n.nspname = 'emr'
            """
        ).fetchall()
    return {
        "columns": {(r[0], r[1]): r for r in columns},
        "column_order": [(r[0], r[1]) for r in columns],
        "tables": {r[0]: (r[1], r[2]) for r in tables},
        "pkeys": {r[0]: tuple(r[1]) for r in pkeys},
        "indexed": {(r[0], r[1]) for r in indexed},
    }


def _expected_column(table: str, f: Field) -> tuple[Any, ...]:
    data_type = DATA_TYPES[f.type]
    length = f.length if f.type == "varchar" else None
    precision = scale = None
    if f.type == "numeric" and f.precision is not None:
        precision, scale = f.precision, f.scale or 0
    return (table, f.name, data_type, length, precision, scale, "NO" if f.required else "YES")


def test_emr_schema_matches_spec(migrated_db: str) -> None:
    spec = load_spec()
    cat = _read_catalog(migrated_db)

    # table set
    assert set(cat["tables"]) == set(spec.table_names)
    assert {t for t, _ in cat["column_order"]} == set(spec.table_names)

    for table in spec.tables:
        name = table.name
        # column names, in spec order
        assert [c for t, c in cat["column_order"] if t == name] == list(table.field_names), name
        for f in table.fields:
            row = cat["columns"][(name, f.name)]
            # integer types report their own precision in information_schema; compare only numeric's
            precision, scale = (row[5], row[6]) if f.type == "numeric" else (None, None)
            actual = (row[0], row[1], row[3], row[4], precision, scale, row[7])
            assert actual == _expected_column(name, f), f"{name}.{f.name}"
            comment = row[8]
            assert comment and CJK.search(comment), f"{name}.{f.name} has no Chinese comment"
            if f.domain_name:
                assert f"值域：{f.domain_name}" in comment, f"{name}.{f.name}"

        replident, table_comment = cat["tables"][name]
        assert replident == "f", f"{name} is not REPLICA IDENTITY FULL"
        assert table_comment and CJK.search(table_comment) and table.comment in table_comment, name

        assert cat["pkeys"][name] == table.primary_key, name

        assert (name, table.business_time) in cat["indexed"] or table.primary_key[1] == table.business_time
        if table.has_field("patient_id"):
            assert (name, "patient_id") in cat["indexed"] or table.primary_key[1] == "patient_id"


def test_required_columns_reject_null(migrated_db: str) -> None:
    """NOT NULL really holds: inserting a patient without a name fails."""
    with psycopg.connect(migrated_db) as conn, pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute(
            "INSERT INTO emr.patient (org_code, patient_id, sex_code, birth_date, modify_flag,"
            " collect_time, update_time) VALUES ('1', 'p1', 'M', '2000-01-01', '1', now(), now())"
        )
