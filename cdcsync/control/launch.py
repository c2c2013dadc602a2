"""Start ``cdcsync upgrade apply`` detached, for the admin's "升级" button on 8884.

apply restarts the service that serves the request, so it cannot run inside it: the same CLI
command (the same code path as on the machine) is spawned in its own session, its output goes to
``<state_dir>/releases/apply-<time>.log``, and who asked is written with every step it records
(``CDCSYNC_UPGRADE_ACTOR`` -> ``cdcsync.upgrade_event.actor``). Progress and result are read
back from ``cdcsync.upgrade_event`` (cdcsync.control.upgrade.history).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cdcsync.cli_context import config_path_in_use
from cdcsync.config import Settings
from cdcsync.control.upgrade import ACTOR_ENV, UpgradeError, record, releases_dir

_VERSION_RE = re.compile(r"\d+(?:\.\d+){0,3}")


@dataclass(frozen=True)
class Launched:
    pid: int
    log: Path
    argv: list[str]


def apply_argv(settings: Settings, version: str | None) -> list[str]:
    """``<apply_command> [-c CONFIG] upgrade apply [--version=V]``; the config file is the one the
    serving process was started with (``-c``, else ``$CDCSYNC_CONFIG``)."""
    if version is not None and not _VERSION_RE.fullmatch(version):
        raise UpgradeError(f"版本号 {version!r} 格式不对，应为 1.2.3 这样的数字")
    base = list(settings.control.apply_command or [sys.executable, "-m", "cdcsync"])
    config = config_path_in_use()
    return [*base, *(["-c", config] if config else []), "upgrade", "apply",
            *([f"--version={version}"] if version else [])]


def start_apply(settings: Settings, version: str | None, actor: str) -> Launched:
    """Spawn apply in a new session (it outlives a restart of this process) and record the request."""
    argv = apply_argv(settings, version)
    logs = releases_dir(settings)
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"apply-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}.log"
    env = {**os.environ, ACTOR_ENV: actor}
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,  # noqa: S603 - argv, no shell
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True, close_fds=True)
        except OSError as exc:
            msg = f"无法启动升级进程（{argv[0]}）：{type(exc).__name__}: {exc}"
            record(settings, "apply", "error", version, None, msg, actor=actor)
            raise UpgradeError(msg) from None
    record(settings, "apply", "started", version, None,
           f"管理员在工作站发起升级（进程 {proc.pid}，日志 {log}）", actor=actor)
    return Launched(proc.pid, log, argv)
