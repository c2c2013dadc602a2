"""``cdcsync validate``: check rows already in the mirror database (before go-live).

Reads each table through a server-side cursor (bounded memory), runs the same compiled checks
as the stream, and summarizes per table and per rule with up to a few example primary keys.
Never prints row values: only rule ids, field names, counts and keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cdcsync.spec.model import Spec
from cdcsync.validate.compiler import Validators, beijing_now

EXAMPLES = 3
FETCH = 2000


@dataclass
class RuleCount:
    rule_id: str
    field: str | None
    message: str  # the first occurrence's message (messages carry no patient values)
    rows: int = 0
    examples: list[dict[str, Any]] = dc_field(default_factory=list)


@dataclass
class TableSummary:
    table: str
    rows: int = 0
    failed: int = 0
    rules: dict[tuple[str, str | None], RuleCount] = dc_field(default_factory=dict)
    missing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table, "rows": self.rows, "failed": self.failed, "missing": self.missing,
            "rules": [{"rule_id": r.rule_id, "field": r.field, "message": r.message, "rows": r.rows,
                       "examples": r.examples} for r in self.rules.values()],
        }


def _pk_json(value: Any) -> Any:
    return value if isinstance(value, str | int) or value is None else str(value)


def validate_table(conn: psycopg.Connection[Any], rules: Validators, table: str, limit: int | None = None,
                   schema: str = "emr", progress: Callable[[int], None] | None = None) -> TableSummary:
    compiled = rules.table(table)
    summary = TableSummary(table)
    with conn.transaction():
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{table}",)).fetchone()
    if not row or not row[0]:
        summary.missing = True
        return summary
    pk = compiled.table.primary_key
    query = sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    if limit is not None:
        query = query + sql.SQL(" LIMIT {}").format(sql.Literal(limit))
    now = beijing_now()
    check = compiled.check
    with conn.transaction(), conn.cursor(name=f"cdcsync_validate_{table}", row_factory=dict_row) as cur:
        cur.itersize = FETCH
        cur.execute(query)
        pending = 0
        for rec in cur:
            summary.rows += 1
            pending += 1
            _, violations = check(rec, now)
            if violations:
                summary.failed += 1
                key = {c: _pk_json(rec.get(c)) for c in pk}
                seen: set[tuple[str, str | None]] = set()
                for v in violations:
                    k = (v.rule_id, v.field)
                    if k in seen:
                        continue
                    seen.add(k)
                    rc = summary.rules.get(k)
                    if rc is None:
                        rc = summary.rules[k] = RuleCount(v.rule_id, v.field, v.message)
                    rc.rows += 1
                    if len(rc.examples) < EXAMPLES:
                        rc.examples.append(key)
            if progress is not None and pending >= 500:
                progress(pending)
                pending = 0
        if progress is not None and pending:
            progress(pending)
    return summary


def estimate_rows(conn: psycopg.Connection[Any], tables: Iterable[str], schema: str = "emr") -> int:
    """Planner's row estimate (cheap; for the progress bar only)."""
    total = 0
    with conn.transaction():
        for t in tables:
            row = conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                               (f"{schema}.{t}",)).fetchone()
            total += int(row[0]) if row and row[0] is not None else 0
    return total


def format_text(summaries: list[TableSummary], spec: Spec) -> str:
    lines: list[str] = []
    total = sum(s.rows for s in summaries)
    failed = sum(s.failed for s in summaries)
    for s in summaries:
        name = f"{s.table}（{spec.table(s.table).comment}）" if spec.has_table(s.table) else s.table
        if s.missing:
            lines.append(f"{name}：镜像库中不存在此表")
            continue
        lines.append(f"{name}：检查 {s.rows} 行，不合格 {s.failed} 行")
        for r in sorted(s.rules.values(), key=lambda r: (-r.rows, r.rule_id)):
            keys = "; ".join(",".join(f"{k}={v}" for k, v in ex.items()) for ex in r.examples)
            lines.append(f"  {r.rule_id:<7} {r.field or '-':<28} {r.rows:>7} 行  {r.message}")
            lines.append(f"          示例主键：{keys}")
    lines.append(f"合计：检查 {total} 行，不合格 {failed} 行")
    return "\n".join(lines)
