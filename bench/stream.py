"""Replication throughput: cdcsync's decoder + pipeline vs pg_recvlogical, on a throwaway cluster.

    python bench/stream.py                 # 200,000 rows: rows/s of both and the ratio
    python bench/stream.py --rows 50000
    python bench/stream.py --backlog 1000000   # drain a 1M-row backlog, report peak RSS
    python bench/stream.py --validate      # spec tables, + decode/validate/map (ValidationStage)

The readers consume the same changes (pgoutput, proto_version 1, publication cdcsync_emr) from
their own slot, one after the other so they do not compete for the two cores. cdcsync runs the
full pipeline (decode, Event, batching, checkpoint transaction, standby status) into a null sink
(which skips only JSON encoding, a sink's job).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import logging
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cdcsync.config import Settings  # noqa: E402
from cdcsync.db.cluster import LocalCluster, throwaway_cluster  # noqa: E402
from cdcsync.db.migrate import PUBLICATION  # noqa: E402
from cdcsync.engine.batcher import Batcher  # noqa: E402
from cdcsync.engine.checkpoint import Checkpointer  # noqa: E402
from cdcsync.engine.pipeline import HEARTBEAT_PREFIX, PassThroughTransform, Pipeline, run_pipeline_forever  # noqa: E402
from cdcsync.event import Change, str_to_lsn  # noqa: E402
from cdcsync.sink.memory import MemorySink  # noqa: E402

ORG = "12110000400001234X"
DDL = """
CREATE SCHEMA IF NOT EXISTS emr;
CREATE TABLE emr.bench_visit (
    id            bigint PRIMARY KEY,
    org_code      varchar(22) NOT NULL,
    patient_id    varchar(64) NOT NULL,
    visit_no      varchar(64) NOT NULL,
    patient_name  varchar(50),
    gender_code   varchar(2),
    birth_date    date,
    dept_name     varchar(100),
    diag_code     varchar(20),
    diag_name     varchar(200),
    chief_complaint text,
    temperature   numeric(4, 1),
    visit_time    timestamptz,
    modify_flag   smallint NOT NULL DEFAULT 1,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE emr.bench_visit REPLICA IDENTITY FULL;
ALTER PUBLICATION cdcsync_emr ADD TABLE emr.bench_visit;  -- not a spec table: published on purpose
"""

INSERT = """
INSERT INTO emr.bench_visit (id, org_code, patient_id, visit_no, patient_name, gender_code, birth_date,
    dept_name, diag_code, diag_name, chief_complaint, temperature, visit_time)
SELECT g, '12110000400001234X', 'P' || (g %% 50000), 'V' || g, '张三' || (g %% 1000), (g %% 2 + 1)::text,
       date '1950-01-01' + (g %% 25000)::int, '呼吸内科门诊', 'J10.1', '流行性感冒，伴有其他呼吸道表现',
       '发热3天，咳嗽、咽痛，伴全身肌肉酸痛，体温最高39.2℃', 36.5 + (g %% 40) / 10.0,
       timestamptz '2024-01-01 08:00+08' + g * interval '1 second'
  FROM generate_series(%s::bigint, %s::bigint) g
"""


def vmhwm_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(dsn: str, rows: int, tx_rows: int) -> None:
    t0 = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(1, rows + 1, tx_rows):
            conn.execute(INSERT, (start, min(rows, start + tx_rows - 1)))
    print(f"inserted {rows:,} rows in transactions of {tx_rows:,}: {time.monotonic() - t0:.1f}s", flush=True)


def run_recvlogical(cluster: LocalCluster, dbname: str, slot: str, endpos: str) -> float:
    cmd = [str(cluster.bindir / "pg_recvlogical"), "-d", cluster.dsn(dbname), "--slot", slot, "--start",
           "-o", "proto_version=1", "-o", f"publication_names={PUBLICATION}", "--endpos", endpos,
           "-f", "/dev/null", "--no-loop"]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - t0


class _Timers:
    """Wall time the stream's thread spends on acknowledged batches (``Batcher._record``:
    quarantine of sink rejections, checkpoint accounting, status update), and the part of it in
    ``Checkpointer.record`` (its per-event accounting and the SQL). The sink itself runs on the
    delivery thread."""

    def __init__(self) -> None:
        self.acks = self.record = 0.0
        self.orig_acks = Batcher._record
        self.orig_record = Checkpointer.record

    def __enter__(self) -> _Timers:
        orig_acks, orig_record = self.orig_acks, self.orig_record

        def acks(batcher: Batcher, *args: Any) -> None:
            t0 = time.monotonic()
            try:
                orig_acks(batcher, *args)
            finally:
                self.acks += time.monotonic() - t0

        def record(ckpt: Checkpointer, *args: Any, **kwargs: Any) -> int | None:
            t0 = time.monotonic()
            try:
                return orig_record(ckpt, *args, **kwargs)
            finally:
                self.record += time.monotonic() - t0

        Batcher._record = acks  # type: ignore[method-assign]
        Checkpointer.record = record  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Batcher._record = self.orig_acks  # type: ignore[method-assign]
        Checkpointer.record = self.orig_record  # type: ignore[method-assign]


def end_marker(dsn: str) -> tuple[int, str]:
    """After a load: a non-transactional logical message marks the end for cdcsync (as ``drain``
    does), and the WAL position after it is pg_recvlogical's ``--endpos``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_logical_emit_message(false, %s, 'bench end')", (HEARTBEAT_PREFIX,)).fetchone()
        endpos = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert row is not None and endpos is not None
    return str_to_lsn(str(row[0])), str(endpos[0])


