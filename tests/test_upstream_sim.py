"""The reference platform and the HTTP sink over real HTTPS on loopback, with real SM2/SM3/SM4."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cdcsync.crypto.envelope import SenderKey, seal
from cdcsync.crypto.keys import key_id, load_private_key, load_public_key, write_keypair
from cdcsync.crypto.sm2 import SM2PrivateKey
from cdcsync.event import Batch, Event
from cdcsync.sink.http import HttpSink, SinkClosed
from cdcsync.sink.http_settings import HttpDestination
from cdcsync.upstream_sim.app import BATCHES_PATH, Faults, SimState, process_batch
from cdcsync.upstream_sim.runner import SimHandle, start_in_process, start_subprocess
from cdcsync.upstream_sim.store import CountingStore, SqliteStore
from cdcsync.upstream_sim.tls import ensure_self_signed

ORG = "12110000400000000X"
_seq = iter(range(1, 10**9))


def make_events(n: int, table: str = "diagnosis", mapping_version: str = "m-test", spec_version: str = "1.0",
                **extra: Any) -> list[Event]:
    now = dt.datetime.now(dt.UTC)
    out = []
    for _ in range(n):
        i = next(_seq)
        row = {"id": i, "org_code": ORG, "icd10_code": "A01.0", **extra}
        out.append(Event(f"{ORG}.emr:{i:016X}:0", "c", None, row, ORG, "emr", "emr", table, i, i, now, False, 0,
                         mapping_version, spec_version))
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    hk, hp, _ = write_keypair(d, "hospital")
    ok, op, _ = write_keypair(d, "stranger")
    return {"hospital_key": hk, "hospital_pub": hp, "stranger_key": ok, "stranger_pub": op}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Iterator[SimHandle]:
    with start_in_process(tmp_path_factory.mktemp("sim"), hospital_pubs=[keys["hospital_pub"]]) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset_faults(sim: SimHandle) -> Iterator[None]:
    yield
    assert sim.state is not None
    sim.state.faults = Faults()


def dest(sim: SimHandle, keys: dict[str, Path], **kw: Any) -> HttpDestination:
    base: dict[str, Any] = dict(name="national", kind="http", url=sim.url, ca_bundle=sim.ca_bundle,
                                hospital_key=keys["hospital_key"], platform_public_key=sim.platform_pub,
                                retry_initial_s=0.05, retry_max_s=0.5, timeout_s=10)
    base.update(kw)
    return HttpDestination(**base)


def payload(events: list[Event], batch_id: str) -> bytes:
    return orjson.dumps({"version": 1, "org_code": ORG, "batch_id": batch_id, "spec_version": "t",
                         "mapping_version": "t", "events": [orjson.loads(e.encode()) for e in events]})


def post(sim: SimHandle, body: bytes, headers: dict[str, str]) -> httpx.Response:
    with sim.client() as c:
        return c.post(BATCHES_PATH, content=body, headers=headers)


def sealed_request(sim: SimHandle, keys: dict[str, Path], batch_id: str, events: list[Event] | None = None,
                   signer: str = "hospital_key", **kw: Any) -> tuple[bytes, dict[str, str]]:
    s = seal(payload(events or make_events(2), batch_id), sender_key=load_private_key(keys[signer]),
             recipient_pub=load_public_key(sim.platform_pub), org_code=ORG, batch_id=batch_id, **kw)
    return s.body, s.headers


def stored(sim: SimHandle) -> dict[str, str]:
    return sim.received_ids()


# ----------------------------------------------------------------------------- requests refused


def test_good_request_is_accepted_and_stored(sim: SimHandle, keys: dict[str, Path]) -> None:
    evs = make_events(3)
    body, headers = sealed_request(sim, keys, "good-1", evs)
    r = post(sim, body, headers)
    assert r.status_code == 200, r.text
    assert set(r.json()["accepted"]) == {e.id for e in evs}
    assert {e.id for e in evs} <= set(stored(sim))


def test_tampered_request_one_byte_flipped_is_refused(sim: SimHandle, keys: dict[str, Path]) -> None:
    evs = make_events(2)
    body, headers = sealed_request(sim, keys, "tamper-1", evs)
    for pos in (len(body) // 2, len(body) - 1, 10):
        bad = bytearray(body)
        bad[pos] ^= 0x01
        r = post(sim, bytes(bad), headers)
        assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    assert not {e.id for e in evs} & set(stored(sim))


def test_unknown_and_wrong_keys_are_refused(sim: SimHandle, keys: dict[str, Path]) -> None:
    body, headers = sealed_request(sim, keys, "stranger-1", signer="stranger_key")
    r = post(sim, body, headers)
    assert r.status_code == 401 and r.json()["error"] == "unknown_key"
    # Signed by the stranger but claiming the hospital's key id: the signature does not verify.
    good_body, good_headers = sealed_request(sim, keys, "stranger-2")
    body, headers = sealed_request(sim, keys, "stranger-2", signer="stranger_key")
    headers["X-Key-Id"] = good_headers["X-Key-Id"]
    r = post(sim, body, headers)
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    # Encrypted to another platform key (signature fine): cannot be decrypted.
    s = seal(payload(make_events(1), "wrongplat-1"), sender_key=load_private_key(keys["hospital_key"]),
             recipient_pub=load_public_key(keys["stranger_pub"]), org_code=ORG, batch_id="wrongplat-1")
    r = post(sim, s.body, s.headers)
    assert r.status_code == 422 and r.json()["error"] == "decrypt_failed"


def test_expired_and_replayed_requests_are_refused(sim: SimHandle, keys: dict[str, Path]) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    body, headers = sealed_request(sim, keys, "old-1", timestamp=old)
    r = post(sim, body, headers)
    assert r.status_code == 401 and r.json()["error"] == "expired"

    body, headers = sealed_request(sim, keys, "replay-1")
    assert post(sim, body, headers).status_code == 200
    r = post(sim, body, headers)  # the same bytes again
    assert r.status_code == 409 and r.json()["error"] == "replay"

    # The same batch id re-sealed (a legitimate retry) with other events: a conflict.
    body, headers = sealed_request(sim, keys, "replay-1", make_events(2))
    r = post(sim, body, headers)
    assert r.status_code == 409 and r.json()["error"] == "batch_conflict"


def test_malformed_events_are_rejected_with_reason(sim: SimHandle, keys: dict[str, Path]) -> None:
    good = make_events(1)
    doc = orjson.loads(payload(good, "schema-1"))
    doc["events"].append({"id": "no-source", "op": "c", "after": {"x": 1}})
    doc["events"].append({"id": "bad-op", "op": "z", "source": {"table": "t"}, "after": {}})
    s = seal(orjson.dumps(doc), sender_key=load_private_key(keys["hospital_key"]),
             recipient_pub=load_public_key(sim.platform_pub), org_code=ORG, batch_id="schema-1")
    r = post(sim, s.body, s.headers)
    assert r.status_code == 200
    rej = {x["id"]: x["reason"] for x in r.json()["rejected"]}
    assert set(rej) == {"no-source", "bad-op"} and all(v.startswith("schema:") for v in rej.values())
    assert r.json()["accepted"] == [good[0].id]
    # A batch that is not a batch at all is refused as a whole.
    s = seal(b'{"version": 1}', sender_key=load_private_key(keys["hospital_key"]),
             recipient_pub=load_public_key(sim.platform_pub), org_code=ORG, batch_id="schema-2")
    r = post(sim, s.body, s.headers)
    assert r.status_code == 400 and r.json()["error"] == "malformed_request"
    # Error replies are signed too (bound to the request they answer).
    from cdcsync.crypto.envelope import verify_reply

    verify_reply(r.content, r.headers, platform_pub=load_public_key(sim.platform_pub), sealed=s)


# ----------------------------------------------------------------------------- the sink


def test_sink_delivers_drops_duplicates_and_stats(sim: SimHandle, keys: dict[str, Path]) -> None:
    sink = HttpSink(dest(sim, keys, batch_max_events=7))
    before = sim.stats()["tables"]
    evs = make_events(20, table="lab_result") + make_events(5, table="symptom")
    ack = sink.send(Batch(events=evs))
    assert list(ack.accepted) == [e.id for e in evs] and not ack.rejected
    # Resent (a replay after a crash) and re-cut differently: nothing is stored twice.
    sink2 = HttpSink(dest(sim, keys, batch_max_events=4))
    ack2 = sink2.send(Batch(events=evs[3:] + make_events(1, table="symptom")))
    assert len(ack2.accepted) == 23
    after = sim.stats()["tables"]
    assert after.get("lab_result", 0) - before.get("lab_result", 0) == 20
    assert after.get("symptom", 0) - before.get("symptom", 0) == 6
    assert sink2.health.snapshot().events_duplicate == 22
    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    n, distinct = db.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone()
    row = db.execute("SELECT table_name, op, payload, batch_id FROM events WHERE id = ?", (evs[0].id,)).fetchone()
    db.close()
    assert n == distinct
    assert row[0] == "lab_result" and row[1] == "c" and orjson.loads(row[2])["id"] == evs[0].id and row[3]
    sink.close()
    sink2.close()


def _batches_of(sim: SimHandle, event_ids: list[str]) -> dict[str, tuple[str, str, list[str]]]:
    """batch_id -> (spec_version, mapping_version, event ids) of the batches holding these events."""
    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    try:
        marks = ",".join("?" * len(event_ids))
        rows = db.execute(f"SELECT e.batch_id, b.spec_version, b.mapping_version, e.id FROM events e JOIN batches b"
                          f" USING (batch_id) WHERE e.id IN ({marks}) ORDER BY e.rowid", event_ids).fetchall()
    finally:
        db.close()
    out: dict[str, tuple[str, str, list[str]]] = {}
    for bid, spec, mapping, eid in rows:
        out.setdefault(bid, (spec, mapping, []))[2].append(eid)
    return out


def test_batch_header_carries_the_events_versions_and_never_mixes_them(sim: SimHandle,
                                                                         keys: dict[str, Path]) -> None:
    """A mapping reload between transactions: the sink cuts the platform batch where the version
    changes, and the platform stores each batch's versions (received.sqlite, table batches)."""
    old, new = make_events(3, mapping_version="m-old"), make_events(4, mapping_version="m-new")
    sink = HttpSink(dest(sim, keys, batch_max_events=100))
    ack = sink.send(Batch(events=old + new))
    sink.close()
    assert list(ack.accepted) == [e.id for e in old + new]
    batches = sorted(_batches_of(sim, [e.id for e in old + new]).values(), key=lambda b: b[1])
    assert batches == [("1.0", "m-new", [e.id for e in new]), ("1.0", "m-old", [e.id for e in old])]


