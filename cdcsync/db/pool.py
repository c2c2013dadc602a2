"""A few reusable connections to the mirror database, shared by request threads (the data API).

Connections are opened on demand (none at start-up), at most ``size`` at a time; one that broke
is dropped, one whose user raised is rolled back first. Acquiring fails fast and says why:
:class:`PoolBusy` when every connection stays in use for ``acquire_timeout_s``,
:class:`DatabaseUnavailable` when a new connection cannot be opened — callers answer each
differently (the API: 503 with its own code and Retry-After).

Not ``psycopg_pool``: its workers open connections in the background and retry a failed connect
until the pool timeout, so during a database outage a request would wait the whole timeout and
come back "busy" instead of failing at once as unavailable; and the conninfo here is a callable,
re-read at each connect (the password file can change while the service runs).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


class PoolBusy(RuntimeError):
    """No connection became free in time."""


class DatabaseUnavailable(RuntimeError):
    """A new connection could not be opened (the message carries no connection details)."""


class ConnPool:
    """Thread-safe; LIFO, so a quiet service keeps reusing one warm connection."""

    def __init__(self, conninfo: Callable[[], str], size: int = 4, *, application_name: str,
                 acquire_timeout_s: float = 30.0, connect_timeout_s: int = 10) -> None:
        self._conninfo = conninfo
        self._application_name = application_name
        self._acquire_timeout_s = acquire_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for the block; raises :class:`PoolBusy` / :class:`DatabaseUnavailable`
        before the block runs, never from inside it."""
        if not self._slots.acquire(timeout=self._acquire_timeout_s):
            raise PoolBusy
        conn: psycopg.Connection[Any] | None = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = None
            if conn is None or conn.closed or conn.broken:
                try:
                    conn = psycopg.connect(self._conninfo(), connect_timeout=self._connect_timeout_s,
                                           application_name=self._application_name)
                except psycopg.OperationalError:
                    raise DatabaseUnavailable from None
            try:
                yield conn
            except BaseException:
                if not conn.closed:
                    try:
                        conn.rollback()
                    except psycopg.Error:
                        conn.close()
                raise
            if not conn.closed and not conn.broken:
                self._idle.put(conn)
                conn = None
        finally:
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
