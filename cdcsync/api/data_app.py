"""Data-operation API (port 8881): HIS systems push EMR records instead of writing SQL.

For every mirror table ``emr.<table>``:

* ``POST /api/v1/data/<table>`` ``{"records": [...]}`` upserts whole rows (omitted fields are NULL);
* ``DELETE /api/v1/data/<table>`` ``{"keys": [{<primary key fields>}, ...]}`` deletes by primary key.

Records use the spec's field names and the hospital's LOCAL codes. They are checked with the
stream's own compiled validators (structure, types, lengths, formats, cross-field rules), minus
value-domain membership: an unmapped local code is accepted here and quarantined later by the
stream, exactly as if the HIS had written the row with SQL (see
:class:`~cdcsync.api.data_check.ApiChecker`). A request is all or nothing: one failing record →
400 listing every failing record index and field, nothing written. Accepted rows are written to
``emr.*`` in ONE transaction with ``INSERT … ON CONFLICT (pk) DO UPDATE … WHERE IS DISTINCT FROM``,
so they reach the platforms through CDC like any database write, and a repeated request changes
nothing (no new WAL, no duplicate event).

The request models in the OpenAPI document (``/docs``) are generated from the spec, with each
field's Chinese description (:mod:`cdcsync.api.data_schema`); they document the body, the checking
itself is the validators'.
``/docs`` is Swagger UI served from the ``swagger-ui-bundle`` package's files (no CDN: hospital
networks are offline); ``api.data.docs: false`` removes it and ``/openapi.json``.

Each request passes, in this order: the key (401/403, :mod:`cdcsync.api.auth`), the key's rate
limit (429, :mod:`cdcsync.api.ratelimit`), the key's scope for table and operation (403), the body
limits, the key's scope for each record's ``org_code`` (403), then the validators (400).

Layout: routers (:func:`records_router`, :data:`health_router`, :func:`docs_router`) with named
handlers (:class:`TableHandlers`), which declare what they need as FastAPI dependencies
(``UsesDataApi``, ``Authenticated`` from :mod:`cdcsync.api.data_deps`); :func:`create_data_app`
includes the routers.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from psycopg import sql
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool

from cdcsync import __version__
from cdcsync.api.auth import require_org_codes, require_scope
from cdcsync.api.data_check import ApiChecker, validation_failed
from cdcsync.api.data_deps import Authenticated, DataApi, UsesDataApi, api_connection
from cdcsync.api.data_schema import ERRORS_DOC, DeleteResult, ErrorBody, UpsertResult, table_models
from cdcsync.api.errors import ApiError, install_error_handlers
from cdcsync.api.ratelimit import RateLimiter
from cdcsync.api.reminders import router as reminders_router
from cdcsync.db.pool import ConnPool
from cdcsync.mapping.layers import MappingLayers
from cdcsync.settings.api import ApiSettings, api_settings
from cdcsync.spec import Spec, Table, load_spec
from cdcsync.validate.compiler import beijing_now
from cdcsync.validate.reload import RulesHolder

if TYPE_CHECKING:
    from cdcsync.config import Settings


PREFIX = "/api/v1/data"


# --------------------------------------------------------------------------- SQL


def upsert_sql(table: Table) -> sql.Composed:
    cols = [f.name for f in table.fields]
    tbl = sql.Identifier("emr", table.name)
    non_pk = [c for c in cols if c not in table.primary_key]
    ident = sql.Identifier
    return sql.SQL(
        "INSERT INTO {tbl} AS t ({cols}) VALUES ({vals}) ON CONFLICT ({pk}) DO UPDATE SET {sets}"
        " WHERE ({old}) IS DISTINCT FROM ({new}) RETURNING (xmax = 0)"
    ).format(
        tbl=tbl,
        cols=sql.SQL(", ").join(map(ident, cols)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(cols)),
        pk=sql.SQL(", ").join(map(ident, table.primary_key)),
        sets=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=ident(c)) for c in non_pk),
        old=sql.SQL(", ").join(sql.SQL("t.{c}").format(c=ident(c)) for c in non_pk),
        new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{c}").format(c=ident(c)) for c in non_pk),
    )


def delete_sql(table: Table) -> sql.Composed:
    return sql.SQL("DELETE FROM {tbl} WHERE ({pk}) = ({vals})").format(
        tbl=sql.Identifier("emr", table.name),
        pk=sql.SQL(", ").join(map(sql.Identifier, table.primary_key)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(table.primary_key)),
    )


def _db_rejected(exc: psycopg.Error) -> ApiError:
    # Class 22 (data exception) / 23 (constraint): the database refused a value the checks let
    # through. The message text may quote the value, so only the SQLSTATE goes out.
    return ApiError(400, "DB_REJECTED", f"数据库拒绝写入（SQLSTATE {exc.sqlstate}），整批未写入；请检查字段取值",
                    {"sqlstate": exc.sqlstate})


# --------------------------------------------------------------------------- the app


async def read_items(request: Request, api: DataApi, member: str) -> list[Any]:
    """The array ``member`` of the JSON body, within the body and batch limits."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > api.max_body:
        raise _too_large(api.max_body)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > api.max_body:
            raise _too_large(api.max_body)
    try:
        body = orjson.loads(bytes(buf))
    except orjson.JSONDecodeError:
        raise ApiError(400, "INVALID_JSON", "请求体不是合法的 JSON（UTF-8）") from None
    if not isinstance(body, dict) or not isinstance(body.get(member), list):
        raise ApiError(400, "BAD_REQUEST", f"请求体应为 JSON 对象，且含数组字段 {member}")
    extra = sorted(k for k in body if k != member)
    if extra:
        raise ApiError(400, "BAD_REQUEST", f"请求体中有未知字段：{'、'.join(extra)[:200]}（只允许 {member}）")
    items: list[Any] = body[member]
    if not items:
        raise ApiError(400, "BATCH_EMPTY", f"{member} 数组为空")
    if len(items) > api.max_records:
        raise ApiError(413, "BATCH_TOO_LARGE", f"每批最多 {api.max_records} 条，本批 {len(items)} 条；请拆分后重试",
                       {"max_batch_records": api.max_records})
    return items


