"""A tiny stand-in for systemd in tests/test_upgrade_apply.py: runs ``<root>/current/bin/cdcsync
-c CONFIG run``; SIGHUP = ``systemctl restart`` (stop gracefully, start from the link again);
a child that exits is started again after a second (``Restart=on-failure``, ``RestartSec``);
SIGTERM stops both.

usage: upgrade_supervisor.py RELEASES_ROOT CONFIG LOG
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from types import FrameType


def main() -> int:
    root, cfg, log = sys.argv[1:4]
    restart, stop = threading.Event(), threading.Event()
    wake = threading.Event()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        restart.set()
        wake.set()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()
        wake.set()

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    # The release runs its own code: nothing may point it back at the checkout.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log, "ab") as fh:
        while not stop.is_set():
            restart.clear()
            wake.clear()
            try:
                child: subprocess.Popen[bytes] | None = subprocess.Popen(
                    [os.path.join(root, "current", "bin", "cdcsync"), "-c", cfg, "run"],
                    stdout=fh, stderr=subprocess.STDOUT, env=env)
            except OSError as exc:  # no release linked yet
                fh.write(f"supervisor: cannot start: {exc}\n".encode())
                fh.flush()
                child = None
            if child is not None:
                threading.Thread(target=lambda c=child: (c.wait(), wake.set()), daemon=True).start()
            wake.wait()
            if child is not None and child.poll() is None:
                child.terminate()
                try:
                    child.wait(60)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            elif not restart.is_set() and not stop.is_set():
                restart.wait(1.0)  # exited by itself: RestartSec
            fh.write(b"supervisor: (re)starting\n")
            fh.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
