"""Consistent snapshot: existing rows plus concurrent writes, each exactly once; CLI around it."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
import orjson
import psycopg
import pytest
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.engine.cli import COMMANDS
from cdcsync.engine.pipeline import PassThroughTransform, Pipeline, run_pipeline_forever
from cdcsync.event import Ack, Batch
from cdcsync.sink.jsonl import JsonlSink
from tests.cdc_util import PROBE_DDL, fold, prepare_db, read_events, settings_for, table_as_events

ROWS = 30_000


@pytest.fixture
def cdc_db(fresh_db: str) -> str:
    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(PROBE_DDL)
        conn.execute("INSERT INTO emr.cdc_probe (id, name, amount, big) SELECT g, '既往' || g, g / 3.0,"
                     " repeat('病程记录', 20) FROM generate_series(1, %s) g", (ROWS,))
    return fresh_db


def _writer(dsn: str, stop: threading.Event, counter: list[int]) -> None:
    rnd = random.Random(3)
    with psycopg.connect(dsn, autocommit=True) as conn:
        nid = ROWS
        while not stop.is_set():
            with conn.transaction():
                nid += 1
                conn.execute("INSERT INTO emr.cdc_probe (id, name) VALUES (%s, '并发')", (nid,))
                conn.execute("UPDATE emr.cdc_probe SET name = name || '+' WHERE id = %s", (rnd.randint(1, ROWS),))
                conn.execute("DELETE FROM emr.cdc_probe WHERE id = %s", (rnd.randint(1, ROWS),))
            counter[0] += 1
            time.sleep(0.002)


def _snapshot_done(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT snapshot_done FROM cdcsync.checkpoint WHERE destination = 't'").fetchone()
    return bool(row and row[0])


def _wait_equal(dsn: str, path: Path, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        events = read_events(path)
        if fold(events, "cdc_probe") == table_as_events(dsn, "cdc_probe"):
            return events
        assert time.monotonic() < deadline, "the sink did not catch up with the table"
        time.sleep(0.5)


def test_snapshot_with_concurrent_writes_every_row_once(cdc_db: str, tmp_path: Path) -> None:
    settings, _ = settings_for(cdc_db, tmp_path, batch_max_events=500)
    stop_writer = threading.Event()
    commits = [0]
    writer = threading.Thread(target=_writer, args=(cdc_db, stop_writer, commits), daemon=True)
    writer.start()
    time.sleep(0.3)
    pipe = Pipeline(settings, settings.destinations[0], transform=PassThroughTransform.for_settings(settings))
    t = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    during = commits[0]
    t.start()
    try:
        deadline = time.monotonic() + 60
        while not _snapshot_done(cdc_db):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert commits[0] > during, "writes happened while the snapshot ran"
        time.sleep(1.0)
        stop_writer.set()
        writer.join(10)
        events = _wait_equal(cdc_db, tmp_path / "events.jsonl")
    finally:
        stop_writer.set()
        pipe.stop.set()
        t.join(30)
    ids = Counter(e["id"] for e in events)
    assert max(ids.values()) == 1, "every event exactly once"
    snap = [e for e in events if e["op"] == "r"]
    assert all(e["source"]["snapshot"] for e in snap)
    # Each row existing at the snapshot point is read exactly once.
    keys = Counter(e["after"]["id"] for e in snap)
    assert max(keys.values()) == 1
    assert ROWS - 200 < len(snap) <= ROWS
    first_stream = next(i for i, e in enumerate(events) if e["op"] != "r")
    assert all(e["op"] != "r" for e in events[first_stream:]), "snapshot before stream"
    assert fold(events, "cdc_probe") == table_as_events(cdc_db, "cdc_probe")


class CrashOnce:
    """Fails the 4th batch of the snapshot: the snapshot must start over cleanly."""

    def __init__(self, path: Path) -> None:
        self.inner = JsonlSink("t", path)
        self.name = "t"
        self.calls = 0

    def send(self, batch: Batch) -> Ack:
        self.calls += 1
        if self.calls == 4:
            raise OSError("simulated crash in the middle of the snapshot")
        return self.inner.send(batch)

    def close(self) -> None:
        self.inner.close()


def test_interrupted_snapshot_restarts_cleanly(cdc_db: str, tmp_path: Path) -> None:
    settings, _ = settings_for(cdc_db, tmp_path, batch_max_events=2000)
    sink = CrashOnce(tmp_path / "events.jsonl")
    pipe = Pipeline(settings, settings.destinations[0], sink=sink,
                    transform=PassThroughTransform.for_settings(settings))
    t = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    t.start()
    try:
        with psycopg.connect(cdc_db, autocommit=True) as conn:
            conn.execute("UPDATE emr.cdc_probe SET name = '快照中修改' WHERE id <= 10")
        events = _wait_equal(cdc_db, tmp_path / "events.jsonl")
    finally:
        pipe.stop.set()
        t.join(30)
    lsns = {e["source"]["lsn"] for e in events if e["op"] == "r"}
    assert len(lsns) == 2, "the second snapshot has its own consistent point (and ids)"
    with psycopg.connect(cdc_db) as conn:
        slots = conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()
    assert slots == (1,)


def _cli() -> click.Group:
    for cmd in COMMANDS:
        if cmd.name not in main.commands:
            main.add_command(cmd)
    return main


def test_cli_snapshot_table_slots_and_status(cdc_db: str, tmp_path: Path) -> None:
    _, cfg = settings_for(cdc_db, tmp_path)
    runner = CliRunner()
    cli = _cli()
    res = runner.invoke(cli, ["-c", str(cfg), "snapshot", "--destination", "t", "--table", "cdc_probe"])
    assert res.exit_code != 0 and "初始快照" in res.output
    res = runner.invoke(cli, ["-c", str(cfg), "snapshot", "--destination", "t"])
    assert res.exit_code == 0, res.output
    assert f"投递 {ROWS} 条" in res.output
    res = runner.invoke(cli, ["-c", str(cfg), "snapshot", "-d", "t", "-t", "cdc_probe"])
    assert res.exit_code == 0, res.output
    events = read_events(tmp_path / "events.jsonl")
    assert len(events) == 2 * ROWS and len({e["id"] for e in events}) == 2 * ROWS
    res = runner.invoke(cli, ["-c", str(cfg), "snapshot", "-d", "t", "-t", "no_such"])
    assert res.exit_code != 0 and "no_such" in res.output

    res = runner.invoke(cli, ["-c", str(cfg), "status", "--json"])
    assert res.exit_code == 0, res.output
    st = orjson.loads(res.output)
    d = st["destinations"][0]
    assert d["slot"] == "cdcsync_t" and d["snapshot_done"] and d["slot_exists"] and not d["active"]
    assert d["events_today"] == {"cdc_probe": 2 * ROWS}  # commit (snapshot) date in the database's zone
    res = runner.invoke(cli, ["-c", str(cfg), "status"])
    assert res.exit_code == 0 and "cdcsync_t" in res.output

    res = runner.invoke(cli, ["-c", str(cfg), "slots", "list"])
    assert res.exit_code == 0 and "cdcsync_t" in res.output
    res = runner.invoke(cli, ["-c", str(cfg), "slots", "drop", "cdcsync_t"], input="n\n")
    assert res.exit_code != 0
    res = runner.invoke(cli, ["-c", str(cfg), "slots", "drop", "cdcsync_t", "--yes"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["-c", str(cfg), "slots", "drop", "cdcsync_t", "--yes"])
    assert res.exit_code != 0 and "不存在" in res.output
