"""Scoped API keys on 8881: tables, operations, org codes, expiry, per-key rate limit, the same
work for unknown and known keys, and the migration of keys made before scopes existed.

Real HTTP over loopback against a real PostgreSQL; keys made with the real key functions.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from cdcsync.api import auth
from cdcsync.api.auth import ApiKeyError, KeyScope, authenticate, create_key, list_keys, make_scope
from cdcsync.api.errors import ApiError
from cdcsync.api.ratelimit import RateLimiter
from cdcsync.db.cluster import LocalCluster
from cdcsync.db.migrate import apply_migrations
from tests.api_helpers import ORG, REPO, Api, drop_database, local_api, new_database, patient, running_api
from tests.cdc_util import cli_cmd

OTHER_ORG = "12110000400000001Y"
TABLES = ["visit", "diagnosis"]


@pytest.fixture(scope="module")
def api(pg_cluster: LocalCluster) -> Iterator[Api]:
    dsn = new_database(pg_cluster, "scopes")
    try:
        with running_api(dsn, local_api(("data",))) as a:
            yield a
    finally:
        drop_database(pg_cluster, dsn)


def _key(api: Api, name: str, scope: KeyScope, expires_on: dt.date | None = None) -> str:
    with psycopg.connect(api.dsn) as conn:
        return create_key(conn, name, None, scope, expires_on)


def _send(api: Api, method: str, table: str, body: object, key: str) -> httpx.Response:
    return httpx.request(method, f"{api.url}/api/v1/data/{table}", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {key}"})


def _count(api: Api, table: str, where: str) -> int:
    return int(api.rows(f"SELECT count(*) FROM emr.{table} WHERE {where}")[0][0])


def test_table_and_operation_outside_the_scope_are_refused_and_nothing_written(api: Api) -> None:
    key = _key(api, "visits_only", make_scope(["visit,diagnosis"], ["upsert"]))
    r = _send(api, "POST", "patient", {"records": [patient("T1")]}, key)
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["code"] == "SCOPE_TABLE" and body["refused"] == {"table": "patient"}
    assert "patient" in body["message"] and "visit、diagnosis" in body["message"]
    assert _count(api, "patient", "patient_id = 'T1'") == 0

    d = _send(api, "DELETE", "visit", {"keys": [{"org_code": ORG, "visit_id": "V1"}]}, key)
    assert d.status_code == 403 and d.json()["code"] == "SCOPE_OPERATION"
    assert d.json()["refused"] == {"operation": "delete"} and "删除" in d.json()["message"]

    # the key's own table and operation pass the scope (and then meet the validators as usual)
    ok = _send(api, "POST", "visit", {"records": [{"org_code": ORG}]}, key)
    assert ok.status_code == 400 and ok.json()["code"] == "VALIDATION_FAILED"


def test_record_of_another_org_code_refuses_the_whole_batch_without_echoing_values(api: Api) -> None:
    key = _key(api, "own_org", KeyScope())  # default: the configured org_code only
    batch = {"records": [patient("O1"), patient("O2", org_code=OTHER_ORG), patient("O3")]}
    r = _send(api, "POST", "patient", batch, key)
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["code"] == "SCOPE_ORG_CODE" and body["failed_indexes"] == [1]
    assert body["refused"] == {"field": "org_code"} and ORG in body["message"]
    assert body["message"].startswith("第 2 条记录"), "the message counts from one"
    assert OTHER_ORG not in r.text and "张三" not in r.text, "the refusal never repeats submitted values"
    assert _count(api, "patient", "patient_id IN ('O1', 'O2', 'O3')") == 0, "nothing of the batch is written"

    # deletes are scoped the same way
    d = _send(api, "DELETE", "patient", {"keys": [{"org_code": OTHER_ORG, "patient_id": "X"}]}, key)
    assert d.status_code == 403 and d.json()["code"] == "SCOPE_ORG_CODE"

    # a key granted the branch's code too may write both
    both = _key(api, "two_orgs", make_scope(["*"], ["upsert", "delete"], [ORG, OTHER_ORG]))
    ok = _send(api, "POST", "patient", batch, both)
    assert ok.status_code == 200, ok.text
    assert api.rows("SELECT org_code, patient_id FROM emr.patient WHERE patient_id IN ('O1', 'O2', 'O3')"
                    " ORDER BY patient_id") == [(ORG, "O1"), (OTHER_ORG, "O2"), (ORG, "O3")]


def test_expired_key_is_refused_and_a_key_is_valid_through_its_last_day(api: Api) -> None:
    today = auth.beijing_today()
    key = _key(api, "short_lived", KeyScope(), expires_on=today)
    assert _send(api, "POST", "patient", {"records": [patient("E1")]}, key).status_code == 200
    with psycopg.connect(api.dsn) as conn:
        conn.execute("UPDATE cdcsync.api_key SET expires_on = %s WHERE name = 'short_lived'",
                     (today - dt.timedelta(days=1),))
    r = _send(api, "POST", "patient", {"records": [patient("E2")]}, key)
    assert r.status_code == 403 and r.json()["code"] == "AUTH_EXPIRED"
    assert _count(api, "patient", "patient_id = 'E2'") == 0
    with psycopg.connect(api.dsn) as conn, pytest.raises(ApiKeyError, match="已过"):
        create_key(conn, "born_dead", None, KeyScope(), today - dt.timedelta(days=1))


def test_scope_input_is_checked() -> None:
    tables = ["patient", "visit", "diagnosis"]
    assert make_scope(["visit, diagnosis"], ["upsert"], None, tables) == KeyScope(("visit", "diagnosis"), ("upsert",))
    for bad_tables, bad_ops, orgs, match in [
        (["visit,nosuch"], ["upsert"], None, "nosuch"),
        (["*,visit"], ["upsert"], None, r"\*"),
        ([""], ["upsert"], None, "--tables"),
        (["visit"], ["insert"], None, "insert"),
        (["visit"], ["upsert"], ["bad code"], "bad code"),
    ]:
        with pytest.raises(ApiKeyError, match=match):
            make_scope(bad_tables, bad_ops, orgs, tables)


class _CountingConn:
    """The connection authenticate() gets, counting the statements it runs."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def execute(self, query: str, params: Any = None) -> Any:
        self.statements.append(query)
        return self.conn.execute(query, params)

    def rollback(self) -> None:
        self.conn.rollback()

    def commit(self) -> None:
        self.conn.commit()