def test_sink_never_sends_events_that_skipped_the_validation_stage(sim: SimHandle, keys: dict[str, Path]) -> None:
    from cdcsync.engine.pipeline import PassThroughTransform
    from cdcsync.event import Change

    stamped = make_events(2)
    now = dt.datetime.now(dt.UTC)
    n = next(_seq)
    out = PassThroughTransform(ORG, "emr")(Change("c", "emr", "diagnosis", None, {"id": n}, n, n, now, 0))
    assert isinstance(out, Event)
    bare = [out]
    sink = HttpSink(dest(sim, keys))
    with pytest.raises(ValueError, match="没有数据集规范或映射版本"):
        sink.send(Batch(events=stamped + bare))
    sink.close()
    assert not {e.id for e in stamped + bare} & set(stored(sim))


def test_old_received_sqlite_gains_the_version_columns(tmp_path: Path) -> None:
    from cdcsync.upstream_sim.store import BatchHead

    path = tmp_path / "received.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE batches (batch_id TEXT PRIMARY KEY, digest TEXT NOT NULL, org_code TEXT NOT NULL,"
               " n_events INTEGER NOT NULL, received_at TEXT NOT NULL)")
    db.execute("INSERT INTO batches VALUES ('old', 'd', 'o', 1, 'then')")
    db.commit()
    db.close()
    store = SqliteStore(path)
    store.put_batch(BatchHead("new", ORG, "1.0", "m-1"), "d2", [("e1", "patient", "c", "{}")])
    store.close()
    db = sqlite3.connect(path)
    rows = db.execute("SELECT batch_id, spec_version, mapping_version FROM batches ORDER BY batch_id").fetchall()
    db.close()
    assert rows == [("new", "1.0", "m-1"), ("old", "", "")]


