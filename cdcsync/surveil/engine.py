"""The rule engine in force for the rules consumer and ``rules replay``, hot-reloaded like the
mapping files: a changed pack file is loaded and swapped whole; the consumer picks it up at the
next source transaction, never inside one. A pack that fails to load keeps the old one (one error
line, repeated only when the error changes).

The engine itself (rule packs, rule logic) lives in :mod:`cdcsync.surveil.pack` and
:mod:`cdcsync.surveil.rules`; this module only knows its interface (:class:`Engine`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from cdcsync.event import Event
from cdcsync.surveil.cases import OpenResult
from cdcsync.validate.reload import RulesHolder

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What the consumer needs of ``cdcsync.surveil.rules.RuleEngine``."""

    @property
    def version(self) -> str: ...

    def apply(self, conn: Any, events: Sequence[Event]) -> list[OpenResult]:
        """Write cases for ``events`` through ``CaseStore(conn)`` in the caller's transaction."""
        ...


def build_engine(pack_path: Path | None, holder: RulesHolder | None = None) -> Engine:
    """The rule engine for a pack file (None: the shipped default pack), mapping the mirror rows it
    reads with ``holder``'s code tables (the ones the stream maps with). Raises the pack's error."""
    from cdcsync.surveil.pack import load_pack
    from cdcsync.surveil.rules import RuleEngine, holder_mapper

    return RuleEngine(load_pack(pack_path), mapper=holder_mapper(holder) if holder is not None else None)


def _fingerprint(path: Path | None) -> tuple[Any, ...]:
    if path is None:
        return ()
    try:
        st = path.stat()  # follows a symlink: a new generation behind the same link is a change
    except OSError as exc:
        return (str(path), "missing", exc.errno)
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


class EngineHolder:
    """The engine in force; swapped whole (one reference), read without a lock."""

    def __init__(self, engine: Engine, pack_path: Path | None, holder: RulesHolder | None = None,
                 locate: Callable[[], Path | None] | None = None) -> None:
        self._current = engine
        self.pack_path = pack_path
        self.holder = holder
        # Where the pack in force is, asked again at each check (a pack pushed by the national
        # platform takes over from surveil.pack: cdcsync.control.kinds.rules_pack_path).
        self.locate = locate
        self.last_error: str | None = None
        self._fp = _fingerprint(pack_path)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, pack_path: Path | None, holder: RulesHolder | None = None,
             locate: Callable[[], Path | None] | None = None) -> EngineHolder:
        if locate is not None:
            pack_path = locate()
        return cls(build_engine(pack_path, holder), pack_path, holder, locate)

    def current(self) -> Engine:
        return self._current

    @property
    def version(self) -> str:
        return self._current.version

    def reload_if_changed(self) -> bool:
        """Load the pack again when its file changed; True when a new engine was swapped in."""
        with self._lock:
            path = self.locate() if self.locate is not None else self.pack_path
            fp = _fingerprint(path)
            if fp == self._fp:
                return False
            try:
                engine = build_engine(path, self.holder)
            except Exception as exc:  # PackError, OSError, YAML errors: keep the engine in force
                message = (str(exc).splitlines() or [type(exc).__name__])[0]
                if message != self.last_error:
                    log.error("rule pack not reloaded, keeping %s: %s", self._current.version, message)
                self.last_error = message
                return False
            self._fp = fp
            self.pack_path = path
            self.last_error = None
            old, self._current = self._current, engine
            if old.version != engine.version:
                log.info("rule pack %s in force (was %s)", engine.version, old.version)
            return True
