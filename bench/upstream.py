"""Upstream delivery end to end: cdcsync → SM2/SM4 envelope → HTTPS → upstream-sim, vs pg_recvlogical.

    python bench/upstream.py                       # 3 rounds of 200,000 rows + 20 s latency run at 1,000 rows/s
    python bench/upstream.py --rows 100000 --repeat 1 --latency-seconds 30

Throughput: rows of the synthetic hospital's spec tables (visit, lab_result; about 2 % invalid)
are read by pg_recvlogical (to /dev/null) and by the full cdcsync pipeline — decode, the real
validation + mapping stage (invalid rows to quarantine), Event, JSON, gzip + SM4-GCM + SM2 key
wrap + SM2 signature, HTTPS POST to the reference platform on loopback, SM2-verified reply,
checkpoint transaction, standby status — one after the other so they do not compete for the two
cores; best of ``--repeat`` rounds, each on its own slots. The platform runs as a separate process
with ``--store none`` (it verifies, decrypts, parses and counts; it stores nothing). The run
prints the CPU each part used per row: the pipeline's main thread (read, decode, validate,
checkpoint), the rest of the process (the delivery threads: encoding, encryption, HTTPS), the
platform process and the walsender.

Latency: a fresh slot streams ``emr.bench_visit`` (not a spec table: the stage forwards it) while
a loader commits 20 rows every 20 ms (1,000 rows/s); for each row, the time from its COMMIT
returning to the signed reply for its batch being verified by the sink (the checkpoint follows
within milliseconds). The platform stores into SQLite here (``--latency-store``), as a real
receiver would. Pipeline settings are the defaults (linger 200 ms, 1,000 events per batch) unless
given.

Helpers (schema, loaders, pg_recvlogical run) come from bench/stream.py.
"""

from __future__ import annotations

import argparse
import logging
import os
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
from cdcsync.engine.pipeline import Pipeline, run_pipeline_forever  # noqa: E402
from cdcsync.event import Ack, Batch  # noqa: E402
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


