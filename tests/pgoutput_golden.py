"""Golden pgoutput bytes: a fixed scenario captured once from a real PostgreSQL 15 server.

``python -m tests.pgoutput_golden`` re-captures ``tests/fixtures/pgoutput_golden.json`` in a
throwaway cluster. The fields a server fills in differently on every run (LSNs, xids, commit
times, relation OIDs) are masked by :func:`stable`; everything else must stay byte-identical,
which ``test_pgoutput_golden.py`` checks against a live capture.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import time
from pathlib import Path

import psycopg

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pgoutput_golden.json"
SLOT = "golden"

SCHEMA = """
CREATE TABLE emr.golden (
    id bigint PRIMARY KEY, i2 smallint, i4 integer, amount numeric(30, 10), ratio double precision,
    name text, code varchar(20), flag boolean, day date, at_time time, at_ts timestamp,
    at_tstz timestamptz, blob bytea, doc jsonb, tags text[], big text
);
ALTER TABLE emr.golden REPLICA IDENTITY FULL;
CREATE TABLE emr.golden_plain (id integer PRIMARY KEY, note text);
"""

# One statement per transaction: the fixture holds one Begin ... Commit per entry.
SCENARIO = [
    "INSERT INTO emr.golden VALUES (1, -7, 2147483647, -3.1415926535897932384626, 1.5e300, '𠮷张三', 'A-1',"
    " true, '2024-02-29', '23:59:59.999999', '2024-01-02 03:04:05', '2024-01-02 03:04:05.000006+08',"
    " '\\xdeadbeef', '{\"a\": [1, \"二\"]}', '{x,\"y z\"}',"
    " (SELECT string_agg(chr(19968 + (g * 7919) % 20000), '') FROM generate_series(0, 1499) g))",
    "INSERT INTO emr.golden (id, amount, ratio, name, day, at_ts, at_tstz, blob, doc, tags) VALUES"
    " (2, 'NaN', 'Infinity', '', 'infinity', '-infinity', '0044-03-15 12:00+00', '\\x', 'null', '{}')",
    "UPDATE emr.golden SET name = '改' WHERE id = 1",  # big is TOASTed and unchanged: 'u' in the new tuple
    "DELETE FROM emr.golden WHERE id = 2",
    "INSERT INTO emr.golden_plain VALUES (1, 'a'), (2, NULL)",
    "UPDATE emr.golden_plain SET id = 3 WHERE id = 2",  # key change under the default replica identity
    "DELETE FROM emr.golden_plain WHERE id = 1",
    "SELECT pg_logical_emit_message(true, 'cdcsync.golden', '事务内')",
    "TRUNCATE emr.golden, emr.golden_plain",
]

_OID_AT_1 = frozenset(b"RIUD")  # relation OID right after the type byte


def stable(msg: bytes) -> bytes:
    """The message with its per-run fields (LSNs, xid, times, relation OIDs) zeroed."""
    kind = msg[0]
    out = bytearray(msg)
    if kind == ord("B"):  # final_lsn, commit_ts, xid
        out[1:21] = bytes(20)
    elif kind == ord("C"):  # flags, commit_lsn, end_lsn, commit_ts
        out[2:26] = bytes(24)
    elif kind in _OID_AT_1:
        out[1:5] = bytes(4)
    elif kind == ord("T"):  # nrels, options, relation OIDs
        (n,) = struct.unpack_from(">i", msg, 1)
        out[6:6 + 4 * n] = bytes(4 * n)
    elif kind == ord("M"):  # flags, lsn
        out[2:10] = bytes(8)
    return bytes(out)


def capture(dsn: str) -> list[bytes]:
    """Run the scenario in a database with schema ``emr`` and publication ``cdcsync_emr``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("ALTER PUBLICATION cdcsync_emr ADD TABLE emr.golden, emr.golden_plain")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (SLOT,))
        for stmt in SCENARIO:
            conn.execute(stmt)
        # The SQL interface decodes up to the flushed WAL; the test cluster commits asynchronously.
        (target,) = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()  # type: ignore[misc]
        while conn.execute("SELECT pg_current_wal_flush_lsn() < %s", (target,)).fetchone()[0]:  # type: ignore[index]
            time.sleep(0.05)
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL, 'proto_version', '1',"
            " 'publication_names', 'cdcsync_emr', 'messages', 'true')", (SLOT,)).fetchall()
        conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))
    return [bytes(r[0]) for r in rows]


def load() -> list[bytes]:
    return [bytes.fromhex(h) for h in json.loads(FIXTURE.read_text(encoding="utf-8"))["messages"]]


def main() -> int:
    from cdcsync.db.cluster import throwaway_cluster

    cluster = throwaway_cluster("cdcsync-golden-")
    try:
        dsn = cluster.create_database("golden")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA emr")
            conn.execute("CREATE PUBLICATION cdcsync_emr")
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        messages = capture(dsn)
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.datadir.parent, ignore_errors=True)
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps({"server_version": version, "messages": [m.hex() for m in messages]},
                                  indent=1) + "\n", encoding="utf-8")
    print(f"{len(messages)} messages from PostgreSQL {version} -> {FIXTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
