"""``cdcsync run``: one pipeline thread per enabled destination, signals, systemd notifications.

SIGTERM/SIGINT stop reading; every pipeline delivers and acknowledges its in-flight batch,
reports its flush position, ends the COPY with CopyDone, and the process exits 0 — or 1 when a
pipeline did not finish within ``stream.shutdown_timeout_s``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from cdcsync.api.server import start_servers
from cdcsync.config import PUSHED_TIMELINESS, PUSHED_UPSTREAM, ConfigError, DestinationSettings, Settings, with_pushed
from cdcsync.control.upgrade import UpdateChecker
from cdcsync.crypto.sm2_backend import describe as sm2_describe
from cdcsync.db.migrate import MirrorRefused, check_encoding, publication_problems
from cdcsync.engine.calendar import BusinessCalendar
from cdcsync.engine.pipeline import Pipeline, check_lost_slots, run_pipeline_forever
from cdcsync.event import str_to_lsn
from cdcsync.mapping.layers import MappingLayers
from cdcsync.ops.loop import start_ops
from cdcsync.sink import build_sink
from cdcsync.spec import Spec
from cdcsync.surveil.consumer import start_consumer
from cdcsync.validate.minimal import flush_all, not_sent, warn_once
from cdcsync.validate.reload import MappingWatcher, RulesHolder
from cdcsync.validate.stage import transform_for

log = logging.getLogger(__name__)
DROPPED_FLUSH_S = 5.0  # how often the counts of left-out columns are written for `status`


def sd_notify(message: str) -> bool:
    """Send a datagram to systemd's $NOTIFY_SOCKET (no-op outside systemd)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False


def _watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.5, int(usec) / 1_000_000 / 2)
    except ValueError:
        return None


def _guarded(pipe: Pipeline) -> None:
    try:
        run_pipeline_forever(pipe)
    except BaseException:
        log.exception("destination %s: pipeline thread ended with an error", pipe.name)
        raise