def cpu_seconds(pid: int | str = "self", tid: int | None = None) -> float:
    """User + system CPU of a process (or one of its threads) from /proc."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def walsender_pid(dsn: str, app: str) -> int | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pid FROM pg_stat_replication WHERE application_name = %s", (app,)).fetchone()
    return int(row[0]) if row else None


class _CpuWatch:
    """CPU seconds of this process's main thread, the rest of this process (the sender thread),
    the platform process and the walsender over one cdcsync run (the walsender's pid is looked up
    once the stream started)."""

    def __init__(self, dsn: str, sim: SimHandle, app: str) -> None:
        self.dsn, self.app = dsn, app
        self.sim_pid = sim.process.pid if sim.process is not None else None
        self.main_tid = threading.main_thread().native_id
        self.wal_pid: int | None = None
        self.wal0 = 0.0

    def start(self) -> None:
        self.t0 = (cpu_seconds(), cpu_seconds(tid=self.main_tid), cpu_seconds(self.sim_pid or 0))

    def on_ready(self) -> None:
        self.wal_pid = walsender_pid(self.dsn, self.app)
        self.wal0 = cpu_seconds(self.wal_pid) if self.wal_pid else 0.0

    def stop(self) -> dict[str, float]:
        proc, main, sim = cpu_seconds(), cpu_seconds(tid=self.main_tid), cpu_seconds(self.sim_pid or 0)
        wal = (cpu_seconds(self.wal_pid) - self.wal0) if self.wal_pid else 0.0
        main -= self.t0[1]
        return {"main thread": main, "sender thread": proc - self.t0[0] - main, "platform": sim - self.t0[2],
                "walsender": wal}


def throughput(cluster: LocalCluster, dsn: str, sim: SimHandle, key: Path, args: argparse.Namespace) -> None:
    """Best of ``--repeat`` rounds of (pg_recvlogical, cdcsync end to end), each on its own slots,
    over the synthetic hospital's visit and lab_result rows (spec tables: the real validation and
    mapping stage runs, about 2 % of the rows are invalid and go to quarantine)."""
    from cdcsync.validate.reload import RulesHolder
    from cdcsync.validate.stage import ValidationStage

    rounds = range(1, args.repeat + 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in rounds:
            for slot in (f"recvlogical{i}", f"cdcsync_up{i}"):
                conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    rows = args.rows
    stream_bench.load_spec_rows(dsn, rows, args.tx_rows, 0)
    until, endpos = stream_bench.end_marker(dsn)
    holder = RulesHolder.load()
    t_pg: list[float] = []
    t_cdc: list[float] = []
    cpu: list[dict[str, float]] = []
    platform_before = sim.stats()["total"]
    for i in rounds:
        t_pg.append(stream_bench.run_recvlogical(cluster, "bench", f"recvlogical{i}", endpos))
        name = f"up{i}"
        st = settings(dsn, args.batch_events, 200)
        dest = http_dest(name, sim, key, args.batch_events)
        sink = HttpSink(dest)
        pipe = Pipeline(st, dest, sink=sink, transform=ValidationStage(holder, ORG, "bench"))
        pipe.catch_up = lambda p, pos: pos >= until
        watch = _CpuWatch(dsn, sim, f"cdcsync-{name}")
        pipe.on_ready = watch.on_ready
        watch.start()
        t0 = time.monotonic()
        run_pipeline_forever(pipe)
        t_cdc.append(time.monotonic() - t0)
        cpu.append(watch.stop())
        sink.close()
        h = sink.health.snapshot()
        with psycopg.connect(dsn, autocommit=True) as conn:
            quarantined = int(conn.execute("SELECT count(*) FROM cdcsync.quarantine WHERE destination = %s",
                                           (name,)).fetchone()[0])  # type: ignore[index]
        got = sim.stats()["total"] - platform_before
        assert h.events_accepted + quarantined == rows, (h, quarantined)
        assert got == h.events_accepted, (got, h.events_accepted)  # every round's events are new ids
        platform_before += got
        print(f"round {i}: pg_recvlogical {rows / t_pg[-1]:,.0f} rows/s, cdcsync end to end "
              f"{rows / t_cdc[-1]:,.0f} rows/s ({t_pg[-1] / t_cdc[-1]:.2f}x; {h.batches_sent} platform batches, "
              f"{h.events_accepted:,} events acknowledged, {quarantined:,} quarantined, "
              f"{h.total_failures} failed attempts)", flush=True)
    best = min(range(len(t_cdc)), key=lambda k: t_cdc[k])
    r_pg, r_cdc = rows / min(t_pg), rows / t_cdc[best]
    use = ", ".join(f"{k} {v / rows * 1e6:.1f}" for k, v in cpu[best].items())
    print(f"best of {args.repeat}:")
    print(f"pg_recvlogical:          {rows:,} rows in {min(t_pg):.2f}s = {r_pg:,.0f} rows/s")
    print(f"cdcsync → HTTPS → sim:   {rows:,} rows in {t_cdc[best]:.2f}s = {r_cdc:,.0f} rows/s "
          f"(platform --store none; CPU µs/row: {use})")
    print(f"ratio = {r_cdc / r_pg:.2f} (target >= 0.5)", flush=True)


def latency(dsn: str, sim: SimHandle, key: Path, args: argparse.Namespace) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        base = int(conn.execute("SELECT coalesce(max(id), 0) FROM emr.bench_visit").fetchone()[0])  # type: ignore[index]
    st = settings(dsn, args.batch_events, args.linger_ms)
    dest = http_dest("lat", sim, key, args.batch_events)
    sink = TimedSink(HttpSink(dest))
    stop = threading.Event()
    from cdcsync.validate.reload import RulesHolder
    from cdcsync.validate.stage import ValidationStage

    stage = ValidationStage(RulesHolder.load(), ORG, "bench")
    pipe = Pipeline(st, dest, sink=sink, transform=stage, stop=stop)
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
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3, help="throughput rounds (best counts)")
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
