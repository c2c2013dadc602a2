"""The reference national/provincial platform: a FastAPI app speaking docs/upstream-protocol.md.

Per request: fault injection (outage window, random failure, latency) → verify signature,
timestamp window, replay and key → decrypt → schema check of the batch → per-event checks and
rejection rules → store the new events, each as the exact JSON text the hospital sent, in one
transaction (duplicates count as accepted) → a reply signed by the platform key listing accepted
and rejected ids.

Only batch ids, counts and error codes are logged: never event contents.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from cdcsync.crypto import CryptoError
from cdcsync.crypto.envelope import (
    DEFAULT_MAX_BODY,
    DEFAULT_WINDOW_S,
    H_BATCH,
    H_ORG,
    Rejection,
    ReplayCache,
    Reply,
    SenderKey,
    error_body,
    open_sealed,
    sign_reply,
)
from cdcsync.crypto.keys import key_id, load_public_key
from cdcsync.crypto.sm2 import SM2PrivateKey, SM2PublicKey
from cdcsync.crypto.sm3 import sm3
from cdcsync.upstream_sim.certs import HospitalCertPolicy
from cdcsync.upstream_sim.hospitals import HospitalBook
from cdcsync.upstream_sim.hospitals import install as install_hospitals
from cdcsync.upstream_sim.store import BatchConflict, BatchHead, Store, StoredEvent

log = logging.getLogger("cdcsync.upstream_sim")

BATCHES_PATH = "/api/v1/edr/batches"
STATS_PATH = "/api/v1/sim/stats"
HEALTH_PATH = "/api/v1/sim/health"
PING_PATH = "/api/v1/edr/ping"  # signed no-op: cdcsync doctor checks keys and reachability
MAX_EVENTS_PER_BATCH = 50_000
_OPS = {"c", "u", "d", "r", "t"}
# Header shapes worth signing an error reply for (as the envelope checks them).
_ORG_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
_BATCH_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class TrustedKeys:
    """Hospital public keys the platform accepts, by key id. Files given explicitly plus
    ``DIR/trusted/*.pub``; the directory is rescanned (at most once a second) on an unknown id,
    so a key registered while the platform runs is picked up."""

    def __init__(self, files: Iterable[Path], trusted_dir: Path | None) -> None:
        self._lock = threading.Lock()
        self._dir = trusted_dir
        self._keys: dict[str, SenderKey] = {}
        self._last_scan = 0.0
        for f in files:
            self.add(load_public_key(f))
        self._scan()

    def add(self, pub: SM2PublicKey, org_code: str | None = None) -> str:
        kid = key_id(pub)
        with self._lock:
            self._keys[kid] = SenderKey(pub, org_code)
        return kid

    def _scan(self) -> None:
        self._last_scan = time.monotonic()
        if self._dir is None or not self._dir.is_dir():
            return
        for f in sorted(self._dir.glob("*.pub")):
            try:
                self.add(load_public_key(f))
            except CryptoError as exc:
                log.warning("ignoring trusted key file %s: %s", f, exc)

    def __call__(self, kid: str) -> SenderKey | None:
        with self._lock:
            found = self._keys.get(kid)
        if found is None and time.monotonic() - self._last_scan > 1.0:
            self._scan()
            with self._lock:
                found = self._keys.get(kid)
        return found

    def __len__(self) -> int:
        return len(self._keys)


@dataclass
class Faults:
    fail_rate: float = 0.0  # share of requests answered 503 before any processing
    latency_ms: int = 0  # added before processing each request
    outage: tuple[float, float] | None = None  # (start, seconds) after process start: 503
    reject_tables: frozenset[str] = frozenset()
    reject_fields: frozenset[tuple[str, str]] = frozenset()  # (table, field): non-null value rejected
    tamper_replies: int = 0  # flip one byte in the body of the next N signed replies
    retry_after_s: int = 1
    # Poison batches: a batch holding one of these events is refused as a whole, every time,
    # with ``refuse_status`` (400/413/422): an answer that will never change.
    refuse_event_ids: frozenset[str] = frozenset()
    refuse_rows: frozenset[tuple[str, str, str]] = frozenset()  # (table, field, value as text)
    refuse_status: int = 422


@dataclass
class SimState:
    platform_key: SM2PrivateKey
    trusted: TrustedKeys | Mapping[str, SenderKey | SM2PublicKey]
    store: Store
    faults: Faults = field(default_factory=Faults)
    window_s: float = DEFAULT_WINDOW_S
    max_body: int = DEFAULT_MAX_BODY
    started: float = field(default_factory=time.monotonic)
    replay_cache: ReplayCache = field(init=False)
    counters: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=random.Random)
    certs: HospitalCertPolicy | None = None  # None: registered bare keys only (no CA yet)
    # Heartbeats and faults of the hospitals (cdcsync.upstream_sim.hospitals); None: in memory.
    hospitals_path: Path | None = None
    # Latest versions the platform announces in heartbeat replies (software, mapping_version, …).
    announced: dict[str, str] = field(default_factory=dict)
    # Published releases (cdcsync.upstream_sim.releases); None: no release channel.
    releases_dir: Path | None = None

    def __post_init__(self) -> None:
        self.replay_cache = ReplayCache(self.window_s)

    def bump(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counters[key] += n

    def in_outage(self) -> float | None:
        """Seconds left in the outage window, or None."""
        if self.faults.outage is None:
            return None
        start, seconds = self.faults.outage
        t = time.monotonic() - self.started
        return start + seconds - t if start <= t < start + seconds else None

    def take_tamper(self) -> bool:
        with self.lock:
            if self.faults.tamper_replies > 0:
                self.faults.tamper_replies -= 1
                return True
            return False


class _SchemaError(Exception):
    pass


# The batch is parsed with msgspec into typed shells: unknown keys are ignored, and the row images
# stay raw JSON (msgspec.Raw: a view of the payload), so a row is materialised only when a
# --reject-field rule needs it. Loosely typed (Any) where a wrong type must give the reason the
# protocol promises rather than msgspec's message.
_ABSENT = msgspec.Raw()


class _Source(msgspec.Struct):
    table: Any = None


class _Event(msgspec.Struct):
    id: Any = None
    op: Any = None
    source: _Source | None = None  # anything else: see _decode_event
    after: msgspec.Raw = _ABSENT
    before: msgspec.Raw = _ABSENT


class _Batch(msgspec.Struct):
    version: Any = None
    org_code: Any = None
    batch_id: Any = None
    spec_version: Any = None
    mapping_version: Any = None
    events: list[msgspec.Raw] | None = None  # anything else: see _parse_batch


class _LooseBatch(_Batch):
    events: Any = None


_BATCH = msgspec.json.Decoder(_Batch)
_LOOSE_BATCH = msgspec.json.Decoder(_LooseBatch)
_EVENT = msgspec.json.Decoder(_Event)
_ROW = msgspec.json.Decoder(dict[str, Any])
_BAD_JSON = (msgspec.DecodeError, UnicodeDecodeError)  # msgspec checks UTF-8 only where it decodes text


def _is_object(raw: msgspec.Raw) -> bool:
    return len(raw) > 0 and memoryview(raw)[0] == 0x7B  # "{": msgspec.Raw starts at the value


def _decode_event(raw: msgspec.Raw, i: int) -> _Event:
    """One element of ``events``; refuses the batch when it is not an object with a usable id."""
    try:
        ev = _EVENT.decode(raw)
    except msgspec.ValidationError:
        # Not an object, or `source` neither an object nor null: the op and id still decide.
        loose = msgspec.json.decode(raw)
        ev = _Event(loose.get("id"), loose.get("op")) if isinstance(loose, dict) else _Event()
    if not isinstance(ev.id, str) or not 0 < len(ev.id) <= 200:
        raise _SchemaError(f"payload.events[{i}].id: expected a string of 1-200 characters")
    return ev


def _parse_batch(payload: bytes, org_code: str, batch_id: str, keep_text: bool
                 ) -> tuple[BatchHead, list[tuple[_Event, str]]]:
    """The batch's header and events, each with its JSON text exactly as sent ("" unless
    `keep_text`). Raises _SchemaError (the whole batch is refused) with the reason for the hospital."""
    try:
        try:
            doc: _Batch = _BATCH.decode(payload)
        except msgspec.ValidationError:  # not an object, or `events` not a list: check in order
            doc = _LOOSE_BATCH.decode(payload)
    except msgspec.ValidationError:
        raise _SchemaError("payload: expected a JSON object") from None
    except _BAD_JSON as exc:
        raise _SchemaError(f"payload is not JSON: {exc}") from None
    if doc.version != 1:
        raise _SchemaError(f"payload.version: expected 1, got {doc.version!r}")
    if doc.org_code != org_code:
        raise _SchemaError("payload.org_code differs from the X-Org-Code header")
    if doc.batch_id != batch_id:
        raise _SchemaError("payload.batch_id differs from the X-Batch-Id header")
    for k in ("spec_version", "mapping_version"):
        value = getattr(doc, k)
        if not isinstance(value, str):
            raise _SchemaError(f"payload.{k}: expected a string")
        if not value.strip():  # the platform must know which spec and code tables the rows follow
            raise _SchemaError(f"payload.{k}: must not be empty")
    raws = doc.events
    if not isinstance(raws, list) or not raws:
        raise _SchemaError("payload.events: expected a non-empty list")
    if len(raws) > MAX_EVENTS_PER_BATCH:
        raise _SchemaError(f"payload.events: at most {MAX_EVENTS_PER_BATCH} events per batch")
    head = BatchHead(batch_id, org_code, doc.spec_version, doc.mapping_version)
    try:
        # The stored text is the event verbatim: str() of the raw bytes also checks their UTF-8.
        return head, [(_decode_event(raw, i), str(raw, "utf-8") if keep_text else "") for i, raw in enumerate(raws)]
    except _BAD_JSON as exc:
        raise _SchemaError(f"payload is not JSON: {exc}") from None


def _row(ev: _Event) -> dict[str, Any] | None:
    """The row image a field rule looks at: `after`, else `before` (decoded only for the rule)."""
    raw = ev.after if _is_object(ev.after) else ev.before if _is_object(ev.before) else None
    try:
        return None if raw is None else _ROW.decode(raw)
    except _BAD_JSON:
        return None


def _event_problem(ev: _Event, faults: Faults) -> Rejection | None:
    """Why one event is refused (None: accept it): its shape, then the injected rejection rules.
    The event's id is checked by _parse_batch."""
    op = ev.op
    if not isinstance(op, str) or op not in _OPS:
        return Rejection(ev.id, f"schema: op must be one of c/u/d/r/t, got {str(op)[:10]!r}")
    table = None if ev.source is None else ev.source.table
    if not isinstance(table, str) or not table:
        return Rejection(ev.id, "schema: source.table must be a non-empty string")
    if op == "d":
        if not _is_object(ev.before):
            return Rejection(ev.id, "schema: op d needs a 'before' object")
    elif op != "t" and not _is_object(ev.after):
        return Rejection(ev.id, f"schema: op {op} needs an 'after' object")
    if table in faults.reject_tables:
        return Rejection(ev.id, f"平台拒收：数据表 {table} 暂不接收")
    if faults.reject_fields:
        row: dict[str, Any] | None = None
        for t, f in faults.reject_fields:
            if t == table:
                row = _row(ev) if row is None else row
                if row is not None and row.get(f) is not None:
                    return Rejection(ev.id, f"平台拒收：字段 {table}.{f} 的值不符合平台要求", f)
    return None


_REFUSE_CODES = {400: "malformed_request", 413: "payload_too_large", 422: "event_refused"}


def _refused_event(events: list[tuple[_Event, str]], faults: Faults) -> tuple[str, str | None] | None:
    """(reason, field) when the batch holds an event the platform refuses the whole batch for."""
    if not faults.refuse_event_ids and not faults.refuse_rows:
        return None
    for ev, _ in events:
        if ev.id in faults.refuse_event_ids:
            return f"事件 {ev.id} 不符合平台要求，整批拒收", None
        table = None if ev.source is None else ev.source.table
        row: dict[str, Any] | None = None
        for t, f, value in faults.refuse_rows:
            if t == table:
                row = _row(ev) if row is None else row
                if row is not None and f in row and str(row[f]) == value:
                    return f"事件 {ev.id} 的字段 {t}.{f} 不符合平台要求，整批拒收", f
    return None


def _error(
    state: SimState, body: bytes, headers: Mapping[str, str], status: int, code: str, message: str,
    retry_after: int | None = None, field: str | None = None,
) -> Response:
    """An error reply, signed like any reply when the request names a well-formed org and batch
    (the protocol's rule); the hospital side never treats it as an acknowledgement."""
    out = error_body(code, message, field)
    h: dict[str, str] = {}
    low = {k.lower(): v for k, v in headers.items()}
    org, batch = low.get(H_ORG.lower(), ""), low.get(H_BATCH.lower(), "")
    if _ORG_RE.fullmatch(org) and _BATCH_RE.fullmatch(batch):
        h.update(sign_reply(out, platform_key=state.platform_key, org_code=org, batch_id=batch,
                            request_sm3=sm3(body)))
    if retry_after is not None:
        h["Retry-After"] = str(retry_after)
    return Response(out, status_code=status, media_type="application/json", headers=h)


def process_batch(state: SimState, body: bytes, headers: Mapping[str, str]) -> Response:
    """The synchronous heart of POST /api/v1/edr/batches (runs in a worker thread)."""
    try:
        senders = state.trusted if state.certs is None else state.certs.senders(headers, state.trusted)
        opened = open_sealed(
            body, headers, recipient_key=state.platform_key, sender_keys=senders,
            window_s=state.window_s, replay_cache=state.replay_cache, max_body=state.max_body,
        )
    except CryptoError as exc:
        state.bump(f"refused.{exc.code}")
        log.warning("refused request: %s (%s)", exc.code, exc)
        return _error(state, body, headers, exc.http_status, exc.code, str(exc))
    try:
        head, events = _parse_batch(opened.payload, opened.org_code, opened.batch_id, state.store.keeps_payload)
    except _SchemaError as exc:
        state.bump("refused.malformed_request")
        log.warning("refused batch %s: %s", opened.batch_id, exc)
        return _error(state, body, headers, 400, "malformed_request", str(exc))
    refused = _refused_event(events, state.faults)
    if refused is not None:
        status = state.faults.refuse_status
        state.bump(f"refused.poison_{status}")
        log.warning("refused batch %s with %d (an event the platform refuses)", opened.batch_id, status)
        return _error(state, body, headers, status, _REFUSE_CODES.get(status, "event_refused"), refused[0],
                      field=refused[1])

    accepted: list[str] = []
    rejected: list[Rejection] = []
    to_store: list[StoredEvent] = []
    for ev, text in events:
        problem = _event_problem(ev, state.faults)
        if problem is not None:
            rejected.append(problem)
            continue
        accepted.append(ev.id)
        to_store.append((ev.id, ev.source.table, ev.op, text))  # type: ignore[union-attr]  # checked
    try:
        digest = sm3("\n".join(ev.id for ev, _ in events).encode()).hex()
        dupes = state.store.put_batch(head, digest, to_store)
    except BatchConflict:
        state.bump("refused.batch_conflict")
        log.warning("refused batch %s: id already used for different content", opened.batch_id)
        return _error(state, body, headers, 409, "batch_conflict",
                      f"batch {opened.batch_id} was received before with other events")

    reply = Reply(opened.org_code, opened.batch_id, accepted, rejected, sorted(dupes))
    reply_body = reply.to_json()
    reply_headers = sign_reply(
        reply_body, platform_key=state.platform_key, org_code=opened.org_code,
        batch_id=opened.batch_id, request_sm3=opened.body_sm3,
    )
    state.bump("batches")
    state.bump("accepted", len(accepted) - len(dupes))
    state.bump("duplicates", len(dupes))
    state.bump("rejected", len(rejected))
    if state.take_tamper():
        state.bump("tampered_replies")
        flipped = bytearray(reply_body)
        flipped[len(flipped) // 2] ^= 0x01
        reply_body = bytes(flipped)
    log.debug("batch %s: %d accepted (%d duplicates), %d rejected",
              opened.batch_id, len(accepted), len(dupes), len(rejected))
    return Response(reply_body, status_code=200, headers=reply_headers)


def process_ping(state: SimState, body: bytes, headers: Mapping[str, str]) -> Response:
    """POST /api/v1/edr/ping: verify and decrypt like a batch, answer a signed ``{"ok": true}``."""
    try:
        senders = state.trusted if state.certs is None else state.certs.senders(headers, state.trusted)
        opened = open_sealed(body, headers, recipient_key=state.platform_key, sender_keys=senders,
                             window_s=state.window_s, replay_cache=state.replay_cache, max_body=state.max_body)
    except CryptoError as exc:
        return _error(state, body, headers, exc.http_status, exc.code, str(exc))
    doc = msgspec.json.decode(opened.payload) if opened.payload[:1] == b"{" else None
    if not isinstance(doc, dict) or doc.get("ping") is not True or doc.get("batch_id") != opened.batch_id:
        return _error(state, body, headers, 400, "malformed_request", 'payload: expected {"ping": true, …}')
    out = msgspec.json.encode({"version": 1, "org_code": opened.org_code, "batch_id": opened.batch_id, "ok": True})
    state.bump("pings")
    return Response(out, status_code=200, headers=sign_reply(
        out, platform_key=state.platform_key, org_code=opened.org_code, batch_id=opened.batch_id,
        request_sm3=opened.body_sm3))


def create_app(state: SimState) -> FastAPI:
    app = FastAPI(title="cdcsync upstream-sim（参考平台）", version="1",
                  description="国家/省级平台的参考实现，供测试、演示与试运行使用。")
    app.state.sim = state
    book = HospitalBook(state.hospitals_path)
    app.state.hospitals = book
    install_hospitals(app, state, lambda: book)

    @app.post(BATCHES_PATH)
    async def batches(request: Request) -> Response:
        state.bump("requests")
        body = await request.body()
        headers = dict(request.headers)
        if state.in_outage() is not None:
            state.bump("refused.outage")
            return _error(state, body, headers, 503, "unavailable", "platform outage (injected)",
                          state.faults.retry_after_s)
        if state.faults.fail_rate > 0 and state.rng.random() < state.faults.fail_rate:
            state.bump("refused.injected_failure")
            return _error(state, body, headers, 503, "unavailable", "injected failure", state.faults.retry_after_s)
        if state.faults.latency_ms > 0:
            import asyncio

            await asyncio.sleep(state.faults.latency_ms / 1000)
        return await run_in_threadpool(process_batch, state, body, headers)

    @app.post(PING_PATH)
    async def ping(request: Request) -> Response:
        body = await request.body()
        if state.in_outage() is not None:
            return _error(state, body, dict(request.headers), 503, "unavailable", "platform outage (injected)",
                          state.faults.retry_after_s)
        return await run_in_threadpool(process_ping, state, body, dict(request.headers))

    @app.get(STATS_PATH)
    async def stats() -> dict[str, Any]:
        tables = await run_in_threadpool(state.store.counts)
        with state.lock:
            counters = dict(state.counters)
        return {
            "tables": tables,
            "total": sum(tables.values()),
            "counters": counters,
            "outage": state.in_outage() is not None,
        }

    @app.get(HEALTH_PATH)
    async def health() -> dict[str, Any]:
        kid = key_id(state.platform_key.public_key)
        return {"ok": True, "platform_key_id": kid, "trusted_keys": len(state.trusted)}

    from cdcsync.upstream_sim.releases import add_release_routes

    add_release_routes(app, state.releases_dir)
    return app