def test_batch_ids_are_deterministic(sim: SimHandle, keys: dict[str, Path]) -> None:
    from cdcsync.sink.http import batch_id_for

    evs = make_events(3)
    s1, s2 = HttpSink(dest(sim, keys)), HttpSink(dest(sim, keys, name="provincial"))
    assert s1._payload(evs)[1] == s1._payload(list(evs))[1] == batch_id_for("national", [e.id for e in evs])
    assert s1._payload(evs)[1] != s2._payload(evs)[1]
    s1.close()
    s2.close()


def test_tampered_reply_is_refused_and_batch_resent(sim: SimHandle, keys: dict[str, Path]) -> None:
    assert sim.state is not None
    sim.state.faults.tamper_replies = 2
    sink = HttpSink(dest(sim, keys))
    evs = make_events(4)
    ack = sink.send(Batch(events=evs))
    h = sink.health.snapshot()
    assert list(ack.accepted) == [e.id for e in evs]
    assert h.total_failures == 2 and "reply refused (bad_signature)" in (h.last_error or "")
    assert h.events_duplicate == 4  # the third attempt found them stored by the first
    assert sim.state.counters["tampered_replies"] >= 2
    sink.close()


def test_rejections_carry_the_platform_reason(sim: SimHandle, keys: dict[str, Path]) -> None:
    assert sim.state is not None
    sim.state.faults.reject_tables = frozenset({"death_record"})
    sim.state.faults.reject_fields = frozenset({("diagnosis", "secret")})
    sink = HttpSink(dest(sim, keys))
    ok = make_events(3)
    dead = make_events(2, table="death_record")
    bad_field = make_events(1, secret="x")
    ack = sink.send(Batch(events=ok + dead + bad_field))
    assert list(ack.accepted) == [e.id for e in ok]
    assert set(ack.rejected) == {e.id for e in dead + bad_field}
    assert "death_record" in ack.rejected[dead[0].id]
    assert "diagnosis.secret" in ack.rejected[bad_field[0].id]
    assert ack.rejected_fields == {bad_field[0].id: "secret"}  # kept for cdcsync.quarantine.field
    assert not {e.id for e in dead + bad_field} & set(stored(sim))
    sink.close()


