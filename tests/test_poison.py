"""Poison batches: a platform answer that will never change (400/413/422, same reason) must not
stop a destination. The batch is bisected down to the refused event(s), which are quarantined
with the platform's reason and field (rule PLT…); everything else is delivered, in commit order.

The first tests drive the HTTP sink against the reference platform (in process, real HTTPS and
SM2/SM4, no database); the last one runs a real pipeline on PostgreSQL end to end.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import yaml

from cdcsync.crypto.envelope import seal
from cdcsync.crypto.keys import load_private_key, load_public_key, write_keypair
from cdcsync.event import Batch, Event, str_to_lsn
from cdcsync.sink.http import REFUSING_ALL, HttpSink
from cdcsync.sink.http_settings import HttpDestination
from cdcsync.upstream_sim.app import Faults
from cdcsync.upstream_sim.runner import SimHandle, start_in_process
from tests.cdc_util import LOOPBACK_API, PROBE_DDL, cli_cmd, fold, prepare_db, table_as_events, wait_for

ORG = "12110000400000000X"
_seq = iter(range(1, 10**9))


def make_events(n: int, table: str = "diagnosis", **extra: Any) -> list[Event]:
    now = dt.datetime.now(dt.UTC)
    out = []
    for _ in range(n):
        i = next(_seq)
        row = {"id": i, "org_code": ORG, "icd10_code": "A01.0", **extra}
        out.append(Event(f"{ORG}.poison:{i:016X}:0", "c", None, row, ORG, "poison", "emr", table, i, i, now,
                         False, 0, spec_version="t", mapping_version="t"))
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    hk, hp, _ = write_keypair(tmp_path_factory.mktemp("keys"), "hospital")
    return {"hospital_key": hk, "hospital_pub": hp}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Iterator[SimHandle]:
    with start_in_process(tmp_path_factory.mktemp("sim"), hospital_pubs=[keys["hospital_pub"]]) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset_faults(sim: SimHandle) -> Iterator[None]:
    yield
    assert sim.state is not None
    sim.state.faults = Faults()
    sim.state.max_body = 32 * 1024 * 1024


def sink_for(sim: SimHandle, keys: dict[str, Path], **kw: Any) -> HttpSink:
    base: dict[str, Any] = dict(name="national", kind="http", url=sim.url, ca_bundle=sim.ca_bundle,
                                hospital_key=keys["hospital_key"], platform_public_key=sim.platform_pub,
                                retry_initial_s=0.02, retry_max_s=0.1, timeout_s=10)
    base.update(kw)
    return HttpSink(HttpDestination(**base))


def received_in_order(sim: SimHandle) -> list[str]:
    """Event ids in the order the platform stored them."""
    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    try:
        return [i for (i,) in db.execute("SELECT id FROM events ORDER BY rowid")]
    finally:
        db.close()


def faults(sim: SimHandle) -> Faults:
    assert sim.state is not None
    return sim.state.faults


def test_a_batch_refused_for_one_event_is_bisected_and_the_rest_delivered_in_order(
        sim: SimHandle, keys: dict[str, Path]) -> None:
    evs = make_events(37)
    poison = evs[22]
    faults(sim).refuse_event_ids = frozenset({poison.id})
    before = len(received_in_order(sim))
    assert sim.state is not None
    refusals_before = sim.state.counters["refused.poison_422"]
    sink = sink_for(sim, keys, poison_after_attempts=3)
    ack = sink.send(Batch(events=evs))
    good = [e.id for e in evs if e is not poison]
    assert list(ack.accepted) == good
    assert set(ack.rejected) == {poison.id} and ack.rejected_rules == {poison.id: "PLT422"}
    assert "HTTP 422 event_refused" in ack.rejected[poison.id] and poison.id in ack.rejected[poison.id]
    assert received_in_order(sim)[before:] == good  # the good halves left in commit order
    h = sink.health.snapshot()
    assert h.events_refused == 1 and not h.refusing_all
    # Three identical answers for the whole batch (the third is final, not retried), then one per
    # level of the bisection for the half holding the event (a known reason: split at once).
    assert h.total_failures == 2
    assert sim.state.counters["refused.poison_422"] - refusals_before <= 3 + 6
    sink.close()


def test_a_single_event_needs_the_same_refusal_n_times(sim: SimHandle, keys: dict[str, Path]) -> None:
    ev = make_events(1, table="lab_result")[0]
    f = faults(sim)
    assert ev.after is not None
    f.refuse_rows, f.refuse_status = frozenset({("lab_result", "id", str(ev.after["id"]))}), 400
    sink = sink_for(sim, keys, poison_after_attempts=4)
    ack = sink.send(Batch(events=[ev]))
    assert not ack.accepted and ack.rejected_rules == {ev.id: "PLT400"}
    assert ack.rejected_fields == {ev.id: "id"} and "lab_result.id" in ack.rejected[ev.id]
    assert sink.health.snapshot().total_failures == 3  # the fourth identical answer is final
    assert ev.id not in set(received_in_order(sim))
    sink.close()


def test_413_for_a_single_event_is_a_poison_event(sim: SimHandle, keys: dict[str, Path]) -> None:
    """A real size limit: the big event alone is over the platform's body limit."""
    assert sim.state is not None
    small = make_events(3)
    big = make_events(1, note=os.urandom(48 * 1024).hex())[0]  # incompressible
    evs = [small[0], big, small[1], small[2]]
    sink = sink_for(sim, keys, poison_after_attempts=2)
    one_small = len(seal(sink._payload(small[:1])[2], sender_key=load_private_key(keys["hospital_key"]),
                         recipient_pub=load_public_key(sim.platform_pub), org_code=ORG, batch_id="x").body)
    sim.state.max_body = one_small * 3 + 1024  # the three small ones fit together, the big one never
    before = len(received_in_order(sim))
    ack = sink.send(Batch(events=evs))
    assert list(ack.accepted) == [e.id for e in small]
    assert ack.rejected_rules == {big.id: "PLT413"} and "HTTP 413" in ack.rejected[big.id]
    assert received_in_order(sim)[before:] == [e.id for e in small]
    sink.close()


