"""Surveillance latency: signal commit → case visible, at a steady write rate, on a throwaway cluster.

    python bench/surveil.py                       # 1,000 rows/s for 30 s
    python bench/surveil.py --rate 500 --seconds 60
    python bench/surveil.py --backlog 1000000     # drain a backlog: rows/s vs pg_recvlogical, peak RSS

A writer commits transactions every 10 ms on the real spec tables: each carries visits with a
non-notifiable diagnosis (filler) and, every ``--signal-every`` transactions, one visit with a
notifiable diagnosis (肺结核). The rules consumer (cdcsync/surveil/consumer.py, in this process, as
in ``cdcsync run``) streams them through the validation stage and the default rule pack. An
observer records when each signal's case became visible, measured from the writer's commit:
``--observer sse`` (default) as a HIS popup sees it, on the reminders API's Server-Sent Events
stream (``GET /api/v1/reminders/stream`` of the data API, served by this process on loopback,
with a ``reminders`` key); ``--observer table`` on the case table the API reads, polled every
20 ms (the engine alone). Prints p50, p95, p99, max, the achieved row rate and the process's
peak RSS.

``--backlog N``: N diagnosis rows (one in ``--notifiable-every``, default 50, notifiable) are
committed in transactions of 1,000 while
the consumer is not running; then pg_recvlogical reads them from its own slot, and the consumer
(validation stage, rule engine, case transactions with its checkpoint) drains its slot; rows/s of
both, the ratio and the peak RSS of this process (which only runs the consumer) are printed.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cdcsync.api.auth import create_key, make_scope  # noqa: E402
from cdcsync.api.server import ServerHandle, start_servers  # noqa: E402
from cdcsync.config import Settings  # noqa: E402
from cdcsync.db.cluster import throwaway_cluster  # noqa: E402
from cdcsync.db.migrate import apply_migrations  # noqa: E402
from cdcsync.settings.api import ApiSettings, DataListenerSettings, ListenerSettings  # noqa: E402
from cdcsync.surveil.consumer import RulesConsumer, run_consumer_forever  # noqa: E402
from cdcsync.surveil.engine import EngineHolder  # noqa: E402
from cdcsync.validate.reload import RulesHolder  # noqa: E402
from tests.surveil_rows import ORG, Mirror  # noqa: E402


class ConnMirror(Mirror):
    conn: psycopg.Connection[Any] | None = None

    def insert(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        assert self.conn is not None
        names = list(row)
        cols = ", ".join(names)
        marks = ", ".join(["%s"] * len(names))
        self.conn.execute(f"INSERT INTO emr.{table} ({cols}) VALUES ({marks})", [row[n] for n in names])
        return row


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000, help="rows per second")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--signal-every", type=int, default=5, help="one signal per N transactions")
    ap.add_argument("--observer", choices=("sse", "table"), default="sse",
                    help="where a case counts as visible: the reminders SSE stream, or the case table")
    ap.add_argument("--backlog", type=int, default=0, help="drain a backlog of N rows instead")
    ap.add_argument("--notifiable-every", type=int, default=50, help="backlog: one notifiable diagnosis per N rows")
    args = ap.parse_args()
    cluster = throwaway_cluster("cdcsync-bench-", "/var/tmp")
    base = cluster.datadir.parent
    try:
        dsn = cluster.create_database("surveil_bench")
        if args.backlog:
            backlog(cluster, dsn, args.backlog, args.notifiable_every)
        else:
            run(dsn, args)
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def run(dsn: str, args: argparse.Namespace) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS emr")
    apply_migrations(dsn, REPO / "sql")
    settings = Settings.model_validate({"org_code": ORG, "database": {"dsn": dsn},
                                        "surveil": {"enabled": True, "linger_ms": 50}})
    holder = RulesHolder.load()
    stop = threading.Event()
    consumer = RulesConsumer(settings, holder, EngineHolder.load(None, holder), stop)
    thread = threading.Thread(target=run_consumer_forever, args=(consumer,), daemon=True)
    thread.start()
    while not consumer.healthy:
        time.sleep(0.05)
    committed: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    listening = threading.Event()

    def finished() -> bool:
        return done.is_set() and len(seen) >= len(committed)

    api: ServerHandle | None = None
    if args.observer == "sse":
        api = start_servers(settings, api=ApiSettings(
            data=DataListenerSettings(host="127.0.0.1", port=0),
            monitor=ListenerSettings(host="127.0.0.1", port=0, enabled=False),
            web=ListenerSettings(host="127.0.0.1", port=0, enabled=False)))
        with psycopg.connect(dsn) as conn:
            key = create_key(conn, "bench_popup", None, make_scope(["*"], ["upsert"], apis=["reminders"]))
        url = f"http://127.0.0.1:{api.ports['data']}/api/v1/reminders/stream"
        obs = threading.Thread(target=observe_sse, args=(url, key, seen, finished, listening), daemon=True)
    else:
        listening.set()
        obs = threading.Thread(target=observe_table, args=(dsn, seen, finished), daemon=True)
    obs.start()
    if not listening.wait(30):  # the stream starts at the feed's head: connected before the first signal
        raise SystemExit("the reminders stream did not answer within 30 s")
    m = ConnMirror(dsn)
    per_tx = max(2, args.rate // 100)  # rows per 10 ms transaction
    rows = 0
    n = 0
    t0 = time.monotonic()
    with psycopg.connect(dsn) as conn:
        m.conn = conn
        while time.monotonic() - t0 < args.seconds:
            tick = t0 + n * 0.01
            written = 0
            signal = n % args.signal_every == 0
            if signal:
                m.visit(f"SV{n}", f"SP{n}")
                m.diagnosis(f"SV{n}", f"SP{n}", "A15.000", seq=1)
                written += 2
            k = 0
            while written + 2 <= per_tx:
                m.visit(f"FV{n}_{k}", f"FP{n}_{k}")
                m.diagnosis(f"FV{n}_{k}", f"FP{n}_{k}", "J18.900", seq=1)
                written += 2
                k += 1
            conn.commit()
            if signal:
                committed[f"SP{n}"] = time.time()
            rows += written
            n += 1
            delay = tick + 0.01 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    elapsed = time.monotonic() - t0
    done.set()
    obs.join(120)
    stop.set()
    thread.join(30)
    if api is not None:
        api.stop()
    lat = [seen[p] - c for p, c in committed.items() if p in seen]
    print(f"rows written: {rows} in {elapsed:.1f}s = {rows / elapsed:.0f} rows/s;"
          f" signals {len(committed)}, cases seen {len(lat)}")
    where = "on the reminders SSE stream" if args.observer == "sse" else "in the case table"
    print(f"signal → case visible {where}: p50 {pct(lat, 50):.3f}s  p95 {pct(lat, 95):.3f}s"
          f"  p99 {pct(lat, 99):.3f}s  max {max(lat):.3f}s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (this process:"
          " writer + consumer + observer" + (" + data API" if args.observer == "sse" else "") + ")")


def observe_table(dsn: str, seen: dict[str, float], finished: Callable[[], bool]) -> None:
    """Poll the case table every 20 ms: patient id -> when its case was first seen."""
    last = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not finished():
            for cid, pid in conn.execute("SELECT case_id, patient_id FROM cdcsync.surveil_case"
                                         " WHERE case_id > %s ORDER BY case_id", (last,)):
                seen.setdefault(pid, time.time())
                last = cid
            time.sleep(0.02)


def observe_sse(url: str, key: str, seen: dict[str, float], finished: Callable[[], bool],
                listening: threading.Event) -> None:
    """Follow the reminders stream of the diagnosing doctor (D002, every signal's) as a HIS popup
    would: patient id -> when the case's first event arrived."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client, \
            client.stream("GET", url, params={"doctor_id": "D002"}, headers=headers) as resp:
        resp.raise_for_status()
        listening.set()
        for line in resp.iter_lines():
            if line.startswith("data:"):
                seen.setdefault(orjson.loads(line[5:])["patient"]["patient_id"], time.time())
            if finished():
                return


BACKLOG_SQL = """
INSERT INTO emr.diagnosis (org_code, modify_flag, collect_time, update_time, diagnosis_id, visit_id, patient_id,
    visit_type_code, diagnosis_category_code, diagnosis_code, diagnosis_name, diagnosis_status_code, onset_date,
    diagnosis_time, dept_code, doctor_id, doctor_name)
SELECT %(org)s, '1', t, t, 'BD' || g, 'BV' || g, 'BP' || g, 'MZ', 'MZZD',
       CASE WHEN g %% %(every)s = 0 THEN 'A15.000' ELSE 'J18.900' END, '诊断', '3', DATE '2026-11-18',
       t + interval '10 minutes', '0302', 'D002', '李医生'
  FROM generate_series(%(a)s::bigint, %(b)s::bigint) g, (SELECT TIMESTAMP '2026-11-20 09:00' AS t) c
"""


def backlog(cluster: Any, dsn: str, rows: int, every: int) -> None:
    import subprocess

    from cdcsync.db.migrate import PUBLICATION
    from cdcsync.engine.pipeline import HEARTBEAT_PREFIX
    from cdcsync.event import str_to_lsn

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS emr")
    apply_migrations(dsn, REPO / "sql")
    settings = Settings.model_validate({"org_code": ORG, "database": {"dsn": dsn}, "surveil": {"enabled": True}})
    with psycopg.connect(dsn, autocommit=True) as conn:
        for slot in ("cdcsync_surveil", "recvlogical"):
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        t0 = time.monotonic()
        for a in range(1, rows + 1, 1000):
            conn.execute(BACKLOG_SQL, {"org": ORG, "a": a, "b": min(rows, a + 999), "every": every})
        print(f"inserted {rows:,} rows: {time.monotonic() - t0:.1f}s", flush=True)
        row = conn.execute("SELECT pg_logical_emit_message(false, %s, 'bench end')", (HEARTBEAT_PREFIX,)).fetchone()
        endpos = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None and endpos is not None
    target = str_to_lsn(str(row[0]))
    t0 = time.monotonic()
    subprocess.run([str(cluster.bindir / "pg_recvlogical"), "-d", dsn, "--slot", "recvlogical", "--start",
                    "-o", "proto_version=1", "-o", f"publication_names={PUBLICATION}", "--endpos", endpos[0],
                    "-f", "/dev/null", "--no-loop"], check=True)
    t_pg = time.monotonic() - t0
    holder = RulesHolder.load()
    consumer = RulesConsumer(settings, holder, EngineHolder.load(None, holder))
    consumer.catch_up = lambda c, pos: pos >= target
    t0 = time.monotonic()
    run_consumer_forever(consumer)
    t_c = time.monotonic() - t0
    with psycopg.connect(dsn) as conn:
        cases = conn.execute("SELECT count(*) FROM cdcsync.surveil_case").fetchone()
    print(f"pg_recvlogical {rows / t_pg:,.0f} rows/s ({t_pg:.1f}s); rules consumer {rows / t_c:,.0f} rows/s"
          f" ({t_c:.1f}s, {consumer.events_seen:,} events validated,"
          f" {consumer.events_skipped:,} left out before validation,"
          f" {cases[0] if cases else 0:,} cases)")
    print(f"ratio consumer / pg_recvlogical = {t_pg / t_c:.2f} (target >= 0.5);"
          f" peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (target < 300)")


if __name__ == "__main__":
    main()
