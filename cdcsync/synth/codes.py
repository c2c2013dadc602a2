"""Local codes of one hospital, found through the national codes they map to.

The generator thinks in national codes (ICD-10, LOINC, GB/T department codes, ...) and writes the
hospital's local code that maps to each, so valid rows map cleanly; :meth:`Codes.unknown` finds a
value that maps to nothing, for the deliberately invalid rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cdcsync.mapping.domains import CodeTables, load_code_tables


class SynthError(ValueError):
    """The code tables or the catalogue lack something the generator needs (one line, names what)."""


class Codes:
    """Local codes of one hospital, found through the national code they map to."""

    def __init__(self, tables: CodeTables) -> None:
        self.tables = tables
        self._by_national: dict[str, dict[str, list[str]]] = {}
        for domain, table in tables.local.items():
            rev: dict[str, list[str]] = {}
            for local, national in table.map.items():
                rev.setdefault(national, []).append(local)
            self._by_national[domain] = rev

    def _rev(self, domain: str) -> dict[str, list[str]]:
        try:
            return self._by_national[domain]
        except KeyError:
            raise SynthError(f"医院 {self.tables.hospital!r} 缺少值域 {domain} 的本地代码表") from None

    def get(self, domain: str, *nationals: str) -> str | None:
        """First local code mapping to one of ``nationals`` (in order), else None."""
        rev = self._rev(domain)
        for code in nationals:
            hit = rev.get(code)
            if hit:
                return hit[0]
        return None

    def need(self, domain: str, *nationals: str) -> str:
        hit = self.get(domain, *nationals)
        if hit is None:
            raise SynthError(f"值域 {domain} 的本地代码表中没有映射到 {'/'.join(nationals)} 的代码")
        return hit

    def all(self, domain: str, *nationals: str) -> list[str]:
        rev = self._rev(domain)
        return [loc for code in nationals for loc in rev.get(code, [])]

    def with_prefix(self, domain: str, prefixes: Sequence[str]) -> list[tuple[str, str]]:
        """(local, national) pairs whose national code starts with the first prefix that has any."""
        rev = self._rev(domain)
        for prefix in prefixes:
            hits = [(loc, nat) for nat in sorted(rev) if nat.startswith(prefix) for loc in rev[nat]]
            if hits:
                return hits
        return []

    def national(self, domain: str, local: str) -> str:
        return self.tables.local[domain].map[local]

    def name(self, domain: str, local: str) -> str:
        dom = self.tables.national.get(domain)
        nat = self.national(domain, local)
        return (dom.name_of(nat) if dom else None) or nat

    def unknown(self, domain: str, candidates: Sequence[str]) -> str:
        """A value that is neither a local code nor (for passthrough tables) a national one."""
        table = self.tables.local[domain]
        dom = self.tables.national.get(domain)
        for cand in candidates:
            if cand not in table.map and not (table.passthrough and dom is not None and cand in dom):
                return cand
        raise SynthError(f"值域 {domain}: 找不到未映射的代码")


def load_codes(mappings_dir: Any = None, hospital: str = "example") -> Codes:
    """The code tables of ``hospital`` (mappings/local/<hospital>), read leniently: gaps are skipped."""
    return Codes(load_code_tables(mappings_dir, hospital, strict=False))
