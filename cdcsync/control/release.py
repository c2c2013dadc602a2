"""Release manifests of the national platform (docs/control-plane.md, "Upgrades").

A manifest names one wheel: its version, the oldest version that may upgrade to it, the file
name, size and SM3 digest, Chinese release notes and whether its migrations can be undone,
signed by the platform (SM3-with-SM2) over the signing string below. The wheel's bytes are bound
by the signed size and digest, so a download is verified before anything is unpacked.

Format 2 adds ``dependencies``: the wheels of the release's dependency bundle, each with its size
and SM3, signed too (one line per file appended to the signing string; none when the list is
empty, so a format-1 manifest's signing string is unchanged). A manifest without dependencies is
still written as format 1, which older releases read.
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
_SM3_RE = re.compile(r"[0-9a-f]{64}")
# Bounds a signed size and list must keep (the largest wheels of scientific stacks are ~1 GB).
MAX_FILE_SIZE = 2 << 30
MAX_DEPENDENCIES = 1000


class ManifestError(ValueError):
    """The manifest is malformed or its signature does not verify (message in Chinese)."""


@dataclass(frozen=True)
class Dependency:
    """One wheel of the release's dependency bundle, bound by its signed size and SM3."""

    file: str
    size: int
    sm3: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "size": self.size, "sm3": self.sm3}


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
    # The signed dependency bundle (format 2); empty: the release has none it vouches for.
    dependencies: tuple[Dependency, ...] = ()

    def signing_string(self) -> bytes:
        lines = [RELEASE_PURPOSE, self.version, self.published_at, self.min_supported_version, self.wheel,
                 str(self.size), self.sm3, "1" if self.irreversible_migrations else "0",
                 sm3(self.notes.encode()).hex(), self.signer_key_id]
        # File names cannot hold spaces or newlines (_WHEEL_RE): one unambiguous line per file.
        lines += [f"dependency {d.file} {d.size} {d.sm3}" for d in self.dependencies]
        return "\n".join(lines).encode()

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": 2 if self.dependencies else 1, "version": self.version, "published_at": self.published_at,
            "min_supported_version": self.min_supported_version, "wheel": self.wheel, "size": self.size,
            "sm3": self.sm3, "notes": self.notes, "irreversible_migrations": self.irreversible_migrations,
            "signer_key_id": self.signer_key_id, "signature": base64.b64encode(self.signature).decode()}
        if self.dependencies:
            doc["dependencies"] = [d.as_dict() for d in self.dependencies]
        return doc


def version_key(version: str) -> tuple[int, ...]:
    if not _VERSION_RE.fullmatch(version):
        raise ManifestError(f"版本号 {version[:40]!r} 格式不正确（应为 主.次.修订，如 0.9.1）")
    return tuple(int(x) for x in version.split("."))


def _check_file(fields: tuple[str, str, str], name: str, size: int, digest: str) -> None:
    """``fields``: how the manifest calls the file name, size and digest (for the message)."""
    f_name, f_size, f_sm3 = fields
    if "/" in name or "\\" in name:
        raise ManifestError(f"版本清单字段 {f_name}：文件名不得包含路径分隔符（{name[:80]!r}）")
    if not _WHEEL_RE.fullmatch(name) or name.startswith("."):
        raise ManifestError(f"版本清单字段 {f_name}：文件名不合法（{name[:80]!r}，应为 名称-版本-….whl）")
    if not 0 < size <= MAX_FILE_SIZE:
        raise ManifestError(f"版本清单字段 {f_size}：{size} 字节不合理（应在 1 到 {MAX_FILE_SIZE} 之间）")
    if not _SM3_RE.fullmatch(digest):
        raise ManifestError(f"版本清单字段 {f_sm3}：不是 64 位小写十六进制的 SM3 摘要（{digest[:80]!r}）")


