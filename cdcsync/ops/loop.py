"""The daemon's operations thread (and, beside it, the compaction of the delivered-keys log,
``compaction.py``): every ``ops.heartbeat.interval_s`` it reads the monitoring
status, records the run and the streams' day (stability figures), opens and resolves faults,
sends the alerts that are due, refreshes today's evaluation now and then, and sends a heartbeat
to each platform. On a clean stop the last heartbeat says ``stopping``, so the platform shows
the hospital offline at once rather than after missing beats.

One failing part (database, a platform, a mail server) never stops the others or the daemon.
When the national platform changes the destinations (``upstream`` on 8882, or a ``config
rollback``), the daemon hands the new settings to :meth:`OpsLoop.reconfigure`: heartbeats and the
status follow from the next tick, without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from cdcsync.ops.alerts import AlertDispatcher, build_channels
from cdcsync.ops.backup_view import backup_state
from cdcsync.ops.compaction import Compactor
from cdcsync.ops.faults import DB_UNREACHABLE, DestinationWatch, FaultBook, FaultRecord, detect
from cdcsync.ops.heartbeat import RUNNING, STOPPING, HeartbeatClient, HeartbeatResult, heartbeat_payload
from cdcsync.ops.runtime import RunRecord, record_streams

if TYPE_CHECKING:
    from cdcsync.config import Settings

log = logging.getLogger(__name__)
StatusProvider = Callable[[], Mapping[str, Any]]
StatusFactory = Callable[["Settings"], StatusProvider]


def environments(settings: Settings) -> dict[str, str]:
    return {d.name: getattr(d, "environment", "production") for d in settings.destinations}


class OpsLoop:
    def __init__(self, settings: Settings, status: StatusProvider, status_for: StatusFactory | None = None) -> None:
        self.settings = settings
        self.cfg = settings.ops
        self.status = status
        self._status_for = status_for  # the status of new settings (reconfigure)
        self._lock = threading.Lock()  # clients and settings swapped by reconfigure, used by a tick
        self.run = RunRecord()
        self.watch = DestinationWatch()
        self.alerts = AlertDispatcher(build_channels(self.cfg.alerts), settings.org_code, settings.hospital,
                                      self.cfg.alerts.retry_s)
        self.clients: list[HeartbeatClient] = []
        if self.cfg.heartbeat.enabled:
            self.clients = [self._client(d) for d in _beating(settings)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_tick = time.monotonic()
        self._scores_at = -1e9
        self.scores: dict[str, Any] | None = None
        self.faults: list[FaultRecord] = []
        self.ticks = 0
        self.compactor: Compactor | None = None

    def _client(self, dest: Any) -> HeartbeatClient:
        return HeartbeatClient(dest, self.settings.org_code, self.cfg.heartbeat.timeout_s)

    def reconfigure(self, new: Settings) -> list[str]:
        """Follow pushed configuration (``upstream``, ``timeliness`` or a rollback): heartbeat clients
        of changed, added or removed platforms are replaced, unchanged ones kept; the status (and so
        fault detection) and the evaluation (thresholds, weights) use the new settings from the next
        tick. Returns the destination names changed."""
        old_dests = {d.name: d for d in _beating(self.settings)}
        new_dests = {d.name: d for d in _beating(new)}
        changed = sorted(n for n in old_dests.keys() | new_dests.keys() if old_dests.get(n) != new_dests.get(n))
        fresh = {n: self._client(new_dests[n]) for n in changed if n in new_dests and self.cfg.heartbeat.enabled}
        with self._lock:
            kept = [c for c in self.clients if c.name not in changed]
            gone = [c for c in self.clients if c.name in changed]
            self.clients = [*kept, *fresh.values()]
            self.settings = new
            self._scores_at = -1e9  # evaluate with the new thresholds (a timeliness push) at the next tick
            if self._status_for is not None:
                self.status = self._status_for(new)
        for c in gone:
            c.close()
        if changed:
            log.info("ops: heartbeats follow the new destinations: %s", ", ".join(changed))
        return changed

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> OpsLoop:
        try:
            with self._connect() as conn:
                self.run.start(conn)
                self.watch.seed(FaultBook(conn).open_faults())
        except psycopg.Error as exc:
            log.warning("ops: database not reachable at start (%s); recording starts when it is", type(exc).__name__)
        self._thread = threading.Thread(target=self._loop, name="cdcsync-ops", daemon=True)
        self._thread.start()
        if self.cfg.compaction.enabled:  # its own thread: a long compaction never delays a heartbeat
            self.compactor = Compactor(self.settings.database.conninfo(), self.cfg.compaction).start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self.compactor is not None:
            self.compactor.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            with self._connect() as conn:
                self.run.stopped(conn)
        except psycopg.Error:
            pass
        self._beat(STOPPING, self._safe_status())
        with self._lock:
            for c in self.clients:
                c.close()

    def _loop(self) -> None:
        interval = self.cfg.heartbeat.interval_s
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the ops thread must outlive any one failure
                log.exception("ops tick failed")
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    # -- one tick -----------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.settings.database.conninfo(), autocommit=True, connect_timeout=5,
                               application_name="cdcsync-ops")

    def _safe_status(self) -> Mapping[str, Any]:
        try:
            return self.status()
        except Exception as exc:  # noqa: BLE001
            log.warning("ops: status failed: %s", type(exc).__name__)
            return {"database": {"reachable": False}, "destinations": []}

    def tick(self) -> list[HeartbeatResult]:
        now = time.monotonic()
        # Time since the last tick counts towards the day, capped so a stalled thread is no uptime.
        elapsed = min(now - self._last_tick, 2 * self.cfg.heartbeat.interval_s + 1)
        self._last_tick = now
        status = self._safe_status()
        faults = detect(status, backup_state(self.settings), self.cfg.faults, self.watch)
        try:
            with self._connect() as conn:
                self.run.seen(conn)
                record_streams(conn, status, elapsed)
                book = FaultBook(conn)
                book.sync(faults)
                self.faults = book.recent()
                self.alerts.dispatch(book)
                self._refresh_scores(conn)
        except psycopg.Error as exc:
            log.warning("ops: database: %s", type(exc).__name__)
            self.faults = [_transient(f) for f in faults if f.code == DB_UNREACHABLE] or self.faults
        self.ticks += 1
        return self._beat(RUNNING, status)

    def _refresh_scores(self, conn: psycopg.Connection[Any]) -> None:
        if time.monotonic() - self._scores_at < self.cfg.evaluation.refresh_s:
            return
        self._scores_at = time.monotonic()
        try:  # the dynamic evaluation (docs/evaluation.md); its absence leaves the scores None
            from cdcsync.ops.evaluate import evaluate_today
        except ImportError:
            return
        try:
            self.scores = evaluate_today(conn, self.settings)
        except psycopg.Error as exc:
            log.warning("ops: evaluation failed: %s", type(exc).__name__)

    def _beat(self, state: str, status: Mapping[str, Any]) -> list[HeartbeatResult]:
        with self._lock:  # a reconfigure waits: it must not close a client while it sends
            return self._beat_locked(state, status)

    def _beat_locked(self, state: str, status: Mapping[str, Any]) -> list[HeartbeatResult]:
        out = []
        envs = environments(self.settings)
        for c in self.clients:
            doc = heartbeat_payload(
                status, org_code=self.settings.org_code, hospital=self.settings.hospital, run_id=self.run.run_id,
                interval_s=self.cfg.heartbeat.interval_s, state=state, faults=self.faults, scores=self.scores,
                environments=envs, destination=c.name)
            result = c.send(doc, self.run.run_id)
            out.append(result)
            if result.announced is not None:
                self._store_notice(c.name, result.announced)
        return out

    def _store_notice(self, destination: str, announced: dict[str, Any]) -> None:
        try:
            with self._connect() as conn:
                conn.execute("INSERT INTO cdcsync.platform_notice (destination, announced, received_at)"
                             " VALUES (%s, %s::jsonb, now()) ON CONFLICT (destination) DO UPDATE SET"
                             " announced = EXCLUDED.announced, received_at = now()",
                             (destination, orjson.dumps(announced).decode()))
        except psycopg.Error:
            pass


def _beating(settings: Settings) -> list[Any]:
    """The destinations that get heartbeats: enabled, ``kind: http``."""
    return [d for d in settings.enabled_destinations if d.kind == "http"]


def _transient(fault: Any) -> FaultRecord:
    """A fault the database cannot hold (it is the database): reported in heartbeats only."""
    import datetime as dt

    return FaultRecord(f"{fault.code}-transient", fault.code, fault.subject, fault.severity, fault.message,
                       fault.resolution, dt.datetime.now(dt.UTC), None)


def start_ops(settings: Settings, *, started_at: float | None = None, rules: Any = None) -> OpsLoop:
    """The daemon's hook: start the ops thread on the monitoring status."""
    from cdcsync.ops.status import status_provider_for

    def status_for(s: Settings) -> StatusProvider:
        return status_provider_for(s, started_at=started_at, rules=rules)

    return OpsLoop(settings, status_for(settings), status_for).start()