def test_a_transient_503_is_retried_not_quarantined(sim: SimHandle, keys: dict[str, Path]) -> None:
    faults(sim).fail_rate = 1.0
    sink = sink_for(sim, keys, poison_after_attempts=1)
    evs = make_events(5)
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(sink.send(Batch(events=evs))))
    t.start()
    deadline = time.monotonic() + 20
    while sink.health.snapshot().total_failures < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sink.health.snapshot().total_failures >= 5 and not result  # still retrying the whole batch
    faults(sim).fail_rate = 0.0
    t.join(20)
    assert result and list(result[0].accepted) == [e.id for e in evs] and not result[0].rejected
    assert sink.health.snapshot().events_refused == 0
    sink.close()


def test_a_platform_refusing_everything_stops_quarantining(sim: SimHandle, keys: dict[str, Path]) -> None:
    """Refusals of every event in a row, nothing accepted: a configuration problem, not the data.
    At most ``poison_max_consecutive`` events are quarantined; then the sink retries and says why,
    and once the platform accepts again the rest is delivered."""
    evs = make_events(6)
    faults(sim).refuse_event_ids = frozenset(e.id for e in evs)
    sink = sink_for(sim, keys, poison_after_attempts=2, poison_max_consecutive=2)
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(sink.send(Batch(events=evs))))
    t.start()
    deadline = time.monotonic() + 20
    while not sink.health.snapshot().refusing_all and time.monotonic() < deadline:
        time.sleep(0.02)
    h = sink.health.snapshot()
    assert h.refusing_all and h.events_refused == 2 and not result
    while REFUSING_ALL not in (sink.health.snapshot().last_error or "") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert REFUSING_ALL in (sink.health.snapshot().last_error or "")
    faults(sim).refuse_event_ids = frozenset()
    t.join(20)
    assert result
    ack = result[0]
    assert set(ack.rejected) == {evs[0].id, evs[1].id}
    assert list(ack.accepted) == [e.id for e in evs[2:]]
    assert not sink.health.snapshot().refusing_all
    sink.close()


def test_cli_refuse_switches(tmp_path: Path, keys: dict[str, Path]) -> None:
    """`upstream-sim --refuse-event-id ID --refuse-status 413` as a process; a bad --refuse-row is
    refused with the expected form."""
    from click.testing import CliRunner

    from cdcsync.upstream_sim.cli import upstream_sim_command
    from cdcsync.upstream_sim.runner import start_subprocess

    bad = CliRunner().invoke(upstream_sim_command, ["--data-dir", str(tmp_path / "x"), "--refuse-row", "patient"])
    assert bad.exit_code == 2 and "表名.字段名=值" in bad.output
    evs = make_events(3)
    h = start_subprocess(tmp_path / "sim", hospital_pubs=[keys["hospital_pub"]], log_file=tmp_path / "sim.log",
                         args=["--refuse-event-id", evs[1].id, "--refuse-status", "413"])
    try:
        sink = sink_for(h, keys, poison_after_attempts=2)
        ack = sink.send(Batch(events=evs))
        assert list(ack.accepted) == [evs[0].id, evs[2].id] and ack.rejected_rules == {evs[1].id: "PLT413"}
        assert h.stats()["counters"]["refused.poison_413"] >= 2
        sink.close()
    finally:
        h.stop()


# ----------------------------------------------------------------------------- end to end on PostgreSQL


def stored_events(sim: SimHandle) -> list[dict[str, Any]]:
    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    try:
        return [orjson.loads(p) for (p,) in db.execute("SELECT payload FROM events ORDER BY rowid")]
    finally:
        db.close()


