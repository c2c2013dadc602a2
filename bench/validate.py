"""Micro-benchmark: µs/row of validate + map (the compiled spec) over a synthetic hospital day.

    python bench/validate.py [--patients 2000] [--repeat 3]

Rows come from ``cdcsync.synth`` (the same generator as the tests), in the shape the stream
decodes them: every column of the table, in column order, with its Python type (``--sparse``
keeps the generator's rows, which leave out some empty columns). Prints per-table µs/row for
(a) the compiled check (validate + map) alone, (b) the whole stage call (check + Event envelope)
and (c) the engine's PassThroughTransform (Event envelope only, the floor of (b)), and the weighted
averages. No database is involved; bench/stream.py measures the stage inside the real stream.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from cdcsync.engine.pipeline import PassThroughTransform
from cdcsync.event import Change
from cdcsync.synth.hospital import generate, load_codes
from cdcsync.validate.compiler import beijing_now
from cdcsync.validate.reload import RulesHolder
from cdcsync.validate.stage import ValidationStage

MAIN = ("patient", "visit", "diagnosis", "symptom", "vital_sign", "lab_report", "lab_result", "drug_order",
        "exam_report", "progress_note", "report_card")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sparse", action="store_true", help="rows as generated (not every column present)")
    args = ap.parse_args()

    now = beijing_now()
    res = generate(load_codes(), "12110000400000000X", now.date() - dt.timedelta(days=2), patients=args.patients,
                   now=now, invalid_ratio=0.0)
    t0 = time.perf_counter()
    holder = RulesHolder.load()
    print(f"compile spec + load mappings: {(time.perf_counter() - t0) * 1000:.1f} ms")
    rules = holder.current()
    stage = ValidationStage(holder, "12110000400000000X", "emr")
    envelope = PassThroughTransform("12110000400000000X", "emr")
    ts = dt.datetime.now(dt.UTC)

    print(f"{'table':<16}{'rows':>8}{'fields':>8}{'check µs/row':>14}{'stage µs/row':>14}{'envelope':>10}"
          f"{'rejected':>10}")
    total_rows = 0
    total_check = total_stage = total_env = 0.0
    for table in MAIN:
        rows = res.rows.get(table, [])
        if not rows:
            continue
        names = rules.table(table).table.field_names
        if not args.sparse:  # the decoder's shape: every column, in column order
            rows = [{n: r.get(n) for n in names} for r in rows]
        check = rules.table(table).check
        best_check = best_stage = best_env = float("inf")
        rejected = 0
        # 1000 changes per transaction, as bench/stream.py loads them (the id prefix and the rules
        # are per transaction)
        changes = [Change("c", "emr", table, None, r, 1000 + i // 1000, 1, ts, i % 1000)
                   for i, r in enumerate(rows)]
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for r in rows:
                check(r, now)
            best_check = min(best_check, time.perf_counter() - t0)
            t0 = time.perf_counter()
            rejected = 0
            for ch in changes:
                if not hasattr(stage(ch), "ts_ms"):
                    rejected += 1
            best_stage = min(best_stage, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for ch in changes:
                envelope(ch)
            best_env = min(best_env, time.perf_counter() - t0)
        n = len(rows)
        total_rows += n
        total_check += best_check
        total_stage += best_stage
        total_env += best_env
        print(f"{table:<16}{n:>8}{len(names):>8}{best_check / n * 1e6:>14.2f}{best_stage / n * 1e6:>14.2f}"
              f"{best_env / n * 1e6:>10.2f}{rejected:>10}")
    print(f"{'all':<16}{total_rows:>8}{'':>8}{total_check / total_rows * 1e6:>14.2f}"
          f"{total_stage / total_rows * 1e6:>14.2f}{total_env / total_rows * 1e6:>10.2f}")


if __name__ == "__main__":
    main()
