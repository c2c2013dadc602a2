"""Dataset spec model and loader.

`load_spec()` reads cdcsync/spec/dataset.yaml (or another file), checks it structurally and returns
frozen dataclasses. Every problem is a `SpecError` whose message is one line naming the file and
the key path, e.g. ``dataset.yaml: tables.patient.fields[3].type: expected one of varchar, … got "strng"``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cdcsync import yamlfile

DEFAULT_PATH = Path(__file__).with_name("dataset.yaml")

# The fixed list of national value domains (mappings/national/<id>.yaml): id -> Chinese name.
DOMAINS: Mapping[str, str] = MappingProxyType({
    "id_type": "身份证件类别",
    "sex": "性别",
    "ethnicity": "民族",
    "marital_status": "婚姻状况",
    "nationality": "国籍",
    "education": "文化程度",
    "occupation": "职业",
    "population_group": "人群分类",
    "region": "行政区划/国家疾控地区代码",
    "org": "机构代码",
    "patient_belong": "病人属于",
    "notifiable_disease": "法定传染病病种",
    "icd10": "ICD-10诊断",
    "diagnosis_status": "诊断状态/病例分类",
    "case_type": "病例类型",
    "clinical_severity": "临床严重程度",
    "death_diagnosis": "传报卡直接死亡诊断",
    "lab_conclusion": "传报卡实验室检测结论",
    "infection_route": "血源及性传播/感染途径",
    "contact_mode": "接触方式",
    "card_category": "报告卡类别",
    "visit_type": "就诊类型",
    "diagnosis_category": "诊断类别",
    "department": "科室",
    "lab_item": "检验项目",
    "specimen_type": "标本类型",
    "qualitative_result": "定性结果",
    "abnormal_flag": "异常标志",
    "pathogen": "病原体",
    "exam_type": "检查类型",
    "drug": "药品",
    "route": "给药途径",
    "order_category": "医嘱类别",
    "discharge_mode": "离院方式",
    "admission_route": "入院途径",
    "document_type": "文书类型",
    "death_cause": "死亡原因",
    "modify_flag": "修改标志",
    "procedure": "手术操作",
    "payment_method": "医疗付费方式",
    "blood_type": "ABO血型",
    "rh_blood_type": "Rh血型",
    "admission_condition": "入院病情",
    "relationship": "家庭关系",
})

FIELD_TYPES: tuple[str, ...] = (
    "varchar", "text", "smallint", "integer", "bigint", "numeric", "boolean",
    "date", "time", "timestamp", "timestamptz", "jsonb",
)
FORMATS: tuple[str, ...] = ("id_number", "phone", "postal_code", "date", "datetime", "org_code", "uscc")
TIMELINESS: Mapping[str, str] = MappingProxyType(
    {"realtime": "实时", "2h": "2小时内", "24h": "24小时内", "daily": "每日"}
)
RULE_KINDS: tuple[str, ...] = (
    "range", "date_order", "required_if", "id_number_if", "age_consistent", "not_future",
)

NUMERIC_TYPES = frozenset({"smallint", "integer", "bigint", "numeric"})
INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})
TEMPORAL_TYPES = frozenset({"date", "timestamp", "timestamptz"})
STRING_TYPES = frozenset({"varchar", "text"})

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RULE_ID_RE = re.compile(r"^[A-Z]{2}[0-9]{3}$")
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


class SpecError(ValueError):
    """A structural problem in a dataset spec file; str() is one line naming file and key."""


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    comment: str
    required: bool = False
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    domain: str | None = None
    format: str | None = None
    unit: str | None = None
    pii: bool = False
    # ``pii`` written in the spec (true or false): every free-text field must say (tests/test_spec.py).
    pii_declared: bool = False

    @property
    def sql_type(self) -> str:
        """PostgreSQL type as written in DDL: varchar(22), numeric(4,1), timestamp, …"""
        if self.type == "varchar":
            return f"varchar({self.length})"
        if self.type == "numeric" and self.precision is not None:
            return f"numeric({self.precision},{self.scale or 0})"
        return self.type

    @property
    def domain_name(self) -> str | None:
        return DOMAINS[self.domain] if self.domain else None


@dataclass(frozen=True)
class Rule:
    """A cross-field rule. `fields` lists every field it reads; `params` holds its kind-specific keys
    (e.g. field/min/max for range, before/after for date_order), as written in the spec."""

    id: str
    kind: str
    message: str
    fields: tuple[str, ...]
    params: Mapping[str, Any]

    def param(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)


@dataclass(frozen=True)
class Table:
    name: str
    comment: str
    timeliness: str
    primary_key: tuple[str, ...]
    business_time: str
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()
    business_date: str | None = None
    writer: str = "his"  # see WRITERS

    @property
    def national_codes(self) -> bool:
        """Coded fields hold national codes (a table cdcsync writes): no local mapping."""
        return self.writer == "cdcsync"

    @cached_property
    def _by_name(self) -> Mapping[str, Field]:
        return MappingProxyType({f.name: f for f in self.fields})

    def field(self, name: str) -> Field:
        """The field called `name`; KeyError naming the table when absent."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name}.{name}") from None

    def has_field(self, name: str) -> bool:
        return name in self._by_name

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def coded_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.domain)

    @property
    def pii_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.pii)

    @property
    def business_date_field(self) -> str:
        """The field whose date counts the record in daily statistics."""
        return self.business_date or self.business_time

    @property
    def qualified_name(self) -> str:
        return f"emr.{self.name}"


