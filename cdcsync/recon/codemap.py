"""Copy the mapping files into the reference tables the recon.* views join on.

``recon.code_map`` (local -> national per domain, passthrough domains expanded to the identity on
their national codes), ``recon.visit_class`` (national visit types classed by name),
``recon.notifiable_disease`` and ``recon.disease_icd10`` (category and ICD-10 prefixes).
Run by ``cdcsync reconcile`` and ``cdcsync nndrs import`` before they read the views; the lead may
also call it from ``cdcsync db init`` and after a mapping hot reload.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from cdcsync.mapping.domains import CodeTables


@dataclass(frozen=True)
class SyncResult:
    code_map_rows: int
    diseases: int
    version: str


def _visit_class(name: str) -> str:
    if "急诊" in name:
        return "emergency"
    if "门诊" in name:
        return "outpatient"
    if "住院" in name:
        return "inpatient"
    return "other"


def _category(raw: object) -> str:
    text = str(raw or "").strip()
    for c in ("甲", "乙", "丙"):
        if text.startswith(c):
            return f"{c}类"
    return "其他"


def code_map_rows(tables: CodeTables) -> list[tuple[str, str, str]]:
    rows: dict[tuple[str, str], str] = {}
    for domain_id, local in tables.local.items():
        national = tables.national.get(domain_id)
        if local.passthrough and national is not None:
            for code in national.codes:
                rows[(domain_id, code)] = code
        for local_code, national_code in local.map.items():
            rows[(domain_id, local_code)] = national_code
    return [(d, lc, nc) for (d, lc), nc in sorted(rows.items())]


def sync_reference(conn: psycopg.Connection, tables: CodeTables) -> SyncResult:
    """Replace the reference tables' content with ``tables`` in one transaction."""
    rows = code_map_rows(tables)
    with conn.transaction():
        conn.execute("LOCK TABLE recon.code_map, recon.visit_class, recon.notifiable_disease,"
                     " recon.disease_icd10 IN EXCLUSIVE MODE")
        conn.execute("DELETE FROM recon.code_map")
        with conn.cursor() as cur, cur.copy("COPY recon.code_map (domain, local_code, national_code) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        conn.execute("DELETE FROM recon.visit_class")
        visit = tables.national.get("visit_type")
        if visit is not None:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO recon.visit_class VALUES (%s, %s)",
                                [(c.code, _visit_class(c.name)) for c in visit])
        conn.execute("DELETE FROM recon.notifiable_disease")  # cascades to disease_icd10
        diseases = tables.national.get("notifiable_disease")
        count = 0
        if diseases is not None:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO recon.notifiable_disease VALUES (%s, %s, %s, %s)",
                    [(c.code, c.name, _category(c.attrs.get("category")), c.attrs.get("parent")) for c in diseases],
                )
                prefixes = {
                    (str(p).strip(), c.code)
                    for c in diseases for p in (c.attrs.get("icd10") or []) if str(p).strip()
                }
                cur.executemany("INSERT INTO recon.disease_icd10 VALUES (%s, %s)", sorted(prefixes))
            count = len(diseases)
    return SyncResult(len(rows), count, tables.version)
