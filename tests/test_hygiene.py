"""Hygiene (issue 14, section 5): hostile input on 8881 and from the platforms stays harmless.

A real daemon (``cdcsync run`` in a subprocess, stream + listeners) for the request-side checks;
the reference platform over HTTPS for the reply side.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from cdcsync.api.auth import create_key
from cdcsync.db.cluster import LocalCluster, free_port
from cdcsync.event import Batch
from cdcsync.sink.http import HttpSink, _error_code
from cdcsync.textsafe import PLATFORM_TEXT_MAX, escape_controls, platform_text
from cdcsync.upstream_sim.app import Faults
from cdcsync.upstream_sim.runner import SimHandle
from tests.api_helpers import ORG, drop_database, new_database, patient
from tests.cdc_util import read_events, start_daemon
from tests.test_upstream_sim import dest, keys, make_events, sim  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Daemon:
    dsn: str
    url: str
    key: str
    log: Path
    events: Path
    proc: subprocess.Popen[bytes]

    def insert(self, pid: str) -> None:
        rec = patient(pid)
        with psycopg.connect(self.dsn) as conn:
            conn.execute(f"INSERT INTO emr.patient ({', '.join(rec)}) VALUES ({', '.join(['%s'] * len(rec))})",
                         list(rec.values()))

    def delivered(self, pid: str) -> bool:
        return any(e["source"]["table"] == "patient" and (e.get("after") or {}).get("patient_id") == pid
                   for e in read_events(self.events))


def wait_for(cond: Callable[[], Any], what: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"daemon exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def daemon(pg_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("hygiene")
    dsn = new_database(pg_cluster, "hyg")
    port = free_port()
    data = {
        "org_code": ORG, "state_dir": str(tmp / "state"), "database": {"dsn": dsn},
        "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5},
        "destinations": [{"name": "hyg", "kind": "jsonl", "path": str(tmp / "events.jsonl")}],
        "api": {"data": {"host": "127.0.0.1", "port": port}, "monitor": {"enabled": False},
                "web": {"enabled": False}},
    }
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    with psycopg.connect(dsn) as conn:
        key = create_key(conn, "his")
    log = tmp / "daemon.log"
    proc = start_daemon(cfg, log)
    d = Daemon(dsn, f"http://127.0.0.1:{port}", key, log, tmp / "events.jsonl", proc)

    def api_up() -> bool:
        try:
            return httpx.get(f"{d.url}/openapi.json", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(api_up, "the data API", proc)
        yield d
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        drop_database(pg_cluster, dsn)


# ----------------------------------------------------------------------------- orjson, deep nesting


def test_orjson_floor_is_past_the_deep_nesting_advisories() -> None:
    # CVE-2024-27454 (loads without a recursion limit, fixed in 3.9.15) and GHSA-hx9q-6w63-j58v
    # (dumps recursion, fixed in 3.11.5).
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    (spec,) = [d for d in deps if re.match(r"orjson\b", d)]
    floor = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", spec).group(1).split("."))  # type: ignore[union-attr]
    assert floor >= (3, 11, 5), spec
    import orjson

    assert tuple(int(x) for x in orjson.__version__.split(".")[:3]) >= floor


def test_deeply_nested_body_is_400_and_the_stream_goes_on(daemon: Daemon) -> None:
    daemon.insert("N1")
    wait_for(lambda: daemon.delivered("N1"), "N1 to be streamed", daemon.proc)
    body = b"[" * (1024 * 1024)
    r = httpx.post(f"{daemon.url}/api/v1/data/patient", content=body, timeout=60,
                   headers={"Authorization": f"Bearer {daemon.key}", "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "INVALID_JSON"
    nested = b'{"records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(f"{daemon.url}/api/v1/data/patient", content=nested, timeout=60,
                   headers={"Authorization": f"Bearer {daemon.key}", "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    daemon.insert("N2")
    wait_for(lambda: daemon.delivered("N2"), "N2 to be streamed after the hostile bodies", daemon.proc)
    assert daemon.proc.poll() is None


# ----------------------------------------------------------------------------- request log


def test_control_characters_in_paths_cannot_forge_log_lines(daemon: Daemon) -> None:
    for path in ("/%0aFAKE 2026-01-01 INFO cdcsync.api: forged", "/%0d%0aFAKE2", "/x%1b[2J%00FAKE3"):
        r = httpx.get(daemon.url + path, timeout=10)
        assert r.status_code == 404
    marker = "/end-of-forgery-probe"
    httpx.get(daemon.url + marker, timeout=10)
    wait_for(lambda: marker in daemon.log.read_text(encoding="utf-8", errors="replace"), "the log line",
             daemon.proc, 20)
    text = daemon.log.read_bytes().decode("utf-8", errors="replace")
    lines = text.splitlines()
    assert not [ln for ln in lines if ln.startswith("FAKE")], "a request path started a log line"
    assert "\x1b" not in text and "\x00" not in text and "\r" not in text
    assert any("GET /\\x0aFAKE 2026-01-01" in ln and " 404 " in ln for ln in lines), text[-2000:]
    assert any("GET /\\x0d\\x0aFAKE2" in ln for ln in lines)


def test_escape_controls_keeps_printable_text() -> None:
    assert escape_controls("/api/v1/data/患者") == "/api/v1/data/患者"
    assert escape_controls("/a\nb\u202ec") == "/a\\x0ab\\u202ec"


# ----------------------------------------------------------------------------- platform texts


HOSTILE = "evil\n2026-01-01 INFO forged line\x1b[2J\u202e\x00" + "长" * 5000


def test_platform_reasons_are_cleaned_and_truncated_before_use(sim: SimHandle,  # noqa: F811
                                                                keys: dict[str, Path]) -> None:  # noqa: F811
    """The reference platform rejects a table whose (quoted) name is hostile; its reason quotes
    the name. What reaches Ack (and from there the quarantine, status and logs) is clean."""
    assert sim.state is not None
    sim.state.faults.reject_tables = frozenset({HOSTILE})
    try:
        sink = HttpSink(dest(sim, keys))
        evs = make_events(2, table=HOSTILE)
        ack = sink.send(Batch(events=evs))
        sink.close()
    finally:
        sim.state.faults = Faults()
    assert set(ack.rejected) == {e.id for e in evs}
    for reason in ack.rejected.values():
        assert "平台拒收" in reason and reason.startswith("平台拒收：数据表 evil 2026-01-01 INFO forged line")
        assert len(reason) <= PLATFORM_TEXT_MAX and reason.endswith("…")
        assert not any(c in reason for c in "\n\r\x1b\x00\u202e")


def test_platform_error_texts_are_cleaned() -> None:
    import orjson

    resp = httpx.Response(400, content=orjson.dumps({"error": "BAD\nX", "message": HOSTILE}))
    text = _error_code(resp)
    assert text.startswith("BAD X: evil 2026-01-01 INFO forged line") and len(text) <= 300
    assert not any(c in text for c in "\n\r\x1b\x00\u202e")
    assert platform_text("a\t\tb  \x85c") == "a b c"


def test_daemon_logs_its_sm2_backend_at_start(daemon: Daemon) -> None:
    from cdcsync.crypto.sm2_backend import describe

    wait_for(lambda: "SM2 实现" in daemon.log.read_text(encoding="utf-8", errors="replace"), "the SM2 line",
             daemon.proc, 30)
    assert describe() in daemon.log.read_text(encoding="utf-8")