def test_unknown_key_does_the_same_lookup_and_hash_as_a_wrong_secret(api: Api, monkeypatch: pytest.MonkeyPatch
                                                                      ) -> None:
    """No timing oracle: an unknown key id, a known id with a wrong secret and a malformed key
    each run the same single query and exactly one HMAC compared in constant time, and get the same
    answer. (Asserted on the work done, not on wall-clock time, which would be flaky.)"""
    hashed: list[int] = []
    compared: list[int] = []
    real_hash, real_compare = auth._hash, auth.hmac.compare_digest

    def counting_hash(salt: bytes, secret: str) -> bytes:
        hashed.append(len(salt))
        return real_hash(salt, secret)

    def counting_compare(a: bytes, b: bytes) -> bool:
        compared.append(len(b))
        return real_compare(a, b)

    monkeypatch.setattr(auth, "_hash", counting_hash)
    monkeypatch.setattr(auth.hmac, "compare_digest", counting_compare)
    known_id = api.good_key.split("_")[1]
    candidates = {
        "wrong_secret": f"cdk_{known_id}_{'A' * 43}",
        "unknown_id": f"cdk_{'0' * 12}_{'A' * 43}",
        "malformed": "nonsense",
    }
    seen: dict[str, tuple[Any, ...]] = {}
    with psycopg.connect(api.dsn) as raw:
        for what, key in candidates.items():
            hashed.clear()
            compared.clear()
            conn = _CountingConn(raw)
            with pytest.raises(ApiError) as err:
                authenticate(conn, key)  # type: ignore[arg-type]
            seen[what] = (err.value.status, err.value.code, err.value.message, len(conn.statements),
                          conn.statements[0])
            assert hashed == [16] and compared == [32], what
        client = authenticate(raw, api.good_key)
    assert client.name == "his"
    assert len(set(seen.values())) == 1, seen
    assert seen["unknown_id"][:4] == (401, "AUTH_INVALID", "API 密钥无效", 1)


def test_rate_limit_per_key_answers_429_with_retry_after(pg_cluster: LocalCluster) -> None:
    dsn = new_database(pg_cluster, "ratelim")
    try:
        # 0.05 requests/s: nothing refills during the test, so the count is exact
        limits = local_api(("data",), rate_limit_per_second=0.05, rate_limit_burst=3)
        with running_api(dsn, limits) as a:
            codes = [_send(a, "POST", "patient", {"records": [patient(f"R{i}")]}, a.good_key) for i in range(5)]
            assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
            limited = codes[3]
            assert limited.json()["code"] == "RATE_LIMITED" and "每秒最多" in limited.json()["message"]
            assert int(limited.headers["Retry-After"]) >= 1
            assert a.rows("SELECT count(*) FROM emr.patient WHERE patient_id IN ('R3', 'R4')") == [(0,)]
            # another client is not held back by the first one's excess
            with psycopg.connect(dsn) as conn:
                other = create_key(conn, "lis")
            assert _send(a, "POST", "patient", {"records": [patient("R9")]}, other).status_code == 200
    finally:
        drop_database(pg_cluster, dsn)