def _rules_state_path(settings: Settings) -> Path:
    """Where the daemon publishes the mapping version in force, for ``cdcsync status``."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return settings.state_dir / "rules.json"


def build_pipeline(settings: Settings, dest: DestinationSettings, holder: RulesHolder,
                   stop: threading.Event | None = None) -> Pipeline:
    """The pipeline of one destination with its own validation stage (it tracks the transaction
    it is in, so that one transaction is always checked with one rule set). The only way the
    daemon, ``drain`` and ``cdcsync snapshot`` build one: every event they send is validated and
    mapped."""
    return Pipeline(settings, dest, transform=transform_for(settings, holder, destination=dest.name), stop=stop,
                    calendar=BusinessCalendar(holder.spec))


def _pipelines(settings: Settings, holder: RulesHolder, stop: threading.Event) -> list[Pipeline]:
    """One pipeline per enabled destination."""
    return [build_pipeline(settings, d, holder, stop) for d in settings.enabled_destinations]


# A pipeline whose settings changed may finish the batches in flight for this long; then a
# delivery still retrying (e.g. replies signed by a key the old settings do not know) is ended.
RECONFIGURE_GRACE_S = 5.0


class RunningPipelines:
    """The daemon's pipelines, one thread each, each with its own stop event so that one can be
    restarted when the national platform changes its destination on 8882 (``upstream``)."""

    def __init__(self, settings: Settings, holder: RulesHolder, stop: threading.Event) -> None:
        self.settings = settings
        self.holder = holder
        self.stop = stop  # the process is stopping: every pipeline stops
        self._entries: dict[str, tuple[Pipeline, threading.Thread, threading.Event]] = {}
        self._lock = threading.Lock()

    def start(self, dest: DestinationSettings) -> None:
        ev = threading.Event()
        if self.stop.is_set():
            ev.set()
        pipe = build_pipeline(self.settings, dest, self.holder, ev)
        thread = threading.Thread(target=_guarded, args=(pipe,), name=f"cdcsync-{pipe.name}", daemon=True)
        self._entries[dest.name] = (pipe, thread, ev)
        thread.start()

    def start_all(self) -> None:
        for dest in self.settings.enabled_destinations:
            self.start(dest)

    def stop_all(self) -> None:
        for _, _, ev in list(self._entries.values()):
            ev.set()

    @property
    def pipes(self) -> list[Pipeline]:
        return [e[0] for e in self._entries.values()]

    @property
    def threads(self) -> list[threading.Thread]:
        return [e[1] for e in self._entries.values()]

    def reconfigure(self, new: Settings) -> list[str]:
        """Restart the pipelines whose destination settings changed (in-flight batches get
        :data:`RECONFIGURE_GRACE_S` to be acknowledged, else are sent again by the new one), stop
        the disabled ones, start the enabled ones."""
        with self._lock:
            old = {d.name: d for d in self.settings.enabled_destinations}
            now = {d.name: d for d in new.enabled_destinations}
            changed = sorted(n for n in old.keys() | now.keys() if old.get(n) != now.get(n))
            for name in changed:
                if name in now:
                    build_sink(now[name]).close()  # a bad address or key: refuse before stopping anything
            for name in changed:
                entry = self._entries.pop(name, None)
                if entry is not None:
                    pipe, thread, stop = entry
                    stop.set()
                    thread.join(RECONFIGURE_GRACE_S)
                    if thread.is_alive():  # retrying what the old settings cannot finish (a rotated key)
                        pipe.end_delivery("its settings changed while a delivery was retrying")
                        thread.join(self.settings.stream.shutdown_timeout_s)
            self.settings = new
            for name in changed:
                if name in now and not self.stop.is_set():
                    self.start(now[name])
            return changed


def _check_slots(settings: Settings, pipes: list[Pipeline]) -> None:
    """Stop the destinations whose slot PostgreSQL invalidated, even while their delivery is
    blocked retrying a platform that is down (the stream thread cannot look then)."""
    import psycopg

    try:
        with psycopg.connect(settings.database.conninfo(), autocommit=True, connect_timeout=10) as conn:
            check_lost_slots(conn, pipes)
    except psycopg.Error as exc:  # the pipelines report an unreachable database themselves
        log.debug("slot check failed: %s", exc)


def preflight(settings: Settings, spec: Spec) -> None:
    """Refuse to stream from a mirror that is not UTF8 or whose publication sends whole schemas
    (one line naming the fix); log what the publication and the catalog hold back or add."""
    import psycopg

    try:
        conn = psycopg.connect(settings.database.conninfo(), autocommit=True)
    except psycopg.OperationalError as exc:  # not up yet (boot order): the pipelines keep retrying
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("database not reachable at start, checks skipped: %s", first)
        return
    with conn:
        check_encoding(conn)
        problem, warnings = publication_problems(conn, spec)
        if problem:
            raise MirrorRefused(problem)
        for warning in warnings:
            log.warning("%s", warning)
        for table, columns in not_sent(conn, spec)["columns_not_sent"].items():
            for column in columns:
                warn_once(table, column)


def _pushed_in_force(settings: Settings) -> str:
    """Where the pushed ``upstream`` and ``timeliness`` configurations' links point ('' for one not
    in force): a change of either (a push, a rollback) makes the daemon re-read its settings."""
    links = (Path(settings.state_dir) / p.parent for p in (PUSHED_UPSTREAM, PUSHED_TIMELINESS))
    return "|".join(os.path.realpath(link) if link.exists() else "" for link in links)


def run(settings: Settings, install_signals: bool = True,
        reload_settings: Callable[[], Settings] | None = None) -> int:
    """``reload_settings``: reads the config file again (with the pushed configuration in force);
    used when the national platform changes or rolls back a destination (``upstream`` on 8882)."""
    dests = settings.enabled_destinations
    if not dests:
        raise ConfigError("配置中没有启用的目的地（destinations），无事可做")
    for dest in dests:  # unreadable keys or paths: one clear error now, not endless retries later
        build_sink(dest).close()
    stop = threading.Event()
    running: list[RunningPipelines] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info("received %s: finishing in-flight batches", signal.Signals(signum).name)
            sd_notify("STOPPING=1")
        stop.set()
        for r in running:
            r.stop_all()

    if install_signals:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    holder = RulesHolder.for_layers(MappingLayers.from_settings(settings))
    preflight(settings, holder.spec)
    started_at = time.time()
    reconfigure = threading.Event()  # an upstream or timeliness package was applied on 8882

    def on_config_applied(kind: str) -> None:
        if kind in ("upstream", "timeliness"):  # destinations; the ops loop's evaluation thresholds
            reconfigure.set()

    servers = start_servers(settings, rules=holder, started_at=started_at,  # fails fast on a taken port
                            on_config_applied=on_config_applied)
    ops = start_ops(settings, started_at=started_at, rules=holder)  # heartbeats, faults, alerts (cdcsync.ops)
    watcher = MappingWatcher(holder, state_path=_rules_state_path(settings)).start()
    updates = UpdateChecker(settings).start()  # new releases from the national platform (daily)
    pipeline_set = RunningPipelines(settings, holder, stop)
    running.append(pipeline_set)
    pipeline_set.start_all()
    pipes = pipeline_set.pipes
    surveil = start_consumer(settings, holder, stop)  # rules → cases (own slot, own checkpoint)
    log.info("cdcsync running: %s", ", ".join(p.name for p in pipes))
    log.info("%s", sm2_describe())
    sd_notify("READY=1\nSTATUS=running " + ", ".join(p.name for p in pipes))
    watchdog = _watchdog_interval()
    last_ping = 0.0
    slot_check_every = min(10.0, settings.stream.heartbeat_interval_s)
    next_slot_check = time.monotonic() + slot_check_every
    upstream_seen = _pushed_in_force(settings)
    while not stop.is_set():
        stop.wait(min(watchdog or 1.0, 1.0))
        now_upstream = _pushed_in_force(settings)
        if (reconfigure.is_set() or now_upstream != upstream_seen) and not stop.is_set():
            reconfigure.clear()
            upstream_seen = now_upstream  # a push on 8882 or a `config rollback` from the CLI
            try:
                new = reload_settings() if reload_settings is not None else with_pushed(pipeline_set.settings)
                changed = pipeline_set.reconfigure(new)
                ops.reconfigure(new)  # heartbeats and the evaluation follow the new destinations
                if changed:
                    log.info("destinations reconfigured by the national platform: %s", ", ".join(changed))
            except Exception as exc:  # keep streaming with what runs; the package stays applied
                log.error("cannot apply the pushed upstream configuration: %s", str(exc).splitlines()[0])
        threads = pipeline_set.threads
        if time.monotonic() >= next_slot_check:
            _check_slots(settings, pipeline_set.pipes)
            next_slot_check = time.monotonic() + slot_check_every
        if watchdog and time.monotonic() - last_ping >= watchdog and all(t.is_alive() for t in threads):
            sd_notify("WATCHDOG=1")
            last_ping = time.monotonic()
        if not any(t.is_alive() for t in threads):
            log.error("every pipeline stopped; exiting")
            ops.stop()
            return 1

    pipeline_set.stop_all()
    threads = pipeline_set.threads
    updates.stop()
    watcher.stop()
    ops.stop()
    servers.stop()
    deadline = time.monotonic() + settings.stream.shutdown_timeout_s
    for t in [*threads, *([surveil] if surveil is not None else [])]:
        t.join(max(0.0, deadline - time.monotonic()))
    flush_all(settings.database.conninfo())
    late = [t.name for t in [*threads, *([surveil] if surveil is not None else [])] if t.is_alive()]
    if late:
        log.error("shutdown timed out after %.0fs: %s", settings.stream.shutdown_timeout_s, ", ".join(late))
        return 1
    log.info("cdcsync stopped")
    return 0


def drain(settings: Settings, timeout: float = 600.0) -> dict[str, int]:
    """Run every enabled destination until it has delivered everything committed before the
    call (demo, tests); returns the number of events each delivered."""
    import psycopg

    from cdcsync.engine.pipeline import HEARTBEAT_PREFIX

    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_logical_emit_message(false, %s, 'drain')", (HEARTBEAT_PREFIX,)).fetchone()
    target = str_to_lsn(str(row[0])) if row else 0
    stop = threading.Event()
    holder = RulesHolder.for_layers(MappingLayers.from_settings(settings))
    preflight(settings, holder.spec)
    pipes = _pipelines(settings, holder, stop)
    for p in pipes:
        p.catch_up = lambda _p, pos: pos >= target
    threads = [threading.Thread(target=run_pipeline_forever, args=(p,), daemon=True) for p in pipes]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        stop.set()
        for t in threads:
            t.join(settings.stream.shutdown_timeout_s)
        raise TimeoutError(f"同步未能在 {timeout:.0f} 秒内追上数据库")
    flush_all(settings.database.conninfo())
    return {p.name: p.events_sent for p in pipes}