def test_batch_refused_as_too_large_is_split(sim: SimHandle, keys: dict[str, Path]) -> None:
    assert sim.state is not None
    sink = HttpSink(dest(sim, keys))
    evs = [e for _ in range(64) for e in make_events(1, note=os.urandom(64).hex())]  # incompressible
    whole = len(seal(sink._payload(evs)[2], sender_key=load_private_key(keys["hospital_key"]),
                     recipient_pub=load_public_key(sim.platform_pub), org_code=ORG, batch_id="x").body)
    sim.state.max_body = whole // 3
    try:
        ack = sink.send(Batch(events=evs))
    finally:
        sim.state.max_body = 32 * 1024 * 1024
    assert list(ack.accepted) == [e.id for e in evs] and not ack.rejected
    assert sink.health.snapshot().batches_sent >= 4
    assert {e.id for e in evs} <= set(stored(sim))
    sink.close()


def test_retry_after_503_and_visible_health(sim: SimHandle, keys: dict[str, Path]) -> None:
    assert sim.state is not None
    sim.state.faults.fail_rate = 1.0
    sink = HttpSink(dest(sim, keys))
    evs = make_events(2)
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(sink.send(Batch(events=evs))))
    t.start()
    deadline = time.monotonic() + 10
    while sink.health.snapshot().attempts < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    h = sink.health.snapshot()
    assert h.state in ("retrying", "sending") and "HTTP 503" in (h.last_error or "") and h.next_retry_at
    sim.state.faults.fail_rate = 0.0
    t.join(10)
    assert result and list(result[0].accepted) == [e.id for e in evs]
    assert sink.health.snapshot().attempts == 0
    sink.close()


def test_wrong_ca_is_never_trusted_and_close_interrupts(
    sim: SimHandle, keys: dict[str, Path], tmp_path: Path
) -> None:
    other = ensure_self_signed(tmp_path / "otherca")
    sink = HttpSink(dest(sim, keys, ca_bundle=other.ca_cert))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sink.send(Batch(events=make_events(1)))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 10
    while sink.health.snapshot().attempts < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "connection error" in (sink.health.snapshot().last_error or "")
    sink.close()
    t.join(5)
    assert errors and isinstance(errors[0], SinkClosed)


