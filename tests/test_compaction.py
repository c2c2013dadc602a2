"""The periodic compaction of ``cdcsync.delivered_keys`` (cdcsync/ops/compaction.py) on a real
server: it keeps exactly the latest entry per held key and never changes the held set, table by
table ends where the one-shot form ends, concurrent appends and a snapshot reading the log are
unharmed, the size trigger, and a re-snapshot after it still sends exactly the deletes."""

from __future__ import annotations

import datetime as dt
import logging
import random
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdcsync.engine.checkpoint import LATEST_KEYS_CTE, DeliveredKeys, compact_keys, pk_json, version_digest
from cdcsync.event import Change, Event, Op
from cdcsync.ops.compaction import Compactor, compact_destination, due
from cdcsync.ops.loop import OpsLoop
from cdcsync.settings.ops import CompactionSettings, OpsSettings
from cdcsync.source.pgoutput import tuple_data
from cdcsync.source.snapshot import read_snapshot
from tests.cdc_util import prepare_db, settings_for, wait_for

T0 = dt.datetime(2024, 5, 6, 2, 0, tzinfo=dt.UTC)
PKS: dict[str, tuple[str, ...]] = {"visit": ("id",), "lab": ("org", "no"), "log": (), "compact_probe": ("id",)}
PROBE = "compact_probe"  # a mirror table of its own (emr.visit exists in the mirror schema)
Key = tuple[str, str]
Held = dict[Key, tuple[str, str | None]]


def ev(op: Op, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None, eid: str) -> Event:
    image = None if after is None else tuple_data([None if v is None else str(v).encode() for v in after.values()])
    return Event(eid, op, before, after, "ORG", "emr", "emr", table, 0x10, 7, T0, False, 0, "m1", "s1", image=image)


def append(conn: psycopg.Connection[Any], destination: str, events: list[Event], held: Held | None = None) -> None:
    """Acknowledge ``events`` the way the checkpointer does (track, then one COPY in the caller's
    transaction, or in its own with an autocommit ``conn``), and apply them to the model ``held``."""
    keys = DeliveredKeys(destination, lambda schema, table: PKS[table])
    keys.track(events, None)
    with conn.transaction():
        keys.write(conn)
    if held is None:
        return
    for e in events:
        cols = PKS[e.table]
        if e.op == "t":
            for k in [k for k in held if k[0] == e.table]:
                del held[k]
        elif not cols:
            continue
        elif e.op == "d":
            assert e.before is not None
            held.pop((e.table, pk_json(e.before, cols)), None)
        else:
            assert e.after is not None
            if e.op == "u" and e.before is not None:
                held.pop((e.table, pk_json(e.before, cols)), None)
            held[(e.table, pk_json(e.after, cols))] = (e.id, version_digest(e))


def latest(conn: psycopg.Connection[Any], destination: str) -> list[tuple[Any, ...]]:
    """The held set, row by row: seq, table, key, event id, digest."""
    return conn.execute(LATEST_KEYS_CTE + " SELECT seq, table_name, pk, event_id, row_digest FROM latest"
                        " ORDER BY table_name, pk", {"d": destination, "t": None}).fetchall()


def entries(conn: psycopg.Connection[Any], destination: str) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT seq, table_name, pk, present, event_id, row_digest FROM cdcsync.delivered_keys"
                        " WHERE destination = %s ORDER BY seq", (destination,)).fetchall()


def as_held(rows: list[tuple[Any, ...]]) -> Held:
    return {(t, pk): (eid, dg) for _, t, pk, eid, dg in rows}


