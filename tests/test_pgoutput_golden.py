"""The decoder on golden pgoutput bytes captured from PostgreSQL 15 (no database needed), and a
live re-capture that must give the same bytes, so the fixture cannot drift from the server."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from cdcsync.event import Change
from cdcsync.source.pgoutput import (
    Begin,
    Commit,
    LogicalMessage,
    PgOutputDecoder,
    Relation,
    Truncate,
    _pgtuple,
    build_c_parser,
    build_py_parser,
)
from tests.cdc_util import prepare_db
from tests.pgoutput_golden import capture, load, stable

BIG = "".join(chr(19968 + (g * 7919) % 20000) for g in range(1500))
ROW1 = {
    "id": 1, "i2": -7, "i4": 2147483647, "amount": Decimal("-3.1415926536"), "ratio": 1.5e300,
    "name": "𠮷张三", "code": "A-1", "flag": True, "day": dt.date(2024, 2, 29),
    "at_time": dt.time(23, 59, 59, 999999), "at_ts": dt.datetime(2024, 1, 2, 3, 4, 5),
    "at_tstz": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    "blob": bytes.fromhex("deadbeef"), "doc": {"a": [1, "二"]}, "tags": '{x,"y z"}', "big": BIG,
}


def _decoded() -> list[Any]:
    dec = PgOutputDecoder()
    out: list[Any] = []
    for buf in load():
        m = dec.decode(buf)
        out.extend(m.changes if isinstance(m, Truncate) else [m])
    return out


def _changes() -> list[Change]:
    return [m for m in _decoded() if isinstance(m, Change)]


def test_transactions_frame_their_changes() -> None:
    msgs = _decoded()
    kinds = "".join({Begin: "B", Commit: "C", Change: "x", Relation: "R", LogicalMessage: "M"}[type(m)]
                    for m in msgs)
    assert kinds == "BRxC" "BxC" "BxC" "BxC" "BRxxC" "BxC" "BxC" "BMC" "BRRxxC"
    tx = 0
    for m in msgs:  # every change carries its transaction's commit LSN, xid and time
        if isinstance(m, Begin):
            tx, begin = tx + 1, m
        elif isinstance(m, Change):
            assert (m.lsn, m.tx_id, m.commit_ts) == (begin.final_lsn, begin.xid, begin.commit_ts)
        elif isinstance(m, Commit):
            assert m.commit_lsn == begin.final_lsn < m.end_lsn and m.commit_ts == begin.commit_ts
    assert tx == 9


def test_every_type_decodes_exactly() -> None:
    ins, specials = _changes()[:2]
    assert ins.op == "c" and ins.before is None and ins.after == ROW1
    assert ins.schema == "emr" and ins.table == "golden" and ins.ordinal == 0
    after = dict(specials.after or {})
    # The server writes year 44 in Asia/Shanghai's local mean time (+08:05:43): the same instant.
    assert after.pop("at_tstz") == dt.datetime(44, 3, 15, 12, 0, tzinfo=dt.UTC)
    assert repr(after) == repr({  # repr: types too, and NaN equals NaN
        "id": 2, "i2": None, "i4": None, "amount": Decimal("NaN"), "ratio": float("inf"), "name": "",
        "code": None, "flag": None, "day": "infinity", "at_time": None, "at_ts": "-infinity",
        "blob": b"", "doc": None, "tags": "{}", "big": None,
    })


def test_unchanged_toast_is_filled_from_the_old_image() -> None:
    upd = _changes()[2]
    assert upd.op == "u" and upd.before == ROW1
    assert upd.after == dict(ROW1, name="改")  # "big" came as 'u' (unchanged TOAST) and is filled


def test_deletes_key_changes_and_truncate() -> None:
    ch = _changes()
    dele = ch[3]
    assert dele.op == "d" and dele.after is None and dele.before is not None and dele.before["id"] == 2
    plain = [c for c in ch if c.table == "golden_plain"]
    assert [(c.op, c.ordinal) for c in plain[:2]] == [("c", 0), ("c", 1)]
    key_change = plain[2]  # default replica identity: the old key comes as 'K'
    assert key_change.op == "u" and key_change.after == {"id": 3, "note": None}
    assert key_change.before == {"id": 2, "note": None}
    assert plain[3].op == "d" and plain[3].before == {"id": 1, "note": None}
    truncs = [c for c in ch if c.op == "t"]
    assert sorted(t.table for t in truncs) == ["golden", "golden_plain"]
    msg = next(m for m in _decoded() if isinstance(m, LogicalMessage))
    assert (msg.transactional, msg.prefix, msg.content.decode()) == (True, "cdcsync.golden", "事务内")


@pytest.mark.skipif(_pgtuple is None, reason="C extension not built")
def test_c_and_python_tuple_parsers_agree_on_the_golden_bytes() -> None:
    dec = PgOutputDecoder()
    rel: Relation | None = None
    seen = 0
    for buf in load():
        m = dec.decode(buf)
        if isinstance(m, Relation):
            rel = m
        elif buf[:1] == b"I" and rel is not None and m.table == rel.name:  # type: ignore[union-attr]
            assert repr(build_c_parser(rel)(buf, 6)) == repr(build_py_parser(rel)(buf, 6))
            seen += 1
    assert seen >= 2


def test_a_live_capture_matches_the_golden_bytes(fresh_db: str) -> None:
    """The fixture is what this PostgreSQL sends today (``python -m tests.pgoutput_golden``
    re-captures it after a server upgrade)."""
    prepare_db(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DROP PUBLICATION IF EXISTS cdcsync_emr")
        conn.execute("CREATE PUBLICATION cdcsync_emr")
    live = [stable(m) for m in capture(fresh_db)]
    golden = [stable(m) for m in load()]
    assert len(live) == len(golden)
    for i, (got, want) in enumerate(zip(live, golden, strict=True)):
        assert got == want, f"message {i} ({chr(want[0])}) differs from the golden capture"
