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

from cdcsync.crypto.envelope import seal
from cdcsync.crypto.keys import load_private_key, load_public_key, write_keypair
from cdcsync.event import Batch, Event
from cdcsync.sink.http import HttpSink, SinkClosed
from cdcsync.sink.http_settings import HttpDestination
from cdcsync.upstream_sim.app import BATCHES_PATH, Faults
from cdcsync.upstream_sim.runner import SimHandle, start_in_process, start_subprocess
from cdcsync.upstream_sim.tls import ensure_self_signed

ORG = "12110000400000000X"
_seq = iter(range(1, 10**9))


def make_events(n: int, table: str = "diagnosis", **extra: Any) -> list[Event]:
    now = dt.datetime.now(dt.UTC)
    out = []
    for _ in range(n):
        i = next(_seq)
        row = {"id": i, "org_code": ORG, "icd10_code": "A01.0", **extra}
        out.append(Event(f"{ORG}.emr:{i:016X}:0", "c", None, row, ORG, "emr", "emr", table, i, i, now, False, 0))
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