def random_history(rng: random.Random, tag: str, n: int) -> list[Event]:
    """Inserts, snapshot reads, updates (some changing the key), deletes and truncates over two
    keyed tables and a keyless one."""
    out: list[Event] = []
    for i in range(n):
        eid = f"{tag}:{i}"
        table = rng.choice(["visit", "visit", "lab", "log"])
        roll = rng.random()
        if table == "log":
            out.append(ev("c", "log", None, {"m": i}, eid))
            continue
        k = rng.randrange(25)
        value = f"{tag}{i}"  # a new version each time: a new digest

        def row(key: int, table: str = table, value: str = value) -> dict[str, Any]:
            if table == "visit":
                return {"id": key, "v": value}
            return {"org": "A" if key % 2 else "B", "no": key, "r": value}
        if roll < 0.03:
            out.append(ev("t", table, None, None, eid))
        elif roll < 0.35:
            out.append(ev(rng.choice(["c", "r"]), table, None, row(k), eid))
        elif roll < 0.75:
            new = rng.randrange(25) if rng.random() < 0.2 else k
            out.append(ev("u", table, row(k), row(new), eid))
        else:
            out.append(ev("d", table, row(k), None, eid))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compaction_keeps_exactly_the_latest_entry_per_held_key(migrated_db: str, seed: int,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(seed)
    held: dict[str, Held] = {"d1": {}, "d2": {}}
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for batch in range(12):  # two destinations' checkpoint writes, interleaved in seq
            for dest in ("d1", "d2"):
                append(conn, dest, random_history(rng, f"{dest}-{batch}", rng.randrange(20, 80)), held[dest])
        before = latest(conn, "d1")
        assert as_held(before) == held["d1"]  # the log says what the model holds, ids and digests included
        other = entries(conn, "d2")
        assert len(entries(conn, "d1")) > 2 * len(before)  # there is something to compact

        # The one-shot form, as the stream runs it at the end of a snapshot (rolled back) ...
        with conn.transaction(force_rollback=True):
            compact_keys(conn, "d1")
            one_shot = entries(conn, "d1")
        # ... and table by table, each in its own transaction: the held set holds at every step.
        tables = [t for (t,) in conn.execute("SELECT DISTINCT table_name FROM cdcsync.delivered_keys"
                                             " WHERE destination = 'd1' ORDER BY 1").fetchall()]
        for table in tables:
            compact_keys(conn, "d1", table)
            assert latest(conn, "d1") == before
        left = entries(conn, "d1")
        assert left == one_shot
        # Exactly the latest entry of each held key, unchanged row by row (seq, id, digest).
        assert [(s, t, pk, eid, dg) for s, t, pk, _, eid, dg in left] == sorted(before)
        assert all(present for _, _, _, present, _, _ in left)
        assert entries(conn, "d2") == other  # another destination's entries are not touched

        # The ops-side entry point: the same rule, counts recorded and logged without keys.
        d2_latest = latest(conn, "d2")
        with caplog.at_level(logging.INFO, logger="cdcsync.ops.compaction"):
            result = compact_destination(conn, "d2")
        assert (result.before, result.after) == (len(other), len(d2_latest))
        assert latest(conn, "d2") == d2_latest and len(entries(conn, "d2")) == len(d2_latest)
        state = conn.execute("SELECT live_entries, entries_before FROM cdcsync.delivered_keys_compaction"
                             " WHERE destination = 'd2'").fetchone()
        assert state == (len(d2_latest), len(other))
        line = next(r.getMessage() for r in caplog.records if "compaction" in r.getMessage())
        assert f"destination d2: {len(other)} -> {len(d2_latest)} entries" in line
        assert "{" not in line and '"' not in line  # no key values


def test_compaction_concurrent_with_appends_loses_no_entry(migrated_db: str) -> None:
    held: Held = {}
    with psycopg.connect(migrated_db, autocommit=True) as b, psycopg.connect(migrated_db, autocommit=True) as a, \
            psycopg.connect(migrated_db, autocommit=True) as r:
        b.execute("SET lock_timeout = '10s'")  # a compaction waiting on the appender fails, not hangs
        append(b, "d1", [ev("c", "visit", None, {"id": k}, f"base:{k}") for k in range(20)]
               + [ev("c", "lab", None, {"org": "A", "no": k}, f"lab:{k}") for k in range(5)], held)
        append(b, "d1", [ev("u", "visit", {"id": k}, {"id": k, "v": 2}, f"upd:{k}") for k in range(10)]
               + [ev("d", "visit", {"id": k}, None, f"del:{k}") for k in range(15, 20)], held)

        # 1. The appender's transaction is open (its COPY done, not committed) while a whole
        #    compaction runs and commits; then it commits.
        a_events = ([ev("u", "visit", {"id": k}, {"id": k, "v": 3}, f"a1:{k}") for k in range(5)]
                    + [ev("d", "visit", {"id": 6}, None, "a1:d6"), ev("t", "lab", None, None, "a1:t")]
                    + [ev("c", "lab", None, {"org": "B", "no": 9}, "a1:lab9")]
                    + [ev("c", "visit", None, {"id": k}, f"a1:{k}") for k in range(30, 33)])
        (last,) = b.execute("SELECT max(seq) FROM cdcsync.delivered_keys").fetchone()  # type: ignore[misc]
        a.execute("BEGIN")
        append(a, "d1", a_events, held)
        ours = a.execute("SELECT seq FROM cdcsync.delivered_keys WHERE seq > %s", (last,)).fetchall()
        # A reader in the middle of a snapshot: its view of the log must not move.
        r.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        seen = latest(r, "d1")
        seen_count = len(entries(r, "d1"))
        result = compact_destination(b, "d1")
        assert result.before == 20 + 5 + 10 + 5 and result.after == 15 + 5  # the open COPY is unseen
        assert latest(r, "d1") == seen and len(entries(r, "d1")) == seen_count
        r.execute("COMMIT")
        a.execute("COMMIT")
        kept = {s for (s,) in b.execute("SELECT seq FROM cdcsync.delivered_keys").fetchall()}
        assert {s for (s,) in ours} <= kept and len(ours) == len(a_events)
        assert as_held(latest(b, "d1")) == held

        # 2. A compaction statement's transaction is open while an append commits; then it commits.
        with b.transaction():
            compact_keys(b, "d1", "visit")
            a.execute("BEGIN")
            append(a, "d1", [ev("u", "visit", {"id": k}, {"id": k, "v": 4}, f"a2:{k}") for k in range(3)]
                   + [ev("d", "visit", {"id": 31}, None, "a2:d31")], held)
            a.execute("COMMIT")
        assert b.execute("SELECT count(*) FROM cdcsync.delivered_keys WHERE seq > %s",
                         (max(kept),)).fetchone() == (4,)  # every a2 entry, the delete too
        assert as_held(latest(b, "d1")) == held

        # 3. An append commits between two tables of one compaction run.
        compact_keys(b, "d1", "lab")
        a.execute("BEGIN")
        append(a, "d1", [ev("d", "lab", {"org": "B", "no": 9}, None, "a3:lab9"),
                         ev("c", "visit", None, {"id": 40}, "a3:40")], held)
        a.execute("COMMIT")
        compact_keys(b, "d1", "visit")
        assert as_held(latest(b, "d1")) == held
        # The lab row and its delete stay until the next run compacts lab again.
        assert len(entries(b, "d1")) == len(held) + 2


def _checkpoint(conn: psycopg.Connection[Any], destination: str) -> None:
    conn.execute("INSERT INTO cdcsync.checkpoint (destination, slot_name, snapshot_done) VALUES (%s, %s, true)",
                 (destination, f"cdcsync_{destination}"))


def _append_n(dsn: str, destination: str, n: int, tag: str) -> None:
    """``n`` entries (multiples of the sequence's cache of 1000, from a new session each time, so
    the sequence's value moves by exactly ``n``), re-writing keys 0..2999."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, n, 1000):
            append(conn, destination, [ev("c", "visit", None, {"id": (start + i) % 3000}, f"{tag}:{start + i}")
                                       for i in range(1000)])


def test_the_trigger_compacts_only_past_the_threshold(migrated_db: str) -> None:
    cfg = CompactionSettings(min_entries=5000, growth_ratio=2.0)
    compactor = Compactor(migrated_db, cfg)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        _checkpoint(conn, "d1")

        def count() -> int:
            return len(entries(conn, "d1"))

        _append_n(migrated_db, "d1", 3000, "a")
        assert due(conn, cfg) == [] and compactor.run_once() == [] and count() == 3000
        _append_n(migrated_db, "d1", 3000, "b")  # 6000 appended since the start, min_entries 5000
        assert [d.destination for d in due(conn, cfg)] == ["d1"]
        (run,) = compactor.run_once()
        assert (run.destination, run.before, run.after) == ("d1", 6000, 3000) and count() == 3000

        # Now the held set (3000) sets the bar: 2.0 × 3000 = 6000 appended, above min_entries.
        _append_n(migrated_db, "d1", 5000, "c")
        assert due(conn, cfg) == [] and compactor.run_once() == [] and count() == 8000
        _append_n(migrated_db, "d1", 1000, "d")
        # Outside the hours window nothing starts, due or not.
        hour = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8))).hour
        night = Compactor(migrated_db, CompactionSettings(min_entries=5000, growth_ratio=2.0,
                                                          hours=[(hour + 12) % 24]))
        assert [d.destination for d in due(conn, cfg)] == ["d1"] and night.run_once() == [] and count() == 9000
        (run,) = compactor.run_once()
        assert (run.before, run.after) == (9000, 3000) and count() == 3000
        assert compactor.run_once() == []  # just compacted: not due again

        # The stream's compaction at the end of a snapshot counts as one: the next counts from it.
        _append_n(migrated_db, "d1", 7000, "e")
        assert [d.destination for d in due(conn, cfg)] == ["d1"]
        with conn.transaction():  # the snapshot's last checkpoint transaction
            DeliveredKeys("d1", lambda schema, table: PKS[table]).compact(conn)
        assert count() == 3000 and due(conn, cfg) == []
        state = conn.execute("SELECT live_entries, entries_before FROM cdcsync.delivered_keys_compaction"
                             " WHERE destination = 'd1'").fetchone()
        assert state == (3000, 10000)


def test_compaction_settings_are_checked_and_default_on() -> None:
    assert OpsSettings().compaction.enabled and OpsSettings().compaction.min_entries == 200_000
    with pytest.raises(ValueError, match="hours"):
        OpsSettings.model_validate({"compaction": {"hours": [24]}})
    with pytest.raises(ValueError, match="growth_ratio"):
        OpsSettings.model_validate({"compaction": {"growth_ratio": 0}})


def _snapshot_deletes(dsn: str, exported: str) -> set[int]:
    gone: set[int] = set()

    def emit(ch: Change) -> None:
        if ch.op == "d":
            assert ch.before is not None
            gone.add(int(ch.before["id"]))
    read_snapshot(dsn, exported, 0, emit, lambda schema, table: PKS[table], tables=[PROBE], deletes_for="d1")
    return gone


def test_a_resnapshot_after_compaction_sends_exactly_the_deletes(fresh_db: str) -> None:
    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE emr.compact_probe (id bigint PRIMARY KEY, v text)")
        conn.execute("ALTER PUBLICATION cdcsync_emr ADD TABLE emr.compact_probe")
        conn.execute("INSERT INTO emr.compact_probe SELECT g, 'v' FROM generate_series(1, 45) g")
        _checkpoint(conn, "d1")
        # What the destination acknowledged: a snapshot, updates, deletes it received.
        append(conn, "d1", [ev("r", PROBE, None, {"id": k, "v": "v"}, f"r:{k}") for k in range(1, 41)])
        for rnd in range(3):
            append(conn, "d1", [ev("u", PROBE, {"id": k}, {"id": k, "v": rnd}, f"u{rnd}:{k}") for k in range(1, 41)])
        conn.execute("DELETE FROM emr.compact_probe WHERE id IN (5, 6)")
        append(conn, "d1", [ev("d", PROBE, {"id": k}, None, f"d:{k}") for k in (5, 6)])
        append(conn, "d1", [ev("c", PROBE, None, {"id": k, "v": "v"}, f"c:{k}") for k in range(41, 46)])
        # Lost while the slot was gone: deletes of held rows, a row the destination never had.
        conn.execute("DELETE FROM emr.compact_probe WHERE id BETWEEN 10 AND 14 OR id = 41")
        conn.execute("INSERT INTO emr.compact_probe VALUES (100, 'new')")
        expected = {10, 11, 12, 13, 14, 41}

        with psycopg.connect(fresh_db) as holder:
            holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            (early,) = holder.execute("SELECT pg_export_snapshot()").fetchone()  # type: ignore[misc]
            assert _snapshot_deletes(fresh_db, early) == expected  # before any compaction
            (run,) = Compactor(fresh_db, CompactionSettings(min_entries=1)).run_once()
            assert run.after == 43 and run.before == 40 * 4 + 2 + 5
            # A snapshot taken before the compaction still reads the log it saw.
            assert _snapshot_deletes(fresh_db, early) == expected
        with psycopg.connect(fresh_db) as holder:
            holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            (late,) = holder.execute("SELECT pg_export_snapshot()").fetchone()  # type: ignore[misc]
            assert _snapshot_deletes(fresh_db, late) == expected  # and one taken after it


def test_the_ops_loop_runs_the_compactor_and_a_stop_cancels_it(migrated_db: str, tmp_path: Path) -> None:
    settings, _ = settings_for(migrated_db, tmp_path)
    settings = settings.model_copy(update={"ops": OpsSettings(
        heartbeat={"enabled": False}, compaction={"check_interval_s": 1, "min_entries": 1})})
    with psycopg.connect(migrated_db, autocommit=True) as conn, psycopg.connect(migrated_db) as locker:
        _checkpoint(conn, "d1")
        for rnd in range(3):  # 30 entries, 10 keys held
            append(conn, "d1", [ev("c", "visit", None, {"id": k}, f"x{rnd}:{k}") for k in range(10)])
        # The ops loop starts the compactor: it compacts on its own within a check interval.
        loop = OpsLoop(settings, lambda: {"database": {"reachable": True}, "destinations": []}).start()
        try:
            assert loop.compactor is not None
            wait_for(lambda: conn.execute("SELECT live_entries FROM cdcsync.delivered_keys_compaction"
                                          " WHERE destination = 'd1'").fetchone() == (10,), 30, "a compaction")
            assert len(entries(conn, "d1")) == 10
            # A compaction held up (here: by row locks) is cancelled by the stop, and rolls back.
            with psycopg.connect(migrated_db, autocommit=True) as other:  # a new session: a new block of seq
                append(other, "d1", [ev("c", "visit", None, {"id": k}, f"y:{k}") for k in range(10)])
            locker.execute("SELECT 1 FROM cdcsync.delivered_keys FOR UPDATE")
            wait_for(lambda: conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cdcsync-compaction'"
                " AND wait_event_type = 'Lock'").fetchone() == (1,), 30, "the compaction to wait for the lock")
        finally:
            loop.stop(timeout=10)
        thread = loop.compactor._thread
        assert thread is not None and not thread.is_alive()
        locker.rollback()
        assert len(entries(conn, "d1")) == 20  # nothing of the cancelled run was kept
        assert conn.execute("SELECT entries_before FROM cdcsync.delivered_keys_compaction").fetchone() == (30,)
