"""JSON Lines file sink: one event per line, fsync before the ack.

Replays after a crash append the same events again (same ids): readers de-duplicate by id.
A line torn by a crash in the middle of a write is cut off when the file is opened again
(it was never acknowledged, so it will be replayed).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cdcsync.event import Ack, Batch, encode_lines
from cdcsync.secrets import OWNER_ONLY

log = logging.getLogger(__name__)


class JsonlSink:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._repair_tail()
        # Events carry patient data: the file is the owner's alone, whatever the umask.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if os.fstat(fd).st_mode & OWNER_ONLY:  # fstat of the open fd: no race with a rename
            log.warning("jsonl sink %s: %s is readable by group or others (chmod 600 recommended)",
                        self.name, self.path)
        self._fh = os.fdopen(fd, "ab", buffering=0)

    def _repair_tail(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            # Walk back to the last newline; everything after it is a torn, unacknowledged line.
            pos = size
            chunk = 65536
            while pos > 0:
                start = max(0, pos - chunk)
                fh.seek(start)
                data = fh.read(pos - start)
                idx = data.rfind(b"\n")
                if idx >= 0:
                    end = start + idx + 1
                    break
                pos = start
            else:
                end = 0
            if end < size:
                fh.truncate(end)
                os.fsync(fh.fileno())
                log.warning("jsonl sink %s: cut a torn last line (%d bytes) in %s", self.name, size - end, self.path)

    def send(self, batch: Batch) -> Ack:
        if batch.events:
            data = encode_lines(batch.events)
            view = memoryview(data)
            while view:
                n = self._fh.write(view)
                view = view[n:] if n else view
            os.fsync(self._fh.fileno())
        return Ack.all_of(batch.events)

    def close(self) -> None:
        self._fh.close()
