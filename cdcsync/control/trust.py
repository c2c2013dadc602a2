"""The platform's public key material in an ``upstream`` package (docs/control-plane.md).

A push may rotate the key a destination verifies the platform's replies with (and encrypts
batches to): ``platform_public_key_pem`` (a bare SM2 PUBLIC KEY, pinned) or
``platform_certificates_pem`` (SM2 certificates, each optionally followed by intermediates,
that must chain to the destination's locally configured ``platform_ca_file``: the CA stays the
hospital's decision, a push cannot bring its own trust anchor). Private keys and the hospital's
own key are refused. Validated material is written into the package's generation (mode 0644)
and the destination's settings point there, so a rollback returns to the previous files.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdcsync.crypto import CryptoError
from cdcsync.crypto.keys import key_id, load_private_key, parse_pem, public_key_pem
from cdcsync.crypto.sm2 import SM2PublicKey
from cdcsync.crypto.x509 import CertificateError, load_certificates, parse_certificates, validate_chain
from cdcsync.sink.certs import PLATFORM_KEY_USAGE
from cdcsync.sink.http_settings import HttpDestination

KEY_FIELD = "platform_public_key_pem"
CERTS_FIELD = "platform_certificates_pem"
TRUST_FIELDS = frozenset({KEY_FIELD, CERTS_FIELD})
PUBLIC_MODE = 0o644


class TrustError(ValueError):
    """Pushed key material that cannot be used; the message names the field (Chinese)."""


def _hospital_key_id(dest: HttpDestination) -> str | None:
    try:
        return key_id(load_private_key(dest.hospital_key).public_key)
    except (CryptoError, OSError):
        return None  # the pipeline reports an unreadable hospital key itself


def _refuse_private(field: str, text: str) -> None:
    if "PRIVATE KEY" in text:
        raise TrustError(f"{field}：包含私钥，拒绝接收（只能下发平台的公钥或证书，私钥不得离开其所有者）")


def _public_key(field: str, text: str, hospital_kid: str | None) -> SM2PublicKey:
    _refuse_private(field, text)
    try:
        key = parse_pem(text.encode("utf-8"))
    except CryptoError as exc:
        raise TrustError(f"{field}：不是有效的 SM2 公钥 PEM（{exc}）") from None
    if not isinstance(key, SM2PublicKey):
        raise TrustError(f"{field}：应为 -----BEGIN PUBLIC KEY----- 形式的平台 SM2 公钥")
    if hospital_kid is not None and key_id(key) == hospital_kid:
        raise TrustError(f"{field}：这是本医院的公钥，不是平台的公钥")
    return key


def _certificate(field: str, text: str, dest: HttpDestination, hospital_kid: str | None) -> None:
    _refuse_private(field, text)
    if dest.platform_ca_file is None:
        raise TrustError(f"{field}：目的地 {dest.name} 未在本机配置 platform_ca_file（签发平台证书的 CA），"
                         "无法验证下发的平台证书；请改为下发公钥 platform_public_key_pem")
    try:
        chain = parse_certificates(text.encode("utf-8"), field)
        anchors = load_certificates(dest.platform_ca_file, "平台 CA 证书")
        validate_chain(chain[0], anchors, intermediates=chain[1:], key_usage=PLATFORM_KEY_USAGE,
                       at=datetime.now(UTC))
    except CertificateError as exc:
        raise TrustError(f"{field}：平台证书未通过验证（{exc.code}）：{exc}") from None
    except CryptoError as exc:
        raise TrustError(f"{field}：无法解析平台证书：{exc}") from None
    if hospital_kid is not None and chain[0].key_id == hospital_kid:
        raise TrustError(f"{field}：这是本医院的证书，不是平台的证书")


def check_trust(i: int, d: dict[str, Any], dest: HttpDestination) -> None:
    """Validate the pushed key material of ``destinations[i]`` (raises TrustError)."""
    prefix = f"destinations[{i}]."
    if KEY_FIELD in d and CERTS_FIELD in d:
        raise TrustError(f"{prefix}{KEY_FIELD}/{CERTS_FIELD}：平台公钥与平台证书只能二选一")
    kid = _hospital_key_id(dest)
    if KEY_FIELD in d:
        if not isinstance(d[KEY_FIELD], str):
            raise TrustError(f"{prefix}{KEY_FIELD}：应为 PEM 文本")
        _public_key(prefix + KEY_FIELD, d[KEY_FIELD], kid)
    if CERTS_FIELD in d:
        certs = d[CERTS_FIELD]
        if not isinstance(certs, list) or not certs or len(certs) > 8 or not all(isinstance(c, str) for c in certs):
            raise TrustError(f"{prefix}{CERTS_FIELD}：应为 1 至 8 个 PEM 证书文本的列表")
        for j, text in enumerate(certs):
            _certificate(f"{prefix}{CERTS_FIELD}[{j}]", text, dest, kid)


def _write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, PUBLIC_MODE)


def materialize(d: dict[str, Any], gen: Path) -> dict[str, Any]:
    """``d`` with its (checked) PEM fields replaced by settings pointing at files in ``gen``."""
    out = {k: v for k, v in d.items() if k not in TRUST_FIELDS}
    name = str(d["name"])
    if KEY_FIELD in d:
        key = parse_pem(d[KEY_FIELD].encode("utf-8"))
        assert isinstance(key, SM2PublicKey)  # check_trust
        f = gen / f"{name}.platform.pub"
        _write_public(f, public_key_pem(key))
        out.update(platform_public_key=str(f), platform_certificates=[], platform_ca_file=None)
    if CERTS_FIELD in d:
        files = []
        for j, text in enumerate(d[CERTS_FIELD]):
            f = gen / f"{name}.platform.{j}.crt"
            _write_public(f, text.encode("utf-8"))
            files.append(str(f))
        out.update(platform_public_key=None, platform_certificates=files)
    return out