def check_dependencies(deps: tuple[Dependency, ...], wheel: str) -> None:
    """ManifestError naming the entry unless every dependency is a distinct, plausible wheel."""
    if len(deps) > MAX_DEPENDENCIES:
        raise ManifestError(f"版本清单字段 dependencies：{len(deps)} 个文件，超过上限 {MAX_DEPENDENCIES}")
    seen: set[str] = {wheel.casefold()}
    for i, d in enumerate(deps):
        at = f"dependencies[{i}]"
        _check_file((f"{at}.file", f"{at}.size", f"{at}.sm3"), d.file, d.size, d.sm3)
        if d.file.casefold() in seen:
            raise ManifestError(f"版本清单字段 dependencies[{i}].file：{d.file} 重复（或与安装包同名）")
        seen.add(d.file.casefold())


def sign_manifest(wheel_bytes: bytes, *, wheel: str, version: str, notes: str, platform_key: SM2PrivateKey,
                  min_supported_version: str = "0.0.0", irreversible_migrations: bool = False,
                  published_at: datetime | None = None, dependencies: tuple[Dependency, ...] = ()) -> Manifest:
    version_key(version)
    version_key(min_supported_version)
    check_dependencies(dependencies, wheel)
    unsigned = Manifest(version, format_timestamp(published_at), min_supported_version, wheel, len(wheel_bytes),
                        sm3(wheel_bytes).hex(), notes, irreversible_migrations, key_id(platform_key.public_key), b"",
                        dependencies)
    return Manifest(**{**unsigned.__dict__, "signature": platform_key.sign(unsigned.signing_string())})


def _parse_dependencies(raw: Any) -> tuple[Dependency, ...]:
    if not isinstance(raw, list):
        raise ManifestError("版本清单字段 dependencies：类型错误（应为列表）")
    out: list[Dependency] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"file", "size", "sm3"}:
            raise ManifestError(f"版本清单字段 dependencies[{i}]：应为含 file、size、sm3 三个字段的对象")
        for name, typ in (("file", str), ("size", int), ("sm3", str)):
            if not isinstance(item[name], typ) or isinstance(item[name], bool):
                raise ManifestError(f"版本清单字段 dependencies[{i}].{name}：类型错误（应为 {typ.__name__}）")
        out.append(Dependency(item["file"], item["size"], item["sm3"]))
    return tuple(out)


def parse_manifest(raw: bytes) -> Manifest:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"版本清单不是有效的 JSON：{exc}") from None
    if not isinstance(doc, dict) or doc.get("format") not in (1, 2) or isinstance(doc.get("format"), bool):
        raise ManifestError("版本清单格式不受支持（format 应为 1 或 2）")
    if doc["format"] == 1 and "dependencies" in doc:
        raise ManifestError("版本清单字段 dependencies：format 1 的清单不能含依赖列表（应为 format 2）")
    want = {"version": str, "published_at": str, "min_supported_version": str, "wheel": str, "size": int,
            "sm3": str, "notes": str, "irreversible_migrations": bool, "signer_key_id": str, "signature": str}
    for name, typ in want.items():
        if not isinstance(doc.get(name), typ) or (typ is int and isinstance(doc.get(name), bool)):
            raise ManifestError(f"版本清单字段 {name}：缺少或类型错误（应为 {typ.__name__}）")
    _check_file(("wheel", "size", "sm3"), doc["wheel"], doc["size"], doc["sm3"])
    deps = _parse_dependencies(doc.get("dependencies", []))
    check_dependencies(deps, doc["wheel"])
    version_key(doc["version"])
    version_key(doc["min_supported_version"])
    try:
        sig = base64.b64decode(doc["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError("版本清单字段 signature：不是有效的 base64") from None
    return Manifest(doc["version"], doc["published_at"], doc["min_supported_version"], doc["wheel"], doc["size"],
                    doc["sm3"], doc["notes"], doc["irreversible_migrations"], doc["signer_key_id"], sig, deps)


def verify_manifest(m: Manifest, platform_pub: SM2PublicKey) -> None:
    """ManifestError unless the configured platform key signed exactly this manifest."""
    from cdcsync.crypto import CryptoError

    if m.signer_key_id != key_id(platform_pub):
        raise ManifestError(f"版本清单由密钥 {m.signer_key_id[:16]}… 签名，不是已配置的国家平台密钥")
    try:
        platform_pub.verify(m.signature, m.signing_string())
    except CryptoError as exc:
        raise ManifestError(f"版本清单签名验证失败：{exc}") from None
