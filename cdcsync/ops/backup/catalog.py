"""The backup catalogue: one directory per backup holding ``manifest.json`` and ``verify.json``.

Files, not database tables: the catalogue must outlive the database it backs up, and a table
restored from an old dump would forget every later backup.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdcsync.crypto.sm3 import DIGEST_SIZE

if TYPE_CHECKING:
    from cdcsync.config import Settings

MANIFEST = "manifest.json"
VERIFY = "verify.json"
FORMAT_VERSION = 1
ID_RE = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
_CHUNK = 1024 * 1024


class BackupError(RuntimeError):
    """A backup, verification or restore could not be done (message for the admin, in Chinese)."""


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(dt.UTC).isoformat(timespec="seconds")


def parse_time(text: str | None) -> dt.datetime | None:
    return None if not text else dt.datetime.fromisoformat(text)


def sm3_file(path: Path) -> str:
    """SM3 of a file, read in chunks (dumps may be gigabytes)."""
    from cryptography.hazmat.primitives import hashes

    h = hashes.Hash(hashes.SM3())
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    digest = h.finalize()
    assert len(digest) == DIGEST_SIZE
    return digest.hex()


@dataclass
class Manifest:
    """What a backup holds. ``files``: name → {size, sm3, part}; ``source``: the row counts and
    row-hash samples of the source taken in the dump's own snapshot."""

    id: str
    kind: str  # logical | physical | all
    started_at: str
    finished_at: str | None = None
    status: str = "running"  # running | ok | failed
    error: str | None = None
    host: str = ""
    org_code: str = ""
    database: str = ""
    server_version: str = ""
    start_lsn: str | None = None
    end_lsn: str | None = None
    snapshot_lsn: str | None = None  # logical: the consistent point of the dump's snapshot
    system_identifier: str | None = None  # of the source cluster (IDENTIFY_SYSTEM)
    stream_positions: dict[str, str] = field(default_factory=dict)  # destination -> acked LSN at the snapshot
    # destination -> had it acknowledged everything before snapshot_lsn shortly after the dump?
    streams_caught_up: dict[str, bool] = field(default_factory=dict)
    physical: dict[str, str] = field(default_factory=dict)  # start_lsn/end_lsn of the base backup
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    secrets: str = "none"  # encrypted | excluded | none
    archived: dict[str, Any] = field(default_factory=dict)  # files archived, secrets, missing paths
    format: int = FORMAT_VERSION

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.files.values())

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"size": self.size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Backup:
    """One backup directory and what it says about itself."""

    path: Path
    manifest: Manifest
    verification: dict[str, Any] | None

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def finished(self) -> dt.datetime | None:
        return parse_time(self.manifest.finished_at)

    @property
    def ok(self) -> bool:
        return self.manifest.status == "ok"

    @property
    def verified(self) -> bool:
        return self.ok and bool(self.verification) and self.verification.get("status") == "ok"  # type: ignore[union-attr]

    def summary(self) -> dict[str, Any]:
        v = self.verification or {}
        return {"id": self.id, "kind": self.manifest.kind, "status": self.manifest.status,
                "started_at": self.manifest.started_at, "finished_at": self.manifest.finished_at,
                "size": self.manifest.size, "error": self.manifest.error, "path": str(self.path),
                "verification": {"status": v.get("status"), "at": v.get("finished_at"),
                                 "problems": v.get("problems", [])} if v else None}


def backup_dir(settings: Settings) -> Path:
    return settings.backup.directory(settings.state_dir)


def new_backup_id(root: Path, at: dt.datetime) -> str:
    base = at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name, n = base, 1
    while (root / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_manifest(path: Path, manifest: Manifest) -> None:
    _write_json(path / MANIFEST, manifest.as_dict())


def write_verification(path: Path, result: dict[str, Any]) -> None:
    _write_json(path / VERIFY, result)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path}: 无法读取（{exc}）") from None
    if not isinstance(data, dict):
        raise BackupError(f"{path}: 内容应为 JSON 对象")
    return data


def load_backup(path: Path) -> Backup:
    data = _read_json(path / MANIFEST)
    if data is None:
        raise BackupError(f"{path}: 不是备份目录（缺少 {MANIFEST}）")
    return Backup(path, Manifest.from_dict(data), _read_json(path / VERIFY))


def list_backups(root: Path) -> list[Backup]:
    """Every backup under ``root``, oldest first. Directories that are not backups are skipped."""
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and ID_RE.match(p.name) and (p / MANIFEST).exists():
            try:
                out.append(load_backup(p))
            except BackupError:
                continue
    return out


def find_backup(root: Path, backup_id: str | None) -> Backup:
    """The backup named ``backup_id``, or the newest one."""
    backups = list_backups(root)
    if backup_id is None:
        if not backups:
            raise BackupError(f"{root}: 还没有任何备份（先执行 cdcsync backup run）")
        return backups[-1]
    for b in backups:
        if b.id == backup_id:
            return b
    raise BackupError(f"没有编号为 {backup_id} 的备份（cdcsync backup list 查看）")


def latest_verified_backup(settings: Settings, max_age: dt.timedelta | None = None) -> Backup | None:
    """The newest backup whose verification passed, if it finished within ``max_age`` (for the
    upgrade code: no upgrade without a restorable backup of the state it changes)."""
    for b in reversed(list_backups(backup_dir(settings))):
        if not b.verified:
            continue
        if max_age is not None and (b.finished is None or now_utc() - b.finished > max_age):
            return None
        return b
    return None

