"""A downloaded release checked against its signed manifest (docs/control-plane.md, "Upgrades").

``<state_dir>/releases/<V>/`` holds the wheel and, for a format-2 manifest, ``wheelhouse/`` with
the signed dependency bundle. Every listed file must be there with its signed size and SM3, and
nothing else may be in ``wheelhouse/``: a file the platform did not sign is refused, never handed
to pip. Without a signed list ``wheelhouse/`` is not used at all.

``stage`` copies exactly the verified bytes (hashed while copying) into a private directory that
pip installs from, so nothing can be swapped between the check and the install.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes

from cdcsync.control.release import Manifest

WHEELHOUSE = "wheelhouse"
_CHUNK = 1 << 20


class BundleError(Exception):
    """A downloaded file does not match the signed manifest, or an unsigned one is present (Chinese)."""


def file_digest(path: Path, copy_to: BinaryIO | None = None) -> tuple[int, str]:
    """Size and SM3 hex of ``path`` (streamed); the same bytes written to ``copy_to`` when given."""
    digest = hashes.Hash(hashes.SM3())
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            size += len(chunk)
            digest.update(chunk)
            if copy_to is not None:
                copy_to.write(chunk)
    return size, digest.finalize().hex()


def _check(path: Path, what: str, size: int, sm3: str, copy_to: BinaryIO | None = None) -> None:
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{what} {path} 不存在（或不是普通文件）：请重新执行 cdcsync upgrade download，已拒绝安装")
    got_size, got_sm3 = file_digest(path, copy_to)
    if got_size != size:
        raise BundleError(f"{what} {path.name} 大小 {got_size} 字节与版本清单（{size} 字节）不符"
                          "（下载后被改动或损坏），已拒绝安装")
    if got_sm3 != sm3:
        raise BundleError(f"{what} {path.name} 的 SM3 摘要与版本清单不符（下载后被改动或损坏），已拒绝安装")


def unlisted(m: Manifest, release_dir: Path) -> list[str]:
    """Entries of ``<release_dir>/wheelhouse/`` the manifest does not sign (any kind, hidden ones too)."""
    house = release_dir / WHEELHOUSE
    if not m.dependencies or not house.is_dir():
        return []
    listed = {d.file for d in m.dependencies}
    return sorted(p.name for p in house.iterdir() if p.name not in listed)


def _refuse_unlisted(m: Manifest, release_dir: Path) -> None:
    extra = unlisted(m, release_dir)
    if extra:
        more = f" 等 {len(extra)} 个文件" if len(extra) > 1 else ""
        raise BundleError(f"依赖目录 {release_dir / WHEELHOUSE} 中的 {extra[0]}{more} 不在国家平台签名的版本清单中"
                          "（来源不明），已拒绝安装：请核实后删除")


def verify(m: Manifest, release_dir: Path) -> Path:
    """The wheel's path once the wheel and every signed dependency match the manifest and the
    wheelhouse holds nothing unsigned; else BundleError naming the file."""
    wheel = release_dir / m.wheel
    _check(wheel, "安装包", m.size, m.sm3)
    _refuse_unlisted(m, release_dir)
    for d in m.dependencies:
        _check(release_dir / WHEELHOUSE / d.file, "依赖包", d.size, d.sm3)
    return wheel


def stage(m: Manifest, release_dir: Path, into: Path) -> Path:
    """Copy the wheel and the signed dependencies into the (empty, private) ``into``, verifying
    the very bytes copied; returns the staged wheel. pip then sees only signed files."""
    _refuse_unlisted(m, release_dir)
    into.mkdir(parents=True, exist_ok=True)
    files = [(release_dir / m.wheel, "安装包", m.size, m.sm3),
             *((release_dir / WHEELHOUSE / d.file, "依赖包", d.size, d.sm3) for d in m.dependencies)]
    for src, what, size, sm3 in files:
        with open(into / src.name, "xb") as out:
            _check(src, what, size, sm3, out)
            out.flush()
            os.fsync(out.fileno())
    return into / m.wheel
