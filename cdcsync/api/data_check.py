"""How the data API (8881) checks what a client sends: the stream's compiled validators, applied
the way the database path would be (see :class:`ApiChecker`), and the 400 listing every problem."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from psycopg.types.json import Jsonb

from cdcsync.api.errors import ApiError
from cdcsync.spec import Field, Table
from cdcsync.validate import NOT_IN_DOMAIN, TYPE, UNMAPPED, Violation
from cdcsync.validate.compiler import TYPE_TEXT, coerce
from cdcsync.validate.reload import RulesHolder

log = logging.getLogger("cdcsync.api.data")

# Rule ids of the API's own structural checks (the validators' ids are REQ001, TYP001, …, VS001 …).
UNKNOWN_FIELD = "STR001"
NOT_OBJECT = "STR002"
BAD_TEXT = "STR003"
UNCHECKABLE = "STR004"
_DOMAIN_RULES = frozenset({UNMAPPED, NOT_IN_DOMAIN})
_MAX_ERRORS = 1000  # a 400 lists at most this many problems (a 1000-record batch can have 50 000)


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


def validation_failed(errors: list[dict[str, Any]], what: str) -> ApiError:
    indexes = sorted({e["index"] for e in errors})
    # People count from one; the JSON keeps the zero-based index for programs.
    shown = "、".join(str(i + 1) for i in indexes[:20]) + (f" 等 {len(indexes)} 条" if len(indexes) > 20 else "")
    return ApiError(400, "VALIDATION_FAILED", f"第 {shown} 条{what}未通过校验，整批未写入",
                    {"failed_indexes": indexes, "errors": errors[:_MAX_ERRORS],
                     "errors_truncated": len(errors) > _MAX_ERRORS})
