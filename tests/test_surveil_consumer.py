"""The rules consumer: its own slot and checkpoint, cases written in the checkpoint's transaction.

Rows are written to a real mirror (tests/surveil_rows.py), streamed through the validation and
mapping stage, and the real rule engine opens cases. The kill -9 test runs ``cdcsync run`` as a
subprocess under a steady writer, kills it several times, and compares the cases and their history
row by row with what was committed: nothing lost, nothing twice."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from cdcsync.config import Settings
from cdcsync.surveil.consumer import RulesConsumer, run_consumer_forever
from cdcsync.surveil.engine import EngineHolder
from cdcsync.validate.reload import RulesHolder
from tests.cdc_util import LOOPBACK_API, prepare_db, start_daemon, wait_for
from tests.surveil_rows import ORG, Mirror


def settings_for(dsn: str, tmp: Path, **surveil: Any) -> tuple[Settings, Path]:
    data: dict[str, Any] = {
        "org_code": ORG,
        "state_dir": str(tmp / "state"),
        "database": {"dsn": dsn},
        "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5},
        "destinations": [{"name": "t", "kind": "jsonl", "path": str(tmp / "events.jsonl")}],
        "api": LOOPBACK_API,
        "surveil": {"enabled": True, "linger_ms": 20, **surveil},
    }
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    return Settings.model_validate(data), cfg


def rows(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params or None).fetchall()


def applied_lsn(dsn: str) -> int:
    r = rows(dsn, "SELECT applied_lsn - '0/0' FROM cdcsync.surveil_checkpoint WHERE consumer = 'surveil'")
    return int(r[0][0]) if r else 0


def wal_now(dsn: str) -> int:
    """A position the consumer must pass: a transactional logical message (a transaction of its
    own in the stream, committed now)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_logical_emit_message(true, 'cdcsync.test', 'mark') - '0/0'").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def mirror_db(fresh_db: str) -> str:
    prepare_db(fresh_db)
    return fresh_db


class Running:
    def __init__(self, settings: Settings, engines: EngineHolder | None = None) -> None:
        holder = RulesHolder.load(settings.mappings_dir, settings.hospital)
        self.stop = threading.Event()
        engines = engines or EngineHolder.load(settings.surveil.pack, holder)
        self.consumer = RulesConsumer(settings, holder, engines, self.stop)
        self.thread = threading.Thread(target=run_consumer_forever, args=(self.consumer,), daemon=True)
        self.thread.start()
        wait_for(lambda: self.consumer.healthy, what="consumer streaming")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def test_consumer_opens_cases_from_the_stream_and_resumes_at_its_checkpoint(mirror_db: str, tmp_path: Path) -> None:
    settings, _ = settings_for(mirror_db, tmp_path)
    m = Mirror(mirror_db)
    run = Running(settings)
    try:
        assert rows(mirror_db, "SELECT slot_name FROM pg_replication_slots WHERE slot_name = 'cdcsync_surveil'")
        m.visit("V1", "P1")
        m.diagnosis("V1", "P1", "A15.000")  # 肺结核
        m.visit("V2", "P2")
        m.diagnosis("V2", "P2", "J18.900")  # not notifiable
        case = wait_for(lambda: m.cases(), what="a case")[0]
        assert (case.patient_id, case.disease_name, case.status) == ("P1", "肺结核", "待确认")
        ev = rows(mirror_db, "SELECT event_id, table_name FROM cdcsync.surveil_case_evidence")
        assert ev[0][1] == "diagnosis" and ev[0][0].startswith(f"{ORG}.")  # the stream's event id
        m.diagnosis("V1", "P1", "A15.0")  # same disease: evidence, no second case
        wait_for(lambda: len(rows(mirror_db, "SELECT 1 FROM cdcsync.surveil_case_evidence")) == 2,
                 what="evidence")
        target = wal_now(mirror_db)
        wait_for(lambda: applied_lsn(mirror_db) >= target, what="checkpoint")
    finally:
        run.close()
    # Written while the consumer is down: picked up from its checkpoint, nothing opened twice.
    m.card("V1", "P1", "21302")
    m.visit("V3", "P3")
    m.diagnosis("V3", "P3", "A00.9")  # 霍乱
    run = Running(settings)
    try:
        wait_for(lambda: {c.patient_id: c.status for c in m.cases()} == {"P1": "已报卡", "P3": "待确认"},
                 what="cases after restart")
    finally:
        run.close()
    hist = rows(mirror_db, "SELECT c.patient_id, h.action FROM cdcsync.surveil_case_history h"
                           " JOIN cdcsync.surveil_case c USING (case_id) ORDER BY h.history_id")
    assert hist == [("P1", "open"), ("P1", "evidence"), ("P1", "reported"), ("P3", "open")]
    assert rows(mirror_db, "SELECT pack_version FROM cdcsync.surveil_checkpoint")[0][0] == "2026.12.1"


