"""Hot reload of the mapping set: rebuild off the hot path, swap atomically, keep the old on error.

A :class:`RulesHolder` owns the current :class:`~cdcsync.validate.compiler.Validators` (the spec
compiled against one mapping set). ``current()`` is a plain attribute read, so the stream pays
nothing for reloadability; the validation stage picks up a new set only at a transaction
boundary, so one transaction is always checked and mapped by one version.

:class:`MappingWatcher` polls the mtimes/sizes of the files under ``mappings/`` (national and the
hospital's local directory) from its own thread; when they change it loads and compiles the new
set and swaps it in. A file that does not load leaves the old set in place and logs one line
naming the file and the problem (once per distinct problem, not every poll).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cdcsync.mapping.domains import LOCAL_DIR, NATIONAL_DIR, MappingError, default_mappings_dir, load_code_tables
from cdcsync.mapping.layers import MappingLayers
from cdcsync.spec import Spec, SpecError, load_spec
from cdcsync.validate.compiler import Validators, compile_spec

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


def build_validators(mappings_dir: Path | None = None, hospital: str = "example",
                     spec: Spec | None = None, *, pushed_dir: Path | None = None,
                     local_dir: Path | None = None) -> Validators:
    """Load the mapping set (non-strict: stale entries become DOM001) and compile the spec."""
    tables = load_code_tables(mappings_dir, hospital, strict=False, pushed_dir=pushed_dir, local_dir=local_dir)
    return compile_spec(spec or load_spec(), tables)


def fingerprint(mappings_dir: Path, hospital: str, pushed_dir: Path | None = None,
                local_dir: Path | None = None) -> Fingerprint:
    """(path, mtime_ns, size) of every YAML file that makes up the mapping set (and where the
    pushed layer's ``current`` link points: a switch changes the set even if files look alike)."""
    out: list[tuple[str, int, int]] = []
    subs = [Path(mappings_dir) / NATIONAL_DIR, Path(local_dir or mappings_dir) / LOCAL_DIR / hospital]
    if pushed_dir is not None:
        out.append((os.path.realpath(pushed_dir), 0, 0))
        subs.append(Path(pushed_dir) / NATIONAL_DIR)
    for sub in subs:
        if not sub.is_dir():
            continue
        for p in sorted(sub.iterdir()):
            if p.suffix in (".yaml", ".yml"):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


@dataclass(frozen=True)
class RulesStatus:
    """What ``status`` shows about the rules in force."""

    mapping_version: str
    spec_version: str
    mappings_dir: str
    hospital: str
    last_error: str | None


class RulesHolder:
    """The validators in force; swapped whole, read without a lock."""

    def __init__(self, validators: Validators, mappings_dir: Path | None = None, hospital: str = "example",
                 spec: Spec | None = None, *, pushed_dir: Path | None = None, local_dir: Path | None = None) -> None:
        self._current = validators
        self.mappings_dir = Path(mappings_dir) if mappings_dir is not None else default_mappings_dir()
        self.hospital = hospital
        self.spec = spec or load_spec()
        self.pushed_dir = pushed_dir
        self.local_dir = local_dir
        self.last_error: str | None = None
        self._fingerprint: Fingerprint = self._fp()
        self._lock = threading.Lock()  # serializes reloads, never taken by readers
        self.listeners: list[Callable[[Validators], None]] = []

    @classmethod
    def load(cls, mappings_dir: Path | None = None, hospital: str = "example", spec: Spec | None = None
             ) -> RulesHolder:
        spec = spec or load_spec()
        root = Path(mappings_dir) if mappings_dir is not None else default_mappings_dir()
        return cls(build_validators(root, hospital, spec), root, hospital, spec)

    @classmethod
    def for_layers(cls, layers: MappingLayers, spec: Spec | None = None) -> RulesHolder:
        """The daemon's holder: shipped, pushed and local layers (cdcsync.mapping.layers)."""
        spec = spec or load_spec()
        v = build_validators(layers.mappings_dir, layers.hospital, spec, pushed_dir=layers.pushed_dir,
                             local_dir=layers.local_dir)
        return cls(v, layers.mappings_dir, layers.hospital, spec, pushed_dir=layers.pushed_dir,
                   local_dir=layers.local_dir)

    def _fp(self) -> Fingerprint:
        return fingerprint(self.mappings_dir, self.hospital, self.pushed_dir, self.local_dir)

    def current(self) -> Validators:
        return self._current

    @property
    def version(self) -> str:
        return self._current.mapping_version

    def status(self) -> RulesStatus:
        v = self._current
        return RulesStatus(v.mapping_version, v.spec_version, str(self.mappings_dir), self.hospital, self.last_error)

    def swap(self, validators: Validators) -> None:
        old = self._current
        self._current = validators  # one reference assignment: readers see old or new, never a mix
        if old.mapping_version != validators.mapping_version:
            log.info("mapping set %s in force (was %s)", validators.mapping_version, old.mapping_version)
        for listener in self.listeners:
            listener(validators)

    def reload_if_changed(self) -> bool:
        """Rebuild and swap when the files changed; True when a new set was swapped in."""
        with self._lock:
            fp = self._fp()
            if fp == self._fingerprint:
                return False
            try:
                new = build_validators(self.mappings_dir, self.hospital, self.spec, pushed_dir=self.pushed_dir,
                                       local_dir=self.local_dir)
            except (MappingError, SpecError, OSError) as exc:
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if message != self.last_error:
                    log.error("mapping files not reloaded, keeping %s: %s", self._current.mapping_version, message)
                self.last_error = message
                return False
            self._fingerprint = fp
            self.last_error = None
            self.swap(new)
            return True


STATE_FILE = "rules.json"


def persist_status(holder: RulesHolder, path: Path) -> None:
    """Write ``holder.status()`` to ``path`` atomically (for ``status`` in another process)."""
    data = {**holder.status().__dict__, "updated_at": _now_iso()}
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, str | None] | None:
    """What :func:`persist_status` wrote, or None when the daemon has not written it yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _now_iso() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class MappingWatcher:
    """Polls the mapping files from a daemon thread and reloads the holder when they change."""

    def __init__(self, holder: RulesHolder, interval_s: float = 2.0, state_path: Path | None = None) -> None:
        self.holder = holder
        self.interval_s = interval_s
        self.state_path = state_path  # e.g. <state_dir>/rules.json, read by `cdcsync status`
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> MappingWatcher:
        if self.state_path is not None:
            self._persist()
        self._thread = threading.Thread(target=self._run, name="cdcsync-mapping-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                error_before = self.holder.last_error
                if self.holder.reload_if_changed() or self.holder.last_error != error_before:
                    self._persist()
            except Exception as exc:  # never let the watcher die; one line, no traceback spam
                log.error("mapping reload failed: %s: %s", type(exc).__name__, exc)

    def _persist(self) -> None:
        if self.state_path is None:
            return
        try:
            persist_status(self.holder, self.state_path)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.state_path, exc.strerror or exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
