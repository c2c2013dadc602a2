"""``cdcsync upgrade apply | rollback`` (docs/control-plane.md, "Upgrades").

apply: the downloaded release is verified again (manifest signature, wheel and signed dependency
sizes and SM3, no unsigned file in its wheelhouse: a file changed or dropped on disk since
``download`` is refused before anything is installed; cdcsync.control.bundle), gated (newer than
the running release, ``min_supported_version``, a verified backup when its migrations cannot be
undone), installed into its own venv offline (cdcsync.control.releases), its ``db init`` run
with the NEW release's code, ``current`` switched, the service restarted and its health awaited
(cdcsync.control.health); unhealthy within the time limit -> linked back and restarted.
rollback: ``current`` back to ``previous``, restart, health. Every step is a row in
``cdcsync.upgrade_event``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cdcsync import __version__
from cdcsync.config import Settings
from cdcsync.control import bundle
from cdcsync.control.health import wait_healthy
from cdcsync.control.release import Manifest, ManifestError, parse_manifest, verify_manifest, version_key
from cdcsync.control.releases import InstallError, Layout, build, release_env
from cdcsync.control.service import control_destination
from cdcsync.control.upgrade import UpgradeError, record, releases_dir
from cdcsync.sink.certs import PlatformKeys

log = logging.getLogger(__name__)
Say = Callable[[str], None]
_VERSION_RE = re.compile(r"\d+(?:\.\d+){0,3}")


@dataclass(frozen=True)
class Outcome:
    ok: bool  # the target release runs and is healthy
    running: str | None  # the version the service runs now
    message: str


def _quiet(_: str) -> None:
    pass


def downloaded_version(settings: Settings) -> str | None:
    """The newest downloaded release."""
    base = releases_dir(settings)
    found = sorted((p.name for p in base.glob("*") if (p / "manifest.json").is_file()
                    and _VERSION_RE.fullmatch(p.name)), key=version_key) if base.is_dir() else []
    return found[-1] if found else None


def verified_download(settings: Settings, version: str | None) -> tuple[Manifest, Path]:
    """The downloaded release (newest when ``version`` is None), its manifest signature, its
    wheel's and signed dependencies' size and SM3 checked again now, before it is installed
    (BundleError for a changed, missing or unsigned file: cdcsync.control.bundle)."""
    base = releases_dir(settings)
    version = version or downloaded_version(settings)
    if version is None:
        raise UpgradeError("没有已下载的版本：请先执行 cdcsync upgrade download")
    version_key(version)
    mpath = base / version / "manifest.json"
    if not mpath.is_file():
        raise UpgradeError(f"版本 {version} 尚未下载（{mpath} 不存在）：请先执行 cdcsync upgrade download")
    m = parse_manifest(mpath.read_bytes())
    if m.version != version:
        raise ManifestError(f"{mpath}：版本清单写的是 {m.version}，不是 {version}")
    verify_manifest(m, PlatformKeys(control_destination(settings)).reply_key(m.signer_key_id))
    return m, bundle.verify(m, base / version)


def backup_gate(settings: Settings, before: dt.datetime | None = None) -> str | None:
    """None when a verified backup newer than ``upgrade_backup_max_age_h`` exists (finished before
    ``before`` when given: a backup of the state before the irreversible migration); else why not."""
    from cdcsync.ops.backup.catalog import latest_verified_backup

    hours = settings.control.upgrade_backup_max_age_h
    b = latest_verified_backup(settings, dt.timedelta(hours=hours))
    if b is None:
        return f"没有 {hours:g} 小时内完成并通过验证的备份（cdcsync backup run 后 cdcsync backup verify）"
    if before is not None and (b.finished is None or b.finished > before):
        return "没有在升级前完成并通过验证的备份，无法回退到不可回退的数据库迁移之前"
    return None


def _restart(settings: Settings) -> None:
    cmd = settings.control.restart_command
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=release_env())  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"重启服务（{' '.join(cmd)}）失败：{type(exc).__name__}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [f"退出码 {done.returncode}"]
        raise InstallError(f"重启服务（{' '.join(cmd)}）失败：{tail[0][:300]}")


def _migrate(settings: Settings, layout: Layout, version: str, config_path: str | None) -> None:
    cmd = [str(layout.cdcsync(version)), *(["-c", config_path] if config_path else []), "db", "init"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=release_env())  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"数据库迁移失败：{type(exc).__name__}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [f"退出码 {done.returncode}"]
        raise InstallError(f"新版本的数据库迁移（db init）失败：{tail[0][:300]}")


def apply(settings: Settings, config_path: str | None, version: str | None = None, say: Say = _quiet) -> Outcome:
    layout = Layout(settings.control.releases_root)
    running = layout.current() or __version__

    def step(outcome: str, target: str | None, message: str, m: Manifest | None = None) -> None:
        say(message)
        record(settings, "apply", outcome, target, m, message, current=running)

    try:
        version = version or downloaded_version(settings)
        m, wheel = verified_download(settings, version)
    except (UpgradeError, ManifestError, bundle.BundleError) as exc:
        step("refused", version, str(exc))
        raise
    refusal: str | None = None
    if version_key(m.version) <= version_key(running):
        refusal = f"版本 {m.version} 不高于正在使用的版本 {running}"
    elif version_key(running) < version_key(m.min_supported_version):
        refusal = f"正在使用的版本 {running} 低于可直接升级的最低版本 {m.min_supported_version}，须先升级到中间版本"
    elif m.irreversible_migrations and (why := backup_gate(settings)):
        refusal = f"版本 {m.version} 含不可回退的数据库迁移，升级前须有经过验证的备份：{why}"
    if refusal:
        step("refused", m.version, refusal, m)
        raise UpgradeError(refusal)

    with layout.locked():
        try:
            build(settings, layout, m, wheel)
            step("installed", m.version, f"已安装到独立环境 {layout.version_dir(m.version)}", m)
            _migrate(settings, layout, m.version, config_path)
            step("migrated", m.version, f"已用 {m.version} 执行数据库迁移（db init）")
        except bundle.BundleError as exc:  # a file changed since the check above: nothing was built
            step("refused", m.version, str(exc), m)
            raise
        except InstallError as exc:
            step("error", m.version, str(exc), m)
            raise
        prev_before = layout.previous()
        old = layout.switch(m.version)
        step("switched", m.version, f"当前版本链接已切换：{old or '（无）'} → {m.version}")
        try:
            _restart(settings)
            step("restarted", m.version, "已重启服务，等待健康检查")
            reason = wait_healthy(settings, m.version)
        except InstallError as exc:
            reason = str(exc)
        if reason is None:
            step("applied", m.version, f"升级完成：{m.version} 运行正常", m)
            return Outcome(True, m.version, f"已升级到 {m.version}")
        step("unhealthy", m.version, f"{m.version} 未能在 {settings.control.health_timeout_s:g} 秒内正常运行：{reason}")
        if old is None:
            msg = f"{m.version} 未能正常运行，且没有上一版本可自动回退：{reason}"
            step("error", m.version, msg)
            return Outcome(False, None, msg)
        return _back(settings, layout, "apply", old, step, f"自动回退到 {old}", previous=prev_before)


def _back(settings: Settings, layout: Layout, action: str, to: str,
          step: Callable[[str, str | None, str], None], what: str, previous: str | None = None) -> Outcome:
    """``current`` -> ``to``; ``previous`` -> the release left (rollback) or back to what it was
    before the failed apply (so that ``upgrade rollback`` still goes one release back)."""
    left = layout.current()
    layout.link("current", to)
    if action == "rollback" and left is not None:
        layout.link("previous", left)
    elif previous is not None:
        layout.link("previous", previous)
    elif action == "apply":
        (layout.root / "previous").unlink(missing_ok=True)
    try:
        _restart(settings)
        reason = wait_healthy(settings, to)
    except InstallError as exc:
        reason = str(exc)
    if reason is None:
        step("rolled_back", to, f"{what}：{to} 运行正常")
        return Outcome(action == "rollback", to, f"{what}完成，{to} 运行正常")
    msg = f"{what}后 {to} 仍未正常运行：{reason}"
    step("error", to, msg)
    return Outcome(False, None, msg)


def rollback(settings: Settings, say: Say = _quiet) -> Outcome:
    layout = Layout(settings.control.releases_root)
    running = layout.current()

    def step(outcome: str, target: str | None, message: str) -> None:
        say(message)
        record(settings, "rollback", outcome, target, None, message, current=running or __version__)

    prev = layout.previous()
    if running is None or prev is None or prev == running or not layout.cdcsync(prev).exists():
        msg = "没有可回退的上一版本（releases_root 下没有 previous 链接或其环境已不存在）"
        step("refused", prev, msg)
        raise UpgradeError(msg)
    here = layout.installed(running)
    if here is not None and here.manifest is not None and here.manifest.irreversible_migrations:
        why = backup_gate(settings, before=here.installed_at)
        if why:
            msg = f"版本 {running} 含不可回退的数据库迁移，回退到 {prev} 前须有升级前的已验证备份：{why}"
            step("refused", prev, msg)
            raise UpgradeError(msg)
        say(f"注意：{running} 的数据库迁移不可回退，回退后请用升级前的备份恢复数据库（cdcsync backup restore）")
    with layout.locked():
        return _back(settings, layout, "rollback", prev, step, f"回退 {running} → {prev}")
