"""``cdcsync upgrade check | download | history``: new versions from the national platform.

``check`` fetches the signed release manifest (cdcsync.control.release) and compares versions;
``download`` streams the wheel into ``<state_dir>/releases/<version>/`` (and each signed
dependency of a format-2 manifest into its ``wheelhouse/``) and verifies size and SM3 digest
against the verified manifest before a file gets its final name — nothing is unpacked or
installed here. Every result is a row in ``cdcsync.upgrade_event``.
Installing (side-by-side environment, migrations, switch, health check, automatic rollback)
is cdcsync.control.apply.
"""

from __future__ import annotations

import getpass
import logging
import os
import random
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from cryptography.hazmat.primitives import hashes
from psycopg.types.json import Jsonb

from cdcsync import __version__
from cdcsync.config import ConfigError, Settings
from cdcsync.control.bundle import WHEELHOUSE, BundleError, unlisted
from cdcsync.control.release import (
    FILES_PATH,
    MANIFEST_PATH,
    Manifest,
    ManifestError,
    parse_manifest,
    verify_manifest,
    version_key,
)
from cdcsync.control.service import control_destination
from cdcsync.sink.certs import PlatformKeys

log = logging.getLogger(__name__)
# Who started a detached ``upgrade apply`` (the 8884 admin), written into every step it records.
ACTOR_ENV = "CDCSYNC_UPGRADE_ACTOR"


class UpgradeError(Exception):
    """Checking or downloading failed; the message is for the admin (Chinese)."""


@dataclass(frozen=True)
class CheckResult:
    current: str
    manifest: Manifest
    newer: bool
    supported: bool  # the current version may upgrade directly (>= min_supported_version)

    @property
    def outcome(self) -> str:
        return "available" if self.newer else "up_to_date"


def _client(settings: Settings) -> tuple[httpx.Client, str]:
    dest = control_destination(settings)
    url = (settings.control.update_url or dest.url).rstrip("/")
    ca = settings.control.update_ca_bundle or dest.ca_bundle
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
    return httpx.Client(base_url=url, verify=verify, timeout=60.0), url


def record(settings: Settings, action: str, outcome: str, available: str | None, manifest: Manifest | None,
           message: str, *, current: str = __version__, actor: str | None = None) -> None:
    with psycopg.connect(settings.database.conninfo(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "INSERT INTO cdcsync.upgrade_event (action, outcome, current_version, available_version, manifest,"
            " message, actor) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (action, outcome, current, available, Jsonb(manifest.as_dict()) if manifest else None, message,
             actor or os.environ.get(ACTOR_ENV) or f"local:{getpass.getuser()}"))


def fetch_manifest(settings: Settings) -> Manifest:
    client, url = _client(settings)
    try:
        with client:
            r = client.get(MANIFEST_PATH)
    except httpx.HTTPError as exc:
        raise UpgradeError(f"无法连接国家平台 {url}：{type(exc).__name__}: {exc}") from None
    if r.status_code == 404:
        raise UpgradeError(f"国家平台 {url} 尚未发布版本清单")
    if r.status_code != 200:
        raise UpgradeError(f"国家平台 {url} 返回 HTTP {r.status_code}")
    m = parse_manifest(r.content)
    verify_manifest(m, PlatformKeys(control_destination(settings)).reply_key(m.signer_key_id))
    return m


def check(settings: Settings) -> CheckResult:
    try:
        m = fetch_manifest(settings)
    except (UpgradeError, ManifestError) as exc:
        record(settings, "check", "refused" if isinstance(exc, ManifestError) else "error", None, None, str(exc))
        raise
    result = CheckResult(__version__, m, version_key(m.version) > version_key(__version__),
                         version_key(__version__) >= version_key(m.min_supported_version))
    msg = f"可用新版本 {m.version}" if result.newer else f"已是最新版本（平台发布 {m.version}）"
    record(settings, "check", result.outcome, m.version, m, msg)
    return result


def releases_dir(settings: Settings) -> Path:
    return Path(settings.state_dir) / "releases"


def download(settings: Settings) -> Path:
    """The verified wheel of the newest release, under ``<state_dir>/releases/<version>/``, with
    the manifest's signed dependencies in its ``wheelhouse/``."""
    try:
        m = fetch_manifest(settings)
        path = _download(settings, m)
    except (UpgradeError, ManifestError, BundleError) as exc:
        record(settings, "download", "refused", None, None, str(exc))
        raise
    deps = f"，及 {len(m.dependencies)} 个已签名的依赖包" if m.dependencies else ""
    record(settings, "download", "downloaded", m.version, m, f"已下载并验证 {m.wheel}（{m.size} 字节）{deps}")
    return path


