"""The reference platform's view of its hospitals (docs/upstream-protocol.md section 7):
heartbeats received (``POST /api/v1/edr/heartbeats``, sealed and signed like batches), each
hospital's online state, and the history of the faults they reported.

* ``GET /api/v1/sim/hospitals``: per hospital: online, offline since, last heartbeat, state,
  versions, streams, open faults and the last fault — what a province's monitoring screen needs.
* ``GET /api/v1/sim/hospitals/{org_code}/faults``: every fault the hospital reported, newest first,
  with its resolution time once reported resolved.

A hospital is offline from the moment its last heartbeat said ``stopping`` (a clean stop), or
when ``missed`` announced intervals (default 3, at least 2 s) passed without one.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from cdcsync.crypto import CryptoError
from cdcsync.crypto.envelope import H_BATCH, H_ORG, error_body, open_sealed, sign_reply

log = logging.getLogger("cdcsync.upstream_sim")

HEARTBEATS_PATH = "/api/v1/edr/heartbeats"
HOSPITALS_PATH = "/api/v1/sim/hospitals"
MIN_OFFLINE_S = 2.0
KEEP_HEARTBEATS = 2000  # per hospital

SCHEMA = """
CREATE TABLE IF NOT EXISTS hospitals (
    org_code          TEXT PRIMARY KEY,
    hospital          TEXT NOT NULL,
    first_seen_at     TEXT NOT NULL,
    last_heartbeat_at TEXT NOT NULL,
    interval_s        REAL NOT NULL,
    state             TEXT NOT NULL,
    run_id            TEXT NOT NULL,
    last_payload      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS heartbeats (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    org_code    TEXT NOT NULL,
    received_at TEXT NOT NULL,
    state       TEXT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS heartbeats_org_idx ON heartbeats (org_code, seq);
CREATE TABLE IF NOT EXISTS faults (
    fault_id          TEXT NOT NULL,
    org_code          TEXT NOT NULL,
    code              TEXT NOT NULL,
    severity          TEXT NOT NULL,
    subject           TEXT NOT NULL,
    message           TEXT NOT NULL,
    resolution        TEXT NOT NULL,
    opened_at         TEXT NOT NULL,
    resolved_at       TEXT,
    first_reported_at TEXT NOT NULL,
    last_reported_at  TEXT NOT NULL,
    PRIMARY KEY (org_code, fault_id)
);
"""


class HeartbeatError(ValueError):
    """The heartbeat document is not what section 7.2 describes."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _s(value: Any, limit: int = 500) -> str:
    return str(value if value is not None else "")[:limit]


class HospitalBook:
    """SQLite (a file beside received.sqlite, or in memory)."""

    def __init__(self, path: Path | None, missed: float = 3.0) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self.missed = missed

    def record(self, org_code: str, doc: Mapping[str, Any], now: dt.datetime | None = None) -> None:
        if doc.get("kind") != "heartbeat" or doc.get("version") != 1:
            raise HeartbeatError("payload: expected a heartbeat document of version 1")
        if doc.get("org_code") != org_code:
            raise HeartbeatError("payload.org_code differs from the X-Org-Code header")
        interval = doc.get("interval_s")
        if not isinstance(interval, int | float) or interval <= 0:
            raise HeartbeatError("payload.interval_s: expected a positive number")
        faults = doc.get("faults") or []
        if not isinstance(faults, list):
            raise HeartbeatError("payload.faults: expected a list")
        at = (now or _now()).isoformat(timespec="milliseconds")
        state = _s(doc.get("state"), 20)
        payload = orjson.dumps(doc).decode()
        run_id = _s((doc.get("run") or {}).get("run_id"), 64)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO hospitals (org_code, hospital, first_seen_at, last_heartbeat_at, interval_s, state,"
                    " run_id, last_payload) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (org_code) DO UPDATE SET"
                    " hospital = excluded.hospital, last_heartbeat_at = excluded.last_heartbeat_at,"
                    " interval_s = excluded.interval_s, state = excluded.state, run_id = excluded.run_id,"
                    " last_payload = excluded.last_payload",
                    (org_code, _s(doc.get("hospital"), 200), at, at, float(interval), state, run_id, payload))
                db.execute("INSERT INTO heartbeats (org_code, received_at, state, payload) VALUES (?,?,?,?)",
                           (org_code, at, state, payload))
                db.execute("DELETE FROM heartbeats WHERE org_code = ? AND seq <= (SELECT max(seq) FROM heartbeats"
                           " WHERE org_code = ?) - ?", (org_code, org_code, KEEP_HEARTBEATS))
                for i, f in enumerate(faults):
                    if not isinstance(f, dict) or not isinstance(f.get("fault_id"), str):
                        raise HeartbeatError(f"payload.faults[{i}]: expected an object with a fault_id")
                    db.execute(
                        "INSERT INTO faults (fault_id, org_code, code, severity, subject, message, resolution,"
                        " opened_at, resolved_at, first_reported_at, last_reported_at)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (org_code, fault_id) DO UPDATE SET"
                        " severity = excluded.severity, message = excluded.message,"
                        " resolved_at = coalesce(excluded.resolved_at, faults.resolved_at),"
                        " last_reported_at = excluded.last_reported_at",
                        (f["fault_id"][:100], org_code, _s(f.get("code"), 40), _s(f.get("severity"), 10),
                         _s(f.get("subject"), 300), _s(f.get("message")), _s(f.get("resolution")),
                         _s(f.get("opened_at"), 40), f.get("resolved_at") and _s(f.get("resolved_at"), 40), at, at))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def offline_after(self, interval_s: float) -> float:
        return max(self.missed * interval_s, MIN_OFFLINE_S)

    def hospitals(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        now = now or _now()
        with self._lock:
            rows = self._db.execute("SELECT org_code, hospital, first_seen_at, last_heartbeat_at, interval_s, state,"
                                    " run_id, last_payload FROM hospitals ORDER BY org_code").fetchall()
            out = []
            for org, name, first, last, interval, state, run_id, payload in rows:
                last_at = dt.datetime.fromisoformat(last)
                silent = (now - last_at).total_seconds() > self.offline_after(interval)
                online = state != "stopping" and not silent
                doc = orjson.loads(payload)
                open_faults = self._faults(org, open_only=True)
                last_fault = self._faults(org, limit=1)
                out.append({
                    "org_code": org, "hospital": name, "online": online,
                    "offline_since": None if online else last,
                    "offline_reason": None if online else ("stopped" if state == "stopping" else "no_heartbeat"),
                    "last_heartbeat_at": last, "first_seen_at": first, "interval_s": interval, "state": state,
                    "run_id": run_id, "software": doc.get("software"), "streams": doc.get("streams"),
                    "evaluation": doc.get("evaluation"), "open_faults": open_faults,
                    "last_fault": last_fault[0] if last_fault else None,
                })
            return out

    def faults(self, org_code: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._faults(org_code)

    def _faults(self, org: str, *, open_only: bool = False, limit: int = 1000) -> list[dict[str, Any]]:
        cols = ("fault_id", "code", "severity", "subject", "message", "resolution", "opened_at", "resolved_at",
                "first_reported_at", "last_reported_at")
        where = " AND resolved_at IS NULL" if open_only else ""
        rows = self._db.execute(f"SELECT {', '.join(cols)} FROM faults WHERE org_code = ?{where}"
                                " ORDER BY opened_at DESC LIMIT ?", (org, limit)).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _reply(state: Any, body: bytes, headers: Mapping[str, str], status: int, out: bytes) -> Response:
    """A reply signed for the request (when its header names a usable org and message id)."""
    low = {k.lower(): v for k, v in headers.items()}
    h: dict[str, str] = {}
    org, mid = low.get(H_ORG.lower(), ""), low.get(H_BATCH.lower(), "")
    if org and mid:
        try:
            from cdcsync.crypto.sm3 import sm3

            h = sign_reply(out, platform_key=state.platform_key, org_code=org, batch_id=mid, request_sm3=sm3(body))
        except CryptoError:
            h = {}
    return Response(out, status_code=status, media_type="application/json", headers=h)


def process_heartbeat(state: Any, book: HospitalBook, body: bytes, headers: Mapping[str, str]) -> Response:
    """Verify, decrypt, record; the signed reply carries what the platform announces."""
    try:
        senders = state.trusted if state.certs is None else state.certs.senders(headers, state.trusted)
        opened = open_sealed(body, headers, recipient_key=state.platform_key, sender_keys=senders,
                             window_s=state.window_s, replay_cache=state.replay_cache, max_body=1024 * 1024)
    except CryptoError as exc:
        state.bump(f"heartbeat_refused.{exc.code}")
        return _reply(state, body, headers, exc.http_status, error_body(exc.code, str(exc)))
    try:
        doc = orjson.loads(opened.payload)
        if not isinstance(doc, dict):
            raise HeartbeatError("payload: expected a JSON object")
        book.record(opened.org_code, doc)
    except (orjson.JSONDecodeError, HeartbeatError) as exc:
        state.bump("heartbeat_refused.malformed_request")
        return _reply(state, body, headers, 400, error_body("malformed_request", str(exc)))
    state.bump("heartbeats")
    reply: dict[str, Any] = {"version": 1, "org_code": opened.org_code, "message_id": opened.batch_id,
                             "received_at": _now().isoformat(timespec="milliseconds")}
    announced = getattr(state, "announced", None)
    if announced:
        reply["announced"] = dict(announced)
    out = orjson.dumps(reply)
    h = sign_reply(out, platform_key=state.platform_key, org_code=opened.org_code, batch_id=opened.batch_id,
                   request_sm3=opened.body_sm3)
    return Response(out, status_code=200, headers=h)


def install(app: FastAPI, state: Any, book_for: Callable[[], HospitalBook]) -> None:
    """Add the heartbeat endpoint and the hospitals view to the reference platform's app."""

    @app.post(HEARTBEATS_PATH)
    async def heartbeats(request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        if state.in_outage() is not None:  # an outage silences the whole platform
            return Response(error_body("unavailable", "platform outage (injected)"), status_code=503,
                            media_type="application/json")
        return await run_in_threadpool(process_heartbeat, state, book_for(), body, headers)

    @app.get(HOSPITALS_PATH)
    async def hospitals() -> JSONResponse:
        rows = await run_in_threadpool(book_for().hospitals)
        return JSONResponse({"hospitals": rows})

    @app.get(HOSPITALS_PATH + "/{org_code}/faults")
    async def fault_history(org_code: str) -> JSONResponse:
        rows = await run_in_threadpool(book_for().faults, org_code)
        return JSONResponse({"org_code": org_code, "faults": rows})
