"""Crashes and restarts: kill -9 of the daemon, PostgreSQL restarted, a failing sink, SIGTERM."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdcsync.db.cluster import LocalCluster
from cdcsync.engine.daemon import drain
from cdcsync.engine.pipeline import PassThroughTransform, Pipeline, run_pipeline_forever
from cdcsync.event import Ack, Batch
from cdcsync.sink.jsonl import JsonlSink
from tests.cdc_util import PROBE_DDL, fold, prepare_db, read_events, settings_for, start_daemon, table_as_events


@pytest.fixture
def cdc_db(fresh_db: str) -> str:
    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(PROBE_DDL)
        conn.execute("INSERT INTO emr.cdc_probe (id, name, amount) SELECT g, '预置' || g, g * 1.5"
                     " FROM generate_series(1, 300) g")
    return fresh_db


class Load(threading.Thread):
    """Steady small transactions (insert/update/delete); survives a PostgreSQL restart."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.next_id = 10_000
        self.commits = 0
        self.errors = 0

    def run(self) -> None:
        rnd = random.Random(7)
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, connect_timeout=2)
                with conn.transaction():
                    for _ in range(rnd.randint(1, 4)):
                        r = rnd.random()
                        if r < 0.65:
                            self.next_id += 1
                            conn.execute("INSERT INTO emr.cdc_probe (id, name, amount, at_tstz) VALUES"
                                         " (%s, %s, %s, now())", (self.next_id, f"患者𠮷{self.next_id}",
                                                                  f"{rnd.randint(0, 10**12)}.{rnd.randint(0, 9999)}"))
                        elif r < 0.9:
                            conn.execute("UPDATE emr.cdc_probe SET amount = amount + 1, name = name || 'u'"
                                         " WHERE id = %s", (rnd.randint(1, self.next_id),))
                        else:
                            conn.execute("DELETE FROM emr.cdc_probe WHERE id = %s", (rnd.randint(1, self.next_id),))
                self.commits += 1
            except psycopg.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
            time.sleep(0.004)
        if conn is not None:
            conn.close()


def _wait_equal(dsn: str, path: Path, timeout: float = 90.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        events = read_events(path)
        if fold(events, "cdc_probe") == table_as_events(dsn, "cdc_probe"):
            return events
        if time.monotonic() > deadline:
            raise AssertionError("the sink did not catch up with the table")
        time.sleep(0.5)


def _sigterm(proc: subprocess.Popen[bytes], timeout: float) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


def _assert_replays_identical(events: list[dict[str, Any]]) -> int:
    """Events with the same id are the same event (apart from the processing time)."""
    by_id: dict[str, dict[str, Any]] = {}
    dups = 0
    for ev in events:
        body = {k: v for k, v in ev.items() if k != "ts_ms"}
        if ev["id"] in by_id:
            dups += 1
            assert by_id[ev["id"]] == body, ev["id"]
        else:
            by_id[ev["id"]] = body
    return dups


def _acked(dsn: str) -> tuple[str, str]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT c.acked_lsn::text, s.confirmed_flush_lsn::text FROM cdcsync.checkpoint c"
            " JOIN pg_replication_slots s ON s.slot_name = c.slot_name WHERE c.destination = 't'").fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize("rounds", [14, pytest.param(60, marks=pytest.mark.slow, id="soak")])
def test_kill_9_at_random_moments_loses_nothing(cdc_db: str, tmp_path: Path, rounds: int) -> None:
    _, cfg = settings_for(cdc_db, tmp_path, linger_ms=20, batch_max_events=50, shutdown_timeout_s=20)
    events_path = tmp_path / "events.jsonl"
    log_path = tmp_path / "daemon.log"
    load = Load(cdc_db)
    load.start()
    rnd = random.Random(42)
    kills = 0
    try:
        for i in range(rounds):
            started = _starts(log_path)
            proc = start_daemon(cfg, log_path)
            if i % 4 != 3:  # most kills while streaming, some at a random point of the start-up
                _wait_streaming(log_path, started + 1)
            time.sleep(rnd.uniform(0.05, 1.2))
            proc.kill()  # SIGKILL: no cleanup at all
            proc.wait(10)
            kills += 1
        assert load.commits > 100
        started = _starts(log_path)
        proc = start_daemon(cfg, log_path)
        _wait_streaming(log_path, started + 1, timeout=60)
        load.stop.set()
        load.join(10)
        events = _wait_equal(cdc_db, events_path)
        assert _sigterm(proc, 30) == 0, log_path.read_text()[-3000:]
    finally:
        load.stop.set()
        if proc.poll() is None:
            proc.kill()
    assert kills >= 10
    events = read_events(events_path)
    assert fold(events, "cdc_probe") == table_as_events(cdc_db, "cdc_probe")
    dups = _assert_replays_identical(events)
    acked, confirmed = _acked(cdc_db)
    # SIGTERM acknowledged the last batch: the slot is confirmed at least up to the checkpoint.
    assert _lsn(confirmed) >= _lsn(acked)
    print(f"kills={kills} commits={load.commits} events={len(events)} replayed={dups}")


