"""Compile the dataset spec ONCE into one plain Python function per table.

The spec is not interpreted per row: for every table we generate the source of a function that
reads each field once, checks it with inline comparisons (required, type, length in characters,
format, value-domain membership after mapping), evaluates the table's rules with constants
baked in, and builds the mapped output row as a dict literal. The source is compiled with
``compile``/``exec`` in a namespace holding the precomputed mapping dicts, the prebuilt
violations and a few helpers. ``CompiledTable.source`` shows the generated code.

Generated function: ``check(row, now) -> (mapped_row | None, violations)``; ``now`` is the
validation time as naive Beijing time (mirror timestamps are Beijing local time without zone).

Conventions (docs/validation.md):

* empty = ``None`` or ``""``; a rule whose inputs are empty passes;
* a value failing TYP001 counts as empty for the rules (the row is rejected anyway);
* violations come in field order, then in rule order; the first is the row's headline;
* a date_order/age/not_future comparison between a date and a timestamp compares dates;
* messages never contain the value of a ``pii`` field.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

from cdcsync.mapping.domains import CodeTables
from cdcsync.mapping.mapper import Mapper, mapped_columns
from cdcsync.spec.model import INTEGER_TYPES, Field, Rule, Spec, Table
from cdcsync.validate import FORMAT, LENGTH, REQUIRED, TYPE, Violation
from cdcsync.validate.formats import FORMAT_TEXT, FORMATS, id_birth_date, id_sex_code, is_id_number, parse_date

BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

CheckFn = Callable[[Mapping[str, Any], dt.datetime], tuple[dict[str, Any] | None, list[Violation]]]
MapFn = Callable[[Mapping[str, Any]], dict[str, Any]]

# Formats whose verdict depends on the value alone (id_number also depends on today's date).
_PURE_FORMATS = frozenset({"org_code", "uscc", "postal_code", "phone", "date", "datetime"})
_FORMAT_MEMO = 256  # values remembered per field as well-formed
INT_BOUNDS = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
TYPE_TEXT = {
    "varchar": "文本", "text": "文本", "smallint": "整数（smallint）", "integer": "整数（integer）",
    "bigint": "整数（bigint）", "numeric": "数值", "boolean": "布尔值（true/false）",
    "date": "日期（YYYY-MM-DD）", "time": "时间（HH:MM:SS）",
    "timestamp": "日期时间（YYYY-MM-DD HH:MM:SS）", "timestamptz": "带时区的日期时间", "jsonb": "JSON",
}


def beijing_now() -> dt.datetime:
    """Current time as naive Beijing time (the mirror's convention)."""
    return dt.datetime.now(BEIJING).replace(tzinfo=None)


# --- conversions used by the generated code on the slow path (value not of the native type) ---


def _to_int(x: Any, bound: int) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        v = x
    elif isinstance(x, str):
        try:
            v = int(x.strip())
        except ValueError:
            return None
    elif isinstance(x, Decimal | float):
        try:
            if not (x.is_finite() if isinstance(x, Decimal) else math.isfinite(x)) or x != int(x):
                return None
        except (ValueError, OverflowError):
            return None
        v = int(x)
    else:
        return None
    return v if -bound <= v < bound else None


def _to_num(x: Any) -> int | Decimal | float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, Decimal):
        return x if x.is_finite() else None
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, str):
        try:
            d = Decimal(x.strip())
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    return None


_BOOL_TEXT = {"t": True, "f": False, "true": True, "false": False, "1": True, "0": False}


def _to_bool(x: Any) -> bool | None:
    if isinstance(x, bool):
        return x
    if isinstance(x, str):
        return _BOOL_TEXT.get(x.strip().lower())
    return None


def _to_date(x: Any) -> dt.date | None:
    if isinstance(x, dt.datetime):
        return None
    if isinstance(x, dt.date):
        return x
    if isinstance(x, str):
        return parse_date(x.strip())
    return None


def _to_ts(x: Any) -> dt.datetime | None:
    """A timestamp as naive Beijing time (aware values are converted)."""
    if isinstance(x, str):
        try:
            x = dt.datetime.fromisoformat(x.strip())
        except ValueError:
            return None
        if len(x.isoformat()) < 16:
            return None
    if not isinstance(x, dt.datetime):
        return None
    if x.tzinfo is not None:
        return x.astimezone(BEIJING).replace(tzinfo=None)
    return x