def test_platform_refusing_one_event_forever_quarantines_it_and_the_stream_goes_on(
        fresh_db: str, tmp_path: Path) -> None:
    from cdcsync.api.monitor_app import StatusCollector
    from cdcsync.api.web_app import render_status
    from cdcsync.config import Settings
    from cdcsync.engine.pipeline import Pipeline, run_pipeline_forever
    from cdcsync.engine.status import collect_status
    from cdcsync.ops.status import build_status
    from cdcsync.spec import load_spec
    from cdcsync.validate.reload import RulesHolder
    from cdcsync.validate.stage import transform_for

    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(PROBE_DDL)
    hk, hp, _ = write_keypair(tmp_path / "keys", "hospital")
    # The platform answers 422 for any batch holding the change of row 13, forever.
    sim = start_in_process(tmp_path / "sim", hospital_pubs=[hp],
                           faults=Faults(refuse_rows=frozenset({("cdc_probe", "id", "13")}), refuse_status=422))
    data: dict[str, Any] = {
        "org_code": "TESTORG01", "state_dir": str(tmp_path / "state"), "database": {"dsn": fresh_db},
        "stream": {"status_interval_s": 1, "linger_ms": 300, "heartbeat_interval_s": 5, "snapshot_on_new": False,
                   "checkpoint_interval_ms": 0},
        "destinations": [{"name": "national", "kind": "http", "url": sim.url, "ca_bundle": str(sim.ca_bundle),
                          "hospital_key": str(hk), "platform_public_key": str(sim.platform_pub),
                          "retry_initial_s": 0.05, "retry_max_s": 0.2, "poison_after_attempts": 3}],
        "api": LOOPBACK_API,
    }
    settings = Settings.model_validate(data)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    pipe = Pipeline(settings, settings.destinations[0], transform=transform_for(settings, RulesHolder.load()))
    ready = threading.Event()
    pipe.on_ready = ready.set
    t = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    t.start()
    try:
        assert ready.wait(30)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            with conn.transaction():  # one transaction, one batch: the poison one
                conn.cursor().executemany("INSERT INTO emr.cdc_probe (id, name, amount) VALUES (%s, %s, %s)",
                                          [(i, f"行{i}", i) for i in range(1, 41)])
            # The stream goes on: later commits, one of them touching a delivered row.
            for i in range(41, 46):
                conn.execute("INSERT INTO emr.cdc_probe (id, name, amount) VALUES (%s, %s, %s)", (i, f"行{i}", i))
            conn.execute("UPDATE emr.cdc_probe SET name = '改' WHERE id = 7")
            conn.execute("DELETE FROM emr.cdc_probe WHERE id = 8")
            (end_lsn,) = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()  # type: ignore[misc]
        want = table_as_events(fresh_db, "cdc_probe")
        want.pop(13)
        wait_for(lambda: fold(stored_events(sim), "cdc_probe") == want, 60, "every other row at the platform")

        with psycopg.connect(fresh_db, autocommit=True) as conn:
            # The checkpoint commits the quarantine row after the platform stored the rest.
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.quarantine").fetchone()[0] >= 1,  # type: ignore[index]
                     30, "the refused event in quarantine")
            q = conn.execute("SELECT event_id, table_name, primary_key, rule_id, field, message, status, op"
                             " FROM cdcsync.quarantine").fetchall()
            assert len(q) == 1
            event_id, table, pk, rule, field, message, status, op = q[0]
            assert (table, pk, rule, field, status, op) == ("cdc_probe", {"id": 13}, "PLT422", "id", "held", "c")
            assert "HTTP 422 event_refused" in message and "cdc_probe.id" in message and event_id in message
            poison_lsn = int(event_id.split(":")[1], 16)  # {origin}:{commit LSN}:{ordinal}
            # The slot moved past the refused change's transaction, up to the last commit.
            wait_for(lambda: str_to_lsn(conn.execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdcsync_national'"
            ).fetchone()[0]) >= str_to_lsn(end_lsn), 30, "the slot to confirm the last commit")  # type: ignore[index]
            assert str_to_lsn(end_lsn) > poison_lsn
        stored_ids = [e["id"] for e in stored_events(sim)]
        assert event_id not in stored_ids
        assert stored_ids == sorted(stored_ids, key=lambda i: (int(i.split(":")[1], 16), int(i.split(":")[2])))

        # The alert: cdcsync status, the monitoring API (JSON and /metrics), the status page.
        st = collect_status(settings)["destinations"][0]["platform_refused"]
        assert st["held"] == 1 and st["last"]["rule_id"] == "PLT422" and st["last"]["table"] == "cdc_probe"
        out = subprocess.run(cli_cmd(cfg, "status"), capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "平台拒收 1 条" in out.stdout and "PLT422 表 cdc_probe 字段 id" in out.stdout
        full = build_status(settings)
        assert full["destinations"][0]["platform_refused"]["held"] == 1
        from prometheus_client import CollectorRegistry, generate_latest

        reg = CollectorRegistry(auto_describe=False)
        reg.register(StatusCollector(lambda: full))
        assert 'cdcsync_platform_refused_held{destination="national"} 1.0' in generate_latest(reg).decode()
        page = render_status(full, load_spec())
        assert "拒收 1 条记录（PLT422，cdc_probe.id）" in page and "行13" not in page
    finally:
        pipe.stop.set()
        t.join(30)
        sim.stop()
    assert not t.is_alive()
