"""The digital envelope: the wire format of docs/upstream-protocol.md.

Request  payload -> gzip -> SM4-GCM (fresh 16-byte key, 12-byte nonce) -> key SM2-encrypted
         to the platform -> body framed as below -> SM3-with-SM2 signature (hospital key) over
         a signing string that binds org code, key id, batch id, timestamp and SM3(body).
Reply    JSON, signed by the platform over a signing string that binds the same org code and
         batch id, its own timestamp, SM3 of the request body it answers, and SM3(reply body).

Body framing, version 1 (all integers big-endian):
  0      4   magic b"CDCE"
  4      1   version = 1
  5      1   suite = 1  (SM2 key wrap / SM4-128-GCM / SM3 / gzip)
  6      2   L = length of the wrapped key
  8      L   SM2 ciphertext of the SM4 key, DER SM2Cipher (GB/T 35276)
  8+L    12  GCM nonce
  20+L   ..  SM4-GCM ciphertext of gzip(payload) || 16-byte tag; AAD = bytes 0 .. 20+L
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

try:  # ISA-L: the same gzip format, about 4x faster than zlib at level 1 (bench/README.md)
    from isal import igzip as gzip
    from isal import isal_zlib as zlib
except ImportError:  # pragma: no cover - a platform without an isal wheel
    import gzip  # type: ignore[no-redef]
    import zlib  # type: ignore[no-redef]

from cdcsync.crypto import (
    DecryptError,
    EnvelopeError,
    ExpiredError,
    OrgMismatchError,
    PayloadTooLargeError,
    ReplayError,
    SignatureError,
    UnknownKeyError,
    UnsupportedVersionError,
    sm4,
)
from cdcsync.crypto.keys import key_id
from cdcsync.crypto.sm2 import SM2PrivateKey, SM2PublicKey
from cdcsync.crypto.sm3 import sm3

MAGIC = b"CDCE"
VERSION = 1
SUITE_SM2_SM4GCM_SM3 = 1
CONTENT_TYPE = "application/vnd.cdcsync.envelope.v1"
REPLY_CONTENT_TYPE = "application/json"
REQUEST_PURPOSE = "CDCSYNC-SM2-REQUEST-V1"
REPLY_PURPOSE = "CDCSYNC-SM2-REPLY-V1"

H_ORG = "X-Org-Code"
H_KEY_ID = "X-Key-Id"
H_BATCH = "X-Batch-Id"
H_TS = "X-Timestamp"
H_SIG = "X-Signature"
# The sender's certificate chain (base64 DER, leaf first, comma-separated; cdcsync.crypto.x509).
# Not signed: it is public, and the platform binds it to the request by its key id.
H_CERT = "X-Certificate"

DEFAULT_WINDOW_S = 300.0
DEFAULT_MAX_BODY = 32 * 1024 * 1024
DEFAULT_MAX_PAYLOAD = 128 * 1024 * 1024
# gzip level 1: JSON still shrinks ~8-9x (ISA-L levels are 0-3).
DEFAULT_GZIP_LEVEL = 1

_ORG_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
_BATCH_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{64}")
_TS_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z")


# --------------------------------------------------------------------------- helpers


def format_timestamp(ts: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2025-11-25T09:11:00.123Z (the only accepted form)."""
    ts = (ts or datetime.now(UTC)).astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    m = _TS_RE.fullmatch(value)
    if not m:
        raise EnvelopeError(f"{H_TS}: expected YYYY-MM-DDTHH:MM:SS.mmmZ (UTC), got {value[:40]!r}")
    y, mo, d, h, mi, s, ms = (int(g) for g in m.groups())
    try:
        return datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=UTC)
    except ValueError:
        raise EnvelopeError(f"{H_TS}: not a valid date/time: {value!r}") from None


def _check_ids(org_code: str, batch_id: str) -> None:
    if not _ORG_RE.fullmatch(org_code):
        raise EnvelopeError(f"{H_ORG}: expected 1-64 characters [A-Za-z0-9-], got {org_code[:80]!r}")
    if not _BATCH_RE.fullmatch(batch_id):
        raise EnvelopeError(f"{H_BATCH}: expected 1-128 characters [A-Za-z0-9._:-], got {batch_id[:140]!r}")


def request_signing_string(org_code: str, kid: str, batch_id: str, timestamp: str, body_sm3: bytes) -> bytes:
    """Exactly the bytes the hospital signs (SM3-with-SM2, user ID 1234567812345678)."""
    return "\n".join((REQUEST_PURPOSE, org_code, kid, batch_id, timestamp, body_sm3.hex())).encode()


