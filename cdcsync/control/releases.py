"""Side-by-side release environments under ``control.releases_root`` (docs/control-plane.md, "Upgrades").

Layout::

    <releases_root>/
        0.1.0/              a venv with that release installed (bin/cdcsync, share/cdcsync/sql …)
            release.json    its verified manifest and when it was installed (written last: a
                            directory without it is a half-built environment and is rebuilt)
        0.2.0/
        current -> 0.2.0    the link the service runs (systemd ExecStart=<root>/current/bin/cdcsync)
        previous -> 0.1.0   where ``upgrade rollback`` goes back to
        .lock               one apply/rollback at a time

Links are switched atomically: a temporary symlink renamed over the old one.
Installing is offline: ``pip install --no-index`` from a private copy of the verified wheel and of
the manifest's signed dependency bundle (cdcsync.control.bundle) plus the administrator's local
wheelhouse, or with the dependencies of a base ``dependency_site`` linked in by a .pth entry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cdcsync.config import Settings
from cdcsync.control.bundle import stage
from cdcsync.control.release import Manifest, parse_manifest

MARKER = "release.json"
# Variables that would make a release's Python import code other than its own.
_FOREIGN_ENV = ("PYTHONPATH", "PYTHONHOME", "CDCSYNC_SQL_DIR", "VIRTUAL_ENV")


class InstallError(RuntimeError):
    """Building a release environment failed (message in Chinese, with the tool's last output line)."""


def release_env() -> dict[str, str]:
    """The environment for a release's own commands: nothing pointing back at this code."""
    return {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}


@dataclass(frozen=True)
class Installed:
    version: str
    path: Path
    manifest: Manifest | None
    installed_at: dt.datetime | None


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root

    def version_dir(self, version: str) -> Path:
        return self.root / version

    def cdcsync(self, version: str) -> Path:
        return self.version_dir(version) / "bin" / "cdcsync"

    def _target(self, name: str) -> str | None:
        link = self.root / name
        if not link.is_symlink():
            return None
        return Path(os.readlink(link)).name

    def current(self) -> str | None:
        return self._target("current")

    def previous(self) -> str | None:
        return self._target("previous")

    def installed(self, version: str) -> Installed | None:
        marker = self.version_dir(version) / MARKER
        if not marker.is_file():
            return None
        doc: dict[str, Any] = orjson.loads(marker.read_bytes())
        manifest = parse_manifest(orjson.dumps(doc["manifest"])) if doc.get("manifest") else None
        at = doc.get("installed_at")
        return Installed(version, self.version_dir(version), manifest, dt.datetime.fromisoformat(at) if at else None)

    def link(self, name: str, version: str) -> None:
        """Point ``name`` at ``version`` atomically (rename of a temporary symlink)."""
        tmp = self.root / f".{name}.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(version, tmp)  # relative: the root can be moved or mounted elsewhere
        os.replace(tmp, self.root / name)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def switch(self, version: str) -> str | None:
        """``current`` -> version, ``previous`` -> what was current; returns that."""
        old = self.current()
        if old is not None and old != version:
            self.link("previous", old)
        self.link("current", version)
        return old

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InstallError(f"另一个升级或回退正在进行（{self.root / '.lock'}），请稍后再试") from None
            yield


def _run(cmd: list[str | Path], what: str, timeout: float = 600) -> str:
    try:
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,  # noqa: S603
                              env=release_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{what}失败：{type(exc).__name__}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [f"退出码 {done.returncode}"]
        raise InstallError(f"{what}失败：{tail[0][:300]}")
    return done.stdout


def pip_python(settings: Settings) -> str:
    """An interpreter with pip (>= 22.3 for ``--python``): ``control.python``, else this one, else
    its base interpreter. Release venvs are made without pip, so the running release usually has none."""
    if settings.control.python is not None:
        return str(settings.control.python)
    if importlib.util.find_spec("pip") is not None:
        return sys.executable
    base = getattr(sys, "_base_executable", None)
    if base and base != sys.executable:
        done = subprocess.run([base, "-c", "import pip"], capture_output=True, timeout=60,  # noqa: S603
                              env=release_env())
        if done.returncode == 0:
            return str(base)
    raise InstallError("找不到带 pip 的 Python 来安装新版本：请在配置 control.python 中指定"
                       "（例如 /usr/bin/python3，需安装 python3-pip）")


def build(settings: Settings, layout: Layout, manifest: Manifest, wheel: Path) -> Installed:
    """A fresh venv at ``<root>/<version>`` with the wheel installed offline; checked by running
    its ``cdcsync --version``. pip sees only a private copy of the wheel and of the manifest's
    signed dependencies, verified while copied (BundleError before anything is built otherwise),
    plus the administrator's own ``control.wheelhouse``. Venvs are not relocatable, so it is
    built in place; the marker file, written last, says it is complete."""
    c = settings.control
    target = layout.version_dir(manifest.version)
    layout.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".stage-{manifest.version}-", dir=layout.root) as tmp:
        staged = stage(manifest, wheel.parent, Path(tmp))
        if target.exists():
            shutil.rmtree(target)
        py = pip_python(settings)
        _run([py, "-m", "venv", "--without-pip", target], "创建独立运行环境")
        if c.dependency_site is not None:
            site = next((target / "lib").glob("python3*/site-packages"))
            # A path entry, not a site dir: .pth hooks there (e.g. an editable install) do not run.
            (site / "cdcsync_dependencies.pth").write_text(f"{c.dependency_site}\n", encoding="utf-8")
        cmd: list[str | Path] = [py, "-m", "pip", "--python", target / "bin" / "python", "install", "-q",
                                 "--no-index", "--no-cache-dir", "--disable-pip-version-check",
                                 "--find-links", staged.parent]
        if c.wheelhouse is not None:
            cmd += ["--find-links", c.wheelhouse]
        if c.dependency_site is not None:
            cmd.append("--no-deps")
        source = "、".join(filter(None, ["已签名的依赖包" if manifest.dependencies else "",
                                         str(c.wheelhouse or c.dependency_site or "")])) or "安装包目录"
        _run([*cmd, staged], f"安装 {wheel.name}（离线，依赖来自 {source}）")
    out = _run([layout.cdcsync(manifest.version), "--version"], "检查新版本能否启动")
    if manifest.version not in out.split():
        raise InstallError(f"新环境报告的版本（{out.strip()[:60]}）与版本清单（{manifest.version}）不符")
    now = dt.datetime.now(dt.UTC)
    (target / MARKER).write_bytes(orjson.dumps({"manifest": manifest.as_dict(), "installed_at": now.isoformat()}))
    return Installed(manifest.version, target, manifest, now)
