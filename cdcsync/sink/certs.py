"""Certificates on the hospital side of an upstream destination (docs/upstream-protocol.md, 2.1).

* The platform's SM2 key is pinned (``platform_public_key``) or taken from certificates
  (``platform_certificates``) that must chain to ``platform_ca_file`` and allow both
  digitalSignature (it signs replies) and keyEncipherment (batches' SM4 keys are wrapped to it).
  Chain and key usage are checked at start (a wrong file stops the start with a clear error);
  the validity period at every use, so a certificate that expires while cdcsync runs stops
  being trusted then. Several certificates may be listed during a rotation.
* The hospital's own certificate (``hospital_certificate``) must hold ``hospital_key``; it is
  sent with every batch, and the platform validates it.
* ``certificate_warnings`` lists what an admin must act on (expired, not yet valid, expiring
  within 30 days) for ``cdcsync status``, the monitoring API and the status page.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cdcsync.crypto import CryptoError, KeyFileError, SignatureError
from cdcsync.crypto.keys import key_id, load_public_key
from cdcsync.crypto.sm2 import SM2PrivateKey, SM2PublicKey
from cdcsync.crypto.x509 import (
    EXPIRED,
    Cert,
    CertificateError,
    check_trust_file_permissions,
    check_validity,
    encode_chain_header,
    load_certificates,
    validate_chain,
)
from cdcsync.sink.http_settings import HttpDestination

EXPIRY_WARNING_DAYS = 30
PLATFORM_KEY_USAGE = ("digital_signature", "key_encipherment")


@dataclass(frozen=True)
class _PlatformCert:
    file: Path
    path: list[Cert]  # leaf first, CA last

    @property
    def leaf(self) -> Cert:
        return self.path[0]

    def valid_at(self, at: datetime) -> bool:
        try:
            check_validity(self.path, at)
        except CertificateError:
            return False
        return True


class PlatformKeys:
    """The platform keys one destination trusts."""

    def __init__(self, settings: HttpDestination) -> None:
        self._pinned: SM2PublicKey | None = None
        self._certs: list[_PlatformCert] = []
        if settings.platform_public_key is not None:
            check_trust_file_permissions(settings.platform_public_key)
            self._pinned = load_public_key(settings.platform_public_key)
            return
        assert settings.platform_ca_file is not None  # HttpDestination's validator
        anchors = load_certificates(settings.platform_ca_file, "平台 CA 证书")
        for f in settings.platform_certificates:
            chain = load_certificates(f, "平台证书")
            try:
                path = validate_chain(chain[0], anchors, intermediates=chain[1:], key_usage=PLATFORM_KEY_USAGE,
                                      check_time=False)
            except CertificateError as exc:
                raise KeyFileError(f"{f}: 平台证书未通过验证（{exc.code}）：{exc}") from None
            self._certs.append(_PlatformCert(f, path))

    def encryption_key(self, at: datetime | None = None) -> SM2PublicKey:
        """The key batches are encrypted to: the first certificate valid now (else the first
        listed; `check_usable` keeps such a batch from being sent)."""
        if self._pinned is not None:
            return self._pinned
        at = at or datetime.now(UTC)
        return next((c.leaf.public_key for c in self._certs if c.valid_at(at)), self._certs[0].leaf.public_key)

    def check_usable(self, at: datetime | None = None) -> None:
        """Raise CertificateError when no platform certificate is valid now."""
        at = at or datetime.now(UTC)
        if self._pinned is None and not any(c.valid_at(at) for c in self._certs):
            files = ", ".join(str(c.file) for c in self._certs)
            raise CertificateError(EXPIRED, f"no platform certificate is valid now ({files})")

    def reply_key(self, kid: str, at: datetime | None = None) -> SM2PublicKey:
        """The key a reply signed under `kid` must verify with; SignatureError if none is trusted."""
        if self._pinned is not None:
            return self._pinned  # envelope.verify_reply compares the key id itself
        at = at or datetime.now(UTC)
        for c in self._certs:
            if hmac.compare_digest(c.leaf.key_id, kid):
                if not c.valid_at(at):
                    raise CertificateError(EXPIRED, f"reply signed under platform certificate {c.file}, which is "
                                                    f"not valid now (valid {c.leaf.not_before:%Y-%m-%d} to "
                                                    f"{c.leaf.not_after:%Y-%m-%d})")
                return c.leaf.public_key
        raise SignatureError(f"reply signed by key {kid[:16]}..., not by a configured platform certificate")

    def certificates(self) -> list[tuple[Path, Cert]]:
        return [(c.file, c.leaf) for c in self._certs]


def load_hospital_certificate(path: Path, key: SM2PrivateKey) -> tuple[list[Cert], str]:
    """The hospital's chain and its X-Certificate header value; the leaf must hold `key`."""
    chain = load_certificates(path, "医院证书")
    if chain[0].public_key != key.public_key:
        raise KeyFileError(f"{path}: 医院证书中的公钥（密钥标识 {chain[0].key_id[:16]}…）与医院私钥不匹配"
                           f"（{key_id(key.public_key)[:16]}…）")
    return chain, encode_chain_header(chain)


# --------------------------------------------------------------------------- warnings


def _expiry_warning(who: str, file: Path, cert: Cert, now: datetime) -> dict[str, Any] | None:
    days = (cert.not_after - now) / timedelta(days=1)
    base = {"file": str(file), "subject": cert.subject_text, "not_after": cert.not_after.isoformat()}
    if now < cert.not_before:
        return {**base, "level": "error", "message": f"{who}证书尚未生效（{cert.not_before:%Y-%m-%d} 起生效）：{file}"}
    if days < 0:
        return {**base, "level": "error", "message": f"{who}证书已于 {cert.not_after:%Y-%m-%d} 过期：{file}"}
    if days <= EXPIRY_WARNING_DAYS:
        return {**base, "level": "warning",
                "message": f"{who}证书将于 {cert.not_after:%Y-%m-%d} 过期（剩余 {int(days)} 天），请及时更换：{file}"}
    return None


def _destination_warnings(d: HttpDestination, now: datetime) -> Iterable[dict[str, Any]]:
    files: list[tuple[str, Path]] = [(f"平台（{d.name}）", f) for f in d.platform_certificates]
    if d.hospital_certificate is not None:
        files.append(("医院", d.hospital_certificate))
    for who, f in files:
        try:
            cert = load_certificates(f, "证书")[0]
        except CryptoError as exc:
            yield {"file": str(f), "level": "error", "message": str(exc)}
            continue
        w = _expiry_warning(who, f, cert, now)
        if w is not None:
            yield {**w, "destination": d.name} if who != "医院" else w


def certificate_warnings(destinations: Iterable[Any], now: datetime | None = None) -> list[dict[str, Any]]:
    """Certificate problems of the enabled http destinations: dicts with level ("warning" |
    "error"), message (Chinese, for admins), file and, where known, destination and not_after.
    Reads the files each time (a renewed certificate clears its warning without a restart)."""
    now = now or datetime.now(UTC)
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for d in destinations:
        if not isinstance(d, HttpDestination) or not d.enabled:
            continue
        for w in _destination_warnings(d, now):
            k = (w["file"], w["message"])
            if k not in seen:  # national and provincial may share the hospital certificate
                seen.add(k)
                out.append(w)
    return out