def test_settings_refuse_plain_http_off_loopback(keys: dict[str, Path]) -> None:
    from pydantic import ValidationError

    common = dict(name="national", kind="http", hospital_key=keys["hospital_key"],
                  platform_public_key=keys["stranger_pub"])
    with pytest.raises(ValidationError, match="https"):
        HttpDestination(url="http://127.0.0.1:8888", **common)
    with pytest.raises(ValidationError, match="回环"):
        HttpDestination(url="http://10.1.2.3:8888", insecure_http=True, **common)
    d = HttpDestination(url="http://[::1]:8888/", insecure_http=True, **common)
    assert d.batches_url == "http://[::1]:8888/api/v1/edr/batches"


# ----------------------------------------------------------------------------- the CLI as a process


def test_cli_outage_window_and_reject_options(tmp_path: Path, keys: dict[str, Path]) -> None:
    """`python -m cdcsync.upstream_sim` with --outage: 503 while it lasts, then delivery."""
    h = start_subprocess(tmp_path / "sim", hospital_pubs=[keys["hospital_pub"]], log_file=tmp_path / "sim.log",
                         args=["--outage", "0:2", "--reject-table", "staff", "--reject-field", "diagnosis.secret"])
    try:
        assert h.stats()["outage"] is True
        sink = HttpSink(dest(h, keys))
        evs = make_events(3) + make_events(1, table="staff") + make_events(1, secret="y")
        t0 = time.monotonic()
        ack = sink.send(Batch(events=evs))
        assert 1.0 < time.monotonic() - t0 < 8
        assert list(ack.accepted) == [e.id for e in evs[:3]] and set(ack.rejected) == {evs[3].id, evs[4].id}
        assert sink.health.snapshot().total_failures >= 1
        stats = h.stats()
        assert stats["tables"] == {"diagnosis": 3} and stats["counters"]["refused.outage"] >= 1
        sink.close()
    finally:
        h.stop()
    log = (tmp_path / "sim.log").read_text()
    assert "参考平台启动" in log and "A01.0" not in log


# ----------------------------------------------------------------------------- parsing (process_batch)
# process_batch called directly (as the app's worker thread does): real SM2/SM4 seals, no HTTP.


class Direct:
    """A platform state of its own and a hospital key: seal a payload, process it, read the reply."""

    def __init__(self, tmp: Path, store: str = "sqlite") -> None:
        self.hospital, self.platform = SM2PrivateKey.generate(), SM2PrivateKey.generate()
        self.db = tmp / "received.sqlite"
        self.store = SqliteStore(self.db) if store == "sqlite" else CountingStore()
        keys = {key_id(self.hospital.public_key): SenderKey(self.hospital.public_key, None)}
        self.state = SimState(platform_key=self.platform, trusted=keys, store=self.store)

    def send(self, payload: bytes, batch_id: str = "b-1") -> tuple[int, dict[str, Any]]:
        s = seal(payload, sender_key=self.hospital, recipient_pub=self.platform.public_key, org_code=ORG,
                 batch_id=batch_id)
        r = process_batch(self.state, s.body, s.headers)
        return r.status_code, orjson.loads(bytes(r.body))

    def stored(self) -> dict[str, tuple[str, str, str]]:
        db = sqlite3.connect(self.db)
        try:
            return {i: (t, o, p) for i, t, o, p in db.execute("SELECT id, table_name, op, payload FROM events")}
        finally:
            db.close()


@pytest.fixture
def direct(tmp_path: Path) -> Iterator[Direct]:
    d = Direct(tmp_path)
    yield d
    d.store.close()


def batch_doc(events: Any, batch_id: str = "b-1", **over: Any) -> bytes:
    """A batch payload; `events` given as bytes is spliced in verbatim."""
    doc: dict[str, Any] = {"version": 1, "org_code": ORG, "batch_id": batch_id, "spec_version": "t",
                           "mapping_version": "t", "events": [] if isinstance(events, bytes) else events}
    doc.update(over)
    out = orjson.dumps(doc)
    return out.replace(b'"events":[]', b'"events":' + events) if isinstance(events, bytes) else out