def test_rate_limiter_refills_and_caps_requests_in_progress() -> None:
    now = [100.0]
    lim = RateLimiter(rate=2.0, burst=2, max_concurrent=1, clock=lambda: now[0])
    with lim.slot("his"):
        with pytest.raises(ApiError) as busy, lim.slot("his"):
            pass
        assert busy.value.status == 429 and busy.value.extra["limit"] == "concurrency"
        with lim.slot("lis"):  # other clients have their own slots
            pass
    with lim.slot("his"):
        pass
    with pytest.raises(ApiError) as rate, lim.slot("his"):
        pass
    assert rate.value.extra["limit"] == "rate" and rate.value.headers["Retry-After"] == "1"
    now[0] += 0.5  # one token back at 2/s
    with lim.slot("his"):
        pass


def test_existing_keys_migrate_to_own_org_all_tables_both_ops(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    """A key created before migration 011 keeps working, scoped to the configured org_code, and
    ``api-keys list`` says so; ``api-keys scope`` then narrows it."""
    old_sql = tmp_path / "sql"
    old_sql.mkdir()
    for f in sorted((REPO / "sql").glob("*.sql")):
        if f.name < "011":
            shutil.copy(f, old_sql / f.name)
    dsn = pg_cluster.create_database(f"scopemig{os.getpid()}")
    try:
        apply_migrations(dsn, old_sql)
        salt, secret, key_id = b"s" * 16, "B" * 43, "abcdefabcdef"
        with psycopg.connect(dsn) as conn:
            conn.execute("INSERT INTO cdcsync.api_key (name, key_id, salt, key_hash) VALUES ('old', %s, %s, %s)",
                         (key_id, salt, auth._hash(salt, secret)))
        apply_migrations(dsn, REPO / "sql")
        key = f"cdk_{key_id}_{secret}"
        with psycopg.connect(dsn) as conn:
            client = authenticate(conn, key)
            (info,) = list_keys(conn)
        assert client.scope == KeyScope(("*",), ("upsert", "delete"), None)
        assert info.scope.allowed_org_codes(ORG) == (ORG,) and info.expires_on is None

        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump({"org_code": ORG, "database": {"dsn": dsn}}), encoding="utf-8")

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(cli_cmd(cfg, "api-keys", *args), capture_output=True, text=True, timeout=60,
                                  cwd=str(REPO))

        listed = cli("list").stdout
        assert "全部表（*）" in listed and "新增/更新（upsert）、删除（delete）" in listed
        assert f"{ORG}（本机构" in listed and "长期" in listed
        changed = cli("scope", "old", "--tables", "visit,diagnosis", "--ops", "upsert", "--expires", "2099-12-31")
        assert changed.returncode == 0, changed.stderr
        with psycopg.connect(dsn) as conn:
            assert authenticate(conn, key).scope == KeyScope(("visit", "diagnosis"), ("upsert",), None)
        listed = cli("list").stdout
        assert "visit、diagnosis" in listed and "2099-12-31" in listed and "删除" not in listed
        assert cli("scope", "old", "--org-code", OTHER_ORG).returncode == 0
        assert OTHER_ORG in cli("list").stdout
        nothing = cli("scope", "old")
        assert nothing.returncode == 2 and "请至少指定一项" in nothing.stderr
        # least privilege by default: a new key needs its tables and operations named
        unscoped = cli("add", "new_his")
        assert unscoped.returncode == 2 and "--tables" in unscoped.stderr and "Traceback" not in unscoped.stderr
        bad = cli("add", "new_his", "--tables", "nosuch", "--ops", "upsert")
        assert bad.returncode == 2 and "nosuch" in bad.stderr
        added = cli("add", "new_his", "--tables", "visit", "--ops", "upsert", "--org-code", OTHER_ORG,
                    "--expires", "2099-01-01")
        assert added.returncode == 0, added.stderr
        assert "visit" in added.stdout and OTHER_ORG in added.stdout and "2099-01-01" in added.stdout
    finally:
        drop_database(pg_cluster, dsn)
