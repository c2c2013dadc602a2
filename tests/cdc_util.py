"""Helpers shared by the CDC engine tests (test_pgoutput, test_stream, test_faults, test_snapshot)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import yaml

from cdcsync.config import Settings
from cdcsync.db.cluster import LocalCluster
from cdcsync.db.migrate import apply_migrations

REPO = Path(__file__).resolve().parents[1]

# The conftest fixture ``new_cluster``: new_cluster(conf=..., start=..., initdb_args=...).
NewCluster = Callable[..., LocalCluster]

PROBE_DDL = """
CREATE TABLE emr.cdc_probe (
    id       bigint PRIMARY KEY,
    i2       smallint,
    i4       integer,
    amount   numeric(30, 10),
    ratio    double precision,
    name     text,
    code     varchar(20),
    flag     boolean,
    day      date,
    at_time  time,
    at_ts    timestamp,
    at_tstz  timestamptz,
    blob     bytea,
    doc      jsonb,
    tags     text[],
    big      text
);
ALTER TABLE emr.cdc_probe REPLICA IDENTITY FULL;
-- not a spec table: published on purpose (db init publishes only the spec's tables)
ALTER PUBLICATION cdcsync_emr ADD TABLE emr.cdc_probe;
"""


# The daemon's HTTP listeners on loopback, any free port: several daemons may run in one session.
LOOPBACK_API = {name: {"host": "127.0.0.1", "port": 0} for name in ("data", "monitor", "web")}


def prepare_db(dsn: str) -> None:
    """Schema emr (the mirror migration may not exist yet), every migration, the publication."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS emr")
    apply_migrations(dsn, REPO / "sql")


def settings_for(dsn: str, tmp: Path, **stream: Any) -> tuple[Settings, Path]:
    """Settings with one jsonl destination ``t``; also written as YAML for subprocesses."""
    data: dict[str, Any] = {
        "org_code": "TESTORG01",
        "state_dir": str(tmp / "state"),
        "database": {"dsn": dsn},
        "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5, **stream},
        "destinations": [{"name": "t", "kind": "jsonl", "path": str(tmp / "events.jsonl")}],
        "api": LOOPBACK_API,
        # The engine tests count "replication started" lines of the destination's stream; the rules
        # consumer (its own slot) is tested in tests/test_surveil_consumer.py.
        "surveil": {"enabled": False},
    }
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    return Settings.model_validate(data), cfg


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    with open(path, "rb") as fh:
        for line in fh:
            if line.endswith(b"\n"):
                out.append(json.loads(line))
    return out


def fold(events: list[dict[str, Any]], table: str, key: str = "id") -> dict[Any, dict[str, Any]]:
    """Replay events (first occurrence of each id, in order) into {primary key: row}."""
    state: dict[Any, dict[str, Any]] = {}
    seen: set[str] = set()
    for ev in events:
        if ev["id"] in seen or ev["source"]["table"] != table:
            continue
        seen.add(ev["id"])
        if ev["op"] in ("c", "u", "r"):
            if ev["op"] == "u" and ev["before"] and ev["before"][key] != ev["after"][key]:
                state.pop(ev["before"][key], None)
            state[ev["after"][key]] = ev["after"]
        elif ev["op"] == "d":
            state.pop(ev["before"][key], None)
        elif ev["op"] == "t":
            state.clear()
    return state


def table_as_events(dsn: str, table: str, key: str = "id") -> dict[Any, dict[str, Any]]:
    """The table's rows rendered the way events render them (same converters, same JSON)."""
    from cdcsync.event import dumps
    from cdcsync.source.protocol import with_session_options
    from cdcsync.source.typeconv import converter_for

    out: dict[Any, dict[str, Any]] = {}
    with psycopg.connect(with_session_options(dsn)) as conn:
        cols = conn.execute(
            "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum", (f"emr.{table}",)).fetchall()
        names = [c for c, _ in cols]
        convs = [converter_for(o) for _, o in cols]
        sel = ", ".join(f'"{c}"::text' for c in names)
        for rec in conn.execute(f"SELECT {sel} FROM emr.{table}"):
            row = {n: (None if v is None else cv(v.encode())) for n, v, cv in zip(names, rec, convs, strict=True)}
            parsed = json.loads(dumps(row))
            out[parsed[key]] = parsed
    return out


def cli_cmd(cfg: Path, *args: str) -> list[str]:
    """``cdcsync -c cfg ARGS`` in a subprocess, with this interpreter."""
    return [sys.executable, "-m", "cdcsync", "-c", str(cfg), *args]


def start_daemon(cfg: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    fh = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(cli_cmd(cfg, "run"), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))


def wait_for(cond: Callable[[], Any], timeout: float = 60.0, what: str = "the condition", interval: float = 0.1) -> Any:
    """Poll ``cond`` until it returns something truthy (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def lose_slot(conn: psycopg.Connection[Any], slot: str, keep_up: str | None = None) -> None:
    """On a small-WAL cluster (``--wal-segsize=1``, a small ``max_slot_wal_keep_size``): write WAL
    (a table outside the publication) and checkpoint until ``slot`` is lost. The slot ``keep_up``
    (a destination that keeps streaming) is let catch up after each checkpoint, so only the
    stalled one crosses the limit."""
    conn.execute("CREATE TABLE IF NOT EXISTS public.filler (b text)")
    deadline = time.monotonic() + 120
    while True:
        (status,) = conn.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
                                 (slot,)).fetchone() or (None,)
        if status == "lost":
            return
        assert time.monotonic() < deadline, f"slot {slot} still {status}"
        conn.execute("INSERT INTO public.filler SELECT repeat('x', 1000) FROM generate_series(1, 400)")
        conn.execute("SELECT pg_switch_wal()")
        (before,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()  # type: ignore[misc]
        conn.execute("CHECKPOINT")
        if keep_up is not None:
            wait_for(lambda lsn=before: conn.execute(
                "SELECT restart_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                (lsn, keep_up)).fetchone() == (True,), 30, f"slot {keep_up} to keep up")


def dpkg_dir(tmp: Path, end: dt.datetime, ages: dict[str, float]) -> Path:
    """A dpkg info directory whose ``<package>.list`` files were last rewritten ``age`` days
    before ``end`` (dpkg rewrites them on every upgrade)."""
    d = tmp / "dpkg-info"
    d.mkdir(exist_ok=True)
    for name, age in ages.items():
        f = d / name
        f.write_text("/usr/lib/x\n")
        t = (end - dt.timedelta(days=age)).timestamp()
        os.utime(f, (t, t))
    (d / "libssl-dev:amd64.list").write_text("")  # a -dev package is not the library: left out
    return d