def _to_time(x: Any) -> dt.time | None:
    if isinstance(x, dt.time):
        return x
    if isinstance(x, str):
        try:
            return dt.time.fromisoformat(x.strip())
        except ValueError:
            return None
    return None


def coerce(f: Field, x: Any) -> Any:
    """The typed value of a field as sent in text form (the data API writes what passed the
    validators with exactly the converters they used). ``jsonb`` values are returned as given."""
    if x is None:
        return None
    t = f.type
    if t in ("varchar", "text"):
        return x  # verbatim, "" included: the database path would store it as sent
    if x == "":
        return None
    if t in INT_BOUNDS:
        return _to_int(x, INT_BOUNDS[t])
    if t == "numeric":
        v = _to_num(x)
        return Decimal(repr(v)) if isinstance(v, float) else v
    if t == "boolean":
        return _to_bool(x)
    if t == "date":
        return _to_date(x)
    if t == "timestamp":
        return _to_ts(x)
    if t == "timestamptz":
        ts = _to_ts(x)
        return ts.replace(tzinfo=BEIJING) if ts is not None else None
    if t == "time":
        return _to_time(x)
    return x


def _as_date(x: dt.date) -> dt.date:
    return x.date() if isinstance(x, dt.datetime) else x


def _full_years(birth: dt.date, at: dt.date) -> int:
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def _empty(x: Any) -> bool:
    return x is None or x == ""


def _id_ok(value: Any, birth: dt.date | None, sex: str | None, today: dt.date) -> bool:
    """The id_number_if check: valid ID number agreeing with the birth date and (national) sex."""
    if not isinstance(value, str) or not is_id_number(value, today):
        return False
    if birth is not None and id_birth_date(value) != birth:
        return False
    return not (sex in ("1", "2") and id_sex_code(value) != sex)


# --- code generation --------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledTable:
    """The compiled checks of one table."""

    table: Table
    check: CheckFn
    map_only: MapFn
    source: str

    def validate(self, row: Mapping[str, Any], now: dt.datetime | None = None
                 ) -> tuple[dict[str, Any] | None, list[Violation]]:
        return self.check(row, now or beijing_now())


@dataclass(frozen=True)
class Validators:
    """The whole spec compiled against one mapping set."""

    spec_version: str
    mapping_version: str
    mapper: Mapper
    tables: Mapping[str, CompiledTable]

    def table(self, name: str) -> CompiledTable:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"no table {name!r} in dataset spec") from None


def compile_spec(spec: Spec, code_tables: CodeTables | Mapper) -> Validators:
    mapper = code_tables if isinstance(code_tables, Mapper) else Mapper.build(code_tables)
    tables = {t.name: compile_table(t, mapper) for t in spec.tables}
    return Validators(spec_version=spec.version, mapping_version=mapper.version, mapper=mapper, tables=tables)