@dataclass(frozen=True)
class Spec:
    version: str
    name: str
    tables: tuple[Table, ...]
    digest: str  # first 16 hex digits of the SHA-256 of the YAML bytes
    source: Path

    @cached_property
    def _by_name(self) -> Mapping[str, Table]:
        return MappingProxyType({t.name: t for t in self.tables})

    def table(self, name: str) -> Table:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no table {name!r} in dataset spec") from None

    def has_table(self, name: str) -> bool:
        return name in self._by_name

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)


# --------------------------------------------------------------------------- loading


def load_spec(path: Path | None = None) -> Spec:
    """Load and check a dataset spec; the packaged one (cached) when `path` is None."""
    if path is None:
        return _default_spec()
    return _load(Path(path), str(path))


@functools.cache
def _default_spec() -> Spec:
    return _load(DEFAULT_PATH, DEFAULT_PATH.name)


def _load(path: Path, label: str) -> Spec:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{label}: cannot read file: {exc.strerror or exc}") from None
    try:
        doc = yamlfile.load(raw)
    except yamlfile.YamlProblem as exc:
        raise SpecError(f"{label}: {exc}") from None
    return _Builder(label).spec(doc, hashlib.sha256(raw).hexdigest()[:16], path)


def _freeze(value: Any) -> Any:
    """Lists become tuples and mappings read-only, so a loaded Spec cannot be altered in place."""
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TABLE_KEYS = ("comment", "timeliness", "primary_key", "business_time", "business_date", "fields", "rules",
               "writer")
# Who writes a table: the HIS (coded fields hold its LOCAL codes, mapped by the pipeline) or cdcsync
# itself (e.g. the workbench's report cards: coded fields already hold NATIONAL codes).
WRITERS = ("his", "cdcsync")
_FIELD_KEYS = ("name", "type", "length", "precision", "scale", "required", "domain", "format",
               "comment", "unit", "pii")
_WHEN_OPS = ("in", "not_in", "present")
# Kind -> (required keys, optional keys) besides id, kind, message.
_RULE_KEYS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType({
    "range": (("field",), ("min", "max")),
    "date_order": (("before", "after"), ("allow_equal",)),
    "required_if": (("field", "when"), ()),
    "id_number_if": (("field", "when"), ("birth_date", "sex")),
    "age_consistent": (("birth", "at", "age"), ("tolerance",)),
    "not_future": (("fields",), ("tolerance_hours",)),
})


