"""pgoutput decoder on real messages, read from a slot with pg_logical_slot_get_binary_changes."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import psycopg
import pytest

from cdcsync.event import Change
from cdcsync.source.pgoutput import (
    Begin,
    Commit,
    DecodeError,
    LogicalMessage,
    Origin,
    PgOutputDecoder,
    Relation,
    Truncate,
    TypeInfo,
    _pgtuple,
    _Slow,
    build_c_parser,
    build_py_parser,
)
from tests.cdc_util import PROBE_DDL, prepare_db

SLOT = "decoder_test"


@pytest.fixture
def db(fresh_db: str) -> str:
    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(PROBE_DDL)
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (SLOT,))
    return fresh_db


def _raw_messages(dsn: str) -> list[bytes]:
    """Everything the slot has (logical messages included), as the pgoutput bytes."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The SQL interface decodes up to the flushed WAL; the test cluster commits asynchronously.
        (target,) = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()  # type: ignore[misc]
        while conn.execute("SELECT pg_current_wal_flush_lsn() < %s", (target,)).fetchone()[0]:  # type: ignore[index]
            time.sleep(0.05)
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL, 'proto_version', '1',"
            " 'publication_names', 'cdcsync_emr', 'messages', 'true')", (SLOT,)).fetchall()
    return [bytes(r[0]) for r in rows]


def _messages(dsn: str) -> list[Any]:
    """Everything the slot has, decoded by one decoder (like one streaming session)."""
    rows = _raw_messages(dsn)
    dec = PgOutputDecoder()
    out: list[Any] = []
    for data in rows:
        m = dec.decode(data)
        out.extend(m.changes if isinstance(m, Truncate) else [m])
    return out


def test_begin_insert_update_delete_commit(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO emr.cdc_probe (id, i2, amount, name, flag, day, at_tstz, blob, doc) VALUES"
                     " (1, 7, 3.1415926535897932384626, '𠮷', true, '2024-01-02',"
                     " '2024-01-02 03:04:05.000006+08', '\\xdeadbeef', '{\"a\": [1]}')")
        conn.execute("UPDATE emr.cdc_probe SET name = '改' WHERE id = 1")
        conn.execute("DELETE FROM emr.cdc_probe WHERE id = 1")
    msgs = _messages(db)
    kinds = [type(m).__name__ for m in msgs]
    assert kinds == ["Begin", "Relation", "Change", "Change", "Change", "Commit"]
    begin, rel, ins, upd, dele, commit = msgs
    assert isinstance(begin, Begin) and isinstance(commit, Commit)
    assert begin.final_lsn == commit.commit_lsn < commit.end_lsn
    assert begin.commit_ts == commit.commit_ts and begin.commit_ts.tzinfo is not None
    assert isinstance(rel, Relation) and rel.schema == "emr" and rel.name == "cdc_probe" and rel.replident == "f"
    assert isinstance(ins, Change) and ins.op == "c" and ins.ordinal == 0 and ins.lsn == begin.final_lsn
    a = ins.after
    assert a is not None
    assert a["id"] == 1 and a["i2"] == 7 and a["name"] == "𠮷" and a["flag"] is True
    assert str(a["amount"]) == "3.1415926536"  # numeric(30, 10): exact Decimal, every digit kept
    assert a["day"] == dt.date(2024, 1, 2)
    assert a["at_tstz"] == dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert a["blob"] == bytes.fromhex("deadbeef") and a["doc"] == {"a": [1]}
    assert a["big"] is None and a["tags"] is None
    assert isinstance(upd, Change) and upd.op == "u" and upd.ordinal == 1
    assert upd.before == a and upd.after == dict(a, name="改")
    assert isinstance(dele, Change) and dele.op == "d" and dele.after is None and dele.before == upd.after
    assert dele.tx_id == begin.xid