class _Gen:
    """Builds the source of one table's check function."""

    def __init__(self, table: Table, mapper: Mapper) -> None:
        self.table = table
        self.mapper = mapper
        self.ns: dict[str, Any] = {
            "_date": dt.date, "_datetime": dt.datetime, "_Decimal": Decimal, "_td": dt.timedelta,
            "_to_int": _to_int, "_to_num": _to_num, "_to_bool": _to_bool, "_to_date": _to_date,
            "_to_ts": _to_ts, "_to_time": _to_time, "_as_date": _as_date, "_years": _full_years,
            "_empty": _empty, "_id_ok": _id_ok, "_V": Violation, "_mapper": mapper,
        }
        self.lines: list[str] = []
        self.index = {f.name: i for i, f in enumerate(table.fields)}
        self.used = {name for r in table.rules for name in r.fields}

    def const(self, name: str, value: Any) -> str:
        self.ns[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def label(self, f: Field) -> str:
        return f"{f.comment}（{f.name}）"

    # one field ----------------------------------------------------------------------------

    def field(self, i: int, f: Field) -> None:
        """Checks of one field. The common case (a value of the native type, as the decoder
        produces it) is tested first, so a valid field costs one type test plus its own checks;
        empty values and other types follow, with the same outcome as testing them first."""
        x, c = f"x{i}", f"c{i}"
        keep = f.name in self.used or f.type not in ("varchar", "text")
        if keep:
            self.emit(1, f"{c} = None")
        if f.domain:
            self.emit(1, f"n{i} = None")
        typ = self.const(f"TYP_{i}", Violation(TYPE, f.name, f"{self.label(f)}应为{TYPE_TEXT[f.type]}"))
        req = (self.const(f"REQ_{i}", Violation(REQUIRED, f.name, f"{self.label(f)}为必填项，不能为空"))
               if f.required else None)

        def empty(kw: str) -> None:
            self.emit(1, f"{kw} {x} is None or {x} == '':")
            self.emit(2, f"v.append({req})" if req else "pass")

        def other(conv: str) -> None:
            self.emit(1, "else:")
            self.emit(2, f"{c} = {conv}")
            self.emit(2, f"if {c} is None:")
            self.emit(3, f"v.append({typ})")

        t = f.type
        if t in ("varchar", "text"):
            self.emit(1, f"if type({x}) is str and {x}:")  # a non-empty str ('' is empty)
            if keep:
                self.emit(2, f"{c} = {x}")
            else:
                self.emit(2, "pass")
            if f.length is not None:
                lm = self.const(f"LENMSG_{i}", f"{self.label(f)}超过最大长度 {f.length} 个字符（实际 {{}} 个字符）")
                self.emit(2, f"if len({x}) > {f.length}:")
                self.emit(3, f"v.append(_V({LENGTH!r}, {f.name!r}, {lm}.format(len({x}))))")
            if f.format:
                fn = self.const(f"FMT_{i}", FORMATS[f.format])
                text = f"{self.label(f)}格式不正确，应为{FORMAT_TEXT[f.format]}"
                fv = self.const(f"FMTV_{i}", Violation(FORMAT, f.name, text))
                if f.format in _PURE_FORMATS:
                    # Remember values that passed (an org_code repeats on every row), bounded.
                    ok = self.const(f"FMTOK_{i}", set())
                    self.emit(2, f"if {x} not in {ok}:")
                    self.emit(3, f"if {fn}({x}):")
                    self.emit(4, f"if len({ok}) < {_FORMAT_MEMO}:")
                    self.emit(5, f"{ok}.add({x})")
                    self.emit(3, "else:")
                    self.emit(4, f"v.append({fv})")
                else:
                    self.emit(2, f"if not {fn}({x}):")
                    self.emit(3, f"v.append({fv})")
            if f.domain:
                m = self.const(f"MAP_{i}", self.mapper.table_for(f.domain))
                self.emit(2, f"n{i} = {m}.get({x})")
                self.emit(2, f"if n{i} is None:")
                self.emit(3, f"v.append(_mapper.miss({f.domain!r}, {f.name!r}, {f.comment!r}, {x}))")
            empty("elif")
            self.emit(1, "else:")
            self.emit(2, f"v.append({typ})")
        elif t in INTEGER_TYPES:
            bound = INT_BOUNDS[t]
            self.emit(1, f"if type({x}) is int and {-bound} <= {x} < {bound}:")
            self.emit(2, f"{c} = {x}")
            empty("elif")
            other(f"_to_int({x}, {bound})")
        elif t == "numeric":
            prec = None
            if f.precision is not None:
                limit = Decimal(10) ** (f.precision - (f.scale or 0))
                lo, hi = self.const(f"NLIM_{i}", -limit), self.const(f"LIM_{i}", limit)
                sql = f"numeric({f.precision},{f.scale or 0})"
                prec = self.const(f"PREC_{i}", Violation(TYPE, f.name, f"{self.label(f)}超出 {sql} 可表示的范围"))
            self.emit(1, f"if (type({x}) is _Decimal and {x}.is_finite()) or type({x}) is int:")
            self.emit(2, f"{c} = {x}")
            if prec:  # |c| >= 10^(p-s), written as a chained comparison (no abs() allocation)
                self.emit(2, f"if not {lo} < {x} < {hi}:")
                self.emit(3, f"v.append({prec})")
                self.emit(3, f"{c} = None")
            empty("elif")
            other(f"_to_num({x})")
            if prec:
                self.emit(2, f"elif not {lo} < {c} < {hi}:")
                self.emit(3, f"v.append({prec})")
                self.emit(3, f"{c} = None")
        elif t == "boolean":
            self.emit(1, f"if type({x}) is bool:")
            self.emit(2, f"{c} = {x}")
            empty("elif")
            other(f"_to_bool({x})")
        elif t == "date":
            self.emit(1, f"if type({x}) is _date:")
            self.emit(2, f"{c} = {x}")
            empty("elif")
            other(f"_to_date({x})")
        elif t in ("timestamp", "timestamptz"):
            self.emit(1, f"if type({x}) is _datetime and {x}.tzinfo is None:")
            self.emit(2, f"{c} = {x}")
            empty("elif")
            other(f"_to_ts({x})")
        elif t == "time":
            empty("if")
            other(f"_to_time({x})")
        else:  # jsonb: any JSON value
            empty("if")
            self.emit(1, "else:")
            self.emit(2, f"{c} = {x}")

    # rules ---------------------------------------------------------------------------------

    def ref(self, name: str) -> tuple[int, Field]:
        i = self.index[name]
        return i, self.table.fields[i]

    def when(self, cond: Mapping[str, Any]) -> str:
        i, f = self.ref(cond["field"])
        if "present" in cond:
            empty = f"(x{i} is None or x{i} == '')"
            return f"not {empty}" if cond["present"] else empty
        op = "in" if "in" in cond else "not_in"
        codes = self.const(f"SET_{len(self.ns)}", frozenset(cond[op]))
        value = f"n{i}" if f.domain else f"x{i}"
        return f"{value} {'in' if op == 'in' else 'not in'} {codes}"

    def date_pair(self, a: str, b: str) -> tuple[str, str]:
        """Expressions comparing two temporal fields; as dates when either is a date."""
        ia, fa = self.ref(a)
        ib, fb = self.ref(b)
        if fa.type == "date" or fb.type == "date":
            ea = f"c{ia}" if fa.type == "date" else f"c{ia}.date()"
            eb = f"c{ib}" if fb.type == "date" else f"c{ib}.date()"
            return ea, eb
        return f"c{ia}", f"c{ib}"

    def rule(self, k: int, r: Rule) -> None:
        p = r.params
        target = {
            "range": p.get("field"), "date_order": p.get("before"), "required_if": p.get("field"),
            "id_number_if": p.get("field"), "age_consistent": p.get("age"),
        }.get(r.kind)
        viol = self.const(f"R_{k}", Violation(r.id, target, r.message))
        if r.kind == "range":
            i, _ = self.ref(p["field"])
            parts = []
            if p.get("min") is not None:
                parts.append(f"c{i} < {self.const(f'MIN_{k}', Decimal(str(p['min'])))}")
            if p.get("max") is not None:
                parts.append(f"c{i} > {self.const(f'MAX_{k}', Decimal(str(p['max'])))}")
            self.emit(1, f"if c{i} is not None and ({' or '.join(parts)}):")
            self.emit(2, f"v.append({viol})")
        elif r.kind == "date_order":
            ia, ib = self.index[p["before"]], self.index[p["after"]]
            ea, eb = self.date_pair(p["before"], p["after"])
            op = ">" if p.get("allow_equal", True) else ">="
            self.emit(1, f"if c{ia} is not None and c{ib} is not None and {ea} {op} {eb}:")
            self.emit(2, f"v.append({viol})")
        elif r.kind == "required_if":
            i, _ = self.ref(p["field"])
            self.emit(1, f"if (x{i} is None or x{i} == '') and ({self.when(p['when'])}):")
            self.emit(2, f"v.append({viol})")
        elif r.kind == "id_number_if":
            i, _ = self.ref(p["field"])
            birth = f"c{self.index[p['birth_date']]}" if p.get("birth_date") else "None"
            sex = f"n{self.index[p['sex']]}" if p.get("sex") else "None"
            self.emit(1, f"if c{i} is not None and ({self.when(p['when'])}) "
                         f"and not _id_ok(c{i}, {birth}, {sex}, today):")
            self.emit(2, f"v.append({viol})")
        elif r.kind == "age_consistent":
            ib, ia, ig = self.index[p["birth"]], self.index[p["at"]], self.index[p["age"]]
            at = f"c{ia}" if self.table.fields[ia].type == "date" else f"_as_date(c{ia})"
            tol = int(p.get("tolerance", 1))
            self.emit(1, f"if c{ib} is not None and c{ia} is not None and c{ig} is not None "
                         f"and abs(c{ig} - _years(c{ib}, {at})) > {tol}:")
            self.emit(2, f"v.append({viol})")
        elif r.kind == "not_future":
            hours = float(p.get("tolerance_hours", 24))
            lim = self.const(f"TOL_{k}", dt.timedelta(hours=hours))
            self.emit(1, f"lim = now + {lim}")
            if any(self.ref(name)[1].type == "date" for name in p["fields"]):
                self.emit(1, "limd = lim.date()")
            for j, name in enumerate(p["fields"]):
                i, f = self.ref(name)
                cmp = f"c{i} > limd" if f.type == "date" else f"c{i} > lim"
                fv = self.const(f"R_{k}_{j}", Violation(r.id, name, r.message))
                self.emit(1, f"{'if' if j == 0 else 'elif'} c{i} is not None and {cmp}:")
                self.emit(2, f"v.append({fv})")
        else:  # pragma: no cover - the spec loader rejects unknown kinds
            raise ValueError(f"unknown rule kind {r.kind!r}")

    # whole function ------------------------------------------------------------------------

    def output(self, depth: int) -> None:
        """The mapped row: coded fields national, ``<field>_local`` local (primary-key fields:
        see mapped_columns); extra columns kept."""
        self.emit(depth, "out = {")
        for i, f in enumerate(self.table.fields):
            if f.domain:
                national_col, local_col = mapped_columns(self.table, f.name)
                if local_col == f.name:  # coded primary-key field: stays local (see mapped_columns)
                    self.emit(depth + 1, f"{local_col!r}: x{i},")
                    self.emit(depth + 1, f"{national_col!r}: n{i},")
                else:
                    self.emit(depth + 1, f"{national_col!r}: n{i},")
                    self.emit(depth + 1, f"{local_col!r}: x{i},")
            else:
                self.emit(depth + 1, f"{f.name!r}: x{i},")
        self.emit(depth, "}")
        self.emit(depth, f"if len(row) != {len(self.table.fields)}:")
        self.emit(depth + 1, "for k, val in row.items():")
        self.emit(depth + 2, "if k not in out:")
        self.emit(depth + 3, "out[k] = val")

    def fetch(self) -> None:
        """Read every field once into x0, x1, ...: one itemgetter call when the row has them
        all (a decoded row always does), ``row.get`` for each otherwise."""
        fields = self.table.fields
        if not fields:
            return
        names = tuple(f.name for f in fields)
        self.const("_FETCH", itemgetter(*names))
        self.const("_NAMES", names)
        targets = ", ".join(f"x{i}" for i in range(len(fields))) + ("," if len(fields) == 1 else "")
        self.emit(1, "try:")
        self.emit(2, f"{targets} = {'(_FETCH(row),)' if len(fields) == 1 else '_FETCH(row)'}")
        self.emit(1, "except KeyError:")
        self.emit(2, f"{targets} = map(row.get, _NAMES)")

    def check_source(self) -> str:
        self.emit(0, "def check(row, now):")
        self.fetch()
        self.emit(1, "v = []")
        for i, f in enumerate(self.table.fields):
            self.field(i, f)
        if any(r.kind == "id_number_if" for r in self.table.rules):
            self.emit(1, "today = now.date()")
        for k, r in enumerate(self.table.rules):
            self.rule(k, r)
        self.emit(1, "if v:")
        self.emit(2, "return None, v")
        self.output(1)
        self.emit(1, "return out, v")
        return "\n".join(self.lines) + "\n"

    def map_source(self) -> str:
        self.lines = []
        self.emit(0, "def map_only(row):")
        self.fetch()
        for i, f in enumerate(self.table.fields):
            if f.domain:
                m = self.const(f"MAP_{i}", self.mapper.table_for(f.domain))
                self.emit(1, f"n{i} = {m}.get(x{i}) if type(x{i}) is str else None")
        self.output(1)
        self.emit(1, "return out")
        return "\n".join(self.lines) + "\n"


def compile_table(table: Table, mapper: Mapper) -> CompiledTable:
    gen = _Gen(table, mapper)
    check_src = gen.check_source()
    map_src = gen.map_source()
    ns = gen.ns
    exec(compile(check_src, f"<validate {table.name}>", "exec"), ns)  # noqa: S102 - our own generated code
    exec(compile(map_src, f"<map {table.name}>", "exec"), ns)  # noqa: S102
    return CompiledTable(table=table, check=ns["check"], map_only=ns["map_only"], source=check_src + "\n" + map_src)
