"""The stream end to end into the JSONL sink: every kind of change, big and concurrent transactions."""

from __future__ import annotations

import random
import string
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from cdcsync.engine.daemon import drain
from tests.cdc_util import PROBE_DDL, fold, prepare_db, read_events, settings_for, table_as_events


@pytest.fixture
def cdc_db(fresh_db: str) -> str:
    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(PROBE_DDL)
    return fresh_db


def _big_text(n: int = 20_000) -> str:
    # Random letters: incompressible enough that the value is TOASTed out of line.
    return "".join(random.choices(string.ascii_letters + string.digits, k=n))


def test_changes_fold_to_table_state(cdc_db: str, tmp_path: Path) -> None:
    settings, _ = settings_for(cdc_db, tmp_path)
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("INSERT INTO emr.cdc_probe (id, name) VALUES (1, '快照前'), (2, 'before snapshot')")
    drain(settings)  # initial snapshot of the two rows, slot created

    big = _big_text()
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO emr.cdc_probe (id, i2, i4, amount, ratio, name, code, flag, day, at_time, at_ts, at_tstz,"
            " blob, doc, tags) VALUES (10, -32768, 2147483647, 12345678901234567890.1234567890, 0.1,"
            " '张三𠮷🙂\t\"引号\"\\n', 'A01', true, '2024-02-29', '23:59:59.999999',"
            " '2024-01-01 00:00:00', '2024-06-01 12:34:56.789012+08', '\\x00ff10',"
            " '{\"诊断\": [1, 2.5, null], \"n\": 1}', '{a,\"b c\",NULL}')")
        conn.execute("INSERT INTO emr.cdc_probe (id) VALUES (11)")  # all NULLs
        conn.execute("INSERT INTO emr.cdc_probe (id, name, big) VALUES (12, 'toast', %s)", (big,))
        conn.execute("TRUNCATE emr.cdc_probe")
        conn.execute("INSERT INTO emr.cdc_probe (id, name, amount, at_tstz) SELECT g, '患者' || g,"
                     " 0.0000000001 * g, timestamptz '2024-01-01 08:00+08' + g * interval '1 min'"
                     " FROM generate_series(100, 160) g")
        conn.execute("INSERT INTO emr.cdc_probe (id, name, big, amount) VALUES (20, 'toast', %s, 1.5)", (big,))
        with conn.transaction():
            conn.execute("UPDATE emr.cdc_probe SET amount = 99999999999999999999.9999999999 WHERE id = 20")
            conn.execute("UPDATE emr.cdc_probe SET name = NULL, flag = false WHERE id BETWEEN 100 AND 110")
            conn.execute("DELETE FROM emr.cdc_probe WHERE id BETWEEN 120 AND 125")
            conn.execute("UPDATE emr.cdc_probe SET id = 1000 WHERE id = 130")  # key change
        conn.execute("INSERT INTO emr.cdc_probe (id, name, at_tstz) VALUES (21, '𠮷野家', '1999-12-31 23:59:59+00')")
    counts = drain(settings)
    assert counts["t"] > 0

    events = read_events(tmp_path / "events.jsonl")
    assert fold(events, "cdc_probe") == table_as_events(cdc_db, "cdc_probe")
    assert len({e["id"] for e in events}) == len(events), "no replay happened, so no duplicate ids"

    # The update that did not touch the TOASTed column still carries its full value.
    upd = [e for e in events if e["op"] == "u" and e["after"]["id"] == 20]
    assert upd and upd[0]["after"]["big"] == big and upd[0]["after"]["amount"] == "99999999999999999999.9999999999"
    first = next(e for e in events if e["op"] == "c" and e["after"]["id"] == 10)
    after = first["after"]
    assert after["amount"] == "12345678901234567890.1234567890"
    assert Decimal(after["amount"]) == Decimal("12345678901234567890.1234567890")
    assert after["name"] == '张三𠮷🙂\t"引号"\\n'
    assert after["at_tstz"] == "2024-06-01T12:34:56.789012+08:00"
    assert after["at_ts"] == "2024-01-01T00:00:00"  # microseconds only when non-zero (RFC 3339)
    assert after["doc"] == {"诊断": [1, 2.5, None], "n": 1}
    assert after["tags"] == '{a,"b c",NULL}'
    assert after["blob"] == "AP8Q"  # base64 of 00 ff 10
    assert [e["op"] for e in events].count("t") == 1
    src = first["source"]
    assert src["org_code"] == "TESTORG01" and src["schema"] == "emr" and src["table"] == "cdc_probe"
    assert first["id"].startswith("TESTORG01.")

    with psycopg.connect(cdc_db) as conn:
        (delivered,) = conn.execute(
            "SELECT sum(delivered) FROM cdcsync.delivery_stats WHERE destination = 't'").fetchone()  # type: ignore[misc]
    assert delivered == len(events)


def test_big_and_concurrent_transactions_arrive_whole_and_in_commit_order(cdc_db: str, tmp_path: Path) -> None:
    settings, _ = settings_for(cdc_db, tmp_path, batch_max_events=1000)
    drain(settings)
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("INSERT INTO emr.cdc_probe (id, name, amount) SELECT g, 'bulk ' || g, g / 7.0"
                     " FROM generate_series(1, 200000) g")
    # 20 transactions, their statements interleaved, committed in a shuffled order.
    conns = [psycopg.connect(cdc_db) for _ in range(20)]
    try:
        xids = [int(c.execute("SELECT txid_current()").fetchone()[0]) for c in conns]  # type: ignore[index]
        for rnd in range(25):
            for k, c in enumerate(conns):
                c.execute("INSERT INTO emr.cdc_probe (id, name) VALUES (%s, %s)",
                          (1_000_000 + k * 1000 + rnd, f"tx{k}-{rnd}"))
        order = list(range(20))
        random.shuffle(order)
        for k in order:
            conns[k].commit()
    finally:
        for c in conns:
            c.close()
    drain(settings)

    events = read_events(tmp_path / "events.jsonl")
    assert len(events) == 200_000 + 500
    # Runs of consecutive events with the same transaction id.
    runs: list[tuple[int, list[dict]]] = []
    for ev in events:
        tx = ev["source"]["tx_id"]
        if runs and runs[-1][0] == tx:
            runs[-1][1].append(ev)
        else:
            runs.append((tx, [ev]))
    assert len(runs) == 21, "each transaction's events are contiguous"
    assert len(runs[0][1]) == 200_000
    assert [tx for tx, _ in runs[1:]] == [xids[k] for k in order], "transactions leave in commit order"
    for _, evs in runs:
        assert [int(e["id"].rsplit(":", 1)[1]) for e in evs] == list(range(len(evs)))
        assert len({e["source"]["lsn"] for e in evs}) == 1
    assert fold(events, "cdc_probe") == table_as_events(cdc_db, "cdc_probe")
    with psycopg.connect(cdc_db) as conn:
        (delivered,) = conn.execute(
            "SELECT sum(delivered) FROM cdcsync.delivery_stats WHERE destination = 't'").fetchone()  # type: ignore[misc]
        (slot_lsn, ck_lsn) = conn.execute(
            "SELECT s.confirmed_flush_lsn, c.acked_lsn FROM pg_replication_slots s, cdcsync.checkpoint c"
            " WHERE s.slot_name = 'cdcsync_t' AND c.destination = 't'").fetchone()  # type: ignore[misc]
    assert delivered == 200_500
    assert slot_lsn >= ck_lsn
