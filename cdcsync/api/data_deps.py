"""What every handler on 8881 shares, as FastAPI dependencies: the app's :class:`DataApi` (pool,
validators, rate limiter, limits) and the authenticated client. A router for 8881 imports these,
declares ``api: UsesDataApi, client: Authenticated`` and is one ``include_router`` line in
:func:`cdcsync.api.data_app.create_data_app`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from cdcsync.api.auth import Client, authenticate, presented_key
from cdcsync.api.data_check import ApiChecker
from cdcsync.api.errors import ApiError, record_error
from cdcsync.api.ratelimit import RateLimiter
from cdcsync.db.pool import ConnPool, DatabaseUnavailable, PoolBusy
from cdcsync.spec import Spec

log = logging.getLogger("cdcsync.api.data")


@contextmanager
def api_connection(pool: ConnPool) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection, or the 503 that tells the client when to retry."""
    try:
        with pool.connection() as conn:
            yield conn
    except PoolBusy:
        raise ApiError(503, "BUSY", "服务繁忙，请稍后重试", headers={"Retry-After": "5"}) from None
    except DatabaseUnavailable:
        log.error("cannot connect to the mirror database")
        record_error("database", "数据操作API无法连接镜像数据库")
        raise ApiError(503, "DB_UNAVAILABLE", "镜像数据库暂时无法连接，请稍后重试",
                       headers={"Retry-After": "10"}) from None


@dataclass(frozen=True)
class DataApi:
    """What the handlers share, on ``app.state.data_api`` (a handler declares ``api: UsesDataApi``)."""

    spec: Spec
    checker: ApiChecker
    pool: ConnPool
    limiter: RateLimiter
    max_body: int
    max_records: int
    own_org: str
    # Models for the OpenAPI document's components (FastAPI sees only what routes declare).
    schema_models: list[type[BaseModel]] = dataclass_field(default_factory=list)


async def data_api(request: Request) -> DataApi:
    # async: FastAPI would run a plain function in the threadpool, a thread hop per request
    state: DataApi = request.app.state.data_api
    return state


# The dependencies a handler on 8881 declares: ``api: UsesDataApi, client: Authenticated``.
UsesDataApi = Annotated[DataApi, Depends(data_api)]


async def authenticated(request: Request, api: UsesDataApi) -> Client:
    """The client of the request's key (401/403 otherwise); named in the request log."""
    key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))

    def run() -> Client:
        with api_connection(api.pool) as conn:
            return authenticate(conn, key)

    client = await run_in_threadpool(run)
    request.state.client_name = client.name
    return client


Authenticated = Annotated[Client, Depends(authenticated)]
