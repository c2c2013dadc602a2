"""The compiled hot path against the reference path of the same table.

Every table compiles to ``check`` (hot path: one compound test per field and rule, hands the row
to ``_full`` at the first doubt) and ``_full`` (checks everything, collects every violation), and
to ``map_only`` / ``_map_full``. For valid rows, rows with one or two fields replaced by an awkward
value, and rows with missing or extra columns, both must give the same verdict, the same
violations in the same order, and the same mapped row with the same key order.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_validators import NOW, SPEC, TABLES, VALIDATORS, valid_rows

from cdcsync.synth.hospital import generate, load_codes
from cdcsync.validate.compiler import CompiledTable


class _Str(str):
    """A str subclass: not the decoder's type, so TYP001 on both paths."""


AWKWARD: list[Any] = [
    None, "", " ", "x" * 5000, "0", "00", "1", "99", "??", "患者", 0, -1, 1, 200, 2**40, True, False, 1.5,
    float("nan"), Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("1e30"), Decimal("-0.5"),
    Decimal("36.5"), dt.date(2020, 1, 1), dt.date(2099, 1, 1), dt.datetime(2020, 1, 1, 8),
    dt.datetime(2020, 1, 1, 8, tzinfo=dt.UTC), dt.datetime(2099, 1, 1), dt.time(8, 0), [1], {"a": 1},
    _Str("1"), "2020-01-01", "2020-01-01 08:00:00", "13800138000", "110101199003077777",
]
ALL_CODES = sorted({code for local in TABLES.local.values() for code in local.map})[:200]
HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(fn: Any, *args: Any) -> Any:
    try:
        return "ok", fn(*args)
    except Exception as exc:  # noqa: BLE001 - both paths must fail alike
        return "raised", type(exc)


def assert_same(ct: CompiledTable, row: dict[str, Any], now: dt.datetime = NOW) -> None:
    """Same outcome; same key order too when the row is decoder-shaped (every column, table order:
    the key order of other rows is not specified)."""
    ns = ct.check.__globals__
    ordered = tuple(row) == ct.table.field_names
    fast, ref = _run(ct.check, row, now), _run(ns["_full"], row, now)
    assert fast == ref, f"{ct.table.name}: hot path and reference differ for {row!r}"
    if ordered and fast[0] == "ok" and fast[1][0] is not None:
        assert list(fast[1][0]) == list(ref[1][0])
    fast_map, ref_map = _run(ct.map_only, row), _run(ns["_map_full"], row)
    assert fast_map == ref_map
    if ordered and fast_map[0] == "ok":
        assert list(fast_map[1]) == list(ref_map[1])


@pytest.fixture(scope="module")
def synth_rows() -> dict[str, list[dict[str, Any]]]:
    now = dt.datetime.combine(NOW.date(), dt.time(9))
    res = generate(load_codes(), "12110000400000000X", now.date() - dt.timedelta(days=1), patients=60,
                   now=now, invalid_ratio=0.2)
    return {t: rows for t, rows in res.rows.items() if t in VALIDATORS.tables}


def test_synthetic_hospital_rows_agree(synth_rows: dict[str, list[dict[str, Any]]]) -> None:
    """Decoder-shaped rows (every column, table order), valid and deliberately invalid."""
    checked = passed = 0
    for table, rows in synth_rows.items():
        ct = VALIDATORS.table(table)
        names = ct.table.field_names
        for r in rows:
            row = {n: r.get(n) for n in names}
            assert_same(ct, row)
            checked += 1
            passed += ct.check(row, NOW)[0] is not None
    assert checked > 1000 and 0 < passed < checked  # both paths were exercised


def test_missing_and_extra_columns_agree(synth_rows: dict[str, list[dict[str, Any]]]) -> None:
    rnd = random.Random(4)
    for table, rows in synth_rows.items():
        ct = VALIDATORS.table(table)
        names = ct.table.field_names
        for r in rows[:30]:
            row = {n: r.get(n) for n in names}
            assert_same(ct, {**row, "zz_extra": 1})
            assert_same(ct, {**row, f"{names[-1]}_local": "shadowed"})
            del row[rnd.choice(names)]
            assert_same(ct, row)
            assert_same(ct, dict(reversed(list(row.items()))))


def test_hot_path_output_is_the_mapped_row(synth_rows: dict[str, list[dict[str, Any]]]) -> None:
    """A valid decoder row takes the hot path: national codes in place, local codes appended."""
    ct = VALIDATORS.table("visit")
    row = next(r for r in ({n: x.get(n) for n in ct.table.field_names} for x in synth_rows["visit"])
               if ct.check(r, NOW)[0] is not None)
    out, violations = ct.check(row, NOW)
    assert violations == [] and out is not None
    assert list(out)[: len(row)] == list(row) and out["dept_code_local"] == row["dept_code"]
    assert out["dept_code"] == VALIDATORS.mapper.map("department", row["dept_code"])
    assert list(out)[len(row):] == [f"{f.name}_local" for f in ct.table.fields if f.domain]


_TABLES = [t for t in SPEC.tables if t.fields]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[CompiledTable, dict[str, Any]]:
    table = draw(st.sampled_from(_TABLES))
    row = draw(valid_rows(table))
    row = {f.name: row.get(f.name) for f in table.fields}
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from([f.name for f in table.fields]))
        row[name] = draw(st.one_of(st.sampled_from(AWKWARD), st.sampled_from(ALL_CODES)))
    return VALIDATORS.table(table.name), row


@HYP
@given(mutated())
def test_mutated_rows_agree(case: tuple[CompiledTable, dict[str, Any]]) -> None:
    ct, row = case
    assert_same(ct, row)


@HYP
@given(st.sampled_from(_TABLES).flatmap(lambda t: st.tuples(st.just(t), valid_rows(t))))
def test_generated_valid_rows_agree(case: tuple[Any, dict[str, Any]]) -> None:
    table, row = case
    assert_same(VALIDATORS.table(table.name), {f.name: row.get(f.name) for f in table.fields})
