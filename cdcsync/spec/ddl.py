"""PostgreSQL DDL for the emr.* mirror tables, generated from the dataset spec.

Regenerate the migration with ``python -m cdcsync.spec.ddl > sql/002_emr_mirror.sql``;
tests/test_spec.py fails while the committed file and the spec disagree.
"""

from __future__ import annotations

import sys

from cdcsync.spec.model import TIMELINESS, Field, Spec, Table, load_spec

SCHEMA = "emr"
REGENERATE = "python -m cdcsync.spec.ddl > sql/002_emr_mirror.sql"


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def table_comment(table: Table) -> str:
    return f"{table.comment}（上报时效：{TIMELINESS[table.timeliness]}）"


def column_comment(f: Field) -> str:
    """Chinese column comment: the description plus value domain and unit, e.g. 性别代码（值域：性别）."""
    extras = []
    if f.domain_name:
        extras.append(f"值域：{f.domain_name}")
    if f.unit:
        extras.append(f"单位：{f.unit}")
    return f.comment + (f"（{'；'.join(extras)}）" if extras else "")


def table_ddl(table: Table) -> str:
    qname = f"{SCHEMA}.{table.name}"
    width = max(len(f.name) for f in table.fields)
    cols = [
        f"    {f.name.ljust(width)} {f.sql_type}{' NOT NULL' if f.required else ''}" for f in table.fields
    ]
    cols.append(f"    CONSTRAINT {table.name}_pkey PRIMARY KEY ({', '.join(table.primary_key)})")
    lines = [f"CREATE TABLE {qname} (", ",\n".join(cols), ");"]
    lines.append(f"ALTER TABLE {qname} REPLICA IDENTITY FULL;")
    lines.append(f"COMMENT ON TABLE {qname} IS {quote_literal(table_comment(table))};")
    for f in table.fields:
        lines.append(f"COMMENT ON COLUMN {qname}.{f.name} IS {quote_literal(column_comment(f))};")
    for col in index_columns(table):
        lines.append(f"CREATE INDEX {table.name}_{col}_idx ON {qname} ({col});")
    return "\n".join(lines) + "\n"


def index_columns(table: Table) -> list[str]:
    """Secondary indexes: the business time (timeliness, reconciliation) and patient_id (lookups),
    unless the primary key already leads with them."""
    cols: list[str] = []
    leading = table.primary_key[1] if len(table.primary_key) > 1 else table.primary_key[0]
    for col in (table.business_time, table.business_date, "patient_id"):
        if col and table.has_field(col) and col != leading and col not in cols:
            cols.append(col)
    return cols


def generate_ddl(spec: Spec | None = None) -> str:
    spec = spec or load_spec()
    header = [
        f"-- {spec.name}（版本 {spec.version}）：标化 EMR 镜像库 schema {SCHEMA} 的表结构。",
        "-- 本文件由数据集规范 cdcsync/spec/dataset.yaml 自动生成，请勿手工修改；",
        f"-- 修改规范后重新生成：{REGENERATE}",
        "-- 每张表均设主键、REPLICA IDENTITY FULL（逻辑复制携带整行）及中文注释。",
        "-- 逻辑复制发布（publication）由 cdcsync db init 创建，不在本文件中。",
        "-- Developer note: generated file; tests/test_spec.py compares it with the spec.",
        "",
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};",
        f"COMMENT ON SCHEMA {SCHEMA} IS "
        f"{quote_literal('标化EMR镜像库：医院HIS/EMR厂商按数据集规范写入的镜像表')};",
        "",
    ]
    return "\n".join(header) + "\n" + "\n".join(table_ddl(t) for t in spec.tables)


def main() -> None:
    sys.stdout.buffer.write(generate_ddl().encode("utf-8"))


if __name__ == "__main__":
    main()
