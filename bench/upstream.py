"""Upstream delivery end to end: cdcsync → SM2/SM4 envelope → HTTPS → upstream-sim, vs pg_recvlogical.

    python bench/upstream.py                       # 100,000 rows + 20 s latency run at 1,000 rows/s
    python bench/upstream.py --rows 200000 --latency-seconds 30

Throughput: the same changes are read by pg_recvlogical (to /dev/null) and by the cdcsync
pipeline (decode, Event, JSON, batch, gzip + SM4-GCM + SM2 key wrap + SM2 signature, HTTPS POST to
the reference platform on loopback, SM2-verified reply, checkpoint transaction, standby status),
one after the other so they do not compete for the two cores. The platform runs as a separate
process with ``--store none`` (it verifies, decrypts, parses and counts; it stores nothing).

Latency: a fresh slot streams while a loader commits 20 rows every 20 ms (1,000 rows/s); for
each row, the time from its COMMIT returning to the signed reply for its batch being verified by
the sink (the checkpoint follows within milliseconds). The platform stores into SQLite here
(``--latency-store``), as a real receiver would. Pipeline settings are the defaults
(linger 200 ms, 1,000 events per batch) unless given.

Helpers (schema, loader, pg_recvlogical run) come from bench/stream.py.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import stream as stream_bench  # noqa: E402  (bench/stream.py)

from cdcsync.config import Settings  # noqa: E402
from cdcsync.crypto.keys import write_keypair  # noqa: E402
from cdcsync.db.cluster import LocalCluster, throwaway_cluster  # noqa: E402
from cdcsync.db.migrate import apply_migrations  # noqa: E402
from cdcsync.event import Ack, Batch  # noqa: E402
from cdcsync.pipeline import Pipeline, run_pipeline_forever  # noqa: E402
from cdcsync.sink.http import HttpSink  # noqa: E402
from cdcsync.sink.http_settings import HttpDestination  # noqa: E402
from cdcsync.upstream_sim.runner import SimHandle, start_subprocess  # noqa: E402

ORG = "12110000400001234X"


def settings(dsn: str, batch_events: int, linger_ms: int) -> Settings:
    return Settings.model_validate({
        "org_code": ORG,
        "database": {"dsn": dsn},
        "stream": {"snapshot_on_new": False, "batch_max_events": batch_events, "linger_ms": linger_ms,
                   "status_interval_s": 10},
    })


def http_dest(name: str, sim: SimHandle, key: Path, batch_events: int) -> HttpDestination:
    return HttpDestination(name=name, kind="http", url=sim.url, ca_bundle=sim.ca_bundle, hospital_key=key,
                           platform_public_key=sim.platform_pub, batch_max_events=batch_events)


class TimedSink:
    """Records when each batch's signed reply was verified, by row id."""

    def __init__(self, inner: HttpSink) -> None:
        self.inner = inner
        self.name = inner.name
        self.acked: dict[int, float] = {}

    def send(self, batch: Batch) -> Ack:
        ack = self.inner.send(batch)
        now = time.monotonic()
        for ev in batch.events:
            if ev.op == "c" and ev.after is not None:
                self.acked[int(ev.after["id"])] = now
        return ack

    def close(self) -> None:
        self.inner.close()


def throughput(cluster: LocalCluster, dsn: str, sim: SimHandle, key: Path, args: argparse.Namespace) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('cdcsync_bench', 'pgoutput')")
        conn.execute("SELECT pg_create_logical_replication_slot('recvlogical', 'pgoutput')")
    stream_bench.load(dsn, args.rows, args.tx_rows)
    with psycopg.connect(dsn, autocommit=True) as conn:
        endpos = str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])  # type: ignore[index]
    t_pg = stream_bench.run_recvlogical(cluster, "bench", "recvlogical", endpos)

    st = settings(dsn, args.batch_events, 200)
    dest = http_dest("bench", sim, key, args.batch_events)
    sink = HttpSink(dest, spec_version="bench", mapping_version="bench")
    pipe = Pipeline(st, dest, sink=sink)  # type: ignore[arg-type]  # kind http not yet in the union
    pipe.catch_up = lambda p, pos: sink.health.snapshot().events_accepted >= args.rows
    t0 = time.monotonic()
    run_pipeline_forever(pipe)
    secs = time.monotonic() - t0
    sink.close()
    h = sink.health.snapshot()
    got = sim.stats()["total"]
    assert h.events_accepted == args.rows and got >= args.rows, (h, got)
    r_pg, r_cdc = args.rows / t_pg, args.rows / secs
    print(f"pg_recvlogical:          {args.rows:,} rows in {t_pg:.2f}s = {r_pg:,.0f} rows/s")
    print(f"cdcsync → HTTPS → sim:   {args.rows:,} rows in {secs:.2f}s = {r_cdc:,.0f} rows/s "
          f"({h.batches_sent} platform batches, {h.total_failures} failed attempts; platform --store none)")
    print(f"ratio = {r_cdc / r_pg:.2f} (target >= 0.5)", flush=True)


