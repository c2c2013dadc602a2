"""``kind: http``: deliver batches to a national or provincial platform (docs/upstream-protocol.md).

A batch from the pipeline is cut into platform batches (``batch_max_events``/``batch_max_bytes``),
each one JSON document (org code, batch id, spec and mapping versions, events) sealed in the SM2/SM4
digital envelope and POSTed. The versions in the header are those the validation stage stamped on
the batch's events; a platform batch never mixes versions: it is cut where they change (a mapping
hot-reload takes effect between transactions). An event without versions did not pass the
validation stage and is never sent (``ValueError``). The batch id is the SM3 digest of the destination name and the
batch's event ids, so a retry — in this process, or after a crash that replays the same events —
resends the same batch id and event ids, and the platform drops what it already holds.

``send`` only returns once the platform has answered every event with a reply whose SM2 signature
verifies; until then it retries with exponential backoff and jitter (honouring ``Retry-After``),
for as long as it takes, and ``health`` shows why. A reply that fails verification is never
trusted: the batch is sent again. Events the platform rejects come back in ``Ack.rejected`` with
the platform's reason, for the checkpoint to quarantine.

Poison batches: a platform that answers a batch with 400/413/422 and the same reason
``poison_after_attempts`` times in a row (a signed answer; 413 need not be) will not change its
mind. The batch is then bisected — the first half delivered before the second, so events still
leave in commit order — down to the event(s) the platform refuses on their own; those come back
in ``Ack.rejected`` with rule ``PLT<status>`` (``Ack.rejected_rules``), the platform's reason
and field, and are quarantined in the same checkpoint transaction that confirms what follows
them. A platform that refuses ``poison_max_consecutive`` events in a row while accepting nothing
refuses everything (its configuration or ours, not the data): then nothing more is
quarantined, the batch is retried as any failure and the reason shown in ``status``.
5xx, 429, connection errors and every other status are retried as before, however often.

Logs carry batch ids, counts, HTTP statuses and error codes only: never event contents.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception_type
from tenacity.wait import wait_random_exponential

from cdcsync.crypto import CryptoError
from cdcsync.crypto.envelope import H_KEY_ID, Sealed, open_reply, seal, verify_reply
from cdcsync.crypto.keys import key_id, load_private_key
from cdcsync.crypto.sm3 import sm3
from cdcsync.crypto.x509 import check_trust_file_permissions
from cdcsync.event import Ack, Batch, Event, encode_events
from cdcsync.sink.base import SinkError
from cdcsync.sink.certs import PlatformKeys, load_hospital_certificate
from cdcsync.sink.http_settings import HttpDestination
from cdcsync.textsafe import platform_text

log = logging.getLogger(__name__)

PAYLOAD_VERSION = 1
RETRY_AFTER_CAP_S = 300.0  # a platform asking for longer is still retried after 5 minutes


class SinkClosed(SinkError):
    """``close()`` was called while a batch was waiting to be delivered (it was not acked)."""


# Answers that may be final for the events of a batch (poison batches, see the module docstring).
POISON_STATUSES = frozenset({400, 413, 422})
# Error codes about the request as a whole (framing, the key it was encrypted to): never an
# event's fault, so never a reason to bisect and quarantine (docs/upstream-protocol.md 3.6).
REQUEST_LEVEL_CODES = frozenset({"malformed_envelope", "decrypt_failed"})
REFUSING_ALL = "平台连续拒收且未接收任何数据，判断为平台或本端配置问题，已停止隔离并持续重试"


@dataclass(frozen=True)
class Refusal:
    """A platform answer that may be final: same status, code, message and field = same reason."""

    status: int
    code: str
    message: str
    field: str | None = None

    @property
    def rule_id(self) -> str:
        return f"PLT{self.status}"

    @property
    def reason(self) -> str:
        """The quarantine message (the platform's own words, which it shows hospital staff)."""
        return f"平台拒收（HTTP {self.status} {self.code}）：{self.message}"


class DeliveryError(Exception):
    """One attempt failed; the batch will be sent again. ``retry_after``: the platform's wish.
    ``refusal``: set when the answer may be final (see :data:`POISON_STATUSES`)."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None,
                 refusal: Refusal | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.refusal = refusal


class _Refused(Exception):
    """The platform gave the same refusal often enough: bisect the batch."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class _SameRefusal:
    """Counts the identical refusals of one platform batch in a row; raises :class:`_Refused` at
    ``limit`` — at once when the refusal is ``known`` (a half of a batch refused for that very
    reason) — unless ``allowed()`` says the platform refuses everything."""

    def __init__(self, limit: int, known: Refusal | None, allowed: Callable[[], bool]) -> None:
        self.limit = limit
        self.known = known
        self.allowed = allowed
        self.last: Refusal | None = None
        self.count = 0

    def note(self, exc: DeliveryError) -> None:
        r = exc.refusal
        if r is None:
            self.last, self.count = None, 0
            return
        self.count = self.count + 1 if r == self.last else 1
        self.last = r
        if (r == self.known or self.count >= self.limit) and self.allowed():
            raise _Refused(r)


PRESEALED_MAX_AGE_S = 30.0


@dataclass(frozen=True)
class _Prepared:
    """One platform batch, encoded and sealed for its first attempt."""

    events: list[Event]
    org_code: str
    batch_id: str
    payload: bytes
    sealed: Sealed
    sealed_at: float  # time.monotonic()


class _TooLarge(Exception):
    """413 for a batch of several events: it is split in two and each half delivered."""


@dataclass(frozen=True)
class HealthSnapshot:
    destination: str
    state: str  # "idle" | "sending" | "retrying" | "closed"
    attempts: int  # failed attempts of the batch now in delivery (0 when healthy)
    total_failures: int
    last_error: str | None
    last_error_at: datetime | None
    next_retry_at: datetime | None
    last_success_at: datetime | None
    batches_sent: int
    events_accepted: int
    events_rejected: int
    events_duplicate: int
    in_flight_bytes: int
    events_refused: int  # quarantined as refused by the platform (PLT…), since start
    refusing_all: bool  # the platform refuses everything: quarantining stopped, retrying

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


class SinkHealth:
    """Thread-safe delivery state of one destination, for ``cdcsync status`` and monitoring."""

    def __init__(self, destination: str) -> None:
        self._lock = threading.Lock()
        self._d: dict[str, Any] = {
            "destination": destination, "state": "idle", "attempts": 0, "total_failures": 0,
            "last_error": None, "last_error_at": None, "next_retry_at": None, "last_success_at": None,
            "batches_sent": 0, "events_accepted": 0, "events_rejected": 0, "events_duplicate": 0,
            "in_flight_bytes": 0, "events_refused": 0, "refusing_all": False,
        }

    def update(self, **changes: Any) -> None:
        with self._lock:
            self._d.update(changes)

    def failed(self, error: str, next_retry_at: datetime) -> None:
        with self._lock:
            self._d["state"] = "retrying"
            self._d["attempts"] += 1
            self._d["total_failures"] += 1
            self._d["last_error"] = error
            self._d["last_error_at"] = datetime.now(UTC)
            self._d["next_retry_at"] = next_retry_at

    def succeeded(self, accepted: int, rejected: int, duplicates: int) -> None:
        with self._lock:
            d = self._d
            d.update(state="idle", attempts=0, next_retry_at=None, last_success_at=datetime.now(UTC))
            d["batches_sent"] += 1
            d["events_accepted"] += accepted
            d["events_rejected"] += rejected
            d["events_duplicate"] += duplicates

    def refused(self) -> None:
        with self._lock:
            self._d["events_refused"] += 1

    def add_in_flight(self, n: int) -> None:
        with self._lock:
            self._d["in_flight_bytes"] += n

    def snapshot(self) -> HealthSnapshot:
        with self._lock:
            return HealthSnapshot(**self._d)


class _InFlight:
    """Bounds the bytes of payload held for delivery across concurrent ``send`` calls: a caller
    blocks until there is room (backpressure into the stream). One batch larger than the limit
    may still go alone."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, n: int, closed: threading.Event) -> None:
        with self._cond:
            while self._used > 0 and self._used + n > self._limit:
                if closed.is_set():
                    raise SinkClosed("sink closed while waiting for in-flight room")
                self._cond.wait(0.5)
            self._used += n

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_code(resp: httpx.Response) -> str:
    try:
        doc = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return "no error body"
    if isinstance(doc, dict):
        return platform_text(f"{doc.get('error')}: {doc.get('message')}", 300)
    return "no error body"


def _version_runs(events: Sequence[Event]) -> list[list[Event]]:
    """``events`` cut where the (spec, mapping) version changes; raises ValueError for an event
    that carries none (it did not pass the validation stage). Two comparisons per event, both
    identity checks in the common case (one rule set's version strings are shared objects)."""
    runs: list[list[Event]] = []
    if not events:
        return runs
    start = 0
    spec, mapping = events[0].spec_version, events[0].mapping_version
    for i, ev in enumerate(events):
        if ev.mapping_version != mapping or ev.spec_version != spec:
            runs.append(list(events[start:i]))
            start = i
            spec, mapping = ev.spec_version, ev.mapping_version
    runs.append(list(events[start:]))
    for run in runs:
        head = run[0]
        if not head.spec_version or not head.mapping_version:
            raise ValueError(f"事件 {head.id} 没有数据集规范或映射版本：未经校验与代码映射的事件不能上报")
    return runs


def batch_id_for(destination: str, event_ids: Sequence[str]) -> str:
    """Deterministic: the same events (by id, in order) for the same destination always get the
    same batch id, also after a crash when the replayed events carry new ``ts_ms`` values."""
    return sm3("\n".join([destination, *event_ids]).encode()).hex()


class AttemptRecorder(Protocol):
    """Told about every send attempt (ok, whether it was a retry, a short technical error)."""

    def __call__(self, ok: bool, retry: bool, error: str | None = None) -> None: ...


class HttpSink:
    """A Sink for one platform. Not a pool: one HTTP/1.1 connection, kept alive."""

    def __init__(
        self,
        settings: HttpDestination,
        *,
        org_code: str | None = None,
        on_attempt: AttemptRecorder | None = None,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.org_code = org_code
        self.health = SinkHealth(settings.name)
        self._on_attempt = on_attempt
        self._key = load_private_key(settings.hospital_key)
        self._platform = PlatformKeys(settings)
        self._cert_header: str | None = None  # X-Certificate, when the hospital has a CA certificate
        if settings.hospital_certificate is not None:
            _chain, self._cert_header = load_hospital_certificate(settings.hospital_certificate, self._key)
        if settings.hospital_key_id and settings.hospital_key_id != key_id(self._key.public_key):
            raise CryptoError(
                f"{settings.hospital_key}: 密钥标识与配置 hospital_key_id 不符（文件中的密钥为 "
                f"{key_id(self._key.public_key)}）"
            )
        self._closed = threading.Event()
        self._in_flight = _InFlight(settings.max_in_flight_bytes)
        self._refused_run = 0  # events refused in a row with nothing accepted in between
        self._client = httpx.Client(
            verify=self._tls_verify(settings),
            timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 10.0)),
            headers={"User-Agent": "cdcsync"},
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        )

    @staticmethod
    def _tls_verify(settings: HttpDestination) -> ssl.SSLContext | bool:
        if settings.url.startswith("http://"):
            return False  # loopback only, enforced by HttpDestination
        if settings.ca_bundle is None:
            return ssl.create_default_context()
        check_trust_file_permissions(settings.ca_bundle)
        try:
            return ssl.create_default_context(cafile=str(settings.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise SinkError(f"{settings.ca_bundle}: 无法读取 CA 证书（ca_bundle）：{exc}") from None

    # ------------------------------------------------------------------ Sink protocol

    def send(self, batch: Batch) -> Ack:
        return self.deliver(self.prepare(batch))

    def prepare(self, batch: Batch) -> list[_Prepared]:
        """The CPU-bound half of ``send``: platform batches encoded and sealed for their first
        attempt. The delivery window runs it for the next batch while this one is on the wire."""
        return [self._prepared(chunk, events_json) for chunk, events_json in self._chunks(batch.events)]

    def deliver(self, prepared: list[_Prepared]) -> Ack:
        """POST each platform batch until its signed reply verifies; the merged Ack."""
        return _merge([self._deliver(part) for part in prepared])

    def post_signed(self, url: str, payload: bytes, message_id: str) -> bytes:
        """One sealed request outside the batch stream (heartbeats, docs/upstream-protocol.md
        section 7): ``payload`` sealed like a batch under ``message_id``, POSTed once, and the
        reply body returned once its signature verifies. Not retried here: the next heartbeat is
        the retry. Raises :class:`DeliveryError`."""
        sealed = self._seal(payload, self.org_code or "", message_id)
        try:
            resp = self._client.post(url, content=sealed.body, headers=sealed.headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"connection error: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise DeliveryError(f"HTTP {resp.status_code}: {_error_code(resp)}", status=resp.status_code)
        try:
            platform_pub = self._platform.reply_key(resp.headers.get(H_KEY_ID, ""))
            verify_reply(resp.content, resp.headers, platform_pub=platform_pub, sealed=sealed)
        except CryptoError as exc:
            raise DeliveryError(f"reply refused ({exc.code}): {exc}") from None
        return resp.content

    def close(self) -> None:
        self._closed.set()
        self.health.update(state="closed")
        self._client.close()

    # ------------------------------------------------------------------ internals

    def _chunks(self, events: Sequence[Event]) -> Iterator[tuple[list[Event], bytes]]:
        """Platform batches with their events' JSON array: one spec and mapping version each, at
        most ``batch_max_events`` events and ``batch_max_bytes`` of JSON (encoded a platform batch
        at a time)."""
        n = self.settings.batch_max_events
        for run in _version_runs(events):
            for i in range(0, len(run), n):
                yield from self._fit(run[i : i + n])

    def _fit(self, events: list[Event]) -> Iterator[tuple[list[Event], bytes]]:
        data = encode_events(events)
        if len(data) <= self.settings.batch_max_bytes or len(events) == 1:
            yield events, data
            return
        half = len(events) // 2
        yield from self._fit(events[:half])
        yield from self._fit(events[half:])

    def _payload(self, events: list[Event], events_json: bytes | None = None) -> tuple[str, str, bytes]:
        first = events[0]
        org = self.org_code or first.org_code
        if events_json is None:
            events_json = encode_events(events)
        head = orjson.dumps({"spec_version": first.spec_version, "mapping_version": first.mapping_version})
        bid = batch_id_for(self.name, [e.id for e in events])
        payload = b"".join((
            b'{"version":', str(PAYLOAD_VERSION).encode(), b',"org_code":', orjson.dumps(org),
            b',"batch_id":', orjson.dumps(bid), b',"destination":', orjson.dumps(self.name),
            b',', head[1:-1], b',"events":', events_json, b"}",
        ))
        return org, bid, payload

    def _prepared(self, events: list[Event], events_json: bytes | None = None) -> _Prepared:
        org, bid, payload = self._payload(events, events_json)
        sealed = self._seal(payload, org, bid)
        return _Prepared(events, org, bid, payload, sealed, time.monotonic())

    def _deliver(self, part: _Prepared, known: Refusal | None = None) -> Ack:
        """Deliver one platform batch; ``known``: the refusal its parent batch got (bisection)."""
        events, org, bid, payload = part.events, part.org_code, part.batch_id, part.payload
        same = _SameRefusal(self.settings.poison_after_attempts, known, self._may_quarantine)
        ids = [e.id for e in events]
        # The first attempt uses the seal made in advance unless it has aged: its timestamp must
        # stay well inside the platform's freshness window.
        first: list[Sealed] = [part.sealed] if time.monotonic() - part.sealed_at < PRESEALED_MAX_AGE_S else []
        self._in_flight.acquire(len(payload), self._closed)
        self.health.add_in_flight(len(payload))
        ack: Ack | None = None
        refusal: Refusal | None = None
        try:
            retrying = Retrying(
                retry=retry_if_exception_type(DeliveryError),
                wait=self._wait,
                stop=lambda _state: self._closed.is_set(),
                sleep=self._sleep,
                before_sleep=self._before_sleep,
                reraise=True,
            )
            try:
                for attempt in retrying:
                    with attempt:
                        try:
                            ack = self._attempt(org, bid, payload, ids, first.pop() if first else None)
                        except DeliveryError as exc:
                            same.note(exc)  # raises _Refused once the refusal is final
                            raise
                    if ack is not None and self._on_attempt is not None:
                        self._on_attempt(True, attempt.retry_state.attempt_number > 1, None)
            except DeliveryError as exc:  # only after close(): stop fired
                raise SinkClosed(f"{self.name}: sink closed before batch {bid[:16]} was acknowledged: {exc}") from None
            except _TooLarge:
                ack = None
            except _Refused as exc:
                refusal = exc.refusal
        finally:
            self._in_flight.release(len(payload))
            self.health.add_in_flight(-len(payload))
        if ack is not None:
            return ack
        if refusal is None:
            log.warning("%s: platform refused %d events (%d bytes) as too large; splitting the batch",
                        self.name, len(events), len(payload))
        elif len(events) == 1:
            return self._quarantine(events[0], refusal)
        else:
            log.warning("%s: platform refuses batch %s (%d events) with HTTP %d %s; bisecting it", self.name,
                        bid[:16], len(events), refusal.status, refusal.code)
        # The first half is delivered (or bisected further) before the second: commit order holds.
        half = len(events) // 2
        return _merge([self._deliver(self._prepared(events[:half]), refusal),
                       self._deliver(self._prepared(events[half:]), refusal)])

    def _may_quarantine(self) -> bool:
        """False once the platform refused ``poison_max_consecutive`` events in a row and accepted
        none: it refuses everything, and quarantining the whole stream would help nobody."""
        allowed = self._refused_run < self.settings.poison_max_consecutive
        self.health.update(refusing_all=not allowed)
        return allowed

    def _quarantine(self, event: Event, refusal: Refusal) -> Ack:
        """The platform refuses this one event for good: it goes to quarantine (via the Ack)."""
        self._refused_run += 1
        self.health.refused()
        self.health.update(state="idle", attempts=0, next_retry_at=None)  # settled: no longer retrying
        log.warning("%s: platform refuses event %s (table %s) with HTTP %d %s: quarantined as %s", self.name,
                    event.id, event.table, refusal.status, refusal.code, refusal.rule_id)
        return Ack(accepted=[], rejected={event.id: refusal.reason},
                   rejected_fields={event.id: refusal.field} if refusal.field else {},
                   rejected_rules={event.id: refusal.rule_id})

    def _attempt(self, org: str, bid: str, payload: bytes, ids: list[str], sealed: Sealed | None = None) -> Ack:
        if self._closed.is_set():
            raise DeliveryError("sink closed")
        self.health.update(state="sending")
        try:
            self._platform.check_usable()
        except CryptoError as exc:
            raise DeliveryError(f"not sent ({exc.code}): {exc}") from None
        if sealed is None:  # every retry is sealed afresh: new key, nonce and timestamp
            sealed = self._seal(payload, org, bid)
        try:
            resp = self._client.post(self.settings.batches_url, content=sealed.body, headers=sealed.headers)
        except RuntimeError:  # httpx: the client was closed by close() from another thread meanwhile
            if self._closed.is_set():
                raise DeliveryError("sink closed") from None
            raise
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"timeout: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"connection error: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 413 and len(ids) > 1:
            raise _TooLarge()
        if resp.status_code != 200:
            retry_after = _retry_after(resp.headers.get("Retry-After")) if resp.status_code in (429, 503) else None
            raise DeliveryError(f"HTTP {resp.status_code}: {_error_code(resp)}", retry_after=retry_after,
                                status=resp.status_code, refusal=self._refusal(resp, sealed))
        return self._read_reply(resp, sealed, ids)

    def _refusal(self, resp: httpx.Response, sealed: Sealed) -> Refusal | None:
        """The answer as a possibly final refusal of the batch's events, else None (retried as any
        failure). 400 and 422 count only when the platform signed them for this very request: a
        forged answer must not divert events into quarantine. A 413 may come from any hop."""
        status = resp.status_code
        if status not in POISON_STATUSES:
            return None
        try:
            doc = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            doc = None
        doc = doc if isinstance(doc, dict) else {}
        code = str(doc.get("error") or "")
        if code in REQUEST_LEVEL_CODES:
            return None
        if status != 413:
            try:
                platform_pub = self._platform.reply_key(resp.headers.get(H_KEY_ID, ""))
                verify_reply(resp.content, resp.headers, platform_pub=platform_pub, sealed=sealed)
            except CryptoError:
                return None
        field = doc.get("field")
        return Refusal(status, platform_text(code or "-"), platform_text(doc.get("message") or ""),
                       platform_text(field) if isinstance(field, str) and field else None)

    def _seal(self, payload: bytes, org: str, bid: str) -> Sealed:
        return seal(payload, sender_key=self._key, recipient_pub=self._platform.encryption_key(), org_code=org,
                    batch_id=bid, certificate=self._cert_header)

    def _read_reply(self, resp: httpx.Response, sealed: Sealed, ids: list[str]) -> Ack:
        try:
            platform_pub = self._platform.reply_key(resp.headers.get(H_KEY_ID, ""))
            reply = open_reply(resp.content, resp.headers, platform_pub=platform_pub, sealed=sealed)
        except CryptoError as exc:
            # Never trust an unverified reply: resend; the platform drops what it already holds.
            raise DeliveryError(f"reply refused ({exc.code}): {exc}") from None
        missing = reply.unaccounted(ids)
        if missing:
            raise DeliveryError(f"reply does not account for {len(missing)} of {len(ids)} events")
        wanted = set(ids)
        rejected: dict[str, str] = {}
        fields: dict[str, str] = {}
        for r in reply.rejected:
            if r.id in wanted:
                rejected[r.id] = platform_text(r.reason)  # stored in the quarantine, shown, logged
                if r.field:
                    fields[r.id] = platform_text(r.field, 64)
        accepted = [i for i in ids if i not in rejected]
        if accepted:
            self._refused_run = 0
            self.health.update(refusing_all=False)
        self.health.succeeded(len(accepted), len(rejected), len(reply.duplicates))
        if rejected:
            log.warning("%s: batch %s: platform rejected %d of %d events", self.name, sealed.batch_id[:16],
                        len(rejected), len(ids))
        return Ack(accepted=accepted, rejected=rejected, rejected_fields=fields)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        base = wait_random_exponential(multiplier=self.settings.retry_initial_s, max=self.settings.retry_max_s)(state)
        if isinstance(exc, DeliveryError) and exc.retry_after is not None:
            return min(exc.retry_after, RETRY_AFTER_CAP_S)
        return float(base)

    def _sleep(self, seconds: float) -> None:
        self._closed.wait(seconds)  # close() interrupts a long backoff

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.upcoming_sleep
        nxt = datetime.fromtimestamp(time.time() + delay, UTC)
        msg = str(exc) if exc else "unknown error"
        if isinstance(exc, DeliveryError) and exc.refusal is not None and self.health.snapshot().refusing_all:
            msg = f"{REFUSING_ALL}：{msg}"
        self.health.failed(msg, nxt)
        if self._on_attempt is not None:
            self._on_attempt(False, state.attempt_number > 1, msg[:300])
        log.warning("%s: delivery attempt %d failed (%s); retrying in %.1f s", self.name, state.attempt_number,
                    msg[:300], delay)


def _merge(acks: Sequence[Ack]) -> Ack:
    """One Ack for consecutive platform batches (in their order)."""
    if len(acks) == 1:
        return acks[0]
    out = Ack(accepted=[])
    accepted: list[str] = []
    for a in acks:
        accepted.extend(a.accepted)
        out.rejected.update(a.rejected)
        out.rejected_fields.update(a.rejected_fields)
        out.rejected_rules.update(a.rejected_rules)
    out.accepted = accepted
    return out
