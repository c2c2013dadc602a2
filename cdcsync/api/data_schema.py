"""The data API's (8881) OpenAPI models, generated from the spec with each field's Chinese
description. They document the bodies; the checking itself is :mod:`cdcsync.api.data_check`'s."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model
from pydantic import Field as PField

from cdcsync.spec import TIMELINESS, Field, Table
from cdcsync.validate.compiler import INT_BOUNDS
from cdcsync.validate.formats import FORMAT_TEXT

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


ERRORS_DOC: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "请求或记录未通过校验（整批未写入）"},
    401: {"model": ErrorBody, "description": "缺少或错误的 API 密钥"},
    403: {"model": ErrorBody, "description": "API 密钥已吊销或过期，或表、操作、医疗机构代码超出该密钥的授权范围"
                                             "（整批未写入）"},
    413: {"model": ErrorBody, "description": "请求体或批量记录数超过上限"},
    429: {"model": ErrorBody, "description": "该密钥请求过于频繁或并发过多；按 Retry-After（秒）等待后重试"},
    503: {"model": ErrorBody, "description": "数据库暂时不可用"},
}