class _Builder:
    """Turns the parsed YAML into dataclasses, failing on the first problem with its key path."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.rule_ids: dict[str, str] = {}

    def fail(self, key: str, problem: str) -> SpecError:
        return SpecError(f"{self.label}: {key}: {problem}" if key else f"{self.label}: {problem}")

    # -- generic checks

    def mapping(self, value: Any, key: str, allowed: Sequence[str] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {_show(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"expected string keys, got {_show(k)}")
            if allowed is not None and k not in allowed:
                raise self.fail(f"{key}.{k}" if key else k,
                                f"unknown key; expected one of {', '.join(allowed)}")
        return value

    def required(self, m: Mapping[str, Any], k: str, key: str) -> Any:
        if k not in m or m[k] is None:
            raise self.fail(f"{key}.{k}" if key else k, "missing required key")
        return m[k]

    def string(self, value: Any, key: str, *, chinese: bool = False) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {_show(value)}")
        if "\n" in value:
            raise self.fail(key, "expected a single line")
        if chinese and not _CJK_RE.search(value):
            raise self.fail(key, f"expected a Chinese description, got {_show(value)}")
        return value

    def name(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise self.fail(key, f"expected a snake_case name (a-z, 0-9, _; at most 63), got {_show(value)}")
        return value

    def choice(self, value: Any, key: str, options: Sequence[str]) -> str:
        if not isinstance(value, str) or value not in options:
            raise self.fail(key, f"expected one of {', '.join(options)}; got {_show(value)}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_show(value)}")
        return value

    def integer(self, value: Any, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"expected an integer from {low} to {high}, got {_show(value)}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {_show(value)}")
        return float(value)

    def list_of(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a non-empty list, got {_show(value)}")
        return value

    # -- the document

    def spec(self, doc: Any, digest: str, path: Path) -> Spec:
        top = self.mapping(doc, "", ("version", "name", "tables"))
        version = self.string(self.required(top, "version", ""), "version")
        name = self.string(self.required(top, "name", ""), "name", chinese=True)
        tables_raw = self.mapping(self.required(top, "tables", ""), "tables")
        if not tables_raw:
            raise self.fail("tables", "expected at least one table")
        tables = tuple(self.table(t, body) for t, body in tables_raw.items())
        return Spec(version=version, name=name, tables=tables, digest=digest, source=path)

    def table(self, tname: Any, body: Any) -> Table:
        key = f"tables.{tname}"
        self.name(tname, key)
        m = self.mapping(body, key, _TABLE_KEYS)
        comment = self.string(self.required(m, "comment", key), f"{key}.comment", chinese=True)
        timeliness = self.choice(self.required(m, "timeliness", key), f"{key}.timeliness", tuple(TIMELINESS))

        fields_raw = self.list_of(self.required(m, "fields", key), f"{key}.fields")
        fields: list[Field] = []
        seen: set[str] = set()
        for i, raw in enumerate(fields_raw):
            f = self.field(raw, f"{key}.fields[{i}]")
            if f.name in seen:
                raise self.fail(f"{key}.fields[{i}].name", f'duplicate field "{f.name}"')
            seen.add(f.name)
            fields.append(f)
        by_name = {f.name: f for f in fields}

        pk_key = f"{key}.primary_key"
        pk_raw = self.list_of(self.required(m, "primary_key", key), pk_key)
        pk: list[str] = []
        for i, col in enumerate(pk_raw):
            ref = self.ref(col, f"{pk_key}[{i}]", by_name)
            if not ref.required:
                raise self.fail(f"{pk_key}[{i}]", f'primary-key field "{ref.name}" must be required: true')
            if ref.name in pk:
                raise self.fail(f"{pk_key}[{i}]", f'"{ref.name}" listed twice')
            pk.append(ref.name)
        if pk[0] != "org_code":
            raise self.fail(pk_key, f'expected the key to start with org_code, got "{pk[0]}"')

        bt = self.ref(self.required(m, "business_time", key), f"{key}.business_time", by_name, TEMPORAL_TYPES)
        bd: Field | None = None
        if m.get("business_date") is not None:
            bd = self.ref(m["business_date"], f"{key}.business_date", by_name, TEMPORAL_TYPES)

        rules: list[Rule] = []
        if m.get("rules") is not None:
            for i, raw in enumerate(self.list_of(m["rules"], f"{key}.rules")):
                rules.append(self.rule(raw, f"{key}.rules[{i}]", by_name))

        writer = "his"
        if m.get("writer") is not None:
            writer = self.choice(m["writer"], f"{key}.writer", WRITERS)

        return Table(
            name=tname, comment=comment, timeliness=timeliness, primary_key=tuple(pk),
            business_time=bt.name, business_date=bd.name if bd else None,
            fields=tuple(fields), rules=tuple(rules), writer=writer,
        )

    def field(self, raw: Any, key: str) -> Field:
        m = self.mapping(raw, key, _FIELD_KEYS)
        name = self.name(self.required(m, "name", key), f"{key}.name")
        ftype = self.choice(self.required(m, "type", key), f"{key}.type", FIELD_TYPES)
        comment = self.string(self.required(m, "comment", key), f"{key}.comment", chinese=True)

        length = precision = scale = None
        if ftype == "varchar":
            length = self.integer(self.required(m, "length", key), f"{key}.length", 1, 10485760)
        elif m.get("length") is not None:
            raise self.fail(f"{key}.length", f"only varchar takes a length, not {ftype}")
        if ftype == "numeric":
            if m.get("precision") is not None:
                precision = self.integer(m["precision"], f"{key}.precision", 1, 1000)
            if m.get("scale") is not None:
                if precision is None:
                    raise self.fail(f"{key}.scale", "scale needs a precision")
                scale = self.integer(m["scale"], f"{key}.scale", 0, precision)
        else:
            for k in ("precision", "scale"):
                if m.get(k) is not None:
                    raise self.fail(f"{key}.{k}", f"only numeric takes a {k}, not {ftype}")

        domain = fmt = unit = None
        if m.get("domain") is not None:
            domain = self.choice(m["domain"], f"{key}.domain", tuple(DOMAINS))
            if ftype != "varchar":
                raise self.fail(f"{key}.domain", f"coded fields must be varchar, not {ftype}")
        if m.get("format") is not None:
            fmt = self.choice(m["format"], f"{key}.format", FORMATS)
            if ftype not in STRING_TYPES:
                raise self.fail(f"{key}.format", f"a format applies to varchar or text, not {ftype}")
        if m.get("unit") is not None:
            unit = self.string(m["unit"], f"{key}.unit")
        required = self.boolean(m.get("required", False), f"{key}.required")
        pii = self.boolean(m.get("pii", False), f"{key}.pii")
        return Field(name=name, type=ftype, comment=comment, required=required, length=length,
                     precision=precision, scale=scale, domain=domain, format=fmt, unit=unit, pii=pii,
                     pii_declared="pii" in m)

    def ref(self, value: Any, key: str, fields: Mapping[str, Field],
            types: frozenset[str] | None = None) -> Field:
        """A reference to a field of the same table, optionally of one of `types`."""
        if not isinstance(value, str):
            raise self.fail(key, f"expected a field name, got {_show(value)}")
        if value not in fields:
            raise self.fail(key, f'no field "{value}" in this table')
        f = fields[value]
        if types is not None and f.type not in types:
            raise self.fail(key, f'field "{value}" is {f.type}; expected one of {", ".join(sorted(types))}')
        return f

    def rule(self, raw: Any, key: str, fields: Mapping[str, Field]) -> Rule:
        if not isinstance(raw, dict):
            raise self.fail(key, f"expected a mapping, got {_show(raw)}")
        kind = self.choice(self.required(raw, "kind", key), f"{key}.kind", RULE_KINDS)
        need, optional = _RULE_KEYS[kind]
        m = self.mapping(raw, key, ("id", "kind", "message", *need, *optional))
        rid = self.required(m, "id", key)
        if not isinstance(rid, str) or not _RULE_ID_RE.match(rid):
            raise self.fail(f"{key}.id", f"expected two capitals and three digits (e.g. VS001), got {_show(rid)}")
        if rid in self.rule_ids:
            raise self.fail(f"{key}.id", f'duplicate rule id "{rid}" (also at {self.rule_ids[rid]})')
        self.rule_ids[rid] = key
        message = self.string(self.required(m, "message", key), f"{key}.message", chinese=True)
        for k in need:
            self.required(m, k, key)

        used: list[str] = []

        def use(k: str, types: frozenset[str] | None = None) -> None:
            used.append(self.ref(m[k], f"{key}.{k}", fields, types).name)

        checks: dict[str, Callable[[], None]] = {
            "range": lambda: self._range(m, key, use),
            "date_order": lambda: self._date_order(m, key, use),
            "required_if": lambda: self._conditional(m, key, use, fields, used, None),
            "id_number_if": lambda: self._conditional(m, key, use, fields, used, STRING_TYPES),
            "age_consistent": lambda: self._age(m, key, use),
            "not_future": lambda: self._not_future(m, key, fields, used),
        }
        checks[kind]()
        params = {k: _freeze(v) for k, v in m.items() if k not in ("id", "kind", "message")}
        return Rule(id=rid, kind=kind, message=message, fields=tuple(dict.fromkeys(used)),
                    params=MappingProxyType(params))

    def _range(self, m: Mapping[str, Any], key: str, use: Callable[..., None]) -> None:
        use("field", NUMERIC_TYPES)
        low = self.number(m["min"], f"{key}.min") if m.get("min") is not None else None
        high = self.number(m["max"], f"{key}.max") if m.get("max") is not None else None
        if low is None and high is None:
            raise self.fail(key, "a range rule needs min, max or both")
        if low is not None and high is not None and low > high:
            raise self.fail(f"{key}.min", f"min {m['min']} is greater than max {m['max']}")

    def _date_order(self, m: Mapping[str, Any], key: str, use: Callable[..., None]) -> None:
        use("before", TEMPORAL_TYPES)
        use("after", TEMPORAL_TYPES)
        if m.get("allow_equal") is not None:
            self.boolean(m["allow_equal"], f"{key}.allow_equal")

    def _conditional(self, m: Mapping[str, Any], key: str, use: Callable[..., None],
                     fields: Mapping[str, Field], used: list[str], types: frozenset[str] | None) -> None:
        use("field", types)
        wkey = f"{key}.when"
        when = self.mapping(m["when"], wkey, ("field", *_WHEN_OPS))
        used.append(self.ref(self.required(when, "field", wkey), f"{wkey}.field", fields).name)
        ops = [op for op in _WHEN_OPS if op in when]
        if len(ops) != 1:
            raise self.fail(wkey, "expected exactly one of in, not_in, present")
        op = ops[0]
        if op == "present":
            self.boolean(when[op], f"{wkey}.present")
        else:
            values = self.list_of(when[op], f"{wkey}.{op}")
            for j, v in enumerate(values):
                if not isinstance(v, str):
                    raise self.fail(f"{wkey}.{op}[{j}]", f"expected a quoted code string, got {_show(v)}")
        if "birth_date" in m:
            use("birth_date", frozenset({"date"}))
        if "sex" in m:
            use("sex")
            if fields[m["sex"]].domain != "sex":
                raise self.fail(f"{key}.sex", f'field "{m["sex"]}" must have domain sex')

    def _age(self, m: Mapping[str, Any], key: str, use: Callable[..., None]) -> None:
        use("birth", frozenset({"date"}))
        use("at", TEMPORAL_TYPES)
        use("age", INTEGER_TYPES)
        if m.get("tolerance") is not None:
            self.integer(m["tolerance"], f"{key}.tolerance", 0, 150)

    def _not_future(self, m: Mapping[str, Any], key: str,
                    fields: Mapping[str, Field], used: list[str]) -> None:
        for j, name in enumerate(self.list_of(m["fields"], f"{key}.fields")):
            used.append(self.ref(name, f"{key}.fields[{j}]", fields, TEMPORAL_TYPES).name)
        if m.get("tolerance_hours") is not None:
            hours = self.number(m["tolerance_hours"], f"{key}.tolerance_hours")
            if hours < 0:
                raise self.fail(f"{key}.tolerance_hours", f"expected a number >= 0, got {_show(hours)}")