def reply_signing_string(
    org_code: str, kid: str, batch_id: str, timestamp: str, request_sm3: bytes, body_sm3: bytes
) -> bytes:
    """Exactly the bytes the platform signs for a reply."""
    return "\n".join((REPLY_PURPOSE, org_code, kid, batch_id, timestamp, request_sm3.hex(), body_sm3.hex())).encode()


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _need(h: dict[str, str], name: str) -> str:
    v = h.get(name.lower())
    if v is None or v == "":
        raise EnvelopeError(f"missing header {name}")
    return v


def _decode_sig(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{H_SIG}: not valid base64") from None


# --------------------------------------------------------------------------- request


@dataclass(frozen=True)
class Sealed:
    """A sealed request: POST `body` with `headers` (plus Content-Type)."""

    body: bytes
    headers: dict[str, str]
    org_code: str
    batch_id: str
    timestamp: str
    body_sm3: bytes  # keep it: the reply's signature binds to it


def seal(
    payload: bytes,
    *,
    sender_key: SM2PrivateKey,
    recipient_pub: SM2PublicKey,
    org_code: str,
    batch_id: str,
    timestamp: datetime | None = None,
    gzip_level: int = DEFAULT_GZIP_LEVEL,
    certificate: str | None = None,
) -> Sealed:
    """Compress, encrypt to `recipient_pub`, sign with `sender_key`. A retry must call seal()
    again (fresh key, nonce and timestamp), keeping the same batch id and payload.
    `certificate`: the X-Certificate header value, when the hospital has a CA certificate."""
    _check_ids(org_code, batch_id)
    cek = secrets.token_bytes(sm4.KEY_SIZE)
    nonce = secrets.token_bytes(sm4.NONCE_SIZE)
    wrapped = recipient_pub.encrypt(cek)
    head = MAGIC + bytes([VERSION, SUITE_SM2_SM4GCM_SM3]) + len(wrapped).to_bytes(2, "big") + wrapped + nonce
    compressed = gzip.compress(payload, compresslevel=gzip_level, mtime=0)
    body = head + sm4.encrypt_gcm(cek, nonce, compressed, aad=head)
    body_sm3 = sm3(body)
    ts = format_timestamp(timestamp)
    kid = key_id(sender_key.public_key)
    sig = sender_key.sign(request_signing_string(org_code, kid, batch_id, ts, body_sm3))
    headers = {
        "Content-Type": CONTENT_TYPE,
        H_ORG: org_code,
        H_KEY_ID: kid,
        H_BATCH: batch_id,
        H_TS: ts,
        H_SIG: base64.b64encode(sig).decode(),
    }
    if certificate:
        headers[H_CERT] = certificate
    return Sealed(body, headers, org_code, batch_id, ts, body_sm3)


class SenderKey(NamedTuple):
    """A registered hospital key; `org_code` (if set) is the only org it may sign for."""

    public_key: SM2PublicKey
    org_code: str | None = None


SenderLookup = Mapping[str, SenderKey | SM2PublicKey] | Callable[[str], SenderKey | SM2PublicKey | None]


class ReplayCache:
    """Remembers (key id, batch id, timestamp) of accepted requests for the freshness window.
    A legitimate retry is re-sealed with a new timestamp, so only a byte-replay collides."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S) -> None:
        self._window = window_s
        self._seen: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def check_and_add(self, kid: str, batch_id: str, timestamp: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 1024:
                horizon = now - 2 * self._window  # entries older than this are expired anyway
                self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
            k = (kid, batch_id, timestamp)
            if k in self._seen:
                raise ReplayError(f"request for batch {batch_id} at {timestamp} was already received")
            self._seen[k] = now


@dataclass(frozen=True)
class Opened:
    payload: bytes
    org_code: str
    batch_id: str
    key_id: str
    timestamp: datetime
    body_sm3: bytes


def _lookup(sender_keys: SenderLookup, kid: str) -> SenderKey:
    found = sender_keys(kid) if callable(sender_keys) else sender_keys.get(kid)
    if found is None:
        raise UnknownKeyError(f"{H_KEY_ID} {kid} is not a registered hospital key")
    return found if isinstance(found, SenderKey) else SenderKey(found)


def verify_request(
    body: bytes,
    headers: Mapping[str, str],
    *,
    sender_keys: SenderLookup,
    now: datetime | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    replay_cache: ReplayCache | None = None,
) -> tuple[str, str, str, datetime, bytes]:
    """Headers + signature + freshness (+ replay). Returns (org, key id, batch id, ts, SM3(body))."""
    h = _lower(headers)
    org, kid, batch_id = _need(h, H_ORG), _need(h, H_KEY_ID), _need(h, H_BATCH)
    ts_raw, sig_raw = _need(h, H_TS), _need(h, H_SIG)
    _check_ids(org, batch_id)
    if not _KEY_ID_RE.fullmatch(kid):
        raise EnvelopeError(f"{H_KEY_ID}: expected 64 lowercase hex digits (SM3 of the public key)")
    ts = parse_timestamp(ts_raw)
    sender = _lookup(sender_keys, kid)
    if sender.org_code is not None and sender.org_code != org:
        raise OrgMismatchError(f"key {kid[:16]}... is registered for org {sender.org_code}, not {org}")
    body_sm3 = sm3(body)
    sender.public_key.verify(_decode_sig(sig_raw), request_signing_string(org, kid, batch_id, ts_raw, body_sm3))
    skew = abs(((now or datetime.now(UTC)) - ts).total_seconds())
    if skew > window_s:
        raise ExpiredError(f"{H_TS} {ts_raw} is {skew:.0f} s away from the receiver's clock (limit {window_s:.0f} s)")
    if replay_cache is not None:
        replay_cache.check_and_add(kid, batch_id, ts_raw)
    return org, kid, batch_id, ts, body_sm3


def decrypt_body(body: bytes, recipient_key: SM2PrivateKey, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Unframe, unwrap the SM4 key, decrypt and gunzip (bounded: no gzip bombs)."""
    if len(body) < 8 or body[:4] != MAGIC:
        raise EnvelopeError("body is not a cdcsync envelope (bad magic)")
    if body[4] != VERSION or body[5] != SUITE_SM2_SM4GCM_SM3:
        raise UnsupportedVersionError(f"envelope version {body[4]} suite {body[5]} not supported (want 1/1)")
    wlen = int.from_bytes(body[6:8], "big")
    head_end = 8 + wlen + sm4.NONCE_SIZE
    if len(body) < head_end + sm4.TAG_SIZE:
        raise EnvelopeError("envelope truncated")
    head = body[:head_end]
    cek = recipient_key.decrypt(body[8 : 8 + wlen])
    if len(cek) != sm4.KEY_SIZE:
        raise DecryptError(f"wrapped key is {len(cek)} bytes, expected {sm4.KEY_SIZE}")
    compressed = sm4.decrypt_gcm(cek, body[8 + wlen : head_end], body[head_end:], aad=head)
    d = zlib.decompressobj(wbits=31)
    try:
        payload = d.decompress(compressed, max_payload + 1)
    except Exception as exc:  # zlib.error / isal's IsalError
        raise EnvelopeError(f"payload is not valid gzip: {exc}") from None
    if len(payload) > max_payload:
        raise PayloadTooLargeError(f"payload exceeds {max_payload} bytes after decompression")
    if not d.eof or d.unused_data:
        raise EnvelopeError("payload gzip stream truncated or followed by garbage")
    return payload


def open_sealed(
    body: bytes,
    headers: Mapping[str, str],
    *,
    recipient_key: SM2PrivateKey,
    sender_keys: SenderLookup,
    now: datetime | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    replay_cache: ReplayCache | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> Opened:
    """Platform side: verify, check freshness and replay, then decrypt. Raises a CryptoError
    subclass whose `code`/`http_status` is what the platform answers (see the protocol doc)."""
    if len(body) > max_body:
        raise PayloadTooLargeError(f"request body exceeds {max_body} bytes")
    org, kid, batch_id, ts, body_sm3 = verify_request(
        body, headers, sender_keys=sender_keys, now=now, window_s=window_s, replay_cache=replay_cache
    )
    payload = decrypt_body(body, recipient_key, max_payload=max_payload)
    return Opened(payload, org, batch_id, kid, ts, body_sm3)


# --------------------------------------------------------------------------- reply


@dataclass(frozen=True)
class Rejection:
    id: str
    reason: str
    field: str | None = None


@dataclass(frozen=True)
class Reply:
    """The platform's answer: every event id of the batch is in `accepted` or `rejected`.
    `duplicates` (a subset of `accepted`) lists ids the platform had already stored."""

    org_code: str
    batch_id: str
    accepted: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "version": 1,
                "org_code": self.org_code,
                "batch_id": self.batch_id,
                "accepted": self.accepted,
                "duplicates": self.duplicates,
                "rejected": [
                    {"id": r.id, "reason": r.reason, **({"field": r.field} if r.field else {})} for r in self.rejected
                ],
            }
        )

    @classmethod
    def from_json(cls, body: bytes) -> Reply:
        try:
            doc: Any = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"reply is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise EnvelopeError("reply: expected a JSON object")
        if "error" in doc:
            raise EnvelopeError(f"reply is an error: {doc.get('error')}: {str(doc.get('message'))[:200]}")
        if doc.get("version") != 1:
            raise UnsupportedVersionError(f"reply version {doc.get('version')!r} not supported")

        def strs(name: str) -> list[str]:
            v = doc.get(name, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise EnvelopeError(f"reply.{name}: expected a list of strings")
            return v

        rejected = []
        raw_rej = doc.get("rejected", [])
        if not isinstance(raw_rej, list):
            raise EnvelopeError("reply.rejected: expected a list")
        for i, r in enumerate(raw_rej):
            if not (isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("reason"), str)):
                raise EnvelopeError(f"reply.rejected[{i}]: expected {{id: str, reason: str, field?: str}}")
            fld = r.get("field")
            rejected.append(Rejection(r["id"], r["reason"], fld if isinstance(fld, str) else None))
        org, batch = doc.get("org_code"), doc.get("batch_id")
        if not isinstance(org, str) or not isinstance(batch, str):
            raise EnvelopeError("reply: org_code and batch_id must be strings")
        return cls(org, batch, strs("accepted"), rejected, strs("duplicates"))

    def unaccounted(self, event_ids: list[str]) -> list[str]:
        """Ids of the batch that the reply neither accepts nor rejects (must be empty)."""
        seen = set(self.accepted) | {r.id for r in self.rejected}
        return [i for i in event_ids if i not in seen]


