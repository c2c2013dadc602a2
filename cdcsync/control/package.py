"""Configuration packages and the signed replies to them (docs/control-plane.md).

A package is one JSON object (the request body may be gzip-compressed)::

    {"format": 1, "package_id": "...", "kind": "value_domains", "version": 7,
     "created_at": "2026-12-02T05:00:00.000Z", "org_code": "...", "signer_key_id": "<hex>",
     "payload": "<base64 of the exact payload bytes>", "signature": "<base64 DER SM2 signature>"}

The platform signs (SM3-with-SM2, the key of its configured public key or certificate) the
signing string below, which binds every header field to SM3 of the exact payload bytes; the
payload travels base64-encoded so that those bytes survive any JSON re-encoding.

The front end answers every request (refusals included) with a JSON reply signed by its own
hospital key over a string binding org code, package id, its timestamp, SM3 of the request body
it answers and SM3 of the reply body (headers as in docs/upstream-protocol.md, different purpose).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from cdcsync.crypto import CryptoError, SignatureError
from cdcsync.crypto.envelope import format_timestamp, parse_timestamp
from cdcsync.crypto.keys import key_id
from cdcsync.crypto.sm2 import SM2PrivateKey, SM2PublicKey
from cdcsync.crypto.sm3 import sm3

FORMAT = 1
PACKAGE_PURPOSE = "CDCSYNC-CONFIG-PACKAGE-V1"
REPLY_PURPOSE = "CDCSYNC-CONFIG-REPLY-V1"
PACKAGES_PATH = "/api/v1/config/packages"
KINDS = ("value_domains", "upstream", "timeliness", "rules")

H_ORG = "X-Org-Code"
H_KEY_ID = "X-Key-Id"
H_PACKAGE = "X-Package-Id"
H_TS = "X-Timestamp"
H_SIG = "X-Signature"

_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ORG_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
_KID_RE = re.compile(r"[0-9a-f]{64}")

# States a package goes through, in order; "refused" ends it at the step that failed.
STATES = ("received", "verified", "staged", "checked", "applied", "acknowledged")


class PackageError(Exception):
    """A package is refused: ``reason`` is the machine code, the message says why (Chinese)."""

    def __init__(self, reason: str, message: str, *, state: str = "received", http_status: int = 400,
                 detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.state = state  # the last state reached before the refusal
        self.http_status = http_status
        self.detail = dict(detail or {})


@dataclass(frozen=True)
class Package:
    package_id: str
    kind: str
    version: int
    created_at: str
    org_code: str
    signer_key_id: str
    payload: bytes
    signature: bytes

    @property
    def payload_sm3(self) -> bytes:
        return sm3(self.payload)

    def signing_string(self) -> bytes:
        return package_signing_string(self.org_code, self.package_id, self.kind, self.version, self.created_at,
                                      self.signer_key_id, self.payload_sm3)

    def payload_json(self) -> Any:
        try:
            return orjson.loads(self.payload)
        except orjson.JSONDecodeError as exc:
            raise PackageError("invalid_payload", f"配置内容不是有效的 JSON：{exc}", state="verified",
                               http_status=422) from None

    def to_json(self) -> bytes:
        return orjson.dumps({
            "format": FORMAT, "package_id": self.package_id, "kind": self.kind, "version": self.version,
            "created_at": self.created_at, "org_code": self.org_code, "signer_key_id": self.signer_key_id,
            "payload": base64.b64encode(self.payload).decode(), "signature": base64.b64encode(self.signature).decode(),
        })


def package_signing_string(org_code: str, package_id: str, kind: str, version: int, created_at: str, kid: str,
                           payload_sm3: bytes) -> bytes:
    """Exactly the bytes the platform signs."""
    return "\n".join((PACKAGE_PURPOSE, org_code, package_id, kind, str(version), created_at, kid,
                      payload_sm3.hex())).encode()


def sign_package(payload: bytes, *, platform_key: SM2PrivateKey, package_id: str, kind: str, version: int,
                 org_code: str, created_at: datetime | None = None) -> Package:
    """The platform side (cdcsync upstream-sim push-config)."""
    created = format_timestamp(created_at)
    kid = key_id(platform_key.public_key)
    unsigned = Package(package_id, kind, version, created, org_code, kid, payload, b"")
    return Package(package_id, kind, version, created, org_code, kid, payload,
                   platform_key.sign(unsigned.signing_string()))


def decompress(body: bytes, max_bytes: int) -> bytes:
    """The body itself, or its gzip content (bounded: no gzip bombs)."""
    if body[:2] != b"\x1f\x8b":
        return body
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise PackageError("malformed", f"请求体不是有效的 gzip：{exc}") from None
    if len(out) > max_bytes:
        raise PackageError("too_large", f"配置包解压后超过 {max_bytes} 字节", http_status=413)
    if not d.eof:
        raise PackageError("malformed", "请求体 gzip 数据不完整")
    return out


def gzip_body(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _field(doc: Mapping[str, Any], name: str, typ: type, pattern: re.Pattern[str] | None = None) -> Any:
    value = doc.get(name)
    if not isinstance(value, typ) or isinstance(value, bool):
        raise PackageError("malformed", f"字段 {name}：缺少或类型错误（应为 {typ.__name__}）")
    if pattern is not None and not pattern.fullmatch(str(value)):
        raise PackageError("malformed", f"字段 {name}：格式不正确（{str(value)[:80]!r}）")
    return value


def _b64(doc: Mapping[str, Any], name: str) -> bytes:
    value = _field(doc, name, str)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PackageError("malformed", f"字段 {name}：不是有效的 base64") from None


def parse_package(raw: bytes) -> Package:
    """The package of a (decompressed) request body; PackageError naming the field otherwise."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PackageError("malformed", f"请求体不是有效的 JSON：{exc}") from None
    if not isinstance(doc, dict):
        raise PackageError("malformed", "请求体应为 JSON 对象")
    if doc.get("format") != FORMAT:
        raise PackageError("unsupported_format", f"字段 format：只支持 {FORMAT}，实际为 {doc.get('format')!r}",
                           http_status=415)
    kind = _field(doc, "kind", str)
    if kind not in KINDS:
        raise PackageError("unknown_kind", f"字段 kind：应为 {'、'.join(KINDS)} 之一，实际为 {kind[:40]!r}")
    version = _field(doc, "version", int)
    if version < 1:
        raise PackageError("malformed", f"字段 version：应为正整数，实际为 {version}")
    created = _field(doc, "created_at", str)
    try:
        parse_timestamp(created)
    except CryptoError:
        raise PackageError("malformed",
                           f"字段 created_at：应为 YYYY-MM-DDTHH:MM:SS.mmmZ（UTC），实际为 {created[:40]!r}") from None
    return Package(
        package_id=_field(doc, "package_id", str, _ID_RE), kind=kind, version=version, created_at=created,
        org_code=_field(doc, "org_code", str, _ORG_RE), signer_key_id=_field(doc, "signer_key_id", str, _KID_RE),
        payload=_b64(doc, "payload"), signature=_b64(doc, "signature"),
    )


