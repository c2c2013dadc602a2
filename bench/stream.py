"""Replication throughput: cdcsync's decoder + pipeline vs pg_recvlogical, on a throwaway cluster.

    python bench/stream.py                 # 200,000 rows: rows/s of both and the ratio
    python bench/stream.py --rows 50000
    python bench/stream.py --backlog 1000000   # drain a 1M-row backlog, report peak RSS

Both readers consume the same changes (pgoutput, proto_version 1, publication cdcsync_emr) from
their own slot, one after the other so they do not compete for the two cores. cdcsync runs the
full pipeline (decode, Event, JSON encoding, batching, checkpoint transaction, standby status)
into a null sink.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cdcsync.config import Settings  # noqa: E402
from cdcsync.db.cluster import LocalCluster  # noqa: E402
from cdcsync.db.migrate import PUBLICATION  # noqa: E402
from cdcsync.pipeline import Pipeline, run_pipeline_forever  # noqa: E402
from cdcsync.sink.memory import MemorySink  # noqa: E402

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


def run_cdcsync(dsn: str, rows: int, batch_events: int) -> tuple[float, MemorySink]:
    settings = Settings.model_validate({
        "org_code": "12110000400001234X",
        "database": {"dsn": dsn},
        "stream": {"snapshot_on_new": False, "batch_max_events": batch_events, "linger_ms": 200,
                   "status_interval_s": 10},
        "destinations": [{"name": "bench", "kind": "memory", "null": True}],
    })
    sink = MemorySink("bench", null=True)
    pipe = Pipeline(settings, settings.destinations[0], sink=sink)
    pipe.catch_up = lambda p, pos: sink.count >= rows
    t0 = time.monotonic()
    run_pipeline_forever(pipe)
    return time.monotonic() - t0, sink


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--tx-rows", type=int, default=1000, help="rows per inserting transaction")
    ap.add_argument("--batch-events", type=int, default=1000)
    ap.add_argument("--backlog", type=int, default=0, help="only drain a backlog of this many rows; report RSS")
    ap.add_argument("--keep", action="store_true", help="leave the cluster directory behind")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    base = Path(tempfile.mkdtemp(prefix="cdcsync-bench-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    cluster = LocalCluster(base / "pg", fsync=False)
    cluster.init()
    cluster.start()
    try:
        dsn = cluster.create_database("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(DDL)
            conn.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLES IN SCHEMA emr")
            conn.execute((REPO / "sql" / "001_cdcsync_state.sql").read_text(encoding="utf-8"))
            conn.execute("SELECT pg_create_logical_replication_slot('cdcsync_bench', 'pgoutput')")
            if not args.backlog:
                conn.execute("SELECT pg_create_logical_replication_slot('recvlogical', 'pgoutput')")
        rows = args.backlog or args.rows
        load(dsn, rows, args.tx_rows)
        with psycopg.connect(dsn, autocommit=True) as conn:
            endpos = str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])  # type: ignore[index]
        rss0 = vmhwm_mb()
        if args.backlog:
            secs, sink = run_cdcsync(dsn, rows, args.batch_events)
            print(f"cdcsync drained {sink.count:,} rows in {secs:.1f}s ({sink.count / secs:,.0f} rows/s); "
                  f"peak RSS {vmhwm_mb():.0f} MB (before draining {rss0:.0f} MB)")
            return
        t_pg = run_recvlogical(cluster, "bench", "recvlogical", endpos)
        secs, sink = run_cdcsync(dsn, rows, args.batch_events)
        assert sink.count == rows, f"cdcsync saw {sink.count} of {rows} rows"
        r_pg, r_cdc = rows / t_pg, rows / secs
        print(f"pg_recvlogical: {rows:,} rows in {t_pg:.2f}s = {r_pg:,.0f} rows/s")
        print(f"cdcsync:        {rows:,} rows in {secs:.2f}s = {r_cdc:,.0f} rows/s "
              f"({sink.batches} batches, peak RSS {vmhwm_mb():.0f} MB)")
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