class TableHandlers:
    """The two endpoints of one mirror table (``POST``/``DELETE {PREFIX}/<table>``); the routes call
    the bound methods :meth:`upsert` and :meth:`delete`."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.upsert_sql, self.delete_sql = upsert_sql(table), delete_sql(table)
        self.names = [f.name for f in table.fields]

    async def upsert(self, request: Request, api: UsesDataApi, client: Authenticated) -> JSONResponse:
        with api.limiter.slot(client.name):
            require_scope(client, self.table.name, "upsert")
            items = await read_items(request, api, "records")
            require_org_codes(client, api.own_org, items, "记录")
            counts = await run_in_threadpool(self.check_and_write, api, items)
        return JSONResponse({"table": self.table.name, "received": len(items), **counts})

    async def delete(self, request: Request, api: UsesDataApi, client: Authenticated) -> JSONResponse:
        with api.limiter.slot(client.name):
            require_scope(client, self.table.name, "delete")
            items = await read_items(request, api, "keys")
            require_org_codes(client, api.own_org, items, "主键")
            deleted = await run_in_threadpool(self.check_and_delete, api, items)
        return JSONResponse({"table": self.table.name, "received": len(items), "deleted": deleted,
                             "not_found": len(items) - deleted})

    def check_and_write(self, api: DataApi, items: list[Any]) -> dict[str, int]:
        now = beijing_now()
        rows: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for i, rec in enumerate(items):
            row, errs = api.checker.check(self.table, i, rec, now)
            if errs:
                errors.extend(errs)
            elif row is not None:
                rows.append(row)
        if errors:
            raise validation_failed(errors, "记录")
        return self.write_rows(api, rows)

    def check_and_delete(self, api: DataApi, items: list[Any]) -> int:
        keys: list[tuple[Any, ...]] = []
        errors: list[dict[str, Any]] = []
        for i, k in enumerate(items):
            key, errs = api.checker.check_key(self.table, i, k)
            errors.extend(errs)
            if key is not None:
                keys.append(key)
        if errors:
            raise validation_failed(errors, "主键")
        return self.delete_rows(api, keys)

    def write_rows(self, api: DataApi, rows: list[dict[str, Any]]) -> dict[str, int]:
        with api_connection(api.pool) as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(self.upsert_sql, [[r[n] for n in self.names] for r in rows], returning=True)
                    inserted = updated = 0
                    while True:
                        row = cur.fetchone()
                        if row is not None:
                            inserted += bool(row[0])
                            updated += not row[0]
                        if not cur.nextset():
                            break
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                raise _db_rejected(exc) from None
        return {"inserted": inserted, "updated": updated, "unchanged": len(rows) - inserted - updated}

    def delete_rows(self, api: DataApi, keys: list[tuple[Any, ...]]) -> int:
        with api_connection(api.pool) as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(self.delete_sql, keys)
                    return max(cur.rowcount, 0)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                raise _db_rejected(exc) from None


def records_router(spec: Spec, max_records: int, schema_models: list[type[BaseModel]]) -> APIRouter:
    """``POST``/``DELETE {PREFIX}/<table>`` for every table the HIS writes; appends each table's body
    models to ``schema_models`` (the request bodies are documented by reference)."""
    router = APIRouter()
    for table in spec.tables:
        if table.writer != "his":  # cdcsync writes it itself (the workbench's cards): not the HIS's to write
            continue
        _, upsert_m, _, delete_m = table_models(table, max_records)
        schema_models.extend([upsert_m, delete_m])
        handlers = TableHandlers(table)
        tags: list[str | Enum] = [f"{table.comment}（{table.name}）"]
        body_ref = {"$ref": f"#/components/schemas/{upsert_m.__name__}"}
        router.add_api_route(
            f"{PREFIX}/{table.name}", handlers.upsert, methods=["POST"], tags=tags,
            summary=f"新增或更新{table.comment}", operation_id=f"upsert_{table.name}",
            description=f"按主键（{'、'.join(table.primary_key)}）新增或整行更新 emr.{table.name}；"
                        "全部成功或全部不写入；重复提交同样内容不产生变更。",
            responses={200: {"model": UpsertResult, "description": "已写入"}, **ERRORS_DOC},
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_ref}}}},
        )
        del_ref = {"$ref": f"#/components/schemas/{delete_m.__name__}"}
        router.add_api_route(
            f"{PREFIX}/{table.name}", handlers.delete, methods=["DELETE"], tags=tags,
            summary=f"按主键删除{table.comment}", operation_id=f"delete_{table.name}",
            description="不存在的主键不算错误（计入 not_found）；全部成功或全部不删除。",
            responses={200: {"model": DeleteResult, "description": "已删除"}, **ERRORS_DOC},
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": del_ref}}}},
        )
    return router


health_router = APIRouter()


@health_router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_data_app(settings: Settings, *, rules: RulesHolder | None = None, spec: Spec | None = None,
                    conninfo: Callable[[], str] | None = None, api: ApiSettings | None = None) -> FastAPI:
    """The 8881 app. ``settings``: cdcsync Settings; ``api`` overrides its ``api`` section.

    Endpoints come in routers; another group of endpoints on 8881 is one more ``include_router``
    below, its handlers declaring ``client: Authenticated`` and ``api: UsesDataApi``."""
    api = api_settings(settings, api)
    spec = spec or (rules.spec if rules is not None else load_spec())
    rules = rules or RulesHolder.for_layers(MappingLayers.from_settings(settings), spec)
    state = DataApi(
        spec=spec, checker=ApiChecker(rules),
        pool=ConnPool(conninfo or (api.database or settings.database).conninfo, application_name="cdcsync-api"),
        limiter=RateLimiter(api.rate_limit_per_second, api.rate_limit_burst, api.max_concurrent_per_client),
        max_body=api.max_body_bytes, max_records=api.max_batch_records, own_org=settings.org_code,
        schema_models=[ErrorBody, UpsertResult, DeleteResult],
    )
    app = FastAPI(
        title="cdcsync 数据操作 API",
        version=__version__,
        description=(
            "院内系统（HIS/EMR）以 JSON 推送标化 EMR 数据，等同于写入镜像库 emr.*。"
            "字段名与数据集规范一致，编码字段填写院内本地代码。"
            f"认证：Authorization: Bearer <密钥> 或 X-Api-Key。每批最多 {state.max_records} 条记录，"
            f"请求体最大 {state.max_body} 字节。每个密钥只能写入授权的表、操作与医疗机构代码（否则 403）；"
            f"每个密钥每秒最多 {api.rate_limit_per_second:g} 个请求、同时最多 {api.max_concurrent_per_client} 个"
            f"（否则 429）。数据集规范版本 {spec.version}。"
        ),
        docs_url=None, redoc_url=None, openapi_url="/openapi.json" if api.data.docs else None,
    )
    install_error_handlers(app, "data")
    app.state.data_api = state
    app.state.pool = state.pool  # closed by the server on shutdown
    app.include_router(records_router(spec, state.max_records, state.schema_models))
    app.include_router(reminders_router)  # reminders for the HIS's popups (issue 15)
    app.include_router(health_router)
    if api.data.docs:
        app.include_router(docs_router(app.title))
    app.openapi = lambda: _openapi(app, state.schema_models)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, schema_models: list[type[BaseModel]]) -> dict[str, Any]:
    """FastAPI's document plus the spec-generated body models and the two ways to present a key."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema([(m, "validation") for m in schema_models],
                                     ref_template="#/components/schemas/{model}")
        comps = doc.setdefault("components", {})
        comps.setdefault("schemas", {}).update(defs.get("$defs", {}))
        comps["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "cdcsync api-keys add 生成的密钥"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
        }
        doc["security"] = [{"bearer": []}, {"apiKey": []}]
        app.openapi_schema = doc
    return app.openapi_schema