def test_truncate_message_and_type(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TYPE emr.mood AS ENUM ('ok', 'bad')")
        conn.execute("CREATE TABLE emr.cdc_enum (id int PRIMARY KEY, m emr.mood)")
        conn.execute("ALTER PUBLICATION cdcsync_emr ADD TABLE emr.cdc_enum")
        conn.execute("INSERT INTO emr.cdc_enum VALUES (1, 'bad')")
        conn.execute("INSERT INTO emr.cdc_probe (id) VALUES (1)")
        conn.execute("TRUNCATE emr.cdc_probe, emr.cdc_enum RESTART IDENTITY")
        conn.execute("SELECT pg_logical_emit_message(false, 'cdcsync.test', 'plain')")
        with conn.transaction():
            conn.execute("SELECT pg_logical_emit_message(true, 'cdcsync.test', '事务内')")
    msgs = _messages(db)
    types = [m for m in msgs if isinstance(m, TypeInfo)]
    assert types and types[0].name == "mood" and types[0].schema == "emr"
    enum_ins = next(m for m in msgs if isinstance(m, Change) and m.table == "cdc_enum")
    assert enum_ins.after == {"id": 1, "m": "bad"}  # unknown types stay text
    truncs = [m for m in msgs if isinstance(m, Change) and m.op == "t"]
    assert sorted(t.table for t in truncs) == ["cdc_enum", "cdc_probe"]
    assert [t.ordinal for t in truncs] == [0, 1] and truncs[0].lsn == truncs[1].lsn
    lm = [m for m in msgs if isinstance(m, LogicalMessage)]
    assert [(m.transactional, m.prefix, m.content.decode()) for m in lm] == [
        (False, "cdcsync.test", "plain"), (True, "cdcsync.test", "事务内")]


def test_relation_change_mid_stream_and_unchanged_toast(db: str) -> None:
    big = "x" * 5 + "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(12_000))  # ~36 kB, toasted
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO emr.cdc_probe (id, name, big) VALUES (1, 'a', %s)", (big,))
        conn.execute("ALTER TABLE emr.cdc_probe ADD COLUMN extra integer DEFAULT 5")
        conn.execute("INSERT INTO emr.cdc_probe (id, name, extra) VALUES (2, 'b', 6)")
        conn.execute("UPDATE emr.cdc_probe SET name = 'a2' WHERE id = 1")  # big unchanged
        conn.execute("ALTER TABLE emr.cdc_probe DROP COLUMN i2")
        conn.execute("INSERT INTO emr.cdc_probe (id) VALUES (3)")
    msgs = _messages(db)
    rels = [m for m in msgs if isinstance(m, Relation)]
    assert len(rels) >= 3
    assert "extra" not in rels[0].names and "extra" in rels[1].names and "i2" not in rels[-1].names
    changes = [m for m in msgs if isinstance(m, Change)]
    assert changes[0].after is not None and "extra" not in changes[0].after
    assert changes[1].after is not None and changes[1].after["extra"] == 6
    upd = changes[2]
    assert upd.op == "u" and upd.after is not None and upd.after["big"] == big and upd.after["name"] == "a2"
    assert upd.after["extra"] == 5
    assert changes[3].after is not None and "i2" not in changes[3].after


def test_origin_message(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SELECT pg_replication_origin_create('his_vendor')")
        conn.execute("SELECT pg_replication_origin_session_setup('his_vendor')")
        with conn.transaction():
            conn.execute("SELECT pg_replication_origin_xact_setup('0/1234', now())")
            conn.execute("INSERT INTO emr.cdc_probe (id) VALUES (1)")
        conn.execute("SELECT pg_replication_origin_session_reset()")
        conn.execute("SELECT pg_replication_origin_drop('his_vendor')")
    msgs = _messages(db)
    origins = [m for m in msgs if isinstance(m, Origin)]
    assert origins and origins[0].name == "his_vendor" and origins[0].lsn == 0x1234


def test_unknown_and_streamed_messages_are_refused() -> None:
    dec = PgOutputDecoder()
    with pytest.raises(DecodeError):
        dec.decode(b"Z")
    with pytest.raises(DecodeError, match="proto_version 1"):
        dec.decode(b"S\x00\x00\x00\x01\x01")
    with pytest.raises(DecodeError, match="Relation"):
        dec.decode(b"I\x00\x00\x00\x09N\x00\x00")


@pytest.mark.skipif(_pgtuple is None, reason="C extension not built")
def test_c_parser_matches_the_python_parser(db: str) -> None:
    """Every column type of the probe table, NULLs, PostgreSQL-only values (infinity, BC, year
    10000), multi-byte text: the C tuple parser and the generated Python one agree; a truncated
    or foreign tuple makes the C parser hand over to the generic loop (_Slow), never crash."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO emr.cdc_probe (id, i2, i4, amount, ratio, name, code, flag, day, at_time, at_ts, at_tstz,"
            " blob, doc, tags, big) VALUES"
            " (1, -7, 2147483647, -3.1415926535897932384626, 1.5e300, '𠮷张三', 'A-1', true, '2024-02-29',"
            "  '23:59:59.999999', '2024-01-02 03:04:05', '2024-01-02 03:04:05.000006+08', '\\xdeadbeef',"
            "  '{\"a\": [1, \"二\"]}', '{x,\"y z\"}', repeat('长', 3000)),"
            " (2, NULL, NULL, 'NaN', 'Infinity', '', '', false, 'infinity', '00:00', '-infinity', 'infinity',"
            "  '\\x', 'null', '{}', NULL),"
            " (3, 0, 0, 0, 0, 'x', NULL, NULL, '4713-01-01 BC', NULL, '10000-01-01 00:00', '0044-03-15 12:00+00',"
            "  NULL, NULL, NULL, NULL),"
            " (9223372036854775807, 32767, -2147483648, 1e-10, -0.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
            "  NULL, NULL, NULL, NULL)")
    dec = PgOutputDecoder()
    rel: Relation | None = None
    rows = 0
    for buf in _raw_messages(db):
        m = dec.decode(buf)
        if isinstance(m, Relation):
            rel = m
        if buf[:1] != b"I":
            continue
        assert rel is not None
        c_parse, py_parse = build_c_parser(rel), build_py_parser(rel)
        got, want = c_parse(buf, 6), py_parse(buf, 6)
        assert repr(got) == repr(want)  # repr: values and their types, and NaN equals NaN
        rows += 1
        for cut in (7, 20, len(buf) // 2, len(buf) - 1):  # truncated messages
            with pytest.raises(_Slow):
                c_parse(buf[:cut], 6)
        with pytest.raises(_Slow):  # a tuple of another relation (column count differs)
            c_parse(buf[:6] + b"\x00\x01" + buf[8:], 6)
        with pytest.raises(_Slow):  # an unchanged-TOAST marker in the first column
            c_parse(buf[:8] + b"u" + buf[9:], 6)
    assert rows == 4



def test_skipped_changes_keep_the_ordinals_of_the_decoded_ones(db: str) -> None:
    """A consumer that skips the tables it does not read (``skip_change``, the rules consumer)
    gets the changes of the others exactly as a decoder that decodes everything: same values,
    same ordinals in the transaction (hence the same event ids)."""
    with psycopg.connect(db) as conn:  # one transaction, the two tables interleaved
        for i in range(1, 4):
            conn.execute("INSERT INTO emr.cdc_probe (id, name) VALUES (%s, 'x')", (i,))
            conn.execute("INSERT INTO emr.visit (org_code, modify_flag, collect_time, update_time, visit_id,"
                         " patient_id, visit_type_code, visit_time, dept_code, doctor_id, doctor_name)"
                         " VALUES ('H1', '1', now(), now(), %s, 'P1', 'MZ', now(), '0301', 'D1', '王医生')",
                         (f"V{i}",))
        conn.execute("UPDATE emr.cdc_probe SET name = 'z' WHERE id = 2")
        conn.execute("DELETE FROM emr.cdc_probe WHERE id = 3")
        conn.execute("UPDATE emr.visit SET doctor_id = 'D2' WHERE visit_id = 'V3'")
        conn.commit()
    raw = _raw_messages(db)
    every = [m for m in map(PgOutputDecoder().decode, raw) if type(m) is Change]
    picky = PgOutputDecoder()
    kept: list[Change] = []
    skipped = 0
    for data in raw:
        if picky.skip_change(data, {"visit"}):
            skipped += 1
            continue
        m = picky.decode(data)
        if type(m) is Change:
            kept.append(m)
    assert {c.table for c in every} == {"cdc_probe", "visit"} and len(every) == 9 and skipped == 5
    assert [(c.op, c.ordinal, c.before, c.after) for c in kept] == [
        (c.op, c.ordinal, c.before, c.after) for c in every if c.table == "visit"]
    assert [c.ordinal for c in kept] == [1, 3, 5, 8]
    # insert_value: one plain-text column of an insert, read alone, as decode() would give it
    peeker = PgOutputDecoder()
    looked = []
    for data in raw:
        value = peeker.insert_value(data, {"visit": "dept_code", "cdc_probe": "code"})
        m = peeker.decode(data)  # keeps the relation cache (and the ordinals) as a stream would
        if value is not None:
            looked.append((value, m.after["dept_code" if m.table == "visit"  # type: ignore[union-attr]
                                            else "code"]))  # type: ignore[union-attr]
    assert looked == [(("emr", "cdc_probe", None), None), (("emr", "visit", "0301"), "0301")] * 3
