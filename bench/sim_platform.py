"""Micro-benchmark: µs/event of the reference platform's ``process_batch`` on realistic batches.

    python bench/sim_platform.py [--events 1000] [--batches 10] [--repeat 5]

Events are synthetic hospital rows of ``visit`` and ``lab_result`` (22 columns each) run through
the real ``ValidationStage``, encoded with ``cdcsync.event.encode_events`` into the payload the
HTTP sink sends, and sealed with ``cdcsync.crypto.envelope.seal`` (real SM2/SM3/SM4). No HTTP:
``process_batch`` is called directly, as the app's worker thread does. Prints, per store
(``none`` = CountingStore, ``sqlite`` = a fresh SqliteStore per round), µs/event of the whole
call, of ``open_sealed`` alone (verify + decrypt, the same in both), and of the difference
(parse, checks, store, signed reply). Best of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

from cdcsync.crypto.envelope import ReplayCache, Sealed, SenderKey, open_sealed, seal
from cdcsync.crypto.keys import key_id
from cdcsync.crypto.sm2 import SM2PrivateKey
from cdcsync.event import Change, Event, encode_events
from cdcsync.synth.hospital import generate, load_codes
from cdcsync.upstream_sim.app import SimState, process_batch
from cdcsync.upstream_sim.store import CountingStore, SqliteStore, Store
from cdcsync.validate.compiler import beijing_now
from cdcsync.validate.reload import RulesHolder
from cdcsync.validate.stage import ValidationStage

ORG = "12110000400000000X"


def make_events(n: int) -> list[Event]:
    now = beijing_now()
    patients = max(200, n // 4)
    res = generate(load_codes(), ORG, now.date() - dt.timedelta(days=2), patients=patients, now=now,
                   invalid_ratio=0.0)
    holder = RulesHolder.load()
    rules = holder.current()
    stage = ValidationStage(holder, ORG, "emr")
    ts = dt.datetime.now(dt.UTC)
    out: list[Event] = []
    seq = 0  # (commit LSN, ordinal) make the event id: unique across both tables
    for table in ("visit", "lab_result"):
        names = rules.table(table).table.field_names
        for r in res.rows[table]:
            seq += 1
            e = stage(Change("c", "emr", table, None, {k: r.get(k) for k in names}, 1000 + seq // 1000, 1, ts,
                             seq % 1000))
            if isinstance(e, Event):
                out.append(e)
    random.Random(1).shuffle(out)
    if len(out) < n:
        raise SystemExit(f"only {len(out)} events generated; raise the patient count")
    return out[:n]


def payload(events: list[Event], batch_id: str) -> bytes:
    # The HTTP sink's document (cdcsync.sink.http.HttpSink._payload).
    return b"".join((b'{"version":1,"org_code":"', ORG.encode(), b'","batch_id":"', batch_id.encode(),
                     b'","destination":"national","spec_version":"bench","mapping_version":"bench","events":',
                     encode_events(events), b"}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000, help="events per batch")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    evs = make_events(args.events * args.batches)
    hospital, platform = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    keys = {key_id(hospital.public_key): SenderKey(hospital.public_key, None)}
    chunks = [evs[i : i + args.events] for i in range(0, len(evs), args.events)]
    payloads = [payload(c, f"bench-{i}") for i, c in enumerate(chunks)]
    print(f"{len(chunks)} batches of {args.events} events, {sum(map(len, payloads)) / len(evs):.0f} bytes/event "
          "of JSON")
    n = len(evs)

    def sealed_round() -> list[Sealed]:
        # Fresh seals each round: the platform refuses a replayed body (and timestamps age).
        return [seal(p, sender_key=hospital, recipient_pub=platform.public_key, org_code=ORG, batch_id=f"bench-{i}")
                for i, p in enumerate(payloads)]

    best_open = float("inf")
    for _ in range(args.repeat):
        sealed, cache = sealed_round(), ReplayCache(300)
        t0 = time.perf_counter()
        for s in sealed:
            open_sealed(s.body, s.headers, recipient_key=platform, sender_keys=keys, replay_cache=cache,
                        max_body=1 << 30)
        best_open = min(best_open, time.perf_counter() - t0)

    print(f"{'store':<8}{'process_batch':>16}{'open_sealed':>14}{'the rest':>12}   (µs/event)")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("none", "sqlite"):
            best = float("inf")
            for r in range(args.repeat):
                store: Store = CountingStore() if kind == "none" else SqliteStore(Path(tmp) / f"r{r}.sqlite")
                state = SimState(platform_key=platform, trusted=keys, store=store, max_body=1 << 30)
                sealed = sealed_round()
                t0 = time.perf_counter()
                for s in sealed:
                    resp = process_batch(state, s.body, s.headers)
                    if resp.status_code != 200:
                        raise SystemExit(f"process_batch answered {resp.status_code}: {bytes(resp.body)[:200]!r}")
                best = min(best, time.perf_counter() - t0)
                if state.counters["accepted"] != n:
                    raise SystemExit(f"expected {n} accepted, got {dict(state.counters)}")
                store.close()
            us, us_open = best / n * 1e6, best_open / n * 1e6
            print(f"{kind:<8}{us:>16.2f}{us_open:>14.2f}{us - us_open:>12.2f}")


if __name__ == "__main__":
    main()
