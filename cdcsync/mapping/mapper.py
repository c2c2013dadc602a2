"""Local→national code mapping of whole rows, with everything precomputed per domain.

A :class:`Mapper` is built once from a :class:`CodeTables` (one hospital's mapping set): per
value domain one plain ``dict`` local→national that already folds in passthrough (a local code
that is itself a valid national code maps to itself; explicit entries win) and leaves out
entries whose national target does not exist. Mapping a value is one ``dict.get``.

An unmapped code is never passed through: it is a :data:`~cdcsync.spec.violations.UNMAPPED` (MAP001)
violation naming the domain, the field and the local value (local codes are not patient data);
a local entry pointing at a national code that is not in the domain is DOM001.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cdcsync.mapping.domains import CodeTables
from cdcsync.spec.model import DOMAINS, Table
from cdcsync.spec.violations import NOT_IN_DOMAIN, UNMAPPED, Violation

LOCAL_SUFFIX = "_local"
NATIONAL_SUFFIX = "_national"
_MAX_SHOWN = 64  # a local code longer than this is cut in messages (it failed LEN001 anyway)


def local_field(name: str) -> str:
    """Name of the event column that carries the hospital's local code of a coded field."""
    return name + LOCAL_SUFFIX


def mapped_columns(table: Table, name: str) -> tuple[str, str]:
    """(column of the national code, column of the local code) in the event row of a coded field.

    ``<field>`` national + ``<field>_local`` local; except for a coded field in the primary key
    (dept.dept_code), which identifies the record and keeps its local code in ``<field>`` with
    the national one in ``<field>_national``: a many-to-one mapping must not merge two records.
    """
    if name in table.primary_key:
        return name + NATIONAL_SUFFIX, name
    return name, name + LOCAL_SUFFIX


def unmapped_row(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """The mirror row behind an event row of ``table``: each coded field's local code back in
    ``<field>``, the columns mapping added removed (the inverse of :func:`mapped_columns`). A row
    that was never mapped comes back unchanged. Used where only the sent image is kept (a
    quarantined delete) and the row must go through the validation stage again."""
    out = dict(row)
    for f in table.coded_fields:
        if not f.domain:
            continue
        national_col, local_col = mapped_columns(table, f.name)
        if local_col == f.name:  # coded key field: <field> kept the local code
            out.pop(national_col, None)
        elif local_col in out:
            out[f.name] = out.pop(local_col)
    return out


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"


@dataclass(frozen=True)
class Mapper:
    """Per-domain lookup dicts of one mapping set, plus what is needed to explain a miss."""

    version: str
    hospital: str
    lookup: Mapping[str, dict[str, str]]  # domain -> {local: national}
    stale: Mapping[str, dict[str, str]]  # domain -> {local: national code not in the domain}
    has_local: frozenset[str]  # domains with a local table
    # domain -> {national: national}: the lookup of tables cdcsync writes (Table.national_codes)
    identity: Mapping[str, dict[str, str]] = field(default_factory=dict)
    _field_cache: dict[str, tuple[tuple[str, str, dict[str, str], str, str], ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def build(cls, tables: CodeTables) -> Mapper:
        lookup: dict[str, dict[str, str]] = {}
        for domain_id, domain in tables.national.items():
            local = tables.local.get(domain_id)
            table: dict[str, str] = {}
            if local is not None:
                if local.passthrough:
                    table.update((code, code) for code in domain.codes)
                # A target the new version retired maps to its successor (ValueDomain.replaced).
                for k, v in local.map.items():
                    target = domain.resolve(v)
                    if target is not None:
                        table[k] = target
            lookup[domain_id] = table
        stale: dict[str, dict[str, str]] = {}
        for issue in tables.issues:
            if issue.local_code:
                stale.setdefault(issue.domain, {})[issue.local_code] = issue.national_code
        return cls(
            version=tables.version,
            hospital=tables.hospital,
            lookup=lookup,
            stale=stale,
            has_local=frozenset(tables.local),
            identity={d: {c: c for c in dom.codes} for d, dom in tables.national.items()},
        )

    def table_for(self, domain: str, national: bool = False) -> dict[str, str]:
        """The local→national dict of ``domain`` (empty when the domain has no local table);
        ``national``: the identity of the national codes (a table cdcsync writes itself)."""
        return (self.identity if national else self.lookup).get(domain, {})

    def map(self, domain: str, local_code: str) -> str | None:
        return self.lookup.get(domain, {}).get(local_code)

    def miss(self, domain: str, field_name: str, comment: str, local_code: Any) -> Violation:
        """The violation for a local code that did not map (MAP001, or DOM001 for a stale entry)."""
        dname = DOMAINS.get(domain, domain)
        target = self.stale.get(domain, {}).get(local_code) if isinstance(local_code, str) else None
        if target is not None:
            return Violation(
                NOT_IN_DOMAIN, field_name,
                f"{comment}（{field_name}）的本地代码“{_shown(local_code)}”对照的国家代码“{_shown(target)}”"
                f"不在值域“{dname}”（{domain}）中，请修正本地对照表",
            )
        why = "" if domain in self.has_local else "；该值域尚无本地对照表"
        return Violation(
            UNMAPPED, field_name,
            f"{comment}（{field_name}）的本地代码“{_shown(local_code)}”在值域“{dname}”（{domain}）中"
            f"没有对照的国家代码{why}",
        )

    def map_row(self, table: Table, row: Mapping[str, Any], *, strict: bool = True
                ) -> tuple[dict[str, Any], list[Violation]]:
        """``row`` with each coded field's national code in ``<field>`` and the local one in
        ``<field>_local``. ``strict``: unmapped codes are violations (else left as None quietly,
        as for the before-image of a delete)."""
        coded = self._field_cache.get(table.name)
        if coded is None:
            coded = tuple((f.name, f.comment, self.table_for(f.domain, table.national_codes),
                           *mapped_columns(table, f.name))
                          for f in table.coded_fields if f.domain)
            self._field_cache[table.name] = coded
        out = dict(row)
        violations: list[Violation] = []
        for name, comment, lookup, national_col, local_col in coded:
            local = row.get(name)
            national = lookup.get(local) if isinstance(local, str) else None
            out[national_col] = national
            out[local_col] = local
            if national is None and strict and local is not None and local != "":
                violations.append(self.miss(self._domain_of(table, name), name, comment, local))
        return out, violations

    @staticmethod
    def _domain_of(table: Table, name: str) -> str:
        return table.field(name).domain or ""
