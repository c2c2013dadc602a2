"""A row's image (pgoutput's TupleData) is the same bytes whether the stream carried the row or
a snapshot read it: what lets a re-snapshot after a restore recognize the versions a destination
already holds (:func:`cdcsync.engine.checkpoint.version_digest`). On a real server, with the
daemon's session options on both sides and values chosen to trip any difference in escaping,
time zones, float or numeric output, TOAST and generated or dropped columns."""

from __future__ import annotations

from typing import Any

import psycopg

from cdcsync.event import Change
from cdcsync.source.pgoutput import PgOutputDecoder
from cdcsync.source.protocol import with_session_options
from cdcsync.source.snapshot import read_snapshot
from tests.cdc_util import prepare_db, wait_for

SLOT = "image_test"
DDL = """
CREATE TABLE emr.image_probe (
    id bigint PRIMARY KEY, i2 smallint, amount numeric, ratio double precision, r4 real, name text,
    code varchar(20), ch char(4), flag boolean, day date, at_time time, at_ttz timetz, at_ts timestamp,
    at_tstz timestamptz, span interval, blob bytea, doc jsonb, js json, tags text[], uid uuid, ip inet,
    gone integer, big text, loud text GENERATED ALWAYS AS (upper(code)) STORED
);
ALTER TABLE emr.image_probe DROP COLUMN gone;
ALTER TABLE emr.image_probe REPLICA IDENTITY FULL;
ALTER PUBLICATION cdcsync_emr ADD TABLE emr.image_probe;
"""
ROWS = [
    "(1, -32768, -3.14159265358979323846264338327950288, 0.1, 1.17549435e-38,"
    " E'tab\\there\\nline\\r\\\\N \\\\ \"q\" ''s''',"
    " '𠮷张三😀', 'ab', true, '2024-02-29', '23:59:59.999999', '08:00:00+08', '2024-01-02 03:04:05',"
    " '2024-01-02 03:04:05.000006+08', '1 year 2 mons -3 days 04:05:06.7', '\\x00deadbeef5c0a', '{\"a\": [1, \"二\"]}',"
    " '{\"b\" :  2 }', '{x,\"y z\",NULL,\"\\\\\\\\\"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '10.0.0.1/8', NULL)",
    "(2, NULL, 'NaN', 'Infinity', '-0', '', NULL, NULL, false, 'infinity', NULL, NULL, '-infinity',"
    " '0044-03-15 12:00+00 BC', NULL, '\\x', 'null', NULL, '{}', NULL, NULL, NULL)",
    "(3, 7, 1e-30, 5e-324, 'NaN', NULL, 'C-3', 'x', NULL, '1999-12-31', NULL, NULL, NULL, '2024-06-30 23:59:60+00',"
    " '0', NULL, NULL, NULL, NULL, NULL, '::1', (SELECT string_agg(chr(19968 + (g * 7919) % 20000), '')"
    " FROM generate_series(0, 2999) g))",
]
COLUMNS = ("id, i2, amount, ratio, r4, name, code, ch, flag, day, at_time, at_ttz, at_ts, at_tstz, span, blob, doc,"
           " js, tags, uid, ip, big")


def _streamed(dsn: str) -> list[Change]:
    """The slot's changes, decoded with the daemon's session options (the output functions of
    the values run in this session, as they do in the daemon's walsender)."""
    with psycopg.connect(with_session_options(dsn), autocommit=True) as conn:
        (target,) = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()  # type: ignore[misc]
        # The test cluster commits asynchronously; the SQL interface reads flushed WAL only.
        wait_for(lambda: conn.execute("SELECT pg_current_wal_flush_lsn() >= %s", (target,)).fetchone()[0],  # type: ignore[index]
                 30, "the WAL to be flushed")
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL, 'proto_version', '1',"
            " 'publication_names', 'cdcsync_emr')", (SLOT,)).fetchall()
    dec = PgOutputDecoder()
    return [m for m in (dec.decode(bytes(r[0])) for r in rows) if isinstance(m, Change)]


def _snapshot(dsn: str) -> dict[Any, Change]:
    read: dict[Any, Change] = {}
    with psycopg.connect(dsn) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        (name,) = holder.execute("SELECT pg_export_snapshot()").fetchone()  # type: ignore[misc]
        read_snapshot(dsn, name, 0, lambda ch: read.__setitem__(ch.after["id"], ch),  # type: ignore[index]
                      lambda schema, table: ("id",), tables=["image_probe"])
    return read


def test_streamed_and_snapshot_images_are_the_same_bytes(fresh_db: str) -> None:
    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(DDL)
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (SLOT,))
        for row in ROWS:
            conn.execute(f"INSERT INTO emr.image_probe ({COLUMNS}) VALUES {row}")
        conn.execute("UPDATE emr.image_probe SET name = '改', code = 'c-2' WHERE id = 2")
    changes = _streamed(fresh_db)
    assert [c.op for c in changes] == ["c", "c", "c", "u"]
    assert all(c.image is not None for c in changes)
    latest = {c.after["id"]: c for c in changes}  # type: ignore[index]
    snap = _snapshot(fresh_db)
    assert sorted(snap) == [1, 2, 3]
    for key, change in latest.items():
        assert snap[key].image == change.image, key  # the same bytes ...
        assert repr(snap[key].after) == repr(change.after), key  # ... and values (repr: NaN != NaN)


def test_an_update_leaving_a_toasted_value_unchanged_has_no_image(fresh_db: str) -> None:
    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(DDL)
        conn.execute(f"INSERT INTO emr.image_probe ({COLUMNS}) VALUES {ROWS[2]}")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (SLOT,))
        conn.execute("UPDATE emr.image_probe SET name = '改' WHERE id = 3")  # big: 'u' in the new tuple
    (update,) = _streamed(fresh_db)
    assert update.op == "u" and update.after is not None and len(update.after["big"]) == 3000
    assert update.image is None  # never matched: a re-snapshot sends that row as a new event
