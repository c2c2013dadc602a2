"""Release manifests of the national platform (docs/control-plane.md, "Upgrades").

A manifest names one wheel: its version, the oldest version that may upgrade to it, the file
name, size and SM3 digest, Chinese release notes and whether its migrations can be undone,
signed by the platform (SM3-with-SM2) over the signing string below. The wheel's bytes are bound
by the signed size and digest, so a download is verified before anything is unpacked.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from cdcsync.crypto.envelope import format_timestamp
from cdcsync.crypto.keys import key_id
from cdcsync.crypto.sm2 import SM2PrivateKey, SM2PublicKey
from cdcsync.crypto.sm3 import sm3

RELEASE_PURPOSE = "CDCSYNC-RELEASE-V1"
MANIFEST_PATH = "/api/v1/releases/latest"
FILES_PATH = "/api/v1/releases/files"
_VERSION_RE = re.compile(r"\d+(?:\.\d+){0,3}")
_WHEEL_RE = re.compile(r"[A-Za-z0-9_.+-]{1,200}\.whl")


class ManifestError(ValueError):
    """The manifest is malformed or its signature does not verify (message in Chinese)."""


@dataclass(frozen=True)
class Manifest:
    version: str
    published_at: str
    min_supported_version: str
    wheel: str
    size: int
    sm3: str
    notes: str
    irreversible_migrations: bool
    signer_key_id: str
    signature: bytes

    def signing_string(self) -> bytes:
        return "\n".join((RELEASE_PURPOSE, self.version, self.published_at, self.min_supported_version, self.wheel,
                          str(self.size), self.sm3, "1" if self.irreversible_migrations else "0",
                          sm3(self.notes.encode()).hex(), self.signer_key_id)).encode()

    def as_dict(self) -> dict[str, Any]:
        return {"format": 1, "version": self.version, "published_at": self.published_at,
                "min_supported_version": self.min_supported_version, "wheel": self.wheel, "size": self.size,
                "sm3": self.sm3, "notes": self.notes, "irreversible_migrations": self.irreversible_migrations,
                "signer_key_id": self.signer_key_id, "signature": base64.b64encode(self.signature).decode()}


def version_key(version: str) -> tuple[int, ...]:
    if not _VERSION_RE.fullmatch(version):
        raise ManifestError(f"版本号 {version[:40]!r} 格式不正确（应为 主.次.修订，如 0.9.1）")
    return tuple(int(x) for x in version.split("."))


def sign_manifest(wheel_bytes: bytes, *, wheel: str, version: str, notes: str, platform_key: SM2PrivateKey,
                  min_supported_version: str = "0.0.0", irreversible_migrations: bool = False,
                  published_at: datetime | None = None) -> Manifest:
    version_key(version)
    version_key(min_supported_version)
    unsigned = Manifest(version, format_timestamp(published_at), min_supported_version, wheel, len(wheel_bytes),
                        sm3(wheel_bytes).hex(), notes, irreversible_migrations, key_id(platform_key.public_key), b"")
    return Manifest(**{**unsigned.__dict__, "signature": platform_key.sign(unsigned.signing_string())})


def parse_manifest(raw: bytes) -> Manifest:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"版本清单不是有效的 JSON：{exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise ManifestError("版本清单格式不受支持（format 应为 1）")
    want = {"version": str, "published_at": str, "min_supported_version": str, "wheel": str, "size": int,
            "sm3": str, "notes": str, "irreversible_migrations": bool, "signer_key_id": str, "signature": str}
    for name, typ in want.items():
        if not isinstance(doc.get(name), typ) or (typ is int and isinstance(doc.get(name), bool)):
            raise ManifestError(f"版本清单字段 {name}：缺少或类型错误（应为 {typ.__name__}）")
    if not _WHEEL_RE.fullmatch(doc["wheel"]):
        raise ManifestError(f"版本清单字段 wheel：文件名不合法（{doc['wheel'][:80]!r}）")
    version_key(doc["version"])
    version_key(doc["min_supported_version"])
    try:
        sig = base64.b64decode(doc["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError("版本清单字段 signature：不是有效的 base64") from None
    return Manifest(doc["version"], doc["published_at"], doc["min_supported_version"], doc["wheel"], doc["size"],
                    doc["sm3"], doc["notes"], doc["irreversible_migrations"], doc["signer_key_id"], sig)


def verify_manifest(m: Manifest, platform_pub: SM2PublicKey) -> None:
    """ManifestError unless the configured platform key signed exactly this manifest."""
    from cdcsync.crypto import CryptoError

    if m.signer_key_id != key_id(platform_pub):
        raise ManifestError(f"版本清单由密钥 {m.signer_key_id[:16]}… 签名，不是已配置的国家平台密钥")
    try:
        platform_pub.verify(m.signature, m.signing_string())
    except CryptoError as exc:
        raise ManifestError(f"版本清单签名验证失败：{exc}") from None
