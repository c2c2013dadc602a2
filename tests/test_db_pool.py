"""The connection pool of the data API (cdcsync/db/pool.py) against a real server, and the 503s the
API answers with when it cannot hand out a connection."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from cdcsync.api.data_deps import api_connection
from cdcsync.api.errors import ApiError
from cdcsync.db.cluster import free_port
from cdcsync.db.pool import ConnPool, DatabaseUnavailable, PoolBusy


def _pool(dsn: str, size: int = 2, acquire_timeout_s: float = 30.0) -> ConnPool:
    return ConnPool(lambda: dsn, size, application_name="cdcsync-test", acquire_timeout_s=acquire_timeout_s)


def test_connections_open_on_demand_and_are_reused(fresh_db: str) -> None:
    pool = _pool(fresh_db)
    try:
        with pool.connection() as first:
            pid = first.info.backend_pid
            assert first.execute("SELECT current_setting('application_name')").fetchone() == ("cdcsync-test",)
        with pool.connection() as again:
            assert again.info.backend_pid == pid  # LIFO: the warm connection comes back
    finally:
        pool.close()
    assert first.closed


def test_a_failing_block_is_rolled_back_and_a_broken_connection_replaced(fresh_db: str) -> None:
    pool = _pool(fresh_db)
    try:
        with pool.connection() as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.commit()
        with pytest.raises(RuntimeError), pool.connection() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("handler failed")
        with pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
            pid = conn.info.backend_pid
            conn.close()  # as if the server had dropped it
        with pool.connection() as conn:
            assert not conn.closed and conn.info.backend_pid != pid
    finally:
        pool.close()


def test_busy_when_every_connection_stays_in_use(fresh_db: str) -> None:
    pool = _pool(fresh_db, size=1, acquire_timeout_s=0.3)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with pool.connection():
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        with pytest.raises(PoolBusy), pool.connection():
            pass
        with pytest.raises(ApiError) as busy, api_connection(pool):
            pass
        assert (busy.value.status, busy.value.code, busy.value.headers) == (503, "BUSY", {"Retry-After": "5"})
    finally:
        release.set()
        t.join(10)
    with pool.connection() as conn:  # the slot came back
        assert conn.execute("SELECT 1").fetchone() == (1,)
    pool.close()


def test_an_unreachable_database_fails_at_once_and_frees_the_slot() -> None:
    pool = _pool(f"host=127.0.0.1 port={free_port()} dbname=x user=x", size=1)
    for _ in range(2):  # the failed attempt gave its slot back: the second is unavailable, not busy
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable), pool.connection():
            pass
        assert time.monotonic() - started < 5
    with pytest.raises(ApiError) as down, api_connection(pool):
        pass
    assert (down.value.status, down.value.code, down.value.headers) == (503, "DB_UNAVAILABLE", {"Retry-After": "10"})


def test_the_api_passes_its_own_errors_through(fresh_db: str) -> None:
    pool = _pool(fresh_db)
    try:
        with pytest.raises(psycopg.errors.UndefinedTable), api_connection(pool) as conn:
            conn.execute("SELECT * FROM no_such_table")
    finally:
        pool.close()