def ev(i: str, op: Any = "c", table: Any = "diagnosis", **kw: Any) -> dict[str, Any]:
    return {"id": i, "op": op, "source": {"table": table}, "after": {"id": 1, "x": None}, **kw}


@pytest.mark.parametrize(("payload", "message"), [
    (b"{not json", "payload is not JSON"),
    (b"[1, 2]", "payload: expected a JSON object"),
    (batch_doc([ev("a")], version=2), "payload.version: expected 1, got 2"),
    (batch_doc([ev("a")], version="1"), "payload.version: expected 1, got '1'"),
    (batch_doc([ev("a")], org_code="OTHER"), "payload.org_code differs from the X-Org-Code header"),
    (batch_doc([ev("a")], batch_id="b-2"), "payload.batch_id differs from the X-Batch-Id header"),
    (batch_doc([ev("a")], spec_version=3), "payload.spec_version: expected a string"),
    (batch_doc([ev("a")], mapping_version=None), "payload.mapping_version: expected a string"),
    (batch_doc([ev("a")], spec_version=""), "payload.spec_version: must not be empty"),
    (batch_doc([ev("a")], mapping_version=" "), "payload.mapping_version: must not be empty"),
    (batch_doc([]), "payload.events: expected a non-empty list"),
    (batch_doc({"a": 1}), "payload.events: expected a non-empty list"),
    (batch_doc("x", version=2), "payload.version: expected 1, got 2"),  # checked in order
    (batch_doc([ev("a"), 5]), "payload.events[1].id: expected a string of 1-200 characters"),
    (batch_doc([ev("a"), {"op": "c"}]), "payload.events[1].id: expected a string of 1-200 characters"),
    (batch_doc([ev("")]), "payload.events[0].id: expected a string of 1-200 characters"),
    (batch_doc([ev("x" * 201)]), "payload.events[0].id: expected a string of 1-200 characters"),
    (batch_doc([ev("a"), {"id": 7, "source": "not an object"}]), "payload.events[1].id: expected a string"),
    (batch_doc([{"id": "a", "op": "c", "source": {"table": "t"}, "after": {"x": "\xff"}}]).replace(
        "\xff".encode(), b"\xff"), "payload is not JSON"),  # invalid UTF-8 in a row
])
def test_malformed_batch_is_refused_with_its_reason(direct: Direct, payload: bytes, message: str) -> None:
    status, body = direct.send(payload)
    assert status == 400 and body["error"] == "malformed_request"
    assert body["message"].startswith(message)
    assert not direct.stored() and direct.state.counters["refused.malformed_request"] == 1


def test_malformed_events_are_rejected_one_by_one(direct: Direct) -> None:
    events = [
        ev("ok-c"),
        {"id": "ok-t", "op": "t", "source": {"table": "diagnosis"}},  # truncate: no row image
        {"id": "ok-d", "op": "d", "source": {"table": "diagnosis"}, "before": {"id": 1}, "after": None},
        ev("bad-op", op="z"),
        ev("op-list", op=["c"]),
        ev("op-none", op=None),
        {"id": "no-source", "op": "c", "after": {}},
        {"id": "source-str", "op": "c", "source": "diagnosis", "after": {}},
        {"id": "source-null", "op": "c", "source": None, "after": {}},
        ev("table-empty", table=""),
        ev("table-int", table=5),
        {"id": "after-list", "op": "u", "source": {"table": "t"}, "after": [1]},
        {"id": "after-null", "op": "r", "source": {"table": "t"}, "after": None, "before": {}},
        {"id": "d-no-before", "op": "d", "source": {"table": "t"}, "after": {}},
    ]
    status, body = direct.send(batch_doc(events))
    assert status == 200, body
    assert body["accepted"] == ["ok-c", "ok-t", "ok-d"]
    assert {r["id"]: r["reason"] for r in body["rejected"]} == {
        "bad-op": "schema: op must be one of c/u/d/r/t, got 'z'",
        "op-list": "schema: op must be one of c/u/d/r/t, got \"['c']\"",
        "op-none": "schema: op must be one of c/u/d/r/t, got 'None'",
        "no-source": "schema: source.table must be a non-empty string",
        "source-str": "schema: source.table must be a non-empty string",
        "source-null": "schema: source.table must be a non-empty string",
        "table-empty": "schema: source.table must be a non-empty string",
        "table-int": "schema: source.table must be a non-empty string",
        "after-list": "schema: op u needs an 'after' object",
        "after-null": "schema: op r needs an 'after' object",
        "d-no-before": "schema: op d needs a 'before' object",
    }
    assert set(direct.stored()) == {"ok-c", "ok-t", "ok-d"}


