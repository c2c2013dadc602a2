"""Compile the dataset spec ONCE into one plain Python function per table.

The spec is not interpreted per row: for every table we generate the source of a function that
reads each field once, checks it with inline comparisons (required, type, length in characters,
format, value-domain membership after mapping), evaluates the table's rules with constants
baked in, and builds the mapped output row. The source is compiled with ``compile``/``exec`` in
a namespace holding the precomputed mapping dicts, the prebuilt violations and a few helpers.
``CompiledTable.source`` shows the generated code.

Generated functions: ``check(row, now) -> (mapped_row | None, violations)``; ``now`` is the
validation time as naive Beijing time (mirror timestamps are Beijing local time without zone).
``check`` is the hot path for a decoder-shaped row that passes: one compound test per field and
rule, the globals it reads bound as parameter defaults (locals), the output a C-level copy of the
row with the coded fields overwritten. At the first doubt it returns ``_full(row, now)``, the
reference function that checks everything and collects every violation, so the outcome is
always ``_full``'s (tests/test_validate_fastpath.py compares the two). ``map_only(row)`` and
``_map_full(row)`` are the same pair for mapping without validation.

Mapped row: the spec's columns of the row (coded fields: national code; a coded primary-key field
keeps its local code), then ``<field>_local`` (``<field>_national``) per coded field in spec order,
as defined by :func:`~cdcsync.mapping.mapper.mapped_columns`. A column the spec does not name is
never in it (minimum necessary; the validation stage counts and logs what it drops). Key order is
that of the row for a row holding exactly the spec's columns (what the decoder produces: table
column order); otherwise spec order.

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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

from cdcsync.beijing import BEIJING
from cdcsync.mapping.domains import CodeTables
from cdcsync.mapping.mapper import Mapper, mapped_columns
from cdcsync.spec.model import INTEGER_TYPES, Field, Rule, Spec, Table
from cdcsync.validate import FORMAT, LENGTH, REQUIRED, TYPE, Violation
from cdcsync.validate.formats import FORMAT_TEXT, FORMATS, id_number_birth, id_sex_code, parse_date

CheckFn = Callable[[Mapping[str, Any], dt.datetime], tuple[dict[str, Any] | None, list[Violation]]]
MapFn = Callable[[Mapping[str, Any]], dict[str, Any]]

# Formats whose verdict depends on the value alone (id_number also depends on today's date).
_PURE_FORMATS = frozenset({"org_code", "uscc", "postal_code", "phone", "date", "datetime"})
_FORMAT_MEMO = 256  # values remembered per field as well-formed
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_BIND_BUILTINS = frozenset({"type", "str", "len", "dict", "abs"})  # builtins the generated code calls
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


def _empty(x: Any) -> bool:
    return x is None or x == ""


def _id_ok(value: Any, birth: dt.date | None, sex: str | None, today: dt.date) -> bool:
    """The id_number_if check: valid ID number agreeing with the birth date and (national) sex."""
    if not isinstance(value, str):
        return False
    got = id_number_birth(value, today)
    if got is None or (birth is not None and got != birth):
        return False
    return not (sex in ("1", "2") and id_sex_code(value) != sex)


def _learn(ok: set[str], fn: Callable[[str], bool], value: str) -> bool:
    """A pure format check on a value not yet known to be good; remembers it when it is (bounded)."""
    if fn(value):
        if len(ok) < _FORMAT_MEMO:
            ok.add(value)
        return True
    return False


# --- code generation --------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledTable:
    """The compiled checks of one table."""

    table: Table
    check: CheckFn
    map_only: MapFn
    source: str
    columns: frozenset[str] = frozenset()  # the spec's columns: nothing else leaves the hospital
    ncols: int = 0  # len(columns): a row of this length holding every spec column holds no other

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
    """Builds the source of one table's check function.

    Two functions per table: ``_full`` checks every field and rule and collects every violation
    (the reference behaviour); ``check`` is the hot path for the common case, a row of the
    decoder's native types that passes: it tests each field and rule with one compound condition
    and hands the row to ``_full`` at the first doubt, so its verdict and output are always
    ``_full``'s. Fast mode (``self.fast``) switches the emitters to that form."""

    def __init__(self, table: Table, mapper: Mapper) -> None:
        self.table = table
        self.mapper = mapper
        self.ns: dict[str, Any] = {
            "_date": dt.date, "_datetime": dt.datetime, "_time": dt.time, "_Decimal": Decimal,
            "_td": dt.timedelta, "_to_int": _to_int, "_to_num": _to_num, "_to_bool": _to_bool,
            "_to_date": _to_date, "_to_ts": _to_ts, "_to_time": _to_time, "_empty": _empty,
            "_id_ok": _id_ok, "_learn": _learn, "_V": Violation, "_mapper": mapper,
        }
        self.lines: list[str] = []
        self.fast = False
        self.index = {f.name: i for i, f in enumerate(table.fields)}
        self.used = {name for r in table.rules for name in r.fields}

    def const(self, name: str, value: Any) -> str:
        self.ns[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def label(self, f: Field) -> str:
        return f"{f.comment}（{f.name}）"

    def c(self, i: int) -> str:
        """The typed value of field ``i`` as the rules see it. In fast mode a non-text field that
        got this far holds its native type or None, so the value itself serves."""
        if self.fast and self.table.fields[i].type not in ("varchar", "text"):
            return f"x{i}"
        return f"c{i}"

    def present(self, *indexes: int) -> str:
        """``c{i} is not None and ...`` for the rule inputs that may be empty here (in fast mode a
        required field that got this far is not: its test is dropped)."""
        return "".join(f"{self.c(i)} is not None and " for i in indexes
                       if not (self.fast and self.table.fields[i].required))

    def fail(self, depth: int, viol: str) -> None:
        self.emit(depth, "return _full(row, now)" if self.fast else f"v.append({viol})")

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
                m = self.const(f"MAP_{i}", self.mapper.table_for(f.domain, self.table.national_codes))
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
                lo, hi = self.numeric_limits(i, f)
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

    def numeric_limits(self, i: int, f: Field) -> tuple[str, str]:
        limit = Decimal(10) ** ((f.precision or 0) - (f.scale or 0))
        return self.const(f"NLIM_{i}", -limit), self.const(f"LIM_{i}", limit)

    def native_ok(self, i: int, f: Field) -> str:
        """Fast mode: the condition under which a non-empty value of a non-text field passes as is."""
        x, t = f"x{i}", f.type
        if t in INTEGER_TYPES:
            bound = INT_BOUNDS[t]
            return f"type({x}) is int and {-bound} <= {x} < {bound}"
        if t == "numeric":
            ok = f"(type({x}) is _Decimal and {x}.is_finite() or type({x}) is int)"
            if f.precision is not None:
                lo, hi = self.numeric_limits(i, f)
                ok += f" and {lo} < {x} < {hi}"
            return ok
        if t == "boolean":
            return f"type({x}) is bool"
        if t == "date":
            return f"type({x}) is _date"
        if t in ("timestamp", "timestamptz"):
            return f"type({x}) is _datetime and {x}.tzinfo is None"
        if t == "time":
            return f"type({x}) is _time"
        return f"{x} is not None and {x} != ''"  # jsonb: any JSON value but empty

    def field_fast(self, i: int, f: Field) -> None:
        """Fast mode: pass the field, or hand the row to ``_full``. Defines ``n{i}`` for a coded
        field and ``c{i}`` for a text field a rule reads (the other fields' values serve as is)."""
        x, full = f"x{i}", "return _full(row, now)"
        if f.type not in ("varchar", "text"):
            ok = self.native_ok(i, f)
            self.emit(1, f"if not ({ok}):" if f.required else f"if {x} is not None and not ({ok}):")
            self.emit(2, full)
            return
        table = self.mapper.table_for(f.domain, self.table.national_codes) if f.domain else None
        m = self.const(f"MAP_{i}", table) if table is not None else ""
        # A hit in a code table whose keys are all non-empty and short enough proves both.
        safe = table is not None and "" not in table and (
            f.length is None or all(len(k) <= f.length for k in table))
        too_long = f" or len({x}) > {f.length}" if f.length is not None and not safe else ""
        checks: list[str] = []
        if f.format:
            fn = self.const(f"FMT_{i}", FORMATS[f.format])
            if f.format in _PURE_FORMATS:
                ok = self.const(f"FMTOK_{i}", set())
                checks.append(f"if {x} not in {ok} and not _learn({ok}, {fn}, {x}):")
            else:
                checks.append(f"if not {fn}({x}):")
        wants_c = f.name in self.used

        def checked_value(depth: int) -> None:
            """A non-empty text value: format checks, code lookup, the rules' copy."""
            for line in checks:
                self.emit(depth, line)
                self.emit(depth + 1, full)
            if table is not None:
                self.emit(depth, f"n{i} = {m}.get({x})")
                self.emit(depth, f"if n{i} is None:")
                self.emit(depth + 1, full)
            if wants_c:
                self.emit(depth, f"c{i} = {x}")

        if f.required:
            if safe and not f.format:
                self.emit(1, f"if type({x}) is not str or (n{i} := {m}.get({x})) is None:")
                self.emit(2, full)
                if wants_c:
                    self.emit(1, f"c{i} = {x}")
            else:
                self.emit(1, f"if type({x}) is not str or not {x}{too_long}:")
                self.emit(2, full)
                checked_value(1)
            return
        if not (checks or table is not None or wants_c):
            self.emit(1, f"if {x} is not None and (type({x}) is not str{too_long}):")
            self.emit(2, full)
            return
        self.emit(1, f"if {x} is None or {x} == '':")
        self.emit(2, "; ".join([f"n{i} = None"] * (table is not None) + [f"c{i} = None"] * wants_c) or "pass")
        self.emit(1, f"elif type({x}) is not str{too_long}:")
        self.emit(2, full)
        self.emit(1, "else:")
        checked_value(2)

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
            ea = self.c(ia) if fa.type == "date" else f"{self.c(ia)}.date()"
            eb = self.c(ib) if fb.type == "date" else f"{self.c(ib)}.date()"
            return ea, eb
        return self.c(ia), self.c(ib)

    def rule(self, k: int, r: Rule) -> None:
        p = r.params
        target = {
            "range": p.get("field"), "date_order": p.get("before"), "required_if": p.get("field"),
            "id_number_if": p.get("field"), "age_consistent": p.get("age"),
        }.get(r.kind)
        viol = self.const(f"R_{k}", Violation(r.id, target, r.message))
        c = self.c
        if r.kind == "range":
            i, _ = self.ref(p["field"])
            parts = []
            if p.get("min") is not None:
                parts.append(f"{c(i)} < {self.const(f'MIN_{k}', Decimal(str(p['min'])))}")
            if p.get("max") is not None:
                parts.append(f"{c(i)} > {self.const(f'MAX_{k}', Decimal(str(p['max'])))}")
            self.emit(1, f"if {self.present(i)}({' or '.join(parts)}):")
            self.fail(2, viol)
        elif r.kind == "date_order":
            ia, ib = self.index[p["before"]], self.index[p["after"]]
            ea, eb = self.date_pair(p["before"], p["after"])
            op = ">" if p.get("allow_equal", True) else ">="
            self.emit(1, f"if {self.present(ia, ib)}{ea} {op} {eb}:")
            self.fail(2, viol)
        elif r.kind == "required_if":
            i, _ = self.ref(p["field"])
            self.emit(1, f"if (x{i} is None or x{i} == '') and ({self.when(p['when'])}):")
            self.fail(2, viol)
        elif r.kind == "id_number_if":
            i, _ = self.ref(p["field"])
            birth = c(self.index[p["birth_date"]]) if p.get("birth_date") else "None"
            sex = f"n{self.index[p['sex']]}" if p.get("sex") else "None"
            self.emit(1, f"if {self.present(i)}({self.when(p['when'])}) "
                         f"and not _id_ok({c(i)}, {birth}, {sex}, today):")
            self.fail(2, viol)
        elif r.kind == "age_consistent":
            ib, ia, ig = self.index[p["birth"]], self.index[p["at"]], self.index[p["age"]]
            b, at = c(ib), c(ia)
            tol = int(p.get("tolerance", 1))
            # full years from birth to ``at`` (a date or a timestamp: only year/month/day count),
            # inline: no call, no tuple
            years = f"({at}.year - {b}.year - (({at}.month - {b}.month or {at}.day - {b}.day) < 0))"
            self.emit(1, f"if {self.present(ib, ia, ig)}abs({c(ig)} - {years}) > {tol}:")
            self.fail(2, viol)
        elif r.kind == "not_future":
            hours = float(p.get("tolerance_hours", 24))
            lim = self.const(f"TOL_{k}", dt.timedelta(hours=hours))
            self.emit(1, f"lim = now + {lim}")
            if any(self.ref(name)[1].type == "date" for name in p["fields"]):
                self.emit(1, "limd = lim.date()")
            for j, name in enumerate(p["fields"]):
                i, f = self.ref(name)
                cmp = f"{c(i)} > limd" if f.type == "date" else f"{c(i)} > lim"
                fv = self.const(f"R_{k}_{j}", Violation(r.id, name, r.message))
                # fast mode: any hit sends the row to _full, so plain ifs (no elif) are equivalent
                self.emit(1, f"{'if' if j == 0 or self.fast else 'elif'} {self.present(i)}{cmp}:")
                self.fail(2, fv)
        else:  # pragma: no cover - the spec loader rejects unknown kinds
            raise ValueError(f"unknown rule kind {r.kind!r}")

    # whole function ------------------------------------------------------------------------

    def extra_columns(self) -> list[tuple[str, str]]:
        """(column, variable) appended after the table's own columns: ``<field>_local`` of each
        coded field (``<field>_national`` for a coded primary-key field, see mapped_columns)."""
        out = []
        for i, f in enumerate(self.table.fields):
            if f.domain:
                national_col, local_col = mapped_columns(self.table, f.name)
                out.append((national_col, f"n{i}") if local_col == f.name else (local_col, f"x{i}"))
        return out

    def output(self, depth: int) -> None:
        """The mapped row: the table's columns in spec order (a coded field: its national code,
        or its local code for a coded primary-key field), then the columns of extra_columns();
        columns of the row not in the spec left out. Same content and, for a row in table-column
        order (what the decoder produces), the same key order as output_fast()."""
        self.emit(depth, "out = {")
        for i, f in enumerate(self.table.fields):
            value = f"n{i}" if f.domain and mapped_columns(self.table, f.name)[0] == f.name else f"x{i}"
            self.emit(depth + 1, f"{f.name!r}: {value},")
        for col, var in self.extra_columns():
            self.emit(depth + 1, f"{col!r}: {var},")
        self.emit(depth, "}")

    def exact(self, fallback: str) -> None:
        """Fast mode: a row of another length than the spec's columns has columns the spec does
        not name (or lacks some): the full function, which leaves them out, handles it."""
        self.emit(1, f"if len(row) != {len(self.table.fields)}:")
        self.emit(2, fallback)

    def output_fast(self, depth: int) -> None:
        """The mapped row for a row holding exactly the spec's fields (see exact()): a copy of the
        row (a C-level dict copy is several times cheaper than building the dict key by key),
        national codes written over the local ones, extra_columns() appended."""
        self.emit(depth, "out = dict(row)")
        for i, f in enumerate(self.table.fields):
            if f.domain and mapped_columns(self.table, f.name)[0] == f.name:
                self.emit(depth, f"out[{f.name!r}] = n{i}")
        for col, var in self.extra_columns():
            self.emit(depth, f"out[{col!r}] = {var}")

    def fetch(self, missing: str | None = None) -> None:
        """Read every field once into x0, x1, ...: one itemgetter call when the row has them
        all (a decoded row always does); otherwise ``row.get`` for each, or ``missing``."""
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
        self.emit(2, missing or f"{targets} = map(row.get, _NAMES)")

    def rules(self) -> None:
        """The table's cross-field rules (the same code in the full and the fast checker)."""
        if any(r.kind == "id_number_if" for r in self.table.rules):
            self.emit(1, "today = now.date()")
        for k, r in enumerate(self.table.rules):
            self.rule(k, r)

    def check_source(self) -> str:
        self.lines = []
        self.fast = False
        self.emit(0, "def _full(row, now):")
        self.fetch()
        self.emit(1, "v = []")
        for i, f in enumerate(self.table.fields):
            self.field(i, f)
        self.rules()
        self.emit(1, "if v:")
        self.emit(2, "return None, v")
        self.output(1)
        self.emit(1, "return out, v")
        return "\n".join(self.lines) + "\n"

    def fast_source(self) -> str:
        self.lines = []
        self.fast = True
        self.emit(0, "def check(row, now):")
        self.exact("return _full(row, now)")
        self.fetch("return _full(row, now)")
        for i, f in enumerate(self.table.fields):
            self.field_fast(i, f)
        self.rules()
        self.output_fast(1)
        self.emit(1, "return out, []")
        self.fast = False
        body = "\n".join(self.lines[1:]) + "\n"
        return f"def check(row, now{self.bind(body)}):\n" + body

    def bind(self, body: str) -> str:
        """Parameters defaulting to the globals and builtins ``body`` uses: a local (LOAD_FAST) is
        cheaper than a global or builtin lookup, and the hot path has ~100 of them (measured: 5-10%
        of the check). Positional, because keyword-only defaults cost a dict lookup each per call;
        callers pass ``row`` and ``now`` only (CheckFn/MapFn)."""
        used = set(_IDENT.findall(body))
        names = sorted(n for n in used if n in self.ns or n in _BIND_BUILTINS)
        return ", " + ", ".join(f"{n}={n}" for n in names) if names else ""

    def map_source(self) -> str:
        self.lines = []
        self.emit(0, "def _map_full(row):")
        self.fetch()
        self.map_codes()
        self.output(1)
        self.emit(1, "return out")
        full = "\n".join(self.lines) + "\n"
        self.lines = []
        self.exact("return _map_full(row)")
        self.fetch("return _map_full(row)")
        self.map_codes()
        self.output_fast(1)
        self.emit(1, "return out")
        body = "\n".join(self.lines) + "\n"
        return full + f"\ndef map_only(row{self.bind(body)}):\n" + body

    def map_codes(self) -> None:
        for i, f in enumerate(self.table.fields):
            if f.domain:
                m = self.const(f"MAP_{i}", self.mapper.table_for(f.domain, self.table.national_codes))
                self.emit(1, f"n{i} = {m}.get(x{i}) if type(x{i}) is str else None")


def compile_table(table: Table, mapper: Mapper) -> CompiledTable:
    gen = _Gen(table, mapper)
    sources = [gen.check_source(), gen.fast_source(), gen.map_source()]
    ns = gen.ns
    for src, what in zip(sources, ("validate", "validate fast", "map"), strict=True):
        exec(compile(src, f"<{what} {table.name}>", "exec"), ns)  # noqa: S102 - our own generated code
    return CompiledTable(table=table, check=ns["check"], map_only=ns["map_only"], source="\n".join(sources),
                         columns=frozenset(table.field_names), ncols=len(table.fields))
