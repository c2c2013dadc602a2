"""``cdcsync mappings check``: is every local code in the data mapped? (the go-live check)

Three kinds of gaps, each a list in the report:

* ``unmapped``: local codes present in a coded column of a mirror table with no mapping to the
  field's national domain, with row counts (one ``GROUP BY`` per coded column, in the database);
* ``domains_without_local_table``: national value domains the hospital has no local table for;
* ``invalid_mappings``: local entries whose national code is not (or no longer) in the domain,
  and local tables for a domain that does not exist.

Local codes are not patient data (no ``pii`` field is coded), so they are printed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from cdcsync.mapping.domains import CodeTables
from cdcsync.mapping.mapper import Mapper
from cdcsync.spec import Spec
from cdcsync.spec.model import DOMAINS


@dataclass(frozen=True)
class Unmapped:
    domain: str
    table: str
    field: str
    local_code: str
    rows: int


@dataclass(frozen=True)
class MissingDomain:
    domain: str
    name: str
    used_by: list[str]


@dataclass(frozen=True)
class InvalidMapping:
    file: str
    domain: str
    local_code: str
    national_code: str
    message: str


@dataclass
class CoverageReport:
    hospital: str
    mapping_version: str
    tables_checked: list[str] = field(default_factory=list)
    tables_missing: list[str] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)
    domains_without_local_table: list[MissingDomain] = field(default_factory=list)
    invalid_mappings: list[InvalidMapping] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unmapped or self.domains_without_local_table or self.invalid_mappings)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def _used_by(spec: Spec) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in spec.tables:
        for f in t.coded_fields:
            if f.domain:
                out.setdefault(f.domain, []).append(f"{t.name}.{f.name}")
    return out


def check_coverage(tables: CodeTables, spec: Spec, conn: psycopg.Connection[Any] | None = None,
                   schema: str = "emr") -> CoverageReport:
    """The report; ``conn`` None skips the data part (only the code tables are checked)."""
    mapper = Mapper.build(tables)
    report = CoverageReport(tables.hospital, tables.version)
    used = _used_by(spec)
    domain_ids = list(dict.fromkeys([*DOMAINS, *tables.national]))
    for d in domain_ids:
        if d not in tables.local:
            report.domains_without_local_table.append(
                MissingDomain(d, DOMAINS.get(d) or tables.national[d].name, used.get(d, [])))
    for issue in tables.issues:
        report.invalid_mappings.append(
            InvalidMapping(issue.file, issue.domain, issue.local_code, issue.national_code, issue.message))
    if conn is None:
        return report
    for t in spec.tables:
        with conn.transaction():
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{t.name}",)).fetchone()
        if not exists or not exists[0]:
            report.tables_missing.append(t.name)
            continue
        report.tables_checked.append(t.name)
        for f in t.coded_fields:
            if not f.domain:
                continue
            lookup = mapper.table_for(f.domain, t.national_codes)
            query = sql.SQL("SELECT {f}::text, count(*) FROM {s}.{t} WHERE {f} IS NOT NULL AND {f}::text <> ''"
                            " GROUP BY 1 ORDER BY 2 DESC, 1").format(
                f=sql.Identifier(f.name), s=sql.Identifier(schema), t=sql.Identifier(t.name))
            with conn.transaction():
                rows = conn.execute(query).fetchall()
            for code, n in rows:
                if code not in lookup:
                    report.unmapped.append(Unmapped(f.domain, t.name, f.name, code, int(n)))
    return report


def format_text(report: CoverageReport) -> str:
    """The report for hospital staff (Chinese)."""
    lines = [f"代码映射检查：医院 {report.hospital}，映射版本 {report.mapping_version}"]
    if report.tables_checked:
        lines.append(f"已检查镜像表 {len(report.tables_checked)} 张")
    if report.tables_missing:
        lines.append(f"镜像库中不存在的表（未检查数据）：{', '.join(report.tables_missing)}")
    if report.unmapped:
        lines.append(f"\n数据中存在、但没有对照的本地代码（{len(report.unmapped)} 个）：")
        for u in report.unmapped:
            lines.append(f"  值域 {u.domain}（{DOMAINS.get(u.domain, u.domain)}）  {u.table}.{u.field}"
                         f"  本地代码 \"{u.local_code}\"  {u.rows} 行")
    if report.domains_without_local_table:
        lines.append(f"\n没有本地对照表的值域（{len(report.domains_without_local_table)} 个）：")
        for m in report.domains_without_local_table:
            use = f"  用于 {', '.join(m.used_by)}" if m.used_by else ""
            lines.append(f"  {m.domain}（{m.name}）{use}")
    if report.invalid_mappings:
        lines.append(f"\n对照到无效国家代码的条目（{len(report.invalid_mappings)} 个）：")
        for i in report.invalid_mappings:
            lines.append(f"  {i.message}")
    verdict = "全部值域代码均已对照，无缺漏。" if report.ok else "存在缺漏，请补全本地对照表后重新检查。"
    lines.append("\n结论：" + verdict)
    return "\n".join(lines)
