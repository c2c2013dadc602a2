"""Per-table row counts and a sample of row hashes: taken from the source inside the dump's own
snapshot, and again from a test restore, so the comparison is of the same instant."""

from __future__ import annotations

from typing import Any

import psycopg

from cdcsync.ops.backup.pgtools import HASH_SESSION

_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
 ORDER BY 1, 2
"""


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_figures(conn: psycopg.Connection[Any], sample: int) -> dict[str, dict[str, Any]]:
    """``{"schema.table": {"rows": n, "sample": [md5 of the row text, …]}}``, in the caller's
    transaction. The sample is the ``sample`` smallest row hashes: the same rows on both sides
    without knowing the keys, spread over the table by the hash."""
    for stmt in HASH_SESSION:
        conn.execute(stmt)
    out: dict[str, dict[str, Any]] = {}
    for schema, table in conn.execute(_TABLES).fetchall():
        name = f"{_qi(schema)}.{_qi(table)}"
        (rows,) = conn.execute(f"SELECT count(*) FROM ONLY {name}").fetchone() or (0,)
        hashes: list[str] = []
        if sample and rows:
            hashes = [h for (h,) in conn.execute(
                f"SELECT md5(t::text) AS h FROM ONLY {name} t ORDER BY h LIMIT %s", (sample,)).fetchall()]
        out[f"{schema}.{table}"] = {"rows": int(rows), "sample": hashes}
    return out


def compare_figures(source: dict[str, dict[str, Any]], restored: dict[str, dict[str, Any]]) -> list[str]:
    """Chinese lines, one per difference (empty: equal)."""
    problems = []
    for name in sorted(set(source) | set(restored)):
        a, b = source.get(name), restored.get(name)
        if a is None:
            problems.append(f"恢复后多出表 {name}")
        elif b is None:
            problems.append(f"恢复后缺少表 {name}")
        elif a["rows"] != b["rows"]:
            problems.append(f"表 {name} 行数不一致：源库 {a['rows']}，恢复后 {b['rows']}")
        elif a["sample"] != b["sample"]:
            n = sum(1 for x, y in zip(a["sample"], b["sample"], strict=False) if x != y)
            problems.append(f"表 {name} 抽样行的内容不一致（{max(n, 1)} 行不同）")
    return problems