def test_events_are_stored_verbatim_and_unknown_keys_allowed(direct: Direct) -> None:
    # Odd spacing, key order, escapes, Chinese text, numbers as written, keys the platform does
    # not know (in the batch, the event, source and the rows): stored byte for byte as sent.
    e1 = ('{ "future_key": {"nested": [1, 2.50, "x"]},\n  "after": {"name": "\\u5f20\\u4e09", "note": "发热 3 天",'
          ' "amount": 12345678901234567890.10, "big": 123456789012345678901234567890},\n'
          '  "source": {"table": "diagnosis", "lsn": "0/1", "extra": true}, "op": "c", "id": "v-1", "ts_ms": 1}')
    e2 = '{"id":"v-2","op":"d","before":{"id":2},"after":null,"source":{"table":"symptom"}}'
    payload = batch_doc(f"[{e1} ,\n\t{e2}]".encode(), destination="national", something_new={"a": [1]})
    status, body = direct.send(payload)
    assert status == 200 and body["accepted"] == ["v-1", "v-2"] and not body["rejected"]
    assert direct.stored() == {"v-1": ("diagnosis", "c", e1), "v-2": ("symptom", "d", e2)}
    # Resent as another batch: known ids are duplicates, stored once.
    status, body = direct.send(batch_doc(f"[{e2}]".encode(), batch_id="b-2"), batch_id="b-2")
    assert status == 200 and body["accepted"] == ["v-2"] and body["duplicates"] == ["v-2"]
    assert len(direct.stored()) == 2


def test_reject_rules_read_the_row_only_when_needed(direct: Direct) -> None:
    direct.state.faults = Faults(reject_tables=frozenset({"death_record"}),
                                 reject_fields=frozenset({("diagnosis", "secret"), ("symptom", "code")}))
    events = [
        ev("plain"),
        ev("null-secret", after={"secret": None}),
        ev("secret", after={"secret": "x"}),
        {"id": "del-secret", "op": "d", "source": {"table": "diagnosis"}, "before": {"secret": 0}},
        ev("other-table", table="symptom", after={"secret": "x"}),
        ev("code", table="symptom", after={"code": "A"}),
        ev("dead", table="death_record"),
    ]
    status, body = direct.send(batch_doc(events))
    assert status == 200
    assert body["accepted"] == ["plain", "null-secret", "other-table"]
    rej = {r["id"]: (r["reason"], r.get("field")) for r in body["rejected"]}
    assert rej == {
        "secret": ("平台拒收：字段 diagnosis.secret 的值不符合平台要求", "secret"),
        "del-secret": ("平台拒收：字段 diagnosis.secret 的值不符合平台要求", "secret"),
        "code": ("平台拒收：字段 symptom.code 的值不符合平台要求", "code"),
        "dead": ("平台拒收：数据表 death_record 暂不接收", None),
    }


def test_counting_store_counts_checks_and_conflicts(tmp_path: Path) -> None:
    d = Direct(tmp_path, store="none")
    events = [ev("a"), ev("b", table="symptom"), ev("bad", op="x"), ev("c")]
    status, body = d.send(batch_doc(events))
    assert status == 200 and body["accepted"] == ["a", "b", "c"] and len(body["rejected"]) == 1
    assert d.store.counts() == {"diagnosis": 2, "symptom": 1}
    status, body = d.send(batch_doc(events[:2]))  # same batch id, other events
    assert status == 409 and body["error"] == "batch_conflict"
    status, body = d.send(batch_doc([]))
    assert status == 400 and body["message"] == "payload.events: expected a non-empty list"
    assert not d.db.exists()