def error_body(code: str, message: str, field: str | None = None) -> bytes:
    """JSON body of a non-200 reply; ``field``: the event field a refusal is about (optional)."""
    return orjson.dumps({"version": 1, "error": code, "message": message, **({"field": field} if field else {})})


def sign_reply(
    body: bytes,
    *,
    platform_key: SM2PrivateKey,
    org_code: str,
    batch_id: str,
    request_sm3: bytes,
    timestamp: datetime | None = None,
) -> dict[str, str]:
    """Headers for a reply `body` answering the request whose body hashed to `request_sm3`."""
    ts = format_timestamp(timestamp)
    kid = key_id(platform_key.public_key)
    sig = platform_key.sign(reply_signing_string(org_code, kid, batch_id, ts, request_sm3, sm3(body)))
    return {
        "Content-Type": REPLY_CONTENT_TYPE,
        H_ORG: org_code,
        H_KEY_ID: kid,
        H_BATCH: batch_id,
        H_TS: ts,
        H_SIG: base64.b64encode(sig).decode(),
    }


def verify_reply(
    body: bytes,
    headers: Mapping[str, str],
    *,
    platform_pub: SM2PublicKey,
    sealed: Sealed,
) -> None:
    """Hospital side: the reply is signed by the platform key and answers exactly `sealed`."""
    h = _lower(headers)
    kid, ts, sig = _need(h, H_KEY_ID), _need(h, H_TS), _need(h, H_SIG)
    want = key_id(platform_pub)
    if not hmac.compare_digest(kid, want):
        raise SignatureError(f"reply signed by key {kid[:16]}..., expected the platform key {want[:16]}...")
    if h.get(H_ORG.lower()) != sealed.org_code or h.get(H_BATCH.lower()) != sealed.batch_id:
        raise SignatureError("reply headers name a different org code or batch id than the request")
    msg = reply_signing_string(sealed.org_code, kid, sealed.batch_id, ts, sealed.body_sm3, sm3(body))
    platform_pub.verify(_decode_sig(sig), msg)


def open_reply(body: bytes, headers: Mapping[str, str], *, platform_pub: SM2PublicKey, sealed: Sealed) -> Reply:
    """verify_reply, then parse; the reply must name the same org code and batch id."""
    verify_reply(body, headers, platform_pub=platform_pub, sealed=sealed)
    reply = Reply.from_json(body)
    if reply.org_code != sealed.org_code or reply.batch_id != sealed.batch_id:
        raise EnvelopeError("reply body names a different org code or batch id than the request")
    return reply
