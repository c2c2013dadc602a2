"""Alerts that reach a person: each fault (cdcsync.ops.faults) is sent once when it opens and once
more when it is resolved, to every configured channel — SMTP mail and generic webhooks (JSON
signed with HMAC-SM3). What was sent is recorded in ``cdcsync.fault.alerts_sent`` (tags
``<channel id>:open`` / ``<channel id>:resolved``), so a restart or a second tick never sends it
again; a channel that failed is tried again on a later tick.

Webhook request: ``POST`` with ``Content-Type: application/json``, headers
``X-Cdcsync-Timestamp`` (RFC 3339 UTC) and ``X-Cdcsync-Signature: hmac-sm3=<hex>`` over
``timestamp + "\\n" + body`` with the key in ``secret_file``; body::

    {"version": 1, "event": "fault.opened" | "fault.resolved", "org_code": …, "hospital": …,
     "sent_at": …, "fault": {fault_id, code, title, subject, severity, message, resolution,
     opened_at, resolved_at}}

No patient data: faults carry only codes, names of destinations and files, times and figures.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
import time
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import httpx
import orjson

from cdcsync.beijing import BEIJING
from cdcsync.crypto.sm3 import hmac_sm3, sm3
from cdcsync.ops.faults import FaultBook, FaultRecord
from cdcsync.secrets import read_secret
from cdcsync.settings.ops import AlertSettings, SmtpChannel, WebhookChannel

log = logging.getLogger(__name__)

OPENED = "open"
RESOLVED = "resolved"
H_TIMESTAMP = "X-Cdcsync-Timestamp"
H_SIGNATURE = "X-Cdcsync-Signature"


class AlertError(Exception):
    """A channel could not deliver an alert (tried again later)."""


class Channel(Protocol):
    id: str

    def send(self, fault: FaultRecord, kind: str, org_code: str, hospital: str) -> None: ...


def _local(t: dt.datetime | None) -> str:
    return t.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S") if t else "—"


def alert_text(fault: FaultRecord, kind: str, org_code: str, hospital: str) -> tuple[str, str]:
    """(subject, body) in Chinese for a person."""
    head = "已恢复" if kind == RESOLVED else ("故障" if fault.severity == "error" else "警告")
    subject = f"【前置软件{head}】{hospital}（{org_code}）{fault.title}：{fault.subject}"
    lines = [
        f"医院：{hospital}（机构代码 {org_code}）",
        f"故障代码：{fault.code}（{fault.title}）",
        f"对象：{fault.subject}",
        f"级别：{'故障' if fault.severity == 'error' else '警告'}",
        f"说明：{fault.message}",
        f"发现时间：{_local(fault.opened_at)}",
    ]
    if kind == RESOLVED:
        lines.append(f"恢复时间：{_local(fault.resolved_at)}")
    else:
        lines.append(f"处理建议：{fault.resolution}")
    lines += ["", f"故障编号：{fault.fault_id}", "此邮件由 cdcsync 前置软件自动发送。"]
    return subject, "\n".join(lines) + "\n"


class SmtpSender:
    def __init__(self, cfg: SmtpChannel) -> None:
        self.cfg = cfg
        self.id = "smtp-" + sm3(f"{cfg.host}:{cfg.port}:{','.join(cfg.recipients)}".encode()).hex()[:8]

    def send(self, fault: FaultRecord, kind: str, org_code: str, hospital: str) -> None:
        cfg = self.cfg
        subject, body = alert_text(fault, kind, org_code, hospital)
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = cfg.sender
        msg["To"] = ", ".join(cfg.recipients)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=cfg.sender.split("@", 1)[1])
        msg["X-Cdcsync-Fault"] = f"{fault.fault_id} {kind}"
        msg.set_content(body)
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
                if cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username and cfg.password_file:
                    smtp.login(cfg.username, read_secret(cfg.password_file))
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise AlertError(f"SMTP {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}") from None


def webhook_body(fault: FaultRecord, kind: str, org_code: str, hospital: str) -> bytes:
    return orjson.dumps({"version": 1, "event": f"fault.{'resolved' if kind == RESOLVED else 'opened'}",
                         "org_code": org_code, "hospital": hospital,
                         "sent_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "fault": fault.as_dict()})


def webhook_signature(key: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Cdcsync-Signature`` value a receiver recomputes and compares."""
    return "hmac-sm3=" + hmac_sm3(key, timestamp.encode(), b"\n", body).hex()


class WebhookSender:
    def __init__(self, cfg: WebhookChannel) -> None:
        self.cfg = cfg
        self.id = "webhook-" + sm3(cfg.url.encode()).hex()[:8]
        self._key = read_secret(cfg.secret_file).encode()  # checked at start: 0600, present

    def send(self, fault: FaultRecord, kind: str, org_code: str, hospital: str) -> None:
        body = webhook_body(fault, kind, org_code, hospital)
        ts = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        verify: ssl.SSLContext | bool = True
        if self.cfg.ca_bundle is not None:
            verify = ssl.create_default_context(cafile=str(self.cfg.ca_bundle))
        try:
            r = httpx.post(self.cfg.url, content=body, timeout=self.cfg.timeout_s, verify=verify, headers={
                "Content-Type": "application/json", H_TIMESTAMP: ts,
                H_SIGNATURE: webhook_signature(self._key, ts, body), "User-Agent": "cdcsync"})
        except httpx.HTTPError as exc:
            raise AlertError(f"webhook: {type(exc).__name__}") from None
        if not 200 <= r.status_code < 300:
            raise AlertError(f"webhook: HTTP {r.status_code}")


def build_channels(cfg: AlertSettings) -> list[Channel]:
    return [*(SmtpSender(c) for c in cfg.smtp), *(WebhookSender(c) for c in cfg.webhooks)]


class AlertDispatcher:
    """Sends what is due for each fault to each channel; remembers it in the fault book."""

    def __init__(self, channels: Iterable[Channel], org_code: str, hospital: str, retry_s: float = 60.0) -> None:
        self.channels = list(channels)
        self.org_code = org_code
        self.hospital = hospital
        self.retry_s = retry_s
        self._failed_at: dict[str, float] = {}
        self.last_errors: dict[str, str] = {}

    def dispatch(self, book: FaultBook) -> int:
        """Send every due alert; returns how many were sent."""
        if not self.channels:
            return 0
        sent = 0
        for fault in book.needing_alerts():
            for ch in self.channels:
                for kind in self._due(fault, ch.id):
                    if time.monotonic() - self._failed_at.get(ch.id, -1e9) < self.retry_s:
                        continue
                    try:
                        ch.send(fault, kind, self.org_code, self.hospital)
                    except AlertError as exc:
                        self._failed_at[ch.id] = time.monotonic()
                        self.last_errors[ch.id] = str(exc)
                        log.warning("alert %s for fault %s via %s failed: %s", kind, fault.fault_id, ch.id, exc)
                        continue
                    self._failed_at.pop(ch.id, None)
                    book.mark_alerted(fault.fault_id, f"{ch.id}:{kind}")
                    sent += 1
                    log.info("alert %s for fault %s (%s) sent via %s", kind, fault.fault_id, fault.code, ch.id)
        return sent

    @staticmethod
    def _due(fault: FaultRecord, channel_id: str) -> list[str]:
        opened = f"{channel_id}:{OPENED}" in fault.alerts_sent
        resolved = f"{channel_id}:{RESOLVED}" in fault.alerts_sent
        if fault.resolved_at is None:
            return [] if opened else [OPENED]
        # A fault that came and went before its alert went out needs no alert now.
        return [RESOLVED] if opened and not resolved else []