# Swagger UI's files, served from the swagger-ui-bundle package (nothing from a CDN).
DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "favicon-32x32.png": "image/png"}


def docs_router(title: str) -> APIRouter:
    """``/docs`` (Swagger UI) and its assets under ``/docs/static/``, all local."""
    from swagger_ui_bundle import swagger_ui_path

    assets = Path(swagger_ui_path)
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=title,
            swagger_js_url="/docs/static/swagger-ui-bundle.js", swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
            # No validator badge: it would send the schema to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @router.get("/docs/static/{name}")
    async def docs_asset(name: str) -> FileResponse:
        if name not in DOCS_ASSETS:
            raise ApiError(404, "NOT_FOUND", "请求的地址不存在")
        return FileResponse(assets / name, media_type=DOCS_ASSETS[name],
                            headers={"Cache-Control": "max-age=86400"})

    return router


def _too_large(max_body: int) -> ApiError:
    return ApiError(413, "BODY_TOO_LARGE", f"请求体超过上限 {max_body} 字节；请减少每批记录数",
                    {"max_body_bytes": max_body})


__all__ = [
    "PREFIX",
    "TableHandlers",
    "create_data_app",
    "delete_sql",
    "docs_router",
    "health_router",
    "records_router",
    "upsert_sql",
]
