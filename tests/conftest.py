"""Shared fixtures: one throwaway PostgreSQL cluster per test session, a fresh database per test."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cdc_util import NewCluster

from cdcsync.db.cluster import LocalCluster, throwaway_cluster
from cdcsync.db.migrate import apply_migrations

REPO = Path(__file__).resolve().parents[1]
_db_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run long soaks (marked slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="long soak: pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    """A private cluster (wal_level=logical, fsync off) run as an unprivileged user when root."""
    cluster = throwaway_cluster("cdcsync-test-")
    base = cluster.datadir.parent
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def new_cluster() -> Iterator[NewCluster]:
    """Factory for extra private clusters (a restore target, a careless install...):
    ``new_cluster(conf={"wal_level": "replica"}, start=False, initdb_args=(...))``. Each is
    initialised with ``conf`` appended to postgresql.auto.conf, and destroyed after the test."""
    made: list[LocalCluster] = []

    def make(conf: dict[str, str] | None = None, start: bool = True,
             initdb_args: tuple[str, ...] = ()) -> LocalCluster:
        base = Path(tempfile.mkdtemp(prefix="cdcsync-extra-"))
        os.chmod(base, 0o755)  # the run-as user must reach the data directory inside
        cluster = LocalCluster(base / "pg", fsync=False, initdb_args=initdb_args)
        made.append(cluster)
        cluster.init()
        if conf:
            with open(cluster.datadir / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
                fh.write("".join(f"{k} = {v}\n" for k, v in conf.items()))
        if start:
            cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.destroy()
        shutil.rmtree(cluster.datadir.parent, ignore_errors=True)


@pytest.fixture
def fresh_db(pg_cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of a new, empty database; dropped (with its replication slots) after the test."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    dsn = pg_cluster.create_database(name)
    yield dsn
    _drop_database(pg_cluster, name)


@pytest.fixture
def migrated_db(fresh_db: str) -> str:
    """DSN of a new database with every migration in sql/ applied and the publication created."""
    apply_migrations(fresh_db, REPO / "sql")
    return fresh_db


def _drop_database(cluster: LocalCluster, name: str) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                " WHERE slot_name = %s AND active_pid IS NOT NULL", (slot,)
            )
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _forget_the_config_path() -> Iterator[None]:
    """An in-process ``cdcsync -c X`` (CliRunner) remembers X for the commands it spawns
    (cli_context); the next test must not inherit it (e.g. the 8884 admin's detached apply)."""
    yield
    from cdcsync.cli_context import remember_config_path

    remember_config_path(None)
