"""Fuzz the data API from its own OpenAPI schema (schemathesis) over real HTTP: no 5xx, no invalid row.

Every operation (upsert and delete of each of the 19 mirror tables) gets a few schema-conforming
and a few schema-violating requests. Afterwards every row in emr.* must pass the same check the
API applies (the stream's compiled validators, value domains aside).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from psycopg import sql

from cdcsync.api.data_check import ApiChecker
from cdcsync.db.cluster import LocalCluster
from cdcsync.validate.compiler import beijing_now
from cdcsync.validate.reload import RulesHolder
from tests.api_helpers import Api, drop_database, local_api, new_database, running_api

schemathesis = pytest.importorskip("schemathesis")
POSITIVE, NEGATIVE = 8, 4  # examples per operation and mode: 38 operations x 12 ≈ 450 requests
BUDGET_S = 60.0


@pytest.fixture(scope="module")
def api(pg_cluster: LocalCluster) -> Iterator[Api]:
    dsn = new_database(pg_cluster, "fuzz")
    try:
        with running_api(dsn, local_api(("data",), max_batch_records=20, max_body_bytes=256 * 1024,
                                         rate_limit_per_second=1000, rate_limit_burst=1000)) as a:
            yield a
    finally:
        drop_database(pg_cluster, dsn)


def test_fuzz_from_openapi_no_5xx_no_invalid_row(api: Api, record_property: Any) -> None:
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    auth = {"Authorization": f"Bearer {api.good_key}", "X-Api-Key": api.good_key}  # override generated ones
    statuses: Counter[int] = Counter()
    by_mode: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) == 41  # 19 tables × upsert/delete + the 3 reminders routes (a data key: 403 there)

    def fuzz(op: Any, mode: Any, n: int) -> None:
        @settings(max_examples=n, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            resp = case.call(base_url=api.url, headers=auth, timeout=30)
            statuses[resp.status_code] += 1
            by_mode[(mode.value, resp.status_code)] += 1
            ctype = resp.headers.get("content-type") or [""]
            ctype = ctype[0] if isinstance(ctype, list) else ctype
            if resp.status_code >= 500 or not ctype.startswith("application/json"):
                failures.append(f"{case.method} {case.path} -> {resp.status_code}: {resp.text[:200]}")

        run()

    for op in ops:
        for mode, n in ((GenerationMode.POSITIVE, POSITIVE), (GenerationMode.NEGATIVE, NEGATIVE)):
            if time.monotonic() - started < BUDGET_S:
                fuzz(op, mode, n)

    total = sum(statuses.values())
    record_property("fuzz_requests", total)
    print(f"\nfuzz: {total} requests in {time.monotonic() - started:.1f}s, statuses {dict(by_mode)}")
    assert not failures, failures[:5]
    assert total >= 150
    assert not any(code >= 500 for code in statuses)

    # No invalid row: everything in emr.* passes the API's own check (the stream's validators).
    holder = RulesHolder.load()
    checker = ApiChecker(holder)
    now = beijing_now()
    bad: list[str] = []
    written = 0
    with psycopg.connect(api.dsn) as conn:
        for table in holder.spec.tables:
            cur = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier("emr", table.name)))
            names = [d.name for d in cur.description or []]
            for i, rec in enumerate(cur.fetchall()):
                written += 1
                _, errors = checker.check(table, i, dict(zip(names, rec, strict=True)), now)
                bad += [f"{table.name}: {e['rule_id']} {e['field']}" for e in errors]
    print(f"fuzz: {written} rows written, all valid")
    assert not bad, bad[:10]