class FailsOnPatient:
    """The real engine, except that it raises on one patient's rows (a stand-in for an engine bug)."""

    def __init__(self, engine: Any, patient: str) -> None:
        self.engine = engine
        self.patient = patient
        self.version = engine.version

    def apply(self, conn: Any, events: Any) -> Any:
        if any((e.after or {}).get("patient_id") == self.patient for e in events):
            conn.execute("SELECT 1/0")  # fails inside the transaction, as a real bug would
        return self.engine.apply(conn, events)


def test_a_row_the_engine_fails_on_is_skipped_and_the_rest_of_its_transaction_applied(
        mirror_db: str, tmp_path: Path) -> None:
    settings, _ = settings_for(mirror_db, tmp_path)
    holder = RulesHolder.load(settings.mappings_dir, settings.hospital)
    engines = EngineHolder(FailsOnPatient(EngineHolder.load(None, holder).current(), "PBAD"), None)
    m = TxMirror(mirror_db)
    run = Running(settings, engines)
    try:
        with psycopg.connect(mirror_db) as conn:  # one transaction: a good signal around a bad one
            m.conn = conn
            for p in ("P1", "PBAD", "P2"):
                m.visit(f"V{p}", p)
                m.diagnosis(f"V{p}", p, "A15.000")
            m.conn = None
        wait_for(lambda: {c.patient_id for c in m.cases()} == {"P1", "P2"}, what="the good cases")
        assert run.consumer.events_failed == 1 and run.consumer.healthy  # its diagnosis (no rule reads visits)
    finally:
        run.close()


def test_a_changed_rule_pack_applies_from_the_next_transaction(mirror_db: str, tmp_path: Path) -> None:
    from cdcsync.surveil.pack import DEFAULT_PACK

    pack = tmp_path / "pack.yaml"
    pack.write_text(DEFAULT_PACK.read_text(encoding="utf-8"), encoding="utf-8")
    settings, _ = settings_for(mirror_db, tmp_path, pack=str(pack), reload_interval_s=0.1)
    m = Mirror(mirror_db)
    run = Running(settings)
    try:
        m.visit("V1", "P1")
        m.diagnosis("V1", "P1", "A15.000")
        wait_for(lambda: m.cases(), what="first case")
        text = pack.read_text(encoding="utf-8").replace('version: "2026.12.1"', 'version: "2026.12.1-h1"', 1)
        pack.write_text(text, encoding="utf-8")
        wait_for(lambda: run.consumer.engines.version == "2026.12.1-h1", what="pack reload")
        m.visit("V2", "P2")
        m.diagnosis("V2", "P2", "A00.9")
        wait_for(lambda: len(m.cases()) == 2, what="second case")
    finally:
        run.close()
    assert [c.pack_version for c in m.cases()] == ["2026.12.1", "2026.12.1-h1"]


