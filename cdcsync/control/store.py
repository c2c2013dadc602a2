"""The control plane's tables (sql/050_control.sql): packages, their state changes, and which
version of each kind is in force. Every write is an INSERT; nothing is updated in place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cdcsync.control.package import Package

Conn = psycopg.Connection[Any]


def record_package(conn: Conn, pkg: Package | None, request_sm3: bytes, source: str,
                   created: datetime | None = None) -> int:
    """Store a received request (``pkg`` None: it could not be parsed) and its 'received' event."""
    row = conn.execute(
        "INSERT INTO cdcsync.config_package (package_id, kind, version, org_code, created_at, signer_key_id,"
        " payload_sm3, payload, request_sm3, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (pkg and pkg.package_id, pkg and pkg.kind, pkg and pkg.version, pkg and pkg.org_code, created,
         pkg and pkg.signer_key_id, pkg and pkg.payload_sm3.hex(), pkg and pkg.payload, request_sm3.hex(), source),
    ).fetchone()
    assert row is not None
    ref = int(row[0])
    add_event(conn, ref, pkg.kind if pkg else None, "received")
    return ref


def add_event(conn: Conn, ref: int, kind: str | None, state: str, *, reason: str | None = None, message: str = "",
              detail: dict[str, Any] | None = None, actor: str = "platform") -> int:
    row = conn.execute(
        "INSERT INTO cdcsync.config_event (package_ref, kind, state, reason, message, detail, actor)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (ref, kind, state, reason, message, Jsonb(detail or {}), actor)).fetchone()
    assert row is not None
    return int(row[0])


def was_verified(conn: Conn, package_id: str) -> bool:
    """True when a package with this id passed verification before (a replay)."""
    row = conn.execute(
        "SELECT 1 FROM cdcsync.config_package p JOIN cdcsync.config_event e ON e.package_ref = p.id"
        " WHERE p.package_id = %s AND e.state = 'verified' LIMIT 1", (package_id,)).fetchone()
    return row is not None


def highest_applied_version(conn: Conn, kind: str) -> int:
    row = conn.execute(
        "SELECT max(p.version) FROM cdcsync.config_package p JOIN cdcsync.config_event e ON e.package_ref = p.id"
        " WHERE p.kind = %s AND e.state = 'applied'", (kind,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


@dataclass(frozen=True)
class InForce:
    package_ref: int | None  # None: the release's own (nothing pushed)
    generation: str


def applied_stack(conn: Conn, kind: str) -> list[InForce]:
    """The versions of ``kind`` applied and not rolled back, oldest first (the last is in force)."""
    stack: list[InForce] = []
    for ref, gen, via in conn.execute(
            "SELECT package_ref, generation, via FROM cdcsync.config_current WHERE kind = %s ORDER BY id", (kind,)):
        if via == "apply":
            stack.append(InForce(ref, gen))
        elif stack:
            stack.pop()
    return stack


def record_current(conn: Conn, kind: str, package_ref: int | None, generation: str, via: str, event_ref: int) -> None:
    conn.execute("INSERT INTO cdcsync.config_current (kind, package_ref, generation, via, event_ref)"
                 " VALUES (%s, %s, %s, %s, %s)", (kind, package_ref, generation, via, event_ref))


def package_row(conn: Conn, ref: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT id, package_id, kind, version, org_code, created_at, signer_key_id, received_at"
                           " FROM cdcsync.config_package WHERE id = %s", (ref,)).fetchone()


def find_package(conn: Conn, ident: str) -> dict[str, Any] | None:
    """A package by its local number or its package id (the newest verified one of that id)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        if ident.isdigit():
            return cur.execute("SELECT id, package_id, kind, version FROM cdcsync.config_package WHERE id = %s",
                               (int(ident),)).fetchone()
        return cur.execute(
            "SELECT p.id, p.package_id, p.kind, p.version FROM cdcsync.config_package p"
            " WHERE p.package_id = %s AND EXISTS (SELECT 1 FROM cdcsync.config_event e WHERE e.package_ref = p.id"
            " AND e.state = 'verified') ORDER BY p.id DESC LIMIT 1", (ident,)).fetchone()


def history(conn: Conn, limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:
    """Packages, newest first, each with its events in order."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        pkgs = cur.execute(
            "SELECT id, package_id, kind, version, org_code, created_at, signer_key_id, received_at, source"
            " FROM cdcsync.config_package WHERE %s::text IS NULL OR kind = %s ORDER BY id DESC LIMIT %s",
            (kind, kind, limit)).fetchall()
        refs = [p["id"] for p in pkgs]
        events = cur.execute(
            "SELECT package_ref, state, reason, message, detail, actor, at FROM cdcsync.config_event"
            " WHERE package_ref = ANY(%s) ORDER BY id", (refs,)).fetchall()
    by_ref: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        by_ref.setdefault(e.pop("package_ref"), []).append(e)
    for p in pkgs:
        p["events"] = by_ref.get(p["id"], [])
    return pkgs


def in_force(conn: Conn) -> dict[str, dict[str, Any]]:
    """Per kind with something pushed in force: its record, package id, version and since when
    (for ``cdcsync status``); {} before migration 050."""
    row = conn.execute("SELECT to_regclass('cdcsync.config_current') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return {}
    out: dict[str, dict[str, Any]] = {}
    kinds = [k for (k,) in conn.execute("SELECT DISTINCT kind FROM cdcsync.config_current ORDER BY kind")]
    for kind in kinds:
        stack = applied_stack(conn, kind)
        if not stack or stack[-1].package_ref is None:
            continue
        pkg = package_row(conn, stack[-1].package_ref)
        since = conn.execute("SELECT max(at) FROM cdcsync.config_current WHERE kind = %s", (kind,)).fetchone()
        if pkg is not None:
            out[kind] = {"record": pkg["id"], "package_id": pkg["package_id"], "version": pkg["version"],
                         "since": since[0].isoformat() if since and since[0] else None}
    return out