def _starts(log_path: Path) -> int:
    if not log_path.exists():
        return 0
    return log_path.read_text(encoding="utf-8", errors="replace").count("replication started")


def _wait_streaming(log_path: Path, sessions: int, timeout: float = 60.0) -> None:
    """Until the daemon log shows at least ``sessions`` replication starts in total."""
    deadline = time.monotonic() + timeout
    while _starts(log_path) < sessions:
        assert time.monotonic() < deadline, "daemon did not start streaming"
        time.sleep(0.05)


def _wait_until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def test_postgresql_restart_mid_stream(cdc_db: str, tmp_path: Path, pg_cluster: LocalCluster) -> None:
    _, cfg = settings_for(cdc_db, tmp_path, linger_ms=20, batch_max_events=100)
    events_path = tmp_path / "events.jsonl"
    log_path = tmp_path / "daemon.log"
    proc = start_daemon(cfg, log_path)
    load = Load(cdc_db)
    load.start()
    try:
        # Restart only once the daemon streams (on a slow machine start-up takes seconds), so
        # that the restart cuts a live stream and the daemon must reconnect.
        _wait_streaming(log_path, 1, timeout=60)
        _wait_until(lambda: load.commits > 20, "the load to commit while streaming")
        before = load.commits
        pg_cluster.restart()
        _wait_until(lambda: load.commits > before + 20, "the load to resume after the restart")
        _wait_streaming(log_path, 2, timeout=60)  # the daemon reconnected
        load.stop.set()
        load.join(10)
        events = _wait_equal(cdc_db, events_path)
        assert proc.poll() is None, "the daemon survived the restart"
        assert _sigterm(proc, 30) == 0
    finally:
        load.stop.set()
        if proc.poll() is None:
            proc.kill()
    _assert_replays_identical(events)
    assert "reconnect" in log_path.read_text(encoding="utf-8", errors="replace")


class CrashAfterWrite:
    """JSONL sink that dies after writing its 3rd batch (before the checkpoint): a forced replay."""

    def __init__(self, path: Path) -> None:
        self.inner = JsonlSink("t", path)
        self.name = "t"
        self.calls = 0

    def send(self, batch: Batch) -> Ack:
        ack = self.inner.send(batch)
        self.calls += 1
        if self.calls == 3:
            raise OSError("simulated crash after the write, before the acknowledgement")
        return ack

    def close(self) -> None:
        self.inner.close()


def test_replayed_events_carry_the_same_ids(cdc_db: str, tmp_path: Path) -> None:
    settings, _ = settings_for(cdc_db, tmp_path, batch_max_events=40, linger_ms=0)
    drain(settings)  # initial snapshot (a snapshot redone after a crash gets new ids, by design)
    sink = CrashAfterWrite(tmp_path / "events.jsonl")
    pipe = Pipeline(settings, settings.destinations[0], sink=sink,
                    transform=PassThroughTransform.for_settings(settings))
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("UPDATE emr.cdc_probe SET name = name || '改' WHERE id <= 100")
    t = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    t.start()
    try:
        events = _wait_equal(cdc_db, tmp_path / "events.jsonl", timeout=30)
    finally:
        pipe.stop.set()
        t.join(20)
    assert sink.calls > 3
    assert _assert_replays_identical(events) > 0
    streamed = [e for e in events if e["op"] == "u"]
    assert len({e["id"] for e in streamed}) == 100


def test_drain_survives_a_lost_stream(cdc_db: str, tmp_path: Path) -> None:
    """``drain`` (demo, retry tooling) reconnects after a lost stream instead of returning early."""
    from cdcsync.engine.daemon import drain

    settings, _ = settings_for(cdc_db, tmp_path, linger_ms=20, batch_max_events=200)
    drain(settings)  # initial snapshot of the 300 preset rows; the slot now streams
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("INSERT INTO emr.cdc_probe (id, name, amount) SELECT g, '批量' || g, g"
                     " FROM generate_series(1001, 61000) g")
    result: dict[str, int] = {}
    worker = threading.Thread(target=lambda: result.update(drain(settings)))
    worker.start()
    terminated = 0
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while worker.is_alive() and not terminated and time.monotonic() < deadline:
            terminated = len(conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                " WHERE slot_name = 'cdcsync_t' AND active_pid IS NOT NULL").fetchall())
            time.sleep(0.02)
    worker.join(120)
    assert terminated == 1, "the stream was never cut while draining"
    events = read_events(tmp_path / "events.jsonl")
    assert fold(events, "cdc_probe") == table_as_events(cdc_db, "cdc_probe")