def run_cdcsync(dsn: str, until: int, batch_events: int, dest: str = "bench", transform: Any = None,
                profile: bool = False, linger_ms: int = 200) -> tuple[float, float, MemorySink]:
    """Stream slot ``cdcsync_<dest>`` until the end marker at ``until`` is confirmed, with the
    production code only (no per-row instrumentation); (wall seconds, CPU seconds, sink)."""
    settings = Settings.model_validate({
        "org_code": ORG,
        "database": {"dsn": dsn},
        "stream": {"snapshot_on_new": False, "batch_max_events": batch_events, "linger_ms": linger_ms,
                   "status_interval_s": 10},
        "destinations": [{"name": dest, "kind": "memory", "null": True}],
    })
    sink = MemorySink(dest, null=True)
    transform = transform or PassThroughTransform(ORG, "bench")
    pipe = Pipeline(settings, settings.destinations[0], sink=sink, transform=transform)
    pipe.catch_up = lambda p, pos: pos >= until
    prof = cProfile.Profile() if profile else None
    t0, c0 = time.monotonic(), time.process_time()
    if prof is not None:
        prof.enable()
    with _Timers() as timer:
        run_pipeline_forever(pipe)
    if prof is not None:
        prof.disable()
    end = time.monotonic()
    secs, cpu = end - t0, time.process_time() - c0
    print(f"  [{dest}] {secs:.2f}s; recording acks {timer.acks:.2f}s "
          f"(of which Checkpointer.record {timer.record:.2f}s); CPU {cpu:.2f}s", flush=True)
    if prof is not None:
        print(f"--- cProfile of cdcsync ({dest}), top 25 by own time ---", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return secs, cpu, sink


# --- spec tables (--validate) -------------------------------------------------------------------

SPEC_TABLES = ("visit", "lab_result")


def load_spec_rows(dsn: str, rows: int, tx_rows: int, sample: int) -> tuple[dict[str, int], list[Change]]:
    """Synthetic-hospital rows of the spec tables (visit, lab_result), day by day, until ``rows``
    are written; returns the counts per table and the first ``sample`` rows as Changes (in the
    shape the decoder produces: every column, in table order) for the isolated measurement."""
    from cdcsync.spec import load_spec
    from cdcsync.synth.hospital import Hospital, iter_days, load_codes
    from cdcsync.synth.load import load_bulk

    spec = load_spec()
    t0 = time.monotonic()
    start = dt.date.today() - dt.timedelta(days=rows // 10_000 + 30)
    hosp = Hospital(load_codes(), ORG, start, seed=1, patients=4000)
    counts = dict.fromkeys(SPEC_TABLES, 0)
    changes: list[Change] = []
    ts = dt.datetime.now(dt.UTC)
    written = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for day in iter_days(hosp, start, None):
            chunk: dict[str, list[dict[str, Any]]] = {t: [] for t in SPEC_TABLES}
            for g in day.groups:
                for t in SPEC_TABLES:
                    chunk[t].extend(g.rows.get(t, ()))
            for t in SPEC_TABLES:  # the last day: only what is still missing
                room = rows - written - sum(len(chunk[u]) for u in SPEC_TABLES if u < t)
                del chunk[t][max(0, room):]
            for t in SPEC_TABLES:
                names = spec.table(t).field_names
                for r in chunk[t]:
                    if len(changes) >= sample:
                        break
                    full = {n: r.get(n) for n in names}
                    changes.append(Change("c", "emr", t, None, full, 1000 + len(changes) // 1000, 1, ts,
                                          len(changes) % 1000))
                counts[t] += len(chunk[t])
            written += load_bulk(conn, spec, chunk, tx_rows=tx_rows)
            if written >= rows:
                break
    print(f"inserted {written:,} spec rows ({', '.join(f'{t} {n:,}' for t, n in counts.items())}) in "
          f"COPY transactions of {tx_rows:,}: {time.monotonic() - t0:.1f}s", flush=True)
    return counts, changes


def per_row_us(transform: Any, changes: list[Change], rounds: int = 3) -> float:
    """Best-of-``rounds`` cost of ``transform`` per change in µs, outside the stream."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for ch in changes:
            transform(ch)
        best = min(best, time.perf_counter() - t0)
    return best / len(changes) * 1e6


def bench_validate(cluster: LocalCluster, args: argparse.Namespace) -> None:
    from cdcsync.db.migrate import apply_migrations
    from cdcsync.validate.reload import RulesHolder
    from cdcsync.validate.stage import ValidationStage

    dsn = cluster.create_database("bench")
    apply_migrations(dsn)
    logging.getLogger("cdcsync.engine.checkpoint").setLevel(logging.ERROR)  # "N change(s) quarantined" per batch
    rounds = range(1, args.repeat + 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in rounds:
            for slot in (f"recvlogical{i}", f"cdcsync_decode{i}", f"cdcsync_validate{i}"):
                conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    rows = args.rows
    _, sample = load_spec_rows(dsn, rows, args.tx_rows, args.sample)
    until, endpos = end_marker(dsn)
    stage = ValidationStage(RulesHolder.load(), ORG, "bench")

    # Rounds of (pg_recvlogical, decode, decode+validate+map), each on its own slots; the best
    # of each reader counts (this machine's neighbours make single runs noisy).
    t_pg, t_dec, t_val, cpu_dec, cpu_val = [], [], [], [], []
    quarantined = 0
    for i in rounds:
        t_pg.append(run_recvlogical(cluster, "bench", f"recvlogical{i}", endpos))
        secs, cpu, sink = run_cdcsync(dsn, until, args.batch_events, f"decode{i}", linger_ms=args.linger_ms)
        assert sink.count == rows, f"cdcsync (decode) saw {sink.count} of {rows} rows"
        t_dec.append(secs)
        cpu_dec.append(cpu)
        secs, cpu, sink = run_cdcsync(dsn, until, args.batch_events, f"validate{i}", stage,
                                      args.profile and i == 1, linger_ms=args.linger_ms)
        with psycopg.connect(dsn, autocommit=True) as conn:
            quarantined = conn.execute("SELECT count(*) FROM cdcsync.quarantine WHERE destination = %s",
                                       (f"validate{i}",)).fetchone()[0]  # type: ignore[index]
        assert sink.count + quarantined == rows, f"validate: {sink.count} + {quarantined} != {rows}"
        t_val.append(secs)
        cpu_val.append(cpu)
        print(f"round {i}: pg_recvlogical {rows / t_pg[-1]:,.0f} rows/s, decode {rows / t_dec[-1]:,.0f} rows/s "
              f"({t_pg[-1] / t_dec[-1]:.2f}x), decode+validate+map {rows / t_val[-1]:,.0f} rows/s "
              f"({t_pg[-1] / t_val[-1]:.2f}x)", flush=True)

    us_default = per_row_us(PassThroughTransform(ORG, "bench"), sample)
    us_stage = per_row_us(stage, sample)
    r_pg, r_dec, r_val = rows / min(t_pg), rows / min(t_dec), rows / min(t_val)
    print(f"best of {args.repeat}:")
    print(f"pg_recvlogical:                 {rows:,} rows in {min(t_pg):.2f}s = {r_pg:,.0f} rows/s")
    print(f"cdcsync decode:                 {rows:,} rows in {min(t_dec):.2f}s = {r_dec:,.0f} rows/s "
          f"(CPU {min(cpu_dec) / rows * 1e6:.1f} µs/row)")
    print(f"cdcsync decode+validate+map:    {rows:,} rows in {min(t_val):.2f}s = {r_val:,.0f} rows/s "
          f"(CPU {min(cpu_val) / rows * 1e6:.1f} µs/row; {rows - quarantined:,} events, {quarantined:,} quarantined)")
    print(f"ratio decode / pg_recvlogical              = {r_dec / r_pg:.2f} (target >= 0.8)")
    print(f"ratio decode+validate+map / pg_recvlogical = {r_val / r_pg:.2f} (target >= 0.6)")
    print(f"validate+map in the stream: {(min(cpu_val) - min(cpu_dec)) / rows * 1e6:.1f} µs/row (CPU difference); "
          f"isolated ({len(sample):,} rows): ValidationStage {us_stage:.1f} µs/row, "
          f"PassThroughTransform {us_default:.1f} µs/row, difference {us_stage - us_default:.1f} µs/row")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--tx-rows", type=int, default=1000, help="rows per inserting transaction")
    ap.add_argument("--batch-events", type=int, default=1000)
    ap.add_argument("--backlog", type=int, default=0, help="only drain a backlog of this many rows; report RSS")
    ap.add_argument("--keep", action="store_true", help="leave the cluster directory behind")
    ap.add_argument("--validate", action="store_true",
                    help="spec tables (visit, lab_result): decode-only and decode+validate+map (ValidationStage)")
    ap.add_argument("--sample", type=int, default=20_000, help="--validate: rows for the isolated µs/row figure")
    ap.add_argument("--profile", action="store_true", help="cProfile the cdcsync run (the validating one)")
    ap.add_argument("--repeat", type=int, default=3, help="--validate: rounds of the three readers (best counts)")
    ap.add_argument("--linger-ms", type=int, default=20,
                    help="stream.linger_ms (the last batch of a finite run waits this long before it leaves)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    cluster = throwaway_cluster("cdcsync-bench-", "/var/tmp")
    base = cluster.datadir.parent
    try:
        if args.validate:
            bench_validate(cluster, args)
            return
        from cdcsync.db.migrate import apply_migrations

        dsn = cluster.create_database("bench")
        apply_migrations(dsn)  # cdcsync.* state (the checkpoint writes stats and latency), publication
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(DDL)
            conn.execute("SELECT pg_create_logical_replication_slot('cdcsync_bench', 'pgoutput')")
            if not args.backlog:
                conn.execute("SELECT pg_create_logical_replication_slot('recvlogical', 'pgoutput')")
        rows = args.backlog or args.rows
        load(dsn, rows, args.tx_rows)
        until, endpos = end_marker(dsn)
        rss0 = vmhwm_mb()
        if args.backlog:
            secs, _, sink = run_cdcsync(dsn, until, args.batch_events, linger_ms=args.linger_ms)
            print(f"cdcsync drained {sink.count:,} rows in {secs:.1f}s ({sink.count / secs:,.0f} rows/s); "
                  f"peak RSS {vmhwm_mb():.0f} MB (before draining {rss0:.0f} MB)")
            return
        t_pg = run_recvlogical(cluster, "bench", "recvlogical", endpos)
        secs, cpu, sink = run_cdcsync(dsn, until, args.batch_events, profile=args.profile, linger_ms=args.linger_ms)
        assert sink.count == rows, f"cdcsync saw {sink.count} of {rows} rows"
        r_pg, r_cdc = rows / t_pg, rows / secs
        print(f"pg_recvlogical: {rows:,} rows in {t_pg:.2f}s = {r_pg:,.0f} rows/s")
        print(f"cdcsync:        {rows:,} rows in {secs:.2f}s = {r_cdc:,.0f} rows/s "
              f"(CPU {cpu / rows * 1e6:.1f} µs/row, {sink.batches} batches, peak RSS {vmhwm_mb():.0f} MB)")
        print(f"ratio cdcsync / pg_recvlogical = {r_cdc / r_pg:.2f} (target >= 0.8)")
    finally:
        if args.keep:
            cluster.stop()
            print(f"cluster left in {base}")
        else:
            cluster.destroy()
            import shutil

            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