def _fetch(client: httpx.Client, url: str, name: str, size: int, sm3: str, target_dir: Path) -> Path:
    """``GET {FILES_PATH}/<name>`` into ``target_dir/.<name>.part``, refused past the signed size
    or on a size or SM3 mismatch; renamed to ``<name>`` only once it matches."""
    target_dir.mkdir(parents=True, exist_ok=True)
    final = target_dir / name
    part = target_dir / f".{name}.part"
    digest = hashes.Hash(hashes.SM3())
    got = 0
    try:
        with client.stream("GET", f"{FILES_PATH}/{name}") as r, open(part, "wb") as fh:
            if r.status_code != 200:
                raise UpgradeError(f"下载 {name} 失败：国家平台返回 HTTP {r.status_code}")
            for chunk in r.iter_bytes():
                got += len(chunk)
                if got > size:
                    raise UpgradeError(f"{name} 超过版本清单中的大小 {size} 字节，已拒绝")
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        if got != size:
            raise UpgradeError(f"{name} 大小 {got} 字节与版本清单（{size} 字节）不符，已拒绝")
        if digest.finalize().hex() != sm3:
            raise UpgradeError(f"{name} 的 SM3 摘要与版本清单不符（文件被篡改或损坏），已拒绝")
        os.replace(part, final)
    except httpx.HTTPError as exc:
        raise UpgradeError(f"无法从 {url} 下载 {name}：{type(exc).__name__}: {exc}") from None
    finally:
        part.unlink(missing_ok=True)
    return final


def _download(settings: Settings, m: Manifest) -> Path:
    target_dir = releases_dir(settings) / m.version
    client, url = _client(settings)
    with client:
        final = _fetch(client, url, m.wheel, m.size, m.sm3, target_dir)
        for d in m.dependencies:
            _fetch(client, url, d.file, d.size, d.sm3, target_dir / WHEELHOUSE)
    # A file there the platform did not sign would make apply refuse: say so now.
    extra = unlisted(m, target_dir)
    if extra:
        raise BundleError(f"依赖目录 {target_dir / WHEELHOUSE} 中的 {extra[0]} 不在国家平台签名的版本清单中"
                          "（来源不明），安装时会被拒绝：请核实后删除，再重新下载")
    (target_dir / "manifest.json").write_bytes(orjson.dumps(m.as_dict()))
    return final


def history(settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn, \
            conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT id, action, outcome, current_version, available_version, message, actor, at"
                           " FROM cdcsync.upgrade_event ORDER BY id DESC LIMIT %s", (limit,)).fetchall()


def latest_check(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """当前版本 / 可用新版本 / 更新说明 from the newest successful check (for ``status``, 8883)."""
    row = conn.execute("SELECT to_regclass('cdcsync.upgrade_event') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    row = conn.execute("SELECT outcome, available_version, manifest, at FROM cdcsync.upgrade_event"
                       " WHERE action = 'check' AND outcome IN ('available', 'up_to_date') ORDER BY id DESC LIMIT 1"
                       ).fetchone()
    if row is None:
        return {"current": __version__, "available": None, "notes": None, "checked_at": None}
    outcome, available, manifest, at = row
    newer = outcome == "available" and available is not None and version_key(available) > version_key(__version__)
    return {"current": __version__, "available": available if newer else None,
            "notes": (manifest or {}).get("notes") if newer else None, "checked_at": at.isoformat()}


class UpdateChecker:
    """The daemon's periodic check (``control.update_check_interval_h``, with jitter)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> UpdateChecker:
        try:
            control_destination(self.settings)
        except ConfigError:
            return self  # no national platform configured (kind http): nothing to ask
        if self.settings.control.update_check_interval_h > 0:
            self._thread = threading.Thread(target=self._run, name="cdcsync-update-check", daemon=True)
            self._thread.start()
        return self

    def _delay(self) -> float:
        return random.uniform(0, self.settings.control.update_check_jitter_s)  # noqa: S311 - not security

    def _run(self) -> None:
        wait = self._delay()
        while not self._stop.wait(wait):
            try:
                r = check(self.settings)
                if r.newer:
                    log.info("a new release is available: %s (running %s)", r.manifest.version, r.current)
            except Exception as exc:  # recorded by check(); the daemon goes on
                log.warning("release check failed: %s", (str(exc).splitlines() or [type(exc).__name__])[0])
            wait = self.settings.control.update_check_interval_h * 3600 + self._delay()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