def latency(dsn: str, sim: SimHandle, key: Path, args: argparse.Namespace) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        base = int(conn.execute("SELECT coalesce(max(id), 0) FROM emr.bench_visit").fetchone()[0])  # type: ignore[index]
    st = settings(dsn, args.batch_events, args.linger_ms)
    dest = http_dest("lat", sim, key, args.batch_events)
    sink = TimedSink(HttpSink(dest, spec_version="bench", mapping_version="bench"))
    stop = threading.Event()
    pipe = Pipeline(st, dest, sink=sink, stop=stop)  # type: ignore[arg-type]
    ready = threading.Event()
    pipe.on_ready = ready.set
    t = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    t.start()
    if not ready.wait(30):
        raise SystemExit("latency: the pipeline did not start streaming")

    committed: dict[int, float] = {}
    per_tx, period = 20, 0.02
    n_tx = int(args.latency_seconds / period)
    nxt = base + 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.monotonic()
        for i in range(n_tx):
            conn.execute(stream_bench.INSERT, (nxt, nxt + per_tx - 1))
            now = time.monotonic()
            for rid in range(nxt, nxt + per_tx):
                committed[rid] = now
            nxt += per_tx
            delay = start + (i + 1) * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        load_secs = time.monotonic() - start
    deadline = time.monotonic() + 30
    while len(sink.acked) < len(committed) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    t.join(30)
    sink.close()
    warm = base + int(2.0 / period) * per_tx  # skip the first 2 s
    lat = sorted(sink.acked[r] - c for r, c in committed.items() if r > warm and r in sink.acked)
    missing = len(committed) - len(set(committed) & set(sink.acked))
    rate = len(committed) / load_secs
    q = statistics.quantiles(lat, n=100)
    print(f"latency commit → verified signed ack at {rate:,.0f} rows/s for {load_secs:.0f}s "
          f"(linger {args.linger_ms} ms, platform --store {args.latency_store}): "
          f"p50 {q[49] * 1000:.0f} ms, p90 {q[89] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
          f"max {lat[-1] * 1000:.0f} ms (target p99 < 1000 ms); {missing} rows not acked", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--tx-rows", type=int, default=1000, help="rows per inserting transaction (throughput)")
    ap.add_argument("--batch-events", type=int, default=1000)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--linger-ms", type=int, default=200)
    ap.add_argument("--latency-store", choices=["sqlite", "none"], default="sqlite")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    cluster = throwaway_cluster("cdcsync-bench-up-", "/var/tmp")
    base = cluster.datadir.parent
    sims: list[SimHandle] = []
    try:
        dsn = cluster.create_database("bench")
        apply_migrations(dsn)  # cdcsync.* state (checkpoint, stats, latency) and the publication
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(stream_bench.DDL)
        key, pub, _ = write_keypair(base / "keys", "hospital")
        if not args.skip_throughput:
            sim = start_subprocess(base / "sim-none", hospital_pubs=[pub], args=["--store", "none"])
            sims.append(sim)
            throughput(cluster, dsn, sim, key, args)
        if not args.skip_latency:
            extra: list[str] = ["--store", args.latency_store]
            sim = start_subprocess(base / "sim-lat", hospital_pubs=[pub], args=extra)
            sims.append(sim)
            latency(dsn, sim, key, args)
    finally:
        for s in sims:
            s.stop()
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
