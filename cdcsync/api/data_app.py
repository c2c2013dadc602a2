"""Data-operation API (port 8881): HIS systems push EMR records instead of writing SQL.

For every mirror table ``emr.<table>``:

* ``POST /api/v1/data/<table>`` ``{"records": [...]}`` upserts whole rows (omitted fields are NULL);
* ``DELETE /api/v1/data/<table>`` ``{"keys": [{<primary key fields>}, ...]}`` deletes by primary key.

Records use the spec's field names and the hospital's LOCAL codes. They are checked with the
stream's own compiled validators (structure, types, lengths, formats, cross-field rules), minus
value-domain membership: an unmapped local code is accepted here and quarantined later by the
stream, exactly as if the HIS had written the row with SQL (see :class:`ApiChecker`). A request is
all or nothing: one failing record → 400 listing every failing record index and field, nothing
written. Accepted rows are written to ``emr.*`` in ONE transaction with ``INSERT … ON CONFLICT
(pk) DO UPDATE … WHERE IS DISTINCT FROM``, so they reach the platforms through CDC like any
database write, and a repeated request changes nothing (no new WAL, no duplicate event).

The request models in the OpenAPI document (``/docs``) are generated from the spec, with each
field's Chinese description; they document the body, the checking itself is the validators'.
``/docs`` is Swagger UI served from the ``swagger-ui-bundle`` package's files (no CDN: hospital
networks are offline); ``api.data.docs: false`` removes it and ``/openapi.json``.

Each request passes, in this order: the key (401/403, :mod:`cdcsync.api.auth`), the key's rate
limit (429, :mod:`cdcsync.api.ratelimit`), the key's scope for table and operation (403), the body
limits, the key's scope for each record's ``org_code`` (403), then the validators (400).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, create_model
from pydantic import Field as PField
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool

from cdcsync import __version__
from cdcsync.api.auth import Client, authenticate, presented_key, require_org_codes, require_scope
from cdcsync.api.errors import ApiError, install_error_handlers, record_error
from cdcsync.api.ratelimit import RateLimiter
from cdcsync.api.reminders import add_reminder_routes
from cdcsync.api.settings import ApiSettings, api_settings
from cdcsync.config import Settings
from cdcsync.mapping.layers import MappingLayers
from cdcsync.mapping.reload import RulesHolder
from cdcsync.spec import TIMELINESS, Field, Spec, Table, load_spec
from cdcsync.validate import NOT_IN_DOMAIN, TYPE, UNMAPPED, Violation
from cdcsync.validate.compiler import INT_BOUNDS, TYPE_TEXT, beijing_now, coerce
from cdcsync.validate.formats import FORMAT_TEXT

log = logging.getLogger("cdcsync.api.data")

PREFIX = "/api/v1/data"
# Rule ids of the API's own structural checks (the validators' ids are REQ001, TYP001, …, VS001 …).
UNKNOWN_FIELD = "STR001"
NOT_OBJECT = "STR002"
BAD_TEXT = "STR003"
UNCHECKABLE = "STR004"
_DOMAIN_RULES = frozenset({UNMAPPED, NOT_IN_DOMAIN})
_MAX_ERRORS = 1000  # a 400 lists at most this many problems (a 1000-record batch can have 50 000)


# --------------------------------------------------------------------------- connections


class ConnPool:
    """A few reusable connections (psycopg_pool is not a dependency). Thread-safe."""

    def __init__(self, conninfo: Callable[[], str], size: int = 4) -> None:
        self._conninfo = conninfo
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._slots.acquire(timeout=30):
            raise ApiError(503, "BUSY", "服务繁忙，请稍后重试", headers={"Retry-After": "5"})
        conn: psycopg.Connection[Any] | None = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = None
            if conn is None or conn.closed or conn.broken:
                try:
                    conn = psycopg.connect(self._conninfo(), connect_timeout=10,
                                           application_name="cdcsync-api")
                except psycopg.OperationalError:
                    log.error("cannot connect to the mirror database")
                    record_error("database", "数据操作API无法连接镜像数据库")
                    raise ApiError(503, "DB_UNAVAILABLE", "镜像数据库暂时无法连接，请稍后重试",
                                   headers={"Retry-After": "10"}) from None
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
            if conn is not None and conn.closed:
                conn = None
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


# --------------------------------------------------------------------------- checking


def _coerce(f: Field, x: Any) -> Any:
    """The value to write for a field that passed the validators."""
    return Jsonb(x) if f.type == "jsonb" and x is not None else coerce(f, x)


class ApiChecker:
    """The stream's compiled validators, applied the way the database path would be.

    Hook the compiler does not offer (yet): a mode skipping value-domain membership. This adapter
    runs the full check and drops (a) MAP001/DOM001 and (b) violations of cross-field rules that
    read a coded field whose code did not map — such a rule saw ``None`` for the national code, so
    its verdict is not the one the stream will reach once the mapping exists. What remains is what
    the stream would quarantine whatever the mapping: the API rejects it, the database path would
    quarantine it.
    """

    def __init__(self, holder: RulesHolder) -> None:
        self.holder = holder
        self._rule_fields: dict[str, dict[str, frozenset[str]]] = {
            t.name: {r.id: frozenset(r.fields) for r in t.rules} for t in holder.spec.tables
        }

    def check(self, table: Table, index: int, rec: Any, now: dt.datetime
              ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        if not isinstance(rec, dict):
            return None, [_err(index, None, NOT_OBJECT, f"第 {index + 1} 条记录应为 JSON 对象")]
        errors: list[dict[str, Any]] = []
        screened: dict[str, Any] = {}
        bad_type: set[str] = set()
        for key, value in rec.items():
            if not table.has_field(key):
                errors.append(_err(index, key, UNKNOWN_FIELD, f"未知字段 {key}：表 {table.name} 没有该字段"))
                continue
            f = table.field(key)
            if isinstance(value, dict | list) and f.type != "jsonb":
                # Caught here so rules never see unhashable values.
                errors.append(_err(index, key, TYPE, f"{f.comment}（{key}）应为{TYPE_TEXT[f.type]}"))
                bad_type.add(key)
                continue
            if isinstance(value, str) and "\x00" in value:
                errors.append(_err(index, key, BAD_TEXT, f"{f.comment}（{key}）含有不允许的字符 \\u0000"))
                bad_type.add(key)
                continue
            screened[key] = value
        compiled = self.holder.current().table(table.name)
        try:
            _, violations = compiled.check(screened, now)
        except Exception as exc:  # noqa: BLE001 - a validator bug must not become a 500 or a write
            log.error("validator of %s failed on record %d: %s", table.name, index, type(exc).__name__)
            return None, [*errors, _err(index, None, UNCHECKABLE, "记录无法校验，请检查各字段的类型")]
        unmapped = {v.field for v in violations if v.rule_id in _DOMAIN_RULES}
        rule_fields = self._rule_fields[table.name]
        for v in violations:
            if v.rule_id in _DOMAIN_RULES or (v.field in bad_type):
                continue
            if unmapped and v.rule_id in rule_fields and rule_fields[v.rule_id] & unmapped:
                continue
            errors.append(_violation(index, v))
        if errors:
            return None, errors
        return {f.name: _coerce(f, rec.get(f.name)) for f in table.fields}, []

    def check_key(self, table: Table, index: int, key: Any) -> tuple[tuple[Any, ...] | None, list[dict[str, Any]]]:
        """A primary key of a DELETE: exactly the key fields, each non-empty and of its type."""
        if not isinstance(key, dict):
            return None, [_err(index, None, NOT_OBJECT, f"第 {index + 1} 个主键应为 JSON 对象")]
        pk_text = "、".join(table.primary_key)
        errors = [_err(index, k, UNKNOWN_FIELD, f"{k} 不是表 {table.name} 的主键字段（主键：{pk_text}）")
                  for k in key if k not in table.primary_key]
        values: list[Any] = []
        for name in table.primary_key:
            f = table.field(name)
            x = key.get(name)
            label = f"{f.comment}（{name}）"
            if x is None or x == "":
                errors.append(_err(index, name, "REQ001", f"{label}为主键字段，不能为空"))
                continue
            if isinstance(x, dict | list) or (f.type in ("varchar", "text") and not isinstance(x, str)):
                errors.append(_err(index, name, TYPE, f"{label}应为{TYPE_TEXT[f.type]}"))
                continue
            if isinstance(x, str) and "\x00" in x:
                errors.append(_err(index, name, BAD_TEXT, f"{label}含有不允许的字符 \\u0000"))
                continue
            if f.length is not None and isinstance(x, str) and len(x) > f.length:
                errors.append(_err(index, name, "LEN001", f"{label}超过最大长度 {f.length} 个字符"))
                continue
            v = _coerce(f, x)
            if v is None:
                errors.append(_err(index, name, TYPE, f"{label}应为{TYPE_TEXT[f.type]}"))
                continue
            values.append(v)
        return (tuple(values) if not errors else None), errors


def _err(index: int, field: str | None, rule_id: str, message: str) -> dict[str, Any]:
    return {"index": index, "field": field, "rule_id": rule_id, "message": message}


def _violation(index: int, v: Violation) -> dict[str, Any]:
    return _err(index, v.field, v.rule_id, v.message)


def _failed(errors: list[dict[str, Any]], what: str) -> ApiError:
    indexes = sorted({e["index"] for e in errors})
    # People count from one; the JSON keeps the zero-based index for programs.
    shown = "、".join(str(i + 1) for i in indexes[:20]) + (f" 等 {len(indexes)} 条" if len(indexes) > 20 else "")
    return ApiError(400, "VALIDATION_FAILED", f"第 {shown} 条{what}未通过校验，整批未写入",
                    {"failed_indexes": indexes, "errors": errors[:_MAX_ERRORS],
                     "errors_truncated": len(errors) > _MAX_ERRORS})


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


# --------------------------------------------------------------------------- OpenAPI models


# Formats simple enough to state as a JSON-schema pattern (the others are described in words).
_FORMAT_PATTERNS = {"org_code": r"^[0-9A-Z]{6,22}$", "postal_code": r"^[0-8][0-9]{5}$"}


def _field_annotation(f: Field) -> tuple[Any, Any]:
    desc = f.comment
    if f.domain_name:
        desc += f"（值域：{f.domain_name}，填写院内本地代码）"
    if f.format:
        desc += f"（格式：{FORMAT_TEXT.get(f.format, f.format)}）"
    if f.unit:
        desc += f"（单位：{f.unit}）"
    if f.pii:
        desc += "（个人信息）"
    kw: dict[str, Any] = {"title": f.comment, "description": desc}
    py: Any
    if f.type in ("varchar", "text"):
        py = str
        if f.length is not None:
            kw["max_length"] = f.length
        if f.required:
            kw["min_length"] = 1
        if f.format in _FORMAT_PATTERNS:
            kw["pattern"] = _FORMAT_PATTERNS[f.format]
    elif f.type in INT_BOUNDS:
        py = int
        kw["ge"], kw["le"] = -INT_BOUNDS[f.type], INT_BOUNDS[f.type] - 1
    elif f.type == "numeric":
        py = float
        if f.precision is not None:
            lim = 10 ** (f.precision - (f.scale or 0))
            kw["lt"], kw["gt"] = lim, -lim
    elif f.type == "boolean":
        py = bool
    elif f.type == "date":
        py = dt.date
    elif f.type in ("timestamp", "timestamptz"):
        py = dt.datetime
        kw["description"] = desc + "（北京时间，如 2024-05-06T08:30:00）"
    elif f.type == "time":
        py = dt.time
    else:
        py = Any
    if f.required:
        return py, PField(..., **kw)
    return py | None, PField(None, **kw)


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_"))


Models = tuple[type[BaseModel], type[BaseModel], type[BaseModel], type[BaseModel]]


def table_models(table: Table, max_records: int) -> Models:
    """(record, upsert body, key, delete body) models of one table, for the OpenAPI document."""
    cfg = ConfigDict(extra="forbid")
    doc = f"{table.comment}（emr.{table.name}，上报时效：{TIMELINESS[table.timeliness]}）"
    fields: dict[str, Any] = {f.name: _field_annotation(f) for f in table.fields}
    record: type[BaseModel] = create_model(f"{_camel(table.name)}Record", __config__=cfg, __doc__=doc, **fields)
    upsert: type[BaseModel] = create_model(
        f"{_camel(table.name)}Upsert", __config__=cfg, __doc__=f"新增或更新{table.comment}（按主键幂等）",
        records=(list[record], PField(..., min_length=1, max_length=max_records,
                                      description=f"记录数组，每批最多 {max_records} 条")),
    )
    key_fields: dict[str, Any] = {
        n: (_field_annotation(table.field(n))[0], PField(..., description=table.field(n).comment))
        for n in table.primary_key
    }
    key: type[BaseModel] = create_model(f"{_camel(table.name)}Key", __config__=cfg,
                                        __doc__=f"{table.comment}主键", **key_fields)
    delete: type[BaseModel] = create_model(
        f"{_camel(table.name)}Delete", __config__=cfg, __doc__=f"按主键删除{table.comment}",
        keys=(list[key], PField(..., min_length=1, max_length=max_records,
                                description=f"主键数组，每批最多 {max_records} 个")),
    )
    return record, upsert, key, delete


class ErrorItem(BaseModel):
    index: int = PField(description="出错记录在数组中的序号（从 0 开始；message 中的“第 N 条”从 1 开始）")
    field: str | None = PField(description="出错字段（整条记录的问题为 null）")
    rule_id: str = PField(description="规则编号：REQ001 必填、TYP001 类型、LEN001 长度、FMT001 格式、"
                                      "STR001 未知字段、VS001 等跨字段规则")
    message: str = PField(description="中文说明（不含个人信息的取值）")


class ErrorBody(BaseModel):
    code: str = PField(description="稳定的错误代码，如 VALIDATION_FAILED、AUTH_MISSING")
    message: str = PField(description="中文说明")
    failed_indexes: list[int] | None = None
    errors: list[ErrorItem] | None = None


class UpsertResult(BaseModel):
    table: str
    received: int = PField(description="收到的记录数")
    inserted: int = PField(description="新增的记录数")
    updated: int = PField(description="内容有变化而更新的记录数")
    unchanged: int = PField(description="与库中完全相同、未改动的记录数（重复提交）")


class DeleteResult(BaseModel):
    table: str
    received: int
    deleted: int = PField(description="删除的记录数")
    not_found: int = PField(description="库中本不存在的主键数")


_ERRORS_DOC: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "请求或记录未通过校验（整批未写入）"},
    401: {"model": ErrorBody, "description": "缺少或错误的 API 密钥"},
    403: {"model": ErrorBody, "description": "API 密钥已吊销或过期，或表、操作、医疗机构代码超出该密钥的授权范围"
                                             "（整批未写入）"},
    413: {"model": ErrorBody, "description": "请求体或批量记录数超过上限"},
    429: {"model": ErrorBody, "description": "该密钥请求过于频繁或并发过多；按 Retry-After（秒）等待后重试"},
    503: {"model": ErrorBody, "description": "数据库暂时不可用"},
}


# --------------------------------------------------------------------------- the app


def create_data_app(settings: Settings, *, rules: RulesHolder | None = None, spec: Spec | None = None,
                    conninfo: Callable[[], str] | None = None, api: ApiSettings | None = None) -> FastAPI:
    """The 8881 app. ``settings``: cdcsync Settings; ``api`` overrides its ``api`` section."""
    api = api_settings(settings, api)
    spec = spec or (rules.spec if rules is not None else load_spec())
    rules = rules or RulesHolder.for_layers(MappingLayers.from_settings(settings), spec)
    checker = ApiChecker(rules)
    pool = ConnPool(conninfo or (api.database or settings.database).conninfo)
    max_body, max_records = api.max_body_bytes, api.max_batch_records
    limiter = RateLimiter(api.rate_limit_per_second, api.rate_limit_burst, api.max_concurrent_per_client)
    own_org = settings.org_code

    app = FastAPI(
        title="cdcsync 数据操作 API",
        version=__version__,
        description=(
            "院内系统（HIS/EMR）以 JSON 推送标化 EMR 数据，等同于写入镜像库 emr.*。"
            "字段名与数据集规范一致，编码字段填写院内本地代码。"
            f"认证：Authorization: Bearer <密钥> 或 X-Api-Key。每批最多 {max_records} 条记录，"
            f"请求体最大 {max_body} 字节。每个密钥只能写入授权的表、操作与医疗机构代码（否则 403）；"
            f"每个密钥每秒最多 {api.rate_limit_per_second:g} 个请求、同时最多 {api.max_concurrent_per_client} 个"
            f"（否则 429）。数据集规范版本 {spec.version}。"
        ),
        docs_url=None, redoc_url=None, openapi_url="/openapi.json" if api.data.docs else None,
    )
    install_error_handlers(app, "data")
    app.state.pool = pool
    schema_models: list[type[BaseModel]] = [ErrorBody, UpsertResult, DeleteResult]

    async def client_of(request: Request) -> Client:
        key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))

        def run() -> Client:
            with pool.connection() as conn:
                return authenticate(conn, key)

        client = await run_in_threadpool(run)
        request.state.client_name = client.name
        return client

    async def items_of(request: Request, member: str) -> list[Any]:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise _too_large(max_body)
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > max_body:
                raise _too_large(max_body)
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
        if len(items) > max_records:
            raise ApiError(413, "BATCH_TOO_LARGE", f"每批最多 {max_records} 条，本批 {len(items)} 条；请拆分后重试",
                           {"max_batch_records": max_records})
        return items

    def add_routes(table: Table) -> None:
        record, upsert_m, key_m, delete_m = table_models(table, max_records)
        schema_models.extend([upsert_m, delete_m])
        ins, dele = upsert_sql(table), delete_sql(table)
        names = [f.name for f in table.fields]

        def write_rows(rows: list[dict[str, Any]]) -> dict[str, int]:
            with pool.connection() as conn:
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        cur.executemany(ins, [[r[n] for n in names] for r in rows], returning=True)
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

        def delete_rows(keys: list[tuple[Any, ...]]) -> int:
            with pool.connection() as conn:
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        cur.executemany(dele, keys)
                        return max(cur.rowcount, 0)
                except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                    raise _db_rejected(exc) from None

        async def upsert(request: Request) -> JSONResponse:
            client = await client_of(request)
            with limiter.slot(client.name):
                require_scope(client, table.name, "upsert")
                items = await items_of(request, "records")
                require_org_codes(client, own_org, items, "记录")
                counts = await run_in_threadpool(check_and_write, items)
            return JSONResponse({"table": table.name, "received": len(items), **counts})

        def check_and_write(items: list[Any]) -> dict[str, int]:
            now = beijing_now()
            rows: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            for i, rec in enumerate(items):
                row, errs = checker.check(table, i, rec, now)
                if errs:
                    errors.extend(errs)
                elif row is not None:
                    rows.append(row)
            if errors:
                raise _failed(errors, "记录")
            return write_rows(rows)

        async def delete(request: Request) -> JSONResponse:
            client = await client_of(request)
            with limiter.slot(client.name):
                require_scope(client, table.name, "delete")
                items = await items_of(request, "keys")
                require_org_codes(client, own_org, items, "主键")
                deleted = await run_in_threadpool(check_and_delete, items)
            return JSONResponse({"table": table.name, "received": len(items), "deleted": deleted,
                                 "not_found": len(items) - deleted})

        def check_and_delete(items: list[Any]) -> int:
            keys: list[tuple[Any, ...]] = []
            errors: list[dict[str, Any]] = []
            for i, k in enumerate(items):
                key, errs = checker.check_key(table, i, k)
                errors.extend(errs)
                if key is not None:
                    keys.append(key)
            if errors:
                raise _failed(errors, "主键")
            return delete_rows(keys)

        body_ref = {"$ref": f"#/components/schemas/{upsert_m.__name__}"}
        app.add_api_route(
            f"{PREFIX}/{table.name}", upsert, methods=["POST"], tags=[f"{table.comment}（{table.name}）"],
            summary=f"新增或更新{table.comment}", operation_id=f"upsert_{table.name}",
            description=f"按主键（{'、'.join(table.primary_key)}）新增或整行更新 emr.{table.name}；"
                        "全部成功或全部不写入；重复提交同样内容不产生变更。",
            responses={200: {"model": UpsertResult, "description": "已写入"}, **_ERRORS_DOC},
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_ref}}}},
        )
        del_ref = {"$ref": f"#/components/schemas/{delete_m.__name__}"}
        app.add_api_route(
            f"{PREFIX}/{table.name}", delete, methods=["DELETE"], tags=[f"{table.comment}（{table.name}）"],
            summary=f"按主键删除{table.comment}", operation_id=f"delete_{table.name}",
            description="不存在的主键不算错误（计入 not_found）；全部成功或全部不删除。",
            responses={200: {"model": DeleteResult, "description": "已删除"}, **_ERRORS_DOC},
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": del_ref}}}},
        )

    for t in spec.tables:
        if t.writer == "his":  # a table cdcsync writes itself (the workbench's cards) is not the HIS's to write
            add_routes(t)
    add_reminder_routes(app, pool, client_of, limiter)  # reminders for the HIS's popups (issue 15)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if api.data.docs:
        add_docs_routes(app)

    def openapi() -> dict[str, Any]:
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

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# Swagger UI's files, served from the swagger-ui-bundle package (nothing from a CDN).
DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "favicon-32x32.png": "image/png"}


def add_docs_routes(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and its assets under ``/docs/static/``, all local."""
    from swagger_ui_bundle import swagger_ui_path

    assets = Path(swagger_ui_path)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=app.title,
            swagger_js_url="/docs/static/swagger-ui-bundle.js", swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
            # No validator badge: it would send the schema to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/static/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        if name not in DOCS_ASSETS:
            raise ApiError(404, "NOT_FOUND", "请求的地址不存在")
        return FileResponse(assets / name, media_type=DOCS_ASSETS[name],
                            headers={"Cache-Control": "max-age=86400"})


def _too_large(max_body: int) -> ApiError:
    return ApiError(413, "BODY_TOO_LARGE", f"请求体超过上限 {max_body} 字节；请减少每批记录数",
                    {"max_body_bytes": max_body})


__all__ = ["ApiChecker", "ConnPool", "create_data_app", "delete_sql", "table_models", "upsert_sql"]
