"""Undecodable values (issue 12, point 7): a mirror that is not UTF8 is refused at ``db init``
and at start; a value the decoder cannot convert quarantines its row (``SYS002`` naming the
column) instead of stopping the stream. Both tuple parsers (C and generated Python) and the
snapshot behave alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.db.cluster import LocalCluster
from cdcsync.engine.daemon import drain
from cdcsync.event import Change, Event
from cdcsync.source.pgoutput import PgOutputDecoder, _pgtuple
from cdcsync.source.typeconv import lossy_text
from cdcsync.validate.reload import RulesHolder
from cdcsync.validate.stage import UNDECODABLE_RULE, StageRejection, ValidationStage
from tests.cdc_util import PROBE_DDL, prepare_db, read_events, settings_for

PARSERS = ["python", pytest.param("c", marks=pytest.mark.skipif(_pgtuple is None, reason="C parser not built"))]
BAD_JSON = ["1e400", "[" * 1100 + "]" * 1100]  # valid for PostgreSQL, not for Python's JSON reader


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setenv("CDCSYNC_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("CDCSYNC_PURE_PYTHON", raising=False)
    return str(request.param)


@pytest.fixture(params=["SQL_ASCII", "LATIN1"])
def non_utf8_db(request: pytest.FixtureRequest, pg_cluster: LocalCluster) -> Iterator[str]:
    name = f"enc_{request.param.lower()}_{time.monotonic_ns()}"
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} WITH ENCODING '{request.param}' TEMPLATE template0"
                     " LC_COLLATE 'C' LC_CTYPE 'C'")
    yield pg_cluster.dsn(name)
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_db_init_refuses_a_mirror_that_is_not_utf8(non_utf8_db: str) -> None:
    res = CliRunner().invoke(main, ["db", "init", "--dsn", non_utf8_db])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "UTF8" in lines[0] and "服务端编码" in lines[0], res.output
    with psycopg.connect(non_utf8_db) as conn:  # refused before any change
        assert conn.execute("SELECT to_regnamespace('cdcsync')").fetchone() == (None,)


def test_daemon_refuses_a_mirror_that_is_not_utf8(non_utf8_db: str, tmp_path: Path) -> None:
    _, cfg = settings_for(non_utf8_db, tmp_path)
    res = CliRunner().invoke(main, ["-c", str(cfg), "run"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "UTF8" in lines[0] and "Traceback" not in res.output, res.output


# --- the decoder on bytes that are not UTF-8 (what a SQL_ASCII database delivers) ------------


@pytest.fixture
def ascii_db(pg_cluster: LocalCluster) -> Iterator[str]:
    name = f"ascii_{time.monotonic_ns()}"
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} WITH ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    dsn = pg_cluster.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA emr")
        conn.execute("CREATE TABLE emr.t (id int PRIMARY KEY, s text, n numeric)")
        conn.execute("ALTER TABLE emr.t REPLICA IDENTITY FULL")
        conn.execute("CREATE PUBLICATION cdcsync_emr FOR TABLE emr.t")
        conn.execute("SELECT pg_create_logical_replication_slot('enc', 'pgoutput')")
    yield dsn
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
                     (name,))
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _decoded(dsn: str) -> list[Change]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The SQL interface decodes up to the flushed WAL; the test cluster commits asynchronously.
        (target,) = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()  # type: ignore[misc]
        target = target.decode() if isinstance(target, bytes) else target  # SQL_ASCII: text comes as bytes
        while conn.execute("SELECT pg_current_wal_flush_lsn() < %s::pg_lsn", (target,)).fetchone()[0]:  # type: ignore[index]
            time.sleep(0.05)
        rows = conn.execute("SELECT data FROM pg_logical_slot_peek_binary_changes('enc', NULL, NULL,"
                            " 'proto_version', '1', 'publication_names', 'cdcsync_emr')").fetchall()
    dec = PgOutputDecoder()
    return [m for m in (dec.decode(bytes(r[0])) for r in rows) if isinstance(m, Change)]


def test_invalid_utf8_is_flagged_by_both_parsers_and_quarantined(ascii_db: str, parser: str) -> None:
    with psycopg.connect(ascii_db, autocommit=True) as conn:
        conn.execute("INSERT INTO emr.t VALUES (1, 'ok', 1.5)")
        conn.execute("INSERT INTO emr.t VALUES (2, E'\\xff\\xfe', 2)")  # bytes SQL_ASCII stores unchecked
        conn.execute("UPDATE emr.t SET n = 3 WHERE id = 2")  # the old tuple carries the bad text too
        conn.execute("DELETE FROM emr.t WHERE id = 2")
        conn.execute("INSERT INTO emr.t VALUES (3, 'after', 4)")  # the stream goes on
    changes = _decoded(ascii_db)
    assert [(c.op, c.row["id"] if c.row else None) for c in changes] == [
        ("c", 1), ("c", 2), ("u", 2), ("d", 2), ("c", 3)]
    good = [changes[0], changes[4]]
    bad = changes[1:4]
    assert all(c.undecodable is None for c in good)
    assert good[0].after == {"id": 1, "s": "ok", "n": Decimal("1.5")}
    for c in bad:
        assert c.undecodable == ("s",), (parser, c)
        assert c.row is not None and c.row["s"] == lossy_text(b"\xff\xfe")
    assert bad[1].before is not None and bad[1].after is not None and bad[1].after["n"] == 3

    stage = ValidationStage(RulesHolder.load(), "12110000400000000X", "emr")
    outs = [stage(c) for c in changes]
    assert [type(o) for o in outs] == [Event, StageRejection, StageRejection, StageRejection, Event]
    for o in outs[1:4]:
        assert isinstance(o, StageRejection) and o.rule_id == UNDECODABLE_RULE and o.field == "s"
        assert "s" in o.message and "无法解码" in o.message


# --- the whole engine: JSON PostgreSQL accepts and Python cannot read ---------------------------


def _quarantined(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT primary_key->>'id', rule_id, field, message FROM cdcsync.quarantine"
                            " ORDER BY (primary_key->>'id')::int").fetchall()


def test_unreadable_json_quarantines_the_row_in_snapshot_and_stream(fresh_db: str, tmp_path: Path,
                                                                      parser: str) -> None:
    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(PROBE_DDL)
        conn.execute("INSERT INTO emr.cdc_probe (id, name, doc) VALUES (1, 'a', '{\"x\": 1}'), (2, 'b', %s)",
                     (BAD_JSON[0],))
    settings, _ = settings_for(fresh_db, tmp_path)
    drain(settings, timeout=120)  # initial snapshot: row 2 cannot be read
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO emr.cdc_probe (id, name, doc) VALUES (3, 'c', %s), (4, 'd', '[]')",
                         (BAD_JSON[1],))
        conn.execute("UPDATE emr.cdc_probe SET name = 'b2' WHERE id = 2")  # both images unreadable
        conn.execute("INSERT INTO emr.cdc_probe (id, name) VALUES (5, 'e')")
        (end,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()  # type: ignore[misc]
    drain(settings, timeout=120)  # the stream does not stall on rows 3 and 2

    events = read_events(tmp_path / "events.jsonl")
    delivered = sorted({(e["after"] or e["before"])["id"] for e in events})
    assert delivered == [1, 4, 5]
    q = _quarantined(fresh_db)
    assert [r[0] for r in q] == ["2", "2", "3"]
    assert all(r[1] == UNDECODABLE_RULE and r[2] == "doc" and "doc" in r[3] for r in q), q
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT confirmed_flush_lsn >= %s FROM pg_replication_slots WHERE slot_name = 'cdcsync_t'",
                            (end,)).fetchone() == (True,)
