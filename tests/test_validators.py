"""Property tests of the compiled validators: rows built from the spec pass; single mutations fail
with the expected rule id. Strategies are derived from the dataset spec itself and the example
hospital's local code tables, so a new field or rule is covered without touching this file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.cn import ric, uscc

from cdcsync.mapping.domains import default_mappings_dir, load_code_tables
from cdcsync.mapping.mapper import mapped_columns
from cdcsync.spec import Field, Table, load_spec
from cdcsync.validate import FORMAT, LENGTH, REQUIRED, TYPE, UNMAPPED
from cdcsync.validate.compiler import Validators, compile_spec
from cdcsync.validate.formats import (
    id_check_digit,
    is_id_number,
    is_org_code,
    is_phone,
    is_postal_code,
    is_uscc,
    uscc_check_char,
)

SPEC = load_spec()
TABLES = load_code_tables(default_mappings_dir(), "example", strict=False)
VALIDATORS: Validators = compile_spec(SPEC, TABLES)
NOW = dt.datetime(2026, 11, 25, 10, 0, 0)
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- formats ---------------------------------------------------------------------------------

_digits17 = st.text("0123456789", min_size=17, max_size=17).filter(lambda s: s[0] != "0")
_birth = st.dates(dt.date(1900, 1, 1), dt.date(2025, 12, 31))


def make_id(region: str, birth: dt.date, seq: int) -> str:
    first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
    return first17 + id_check_digit(first17)


@HYP
@given(birth=_birth, seq=st.integers(0, 999), region=st.sampled_from(["110101", "440305", "510104"]))
def test_id_number_agrees_with_stdnum(birth: dt.date, seq: int, region: str) -> None:
    good = make_id(region, birth, seq)
    assert is_id_number(good, NOW.date())
    assert ric.calc_check_digit(good) == good[-1]  # stdnum also checks the region at birth year
    for wrong in "0123456789X":
        if wrong != good[-1]:
            assert not is_id_number(good[:-1] + wrong, NOW.date())


def test_id_number_rejects_bad_dates_and_shapes() -> None:
    assert not is_id_number(make_id("110101", dt.date(2030, 1, 1), 1), NOW.date())  # born in the future
    first17 = "11010119990230001"  # 30 February
    assert not is_id_number(first17 + id_check_digit(first17), NOW.date())
    assert not is_id_number("1101011990010100", NOW.date())
    assert not is_id_number("11010119900101001a", NOW.date())


@HYP
@given(st.text("0123456789ABCDEFGHJKLMNPQRTUWXY", min_size=17, max_size=17), st.text("0123456789", min_size=6,
                                                                                     max_size=6))
def test_uscc_check_char_agrees_with_stdnum(body: str, region: str) -> None:
    first17 = body[:2] + region + body[8:]
    code = first17 + (uscc_check_char(first17) or "")
    assert uscc.calc_check_digit(code) == code[-1]
    assert is_uscc(code)
    assert is_org_code(code)


@pytest.mark.parametrize("phone,ok", [
    ("13812345678", True), ("+86 13812345678", True), ("010-62345678", True), ("0755-8123456", True),
    ("(021)62345678", True), ("010-62345678-123", True), ("010-12345678", False), ("12812345678", False),
    ("1381234567", False),
    ("12345678", False), ("0101234567890", False), ("abc", False),
])
def test_phone(phone: str, ok: bool) -> None:
    assert is_phone(phone) is ok


def test_postal_code() -> None:
    assert is_postal_code("100730") and not is_postal_code("10073") and not is_postal_code("9000000")


# --- valid rows from the spec ----------------------------------------------------------------

_TEXT = st.text(st.sampled_from("患者发热咳嗽头痛乏力检查ABCxyz0123𠮷-（）"), min_size=1, max_size=12)


def _codes(f: Field, national: bool = False) -> list[str]:
    assert f.domain
    lookup = VALIDATORS.mapper.table_for(f.domain, national)
    return sorted(k for k in lookup if len(k) <= (f.length or 64))


def _org_codes() -> st.SearchStrategy[str]:
    def build(body: str) -> str:
        first17 = "12" + "110000" + body
        return first17 + (uscc_check_char(first17) or "0")
    return st.text("0123456789ABCDEFGHJKLMNPQRTUWXY", min_size=9, max_size=9).map(build)


_PHONE = st.integers(3, 9).flatmap(lambda d: st.text("0123456789", min_size=9, max_size=9).map(lambda s: f"1{d}{s}"))


def _ranges(table: Table) -> dict[str, tuple[Decimal | None, Decimal | None]]:
    out: dict[str, tuple[Decimal | None, Decimal | None]] = {}
    for r in table.rules:
        if r.kind == "range":
            lo, hi = r.param("min"), r.param("max")
            out[r.param("field")] = (None if lo is None else Decimal(str(lo)), None if hi is None else Decimal(str(hi)))
    return out


def _value(f: Field, table: Table, ranges: dict[str, Any]) -> st.SearchStrategy[Any]:
    if f.domain:
        codes = _codes(f, table.national_codes)  # a table cdcsync writes holds national codes
        return st.sampled_from(codes) if codes else st.none()
    if f.format == "org_code":
        return _org_codes()
    if f.format == "phone":
        return _PHONE
    if f.format == "postal_code":
        return st.text("0123456789", min_size=5, max_size=5).map(lambda s: "1" + s)
    if f.type in ("varchar", "text"):
        return _TEXT.map(lambda s: s[: f.length or 1000])
    if f.type in ("smallint", "integer", "bigint", "numeric"):
        lo, hi = ranges.get(f.name, (None, None))
        lo = Decimal(0) if lo is None else lo
        hi = Decimal(lo + 1000) if hi is None else hi
        if f.type == "numeric":
            if f.precision is not None:
                hi = min(hi, Decimal(10) ** (f.precision - (f.scale or 0)) - 1)
            return st.decimals(lo, hi, places=f.scale if f.scale is not None else 2, allow_nan=False)
        top = {"smallint": 2**15 - 1, "integer": 2**31 - 1}.get(f.type, 2**63 - 1)
        return st.integers(int(lo.to_integral_value(rounding="ROUND_CEILING")), min(int(hi), top))
    if f.type == "boolean":
        return st.booleans()
    if f.type == "time":
        return st.times()
    if f.type == "jsonb":
        return st.just({"k": 1})
    raise AssertionError(f"temporal field {f.name} is assigned separately")


def _temporal_order(table: Table) -> list[str]:
    """Temporal fields sorted so that every date_order 'before' comes before its 'after'."""
    temporal = [f.name for f in table.fields if f.type in ("date", "timestamp", "timestamptz")]
    edges = [(r.param("before"), r.param("after")) for r in table.rules if r.kind == "date_order"]
    edges += [(r.param("birth"), r.param("at")) for r in table.rules if r.kind == "age_consistent"]
    order: list[str] = []
    pending = list(temporal)
    while pending:
        for name in pending:
            if not any(a == name and b in pending for b, a in edges):
                order.append(name)
                pending.remove(name)
                break
        else:  # pragma: no cover - a cycle in the spec
            raise AssertionError(f"cyclic date_order rules in {table.name}")
    return order


def _national(table: Table, row: dict[str, Any], name: str) -> Any:
    f = table.field(name)
    if f.domain and isinstance(row.get(name), str):
        return row[name] if table.national_codes else VALIDATORS.mapper.map(f.domain, row[name])
    return row.get(name)


def _holds(table: Table, row: dict[str, Any], cond: Any) -> bool:
    value = _national(table, row, cond["field"])
    if "present" in cond:
        return (value not in (None, "")) == cond["present"]
    return (value in cond["in"]) if "in" in cond else (value not in cond["not_in"])


@st.composite
def valid_rows(draw: st.DrawFn, table: Table) -> dict[str, Any]:
    ranges = _ranges(table)
    row: dict[str, Any] = {}
    for f in table.fields:
        if f.type in ("date", "timestamp", "timestamptz"):
            continue
        value: Any = draw(_value(f, table, ranges))
        if not f.required and f.name not in table.primary_key and draw(st.integers(0, 4)) == 0:
            value = None
        row[f.name] = value
    # Times: in the past, increasing along the date_order rules; birth dates years before.
    births = {r.param("birth") for r in table.rules if r.kind == "age_consistent"} | {
        f.name for f in table.fields if f.name == "birth_date"}
    t = NOW - dt.timedelta(days=draw(st.integers(30, 3000)), seconds=draw(st.integers(0, 86399)))
    for name in _temporal_order(table):
        f = table.field(name)
        if name in births:
            value = (t - dt.timedelta(days=draw(st.integers(0, 36000)))).date()
        else:
            t += dt.timedelta(minutes=draw(st.integers(0, 600)))
            value = t.date() if f.type == "date" else t.replace(microsecond=0)
        if not f.required and draw(st.integers(0, 5)) == 0:
            value = None
        row[name] = value
    # Cross-field rules the independent draws may have broken.
    for r in table.rules:
        if r.kind == "age_consistent":
            birth, at = row.get(r.param("birth")), row.get(r.param("at"))
            if birth is not None and at is not None:
                at_d = at.date() if isinstance(at, dt.datetime) else at
                row[r.param("age")] = at_d.year - birth.year - ((at_d.month, at_d.day) < (birth.month, birth.day))
    for r in table.rules:
        if r.kind == "required_if" and row.get(r.param("field")) in (None, "") and _holds(table, row, r.param("when")):
            f = table.field(r.param("field"))
            row[f.name] = draw(_value(f, table, ranges)) if f.type not in ("date", "timestamp") else NOW.date()
    for r in table.rules:
        if r.kind == "id_number_if" and _holds(table, row, r.param("when")):
            birth = row.get(r.param("birth_date")) if r.param("birth_date") else None
            birth = birth or dt.date(1980, 5, 17)
            sex = _national(table, row, r.param("sex")) if r.param("sex") else None
            seq = draw(st.integers(0, 499)) * 2 + (1 if sex == "1" else 0)
            if sex not in ("1", "2"):
                seq = draw(st.integers(0, 999))
            row[r.param("field")] = make_id("110101", birth, seq)
    return row


MAIN_TABLES = ["patient", "visit", "diagnosis", "vital_sign", "lab_result", "discharge", "report_card",
               "medical_record_home"]


def _check(table: str, row: dict[str, Any]) -> list[str]:
    out, violations = VALIDATORS.table(table).check(row, NOW)
    assert (out is None) == bool(violations)
    return [v.rule_id for v in violations]


@pytest.mark.parametrize("table", SPEC.table_names)
def test_generated_valid_rows_pass(table: str) -> None:
    @HYP
    @given(valid_rows(SPEC.table(table)))
    def run(row: dict[str, Any]) -> None:
        out, violations = VALIDATORS.table(table).check(row, NOW)
        assert violations == [], [(v.rule_id, v.field, v.message) for v in violations]
        assert out is not None
        t = SPEC.table(table)
        for f in t.coded_fields:
            national_col, local_col = mapped_columns(t, f.name)
            assert out[local_col] == row[f.name]
            if row[f.name] is not None:
                assert out[national_col] in TABLES.domain(f.domain or "")
    run()


# --- single mutations ------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], str | None]  # mutate in place, return the expected rule id


def _with(table: str, mutate: Callable[[dict[str, Any], st.DrawFn], str | None]) -> Any:
    @st.composite
    def strat(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
        row = draw(valid_rows(SPEC.table(table)))
        return row, mutate(row, draw)
    return strat()


def _id_type_01(table: str) -> list[str]:
    f = SPEC.table(table).field("id_type_code")
    return [k for k in _codes(f) if VALIDATORS.mapper.map("id_type", k) == "01"]


def _bad_check_digit(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    row["id_type_code"] = draw(st.sampled_from(_id_type_01("patient")))
    row["birth_date"] = row["birth_date"] or dt.date(1990, 1, 1)
    good = make_id("110101", row["birth_date"], 2 * draw(st.integers(0, 499)) + (
        1 if VALIDATORS.mapper.map("sex", row["sex_code"]) == "1" else 0))
    wrong = draw(st.sampled_from([c for c in "0123456789X" if c != good[-1]]))
    row["id_no"] = good[:-1] + wrong
    return "PT001"


def _over_length(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    f = draw(st.sampled_from([f for f in SPEC.table("visit").fields if f.type == "varchar"]))
    row[f.name] = "字" * ((f.length or 1) + 1)
    return LENGTH


def _unknown_code(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    f = draw(st.sampled_from([f for f in SPEC.table("diagnosis").coded_fields if f.required]))
    row[f.name] = "ZZ?" + draw(st.text("0123456789", min_size=1, max_size=3))
    return UNMAPPED


def _future(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    row["measure_time"] = NOW + dt.timedelta(days=draw(st.integers(2, 400)))
    return "VS009"


def _inconsistent_age(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    row["birth_date"] = dt.date(1970, 6, 1)
    row["visit_time"] = dt.datetime(2025, 6, 2, 9, 0)
    row["visit_end_time"] = None
    row["age_years"] = 55 + draw(st.sampled_from([-5, -2, 2, 3, 30]))
    return "VT002"


def _vital_out_of_range(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    row["temperature"] = draw(st.sampled_from([Decimal("33.9"), Decimal("43.1"), Decimal("12.0"), Decimal("99.9")]))
    return "VS001"


def _discharge_before_admission(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    row["admission_time"] = dt.datetime(2025, 3, 10, 8, 0)
    row["discharge_time"] = row["admission_time"] - dt.timedelta(hours=draw(st.integers(1, 500)))
    return "DC001"


def _birth_after_visit(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    row["birth_date"] = row["visit_time"].date() + dt.timedelta(days=draw(st.integers(1, 100)))
    return "VT001"


def _required_missing(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    f = draw(st.sampled_from([f for f in SPEC.table("lab_result").fields if f.required]))
    row[f.name] = draw(st.sampled_from([None, ""]))
    return REQUIRED


def _bad_phone(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    row["phone"] = draw(st.sampled_from(["12345", "1381234567", "phone", "23812345678"]))
    return FORMAT


def _wrong_type(row: dict[str, Any], draw: st.DrawFn) -> str | None:
    row["pulse"] = draw(st.sampled_from(["八十", "80.5", 1e10, True, dt.date(2020, 1, 1)]))
    return TYPE


MUTATIONS: dict[str, tuple[str, Callable[[dict[str, Any], st.DrawFn], str | None]]] = {
    "bad_check_digit": ("patient", _bad_check_digit),
    "over_length": ("visit", _over_length),
    "unknown_code": ("diagnosis", _unknown_code),
    "future_date": ("vital_sign", _future),
    "inconsistent_age": ("visit", _inconsistent_age),
    "vital_out_of_range": ("vital_sign", _vital_out_of_range),
    "discharge_before_admission": ("discharge", _discharge_before_admission),
    "birth_after_visit": ("visit", _birth_after_visit),
    "required_missing": ("lab_result", _required_missing),
    "bad_phone": ("patient", _bad_phone),
    "wrong_type": ("vital_sign", _wrong_type),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_single_mutation_fails_with_expected_rule(name: str) -> None:
    table, mutate = MUTATIONS[name]

    @HYP
    @given(_with(table, mutate))
    def run(case: tuple[dict[str, Any], str | None]) -> None:
        row, expected = case
        ids = _check(table, row)
        assert expected in ids, (expected, ids)
    run()


def test_pii_values_never_in_messages() -> None:
    secret_id = "11010119900101001X"
    row = {"org_code": "bad", "name": "王秘密" * 30, "id_no": secret_id, "id_type_code": "01",
           "phone": "1381234567890", "contact_phone": "abc秘密"}
    _, violations = VALIDATORS.table("patient").check(row, NOW)
    assert violations
    for v in violations:
        assert "秘密" not in v.message and secret_id not in v.message and "1381234567890" not in v.message


def test_unmapped_message_names_domain_field_and_local_value() -> None:
    _, violations = VALIDATORS.table("patient").check({"sex_code": "QQ"}, NOW)
    miss = [v for v in violations if v.rule_id == UNMAPPED]
    assert miss and miss[0].field == "sex_code"
    assert "QQ" in miss[0].message and "sex" in miss[0].message and "性别" in miss[0].message


def test_string_inputs_are_parsed_like_native_values() -> None:
    """Rows from the JSON API or the quarantine's raw_row carry text: same verdicts."""
    table = SPEC.table("vital_sign")
    native = {"temperature": Decimal("45.0"), "pulse": 80, "measure_time": dt.datetime(2025, 1, 1, 8)}
    text = {"temperature": "45.0", "pulse": "80", "measure_time": "2025-01-01T08:00:00"}
    a = [v.rule_id for v in VALIDATORS.table(table.name).check(native, NOW)[1]]
    b = [v.rule_id for v in VALIDATORS.table(table.name).check(text, NOW)[1]]
    assert a == b and "VS001" in a


