"""The systemd unit verifies, and the daemon speaks the notify protocol the unit relies on."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cdc_util import cli_cmd, prepare_db, settings_for

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "scripts" / "systemd" / "cdcsync.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # The unit names the installed path; point it at this checkout's entry point to verify the rest.
    unit = tmp_path / "cdcsync.service"
    cdcsync = Path(sys.executable).with_name("cdcsync")
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/cdcsync/venv/bin/cdcsync", str(cdcsync)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = UNIT.read_text(encoding="utf-8")
    for line in ("Type=notify", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "PrivateTmp=yes", "ReadWritePaths=", "User=cdcsync", "WatchdogSec="):
        assert line in text


HARDENING = ("CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "SystemCallArchitectures=native",
             "ProtectKernelLogs=yes", "ProtectClock=yes", "ProtectHostname=yes", "ProtectProc=invisible",
             "RestrictNamespaces=yes", "RestrictRealtime=yes", "LockPersonality=yes", "RemoveIPC=yes",
             "LimitCORE=0", "StateDirectoryMode=0750", "LogsDirectoryMode=0750")


def test_unit_carries_the_hardening() -> None:
    text = UNIT.read_text(encoding="utf-8")
    missing = [d for d in HARDENING if d not in text]
    assert not missing, missing


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_exposure_is_ok_by_systemd_analyze_security(tmp_path: Path) -> None:
    unit = tmp_path / "cdcsync.service"
    unit.write_text(UNIT.read_text(encoding="utf-8"), encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 3.0, done.stdout


def test_daemon_notifies_ready_watchdog_and_stopping(migrated_db: str, tmp_path: Path) -> None:
    prepare_db(migrated_db)
    _, cfg = settings_for(migrated_db, tmp_path)
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(1.0)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="2000000", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cli_cmd(cfg, "run"), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("WATCHDOG=1" in m for m in seen):
            try:
                seen.append(sock.recv(4096).decode())
            except TimeoutError:
                assert proc.poll() is None, "daemon exited early"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        while True:
            try:
                seen.append(sock.recv(4096).decode())
            except TimeoutError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    joined = "\n".join(seen)
    assert "READY=1" in joined
    assert "WATCHDOG=1" in joined
    assert "STOPPING=1" in joined
    assert joined.index("READY=1") < joined.index("STOPPING=1")