class TxMirror(Mirror):
    """Mirror whose rows go into ``self.conn``'s open transaction when it is set."""

    conn: psycopg.Connection[Any] | None = None

    def insert(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        if self.conn is None:
            return super().insert(table, row)
        names = list(row)
        self.conn.execute(sql.SQL("INSERT INTO emr.{} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL(", ").join(sql.Placeholder() * len(names))), [row[k] for k in names])
        return row


def _writer(dsn: str, stop: threading.Event, done: list[int], carded: set[int]) -> None:
    """Until stopped, per patient: visit + notifiable diagnosis (1–3 patients per transaction);
    every third a second diagnosis (evidence); every fourth, once its case is open, a report card
    (closes it: a card already in the mirror would rightly keep the case from opening at all)."""
    m = TxMirror(dsn)
    i = 0
    waiting: list[int] = []
    while not stop.is_set():
        batch = list(range(i, i + 1 + i % 3))
        i = batch[-1] + 1
        with psycopg.connect(dsn) as conn:
            m.conn = conn
            for j in batch:
                m.visit(f"KV{j}", f"KP{j}")
                m.diagnosis(f"KV{j}", f"KP{j}", "A15.000", seq=1)
            m.conn = None
            for j in batch:
                if j % 3 == 0:
                    m.diagnosis(f"KV{j}", f"KP{j}", "A15.0", seq=2)
            waiting += [j for j in batch if j % 4 == 0]
            opened = {r[0] for r in conn.execute("SELECT patient_id FROM cdcsync.surveil_case"
                                                 " WHERE patient_id = ANY(%s)", ([f"KP{j}" for j in waiting],))}
            conn.commit()
        for j in [j for j in waiting if f"KP{j}" in opened]:
            m.card(f"KV{j}", f"KP{j}", "21302", card_id=f"KC{j}")
            carded.add(j)
        waiting = [j for j in waiting if j not in carded]
        done.extend(batch)
        time.sleep(0.005)  # a steady load, not a burst that ends before the kills


def test_kill_9_under_load_loses_no_case_and_opens_none_twice(mirror_db: str, tmp_path: Path) -> None:
    _, cfg = settings_for(mirror_db, tmp_path)
    log_path = tmp_path / "daemon.log"
    kills = int(os.environ.get("CDCSYNC_SURVEIL_KILLS", "3"))
    stop = threading.Event()
    done: list[int] = []
    carded: set[int] = set()
    proc = start_daemon(cfg, log_path)
    try:
        wait_for(lambda: rows(mirror_db, "SELECT 1 FROM cdcsync.surveil_checkpoint"), 60, "consumer started")
        writer = threading.Thread(target=_writer, args=(mirror_db, stop, done, carded), daemon=True)
        writer.start()
        for k in range(kills):
            seen = int(rows(mirror_db, "SELECT count(*) FROM cdcsync.surveil_case")[0][0])
            # kill once more cases arrived, i.e. in the middle of the consumer's work
            wait_for(lambda s=seen: int(rows(mirror_db, "SELECT count(*) FROM cdcsync.surveil_case")[0][0]) > s + 5,
                     60, f"progress before kill {k + 1}")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc = start_daemon(cfg, log_path)
        stop.set()
        writer.join(120)
        assert not writer.is_alive()
        target = wal_now(mirror_db)
        wait_for(lambda: applied_lsn(mirror_db) >= target, 120, "consumer caught up")
    finally:
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    n = len(done)
    assert sorted(done) == list(range(n)) and n > 50
    counts = dict(rows(mirror_db, "SELECT patient_id, count(*) FROM cdcsync.surveil_case GROUP BY 1"))
    assert max(counts.values()) == 1  # nothing opened twice
    status = dict(rows(mirror_db, "SELECT patient_id, status FROM cdcsync.surveil_case"))
    assert set(status) == {f"KP{j}" for j in range(n)}  # nothing lost
    hist: dict[str, list[str]] = collections.defaultdict(list)
    for p, action in rows(mirror_db, "SELECT c.patient_id, h.action FROM cdcsync.surveil_case_history h"
                                     " JOIN cdcsync.surveil_case c USING (case_id) ORDER BY h.history_id"):
        hist[p].append(action)
    evidence = dict(rows(mirror_db, "SELECT c.patient_id, count(*) FROM cdcsync.surveil_case_evidence e"
                                    " JOIN cdcsync.surveil_case c USING (case_id) GROUP BY 1"))
    for j in range(n):
        p = f"KP{j}"
        second = j % 3 == 0
        if j in carded:
            # The second diagnosis adds evidence unless the card was in the mirror when it was processed.
            allowed = [["open", "reported"]] + ([["open", "evidence", "reported"]] if second else [])
            assert status[p] == "已报卡" and hist[p] in allowed, (p, hist[p])
        else:
            assert status[p] == "待确认", (p, status[p])
            assert hist[p] == ["open"] + (["evidence"] if second else []), (p, hist[p])
        assert evidence[p] == len(hist[p]), (p, evidence[p], hist[p])
    assert len(carded) > 5
    assert "Traceback" not in log_path.read_text(encoding="utf-8", errors="replace")


def test_the_consumer_sweep_expires_cases_long_past_due(mirror_db: str, tmp_path: Path) -> None:
    import datetime as dt

    from cdcsync.surveil.cases import CaseStore, Evidence, Kind, Signal, Status

    def old(patient: str, days: float) -> Signal:
        return Signal(Kind.NOTIFIABLE_DIAGNOSIS, Status.TO_CONFIRM, "213", "肺结核", "乙", ORG, patient, "V1", "D002",
                      "李医生", "0302", dt.datetime.now(dt.UTC) - dt.timedelta(days=days), 24.0,
                      Evidence(f"x:{patient}", "diagnosis", {"diagnosis_id": patient}, "diagnosis.notifiable"),
                      "诊断 A15.0 属于乙类传染病 肺结核", "test")

    with psycopg.connect(mirror_db) as conn:
        store = CaseStore(conn)
        stale, recent = store.open_or_add(old("P1", 4)).case, store.open_or_add(old("P2", 1.5)).case
        conn.commit()
    settings, _ = settings_for(mirror_db, tmp_path, expire_after_days=2, expire_sweep_s=0.2)
    run = Running(settings)
    try:
        wait_for(lambda: rows(mirror_db, "SELECT status FROM cdcsync.surveil_case WHERE case_id = %s",
                              stale.case_id)[0][0] == "已过期", what="the stale case expired")
        assert rows(mirror_db, "SELECT status FROM cdcsync.surveil_case WHERE case_id = %s",
                    recent.case_id)[0][0] == "待确认"
        assert rows(mirror_db, "SELECT action, actor FROM cdcsync.surveil_case_history WHERE case_id = %s"
                    " ORDER BY history_id", stale.case_id) == [("open", "rules:test"), ("expire", "rules:2026.12.1")]
        assert run.consumer.cases_expired == 1
    finally:
        run.close()