# --- the pipeline stage ------------------------------------------------------------------------


def _stage() -> Any:
    from cdcsync.validate.reload import RulesHolder
    from cdcsync.validate.stage import ValidationStage

    holder = RulesHolder(VALIDATORS, default_mappings_dir(), "example", SPEC)
    return ValidationStage(holder, "12110000400000000X", "emr")


def _ch(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, table: str = "patient",
        lsn: int = 1) -> Any:
    from cdcsync.event import Change

    return Change(op, "emr", table, before, after, lsn, 9, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 3)  # type: ignore[arg-type]


@HYP
@given(valid_rows(SPEC.table("patient")))
def test_stage_ops(row: dict[str, Any]) -> None:
    from cdcsync.event import Event, Rejection

    stage = _stage()
    ev = stage(_ch("c", None, row))
    assert isinstance(ev, Event) and ev.id == "12110000400000000X.emr:0000000000000001:3"
    assert ev.after is not None and ev.after["sex_code_local"] == row["sex_code"]
    bad = {**row, "sex_code": "??"}
    rej = stage(_ch("u", row, bad))
    assert isinstance(rej, Rejection) and rej.rule_id == UNMAPPED and rej.field == "sex_code"
    # An update's before-image is mapped, not validated; a delete is never validated.
    ev = stage(_ch("u", bad, row))
    assert isinstance(ev, Event) and ev.before is not None and ev.before["sex_code"] is None
    assert ev.before["sex_code_local"] == "??"
    ev = stage(_ch("d", bad, None))
    assert isinstance(ev, Event) and ev.op == "d" and ev.before is not None and ev.after is None
    assert isinstance(stage(_ch("t", None, None)), Event)
    # Snapshot reads are validated like inserts.
    assert isinstance(stage(_ch("r", None, bad)), Rejection)


def test_stage_forwards_tables_outside_the_spec() -> None:
    from cdcsync.event import Event

    ev = _stage()(_ch("c", None, {"id": 1, "x": "?"}, table="not_in_spec"))
    assert isinstance(ev, Event) and ev.after == {"id": 1, "x": "?"}


def test_rejection_lists_every_violation_without_values() -> None:
    from cdcsync.validate.stage import StageRejection

    rej = _stage()(_ch("c", None, {"name": "张三丰" * 30, "phone": "0000"}))
    assert isinstance(rej, StageRejection) and len(rej.violations) > 3
    assert rej.rule_id == rej.violations[0].rule_id and "另有" in rej.message
    assert "张三丰" not in rej.message and "0000" not in rej.message