def verify_signature(pkg: Package, platform_pub: SM2PublicKey) -> None:
    """SignatureError unless the configured platform key signed exactly this package."""
    want = key_id(platform_pub)
    if pkg.signer_key_id != want:
        raise SignatureError(f"配置包由密钥 {pkg.signer_key_id[:16]}… 签名，不是已配置的国家平台密钥 {want[:16]}…")
    platform_pub.verify(pkg.signature, pkg.signing_string())


def created_time(pkg: Package) -> datetime:
    return parse_timestamp(pkg.created_at)


# --------------------------------------------------------------------------- replies


def reply_signing_string(org_code: str, kid: str, package_id: str, timestamp: str, request_sm3: bytes,
                         body_sm3: bytes) -> bytes:
    return "\n".join((REPLY_PURPOSE, org_code, kid, package_id, timestamp, request_sm3.hex(), body_sm3.hex())).encode()


def sign_reply(body: bytes, *, key: SM2PrivateKey, org_code: str, package_id: str, request_sm3: bytes,
               timestamp: datetime | None = None) -> dict[str, str]:
    """Headers of a reply signed by the front end's key."""
    ts = format_timestamp(timestamp)
    kid = key_id(key.public_key)
    sig = key.sign(reply_signing_string(org_code, kid, package_id, ts, request_sm3, sm3(body)))
    return {"Content-Type": "application/json", H_ORG: org_code, H_KEY_ID: kid, H_PACKAGE: package_id,
            H_TS: ts, H_SIG: base64.b64encode(sig).decode()}


def verify_reply(body: bytes, headers: Mapping[str, str], *, hospital_pub: SM2PublicKey, request_body: bytes
                 ) -> dict[str, Any]:
    """Platform side: the reply is signed by the hospital's key and answers exactly ``request_body``.
    Returns the parsed reply."""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        kid, org, pid = h[H_KEY_ID.lower()], h[H_ORG.lower()], h[H_PACKAGE.lower()]
        ts, sig = h[H_TS.lower()], h[H_SIG.lower()]
    except KeyError as exc:
        raise SignatureError(f"reply header {exc.args[0]} missing") from None
    if kid != key_id(hospital_pub):
        raise SignatureError(f"reply signed by key {kid[:16]}..., not by the hospital's key")
    try:
        raw_sig = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("reply signature is not base64") from None
    hospital_pub.verify(raw_sig, reply_signing_string(org, kid, pid, ts, sm3(request_body), sm3(body)))
    doc: dict[str, Any] = orjson.loads(body)
    if doc.get("package_id", "") != pid or doc.get("org_code") != org:
        raise SignatureError("reply body names another package or org code than its signed headers")
    return doc


def now_utc() -> datetime:
    return datetime.now(UTC)
