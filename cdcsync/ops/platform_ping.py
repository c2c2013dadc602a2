"""A platform's reachability: a TLS handshake, then a signed no-op request (``POST
/api/v1/edr/ping``, docs/upstream-protocol.md) the platform answers with a signed reply. The
reply's ``Date`` header gives the clock offset."""

from __future__ import annotations

import email.utils
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import orjson

from cdcsync.sink.http_settings import HttpDestination

PING_PATH = "/api/v1/edr/ping"


@dataclass
class PingResult:
    ok: bool
    detail: str
    offset_s: float | None = None


def _handshake(dest: HttpDestination, ctx: ssl.SSLContext, timeout: float) -> str:
    parts = urlsplit(dest.url)
    host, port = parts.hostname or "", parts.port or 443
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        return str(tls.version())


def ping_platform(dest: HttpDestination, org_code: str, timeout: float = 10.0) -> PingResult:
    from cdcsync.crypto.envelope import seal, verify_reply
    from cdcsync.crypto.keys import load_private_key
    from cdcsync.sink.certs import PlatformKeys, load_hospital_certificate
    from cdcsync.sink.http import HttpSink

    try:
        key = load_private_key(dest.hospital_key)
        platform = PlatformKeys(dest)
        cert = load_hospital_certificate(dest.hospital_certificate, key)[1] if dest.hospital_certificate else None
        verify = HttpSink._tls_verify(dest)
    except Exception as exc:  # keys and certificates: reported by the key checks too
        return PingResult(False, f"密钥或证书无法加载：{exc}")
    tls = "明文 HTTP（仅本机试运行）"
    if isinstance(verify, ssl.SSLContext):
        try:
            tls = _handshake(dest, verify, timeout)
        except (OSError, ssl.SSLError) as exc:
            return PingResult(False, f"TLS 握手失败（{dest.url}）：{exc}")
    batch_id = f"ping-{uuid.uuid4().hex}"
    payload = orjson.dumps({"version": 1, "org_code": org_code, "batch_id": batch_id, "ping": True})
    sealed = seal(payload, sender_key=key, recipient_pub=platform.encryption_key(), org_code=org_code,
                  batch_id=batch_id, certificate=cert)
    sent = time.time()
    try:
        with httpx.Client(verify=verify, timeout=timeout) as client:
            r = client.post(dest.url + PING_PATH, content=sealed.body, headers=sealed.headers)
    except httpx.HTTPError as exc:
        return PingResult(False, f"无法连接平台 {dest.url}：{type(exc).__name__} {exc}")
    offset = parse_date_offset(r.headers.get("date"), sent, time.time())
    if r.status_code != 200:
        return PingResult(False, f"平台答复 HTTP {r.status_code}：{r.text[:200]}", offset)
    try:
        kid = r.headers.get("x-key-id", "")
        verify_reply(r.content, r.headers, platform_pub=platform.reply_key(kid), sealed=sealed)
    except Exception as exc:
        return PingResult(False, f"平台应答的签名未通过验证：{exc}", offset)
    return PingResult(True, f"{tls}，签名的空请求已得到平台签名应答（{(time.time() - sent) * 1000:.0f} ms）", offset)


def parse_date_offset(date_header: str | None, sent: float, received: float) -> float | None:
    """Local clock minus the platform's (seconds), from its ``Date`` header (1 s resolution)."""
    if not date_header:
        return None
    try:
        theirs = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return None
    return (sent + received) / 2 - theirs
