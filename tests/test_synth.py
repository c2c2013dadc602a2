"""The synthetic hospital (`cdcsync gen`): loads cleanly, is deterministic, and is wrong only on purpose."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from stdnum.cn import ric

from cdcsync.cli import main
from cdcsync.spec import load_spec
from cdcsync.synth.hospital import (
    INVALID_KINDS,
    Codes,
    GenResult,
    Hospital,
    expected_invalid,
    generate,
    iter_days,
    load_codes,
)
from cdcsync.synth.load import Group, load_bulk
from cdcsync.synth.people import check_digit, corrupt_check_digit
from cdcsync.synth.site import BACKFILL_LAG, ENCOUNTER_TAIL, backfill_day

ORG = "12110000400000000X"
DAY = dt.date(2026, 10, 12)


@pytest.fixture(scope="module")
def codes() -> Codes:
    return load_codes()


@pytest.fixture(scope="module")
def day(codes: Codes) -> GenResult:
    return generate(codes, ORG, DAY, days=2, seed=42, patients=600, invalid_ratio=0.05)


def _invalid_keys(result: GenResult) -> set[tuple[str, tuple[str, ...]]]:
    return {key for keys in result.invalid.values() for key in keys}


def _pk(table: str, row: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    return table, tuple(row[k] for k in load_spec().table(table).primary_key)


def _valid_rows(result: GenResult) -> list[tuple[str, dict[str, Any]]]:
    bad = _invalid_keys(result)
    return [(t, r) for t, rows in result.rows.items() for r in rows if _pk(t, r) not in bad]


def test_check_digit_matches_stdnum() -> None:
    first17 = "11010519491231002"
    assert ric.is_valid(first17 + check_digit(first17))
    assert not ric.is_valid(corrupt_check_digit(first17 + check_digit(first17)))


def test_same_seed_same_rows(codes: Codes, day: GenResult) -> None:
    again = generate(codes, ORG, DAY, days=2, seed=42, patients=600, invalid_ratio=0.05)
    assert again.rows == day.rows
    assert again.invalid == day.invalid
    other = generate(codes, ORG, DAY, days=1, seed=43, patients=600, invalid_ratio=0.05)
    assert other.rows["patient"] != day.rows["patient"]


def test_every_table_and_the_clinical_mix(day: GenResult) -> None:
    spec = load_spec()
    # every table the HIS writes (report_card_frontend is the workbench's: writer cdcsync)
    assert {t for t, n in day.counts.items() if n} == {t.name for t in spec.tables if t.writer == "his"}
    notes = [r["content"] for r in day.rows["progress_note"]]
    assert any(len(n.encode()) > 8192 for n in notes), "some progress notes must be TOASTed (> 8 kB)"
    text = [v for rows in day.rows.values() for r in rows for v in r.values() if isinstance(v, str)]
    assert any(ord(ch) > 0xFFFF for v in text for ch in v), "some text outside the BMP"
    cards = day.rows["report_card"]
    assert {r["disease_code"] for r in cards} >= {"CR3001", "CR2701"}  # 流感, 新冠
    drugs = {r["drug_name"] for r in day.rows["drug_order"]}
    assert any("奥司他韦" in d for d in drugs) and any("异烟肼" in d for d in drugs)
    statuses = Counter(r["diagnosis_status_code"] for r in day.rows["diagnosis"])
    assert statuses["YS"] > 0  # suspected cases
    assert any(r.get("pathogen_code") for r in day.rows["lab_result"])


def test_coded_values_are_local_keys(codes: Codes, day: GenResult) -> None:
    spec = load_spec()
    for table, row in _valid_rows(day):
        for f in spec.table(table).coded_fields:
            value = row.get(f.name)
            if value is not None:
                assert value in codes.tables.local[f.domain or ""].map, (table, f.name, f.domain)


def test_valid_id_numbers_pass_gb11643(codes: Codes, day: GenResult) -> None:
    id_card = codes.need("id_type", "01")
    checked = 0
    for table, row in _valid_rows(day):
        if row.get("id_type_code") == id_card:
            assert ric.is_valid(row["id_no"]), table
            assert ric.get_birth_date(row["id_no"]) == row["birth_date"]
            checked += 1
    assert checked > 500


def _rule_fails(rule: Any, row: dict[str, Any]) -> bool:
    """Just the range and date_order kinds of the spec, enough to see that valid rows obey them."""
    if rule.kind == "range":
        value = row.get(rule.param("field"))
        if value is None:
            return False
        lo, hi = rule.param("min"), rule.param("max")
        return (lo is not None and Decimal(value) < Decimal(str(lo))) or (
            hi is not None and Decimal(value) > Decimal(str(hi))
        )
    if rule.kind == "date_order":
        a, b = row.get(rule.param("before")), row.get(rule.param("after"))
        if a is None or b is None:
            return False
        if not isinstance(a, dt.datetime) or not isinstance(b, dt.datetime):
            a = a.date() if isinstance(a, dt.datetime) else a
            b = b.date() if isinstance(b, dt.datetime) else b
        return bool(a > b)
    return False


def test_invalid_rows_are_tagged_and_counted(day: GenResult) -> None:
    spec = load_spec()
    bad = _invalid_keys(day)
    assert all(len(v) > 0 for v in day.invalid.values()), day.invalid_counts
    for kind, keys in day.invalid.items():
        assert {t for t, _ in keys} <= set(INVALID_KINDS[kind])
    # Valid rows obey the spec's ranges and date orders; each tagged row breaks its rule.
    failing = {
        _pk(t, r) for t, rows in day.rows.items() for r in rows for rule in spec.table(t).rules if _rule_fails(rule, r)
    }
    assert failing <= bad
    for kind, rule_table in (("vital_out_of_range", "vital_sign"), ("birth_after_visit", "visit"),
                             ("discharge_before_admission", "discharge")):
        assert {k for k in day.invalid[kind] if k[0] == rule_table} <= failing, kind


def test_invalid_ratio_gives_expected_counts(codes: Codes) -> None:
    one = generate(codes, ORG, DAY, days=1, seed=5, patients=400, invalid_ratio=0.1)
    per_day = {t: n for t, n in one.counts.items() if t not in ("dept", "staff")}
    assert one.invalid_counts == expected_invalid(per_day, 0.1)
    none = generate(codes, ORG, DAY, days=1, seed=5, patients=400, invalid_ratio=0.0)
    assert sum(none.invalid_counts.values()) == 0


def test_loads_and_daily_stats_agree(migrated_db: str, day: GenResult) -> None:
    spec = load_spec()
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        written = load_bulk(conn, spec, day.rows, day.updates)
        assert written == sum(day.counts.values())
        for table, n in day.counts.items():
            assert conn.execute(f"SELECT count(*) FROM emr.{table}").fetchone() == (n,)
        stats = conn.execute(
            "SELECT stat_date, outpatient_count, emergency_count, admission_count, discharge_count, death_count,"
            " inpatient_count, report_card_count FROM emr.daily_stats ORDER BY stat_date"
        ).fetchall()
        assert [s[0] for s in stats] == [DAY, DAY + dt.timedelta(days=1)]
        for stat_date, out, emg, adm, dis, deaths, in_hosp, cards in stats:
            by_type = dict(
                conn.execute(
                    "SELECT visit_type_code, count(*) FROM emr.visit WHERE visit_time::date = %s GROUP BY 1",
                    (stat_date,),
                ).fetchall()
            )
            assert (by_type.get("MZ", 0), by_type.get("JZ", 0), by_type.get("ZY", 0)) == (out, emg, adm)
            q = "SELECT count(*) FROM emr.{} WHERE {}::date = %s"
            assert conn.execute(q.format("discharge", "discharge_time"), (stat_date,)).fetchone() == (dis,)
            assert conn.execute(q.format("death_record", "death_time"), (stat_date,)).fetchone() == (deaths,)
            assert conn.execute(q.format("report_card", "report_time"), (stat_date,)).fetchone() == (cards,)
            end = dt.datetime.combine(stat_date, dt.time()) + dt.timedelta(days=1)
            (census,) = conn.execute(
                "SELECT count(*) FROM emr.visit WHERE visit_type_code = 'ZY' AND visit_time < %s"
                " AND (visit_end_time IS NULL OR visit_end_time >= %s)",
                (end, end),
            ).fetchone() or (None,)
            assert census == in_hosp
        # Discharges closed their visits through UPDATEs (CDC sees before/after).
        (closed,) = conn.execute("SELECT count(*) FROM emr.visit WHERE modify_flag = 'U'").fetchone() or (0,)
        assert closed == len(day.updates) > 0
        long_note = conn.execute("SELECT max(octet_length(content)) FROM emr.progress_note").fetchone()
        assert long_note is not None and long_note[0] > 8192


def test_cli_gen_prints_counts_only(migrated_db: str) -> None:
    runner = CliRunner()
    args = ["gen", "--dsn", migrated_db, "--seed", "3", "--patients", "150", "--date", "2026-10-01"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "emr.visit" in result.output and "身份证号校验位错误" in result.output
    with psycopg.connect(migrated_db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM emr.patient").fetchall()]
        ids = [r[0] for r in conn.execute("SELECT id_no FROM emr.patient").fetchall()]
    assert names and not any(n in result.output for n in names)
    assert not any(i in result.output for i in ids if i)
    # A second run on another date reuses departments and staff instead of failing on them.
    again = runner.invoke(main, [*args[:-1], "2026-10-02"])
    assert again.exit_code == 0, again.output
    # The same date twice is a clear one-line error, not a traceback.
    dup = runner.invoke(main, args)
    assert dup.exit_code != 0 and "已存在相同主键" in dup.output


def test_cli_steady_rate(migrated_db: str) -> None:
    args = ["gen", "--dsn", migrated_db, "--patients", "100", "--date", "2026-09-01", "--rate", "400",
            "--duration", "1.5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with psycopg.connect(migrated_db) as conn:
        (n,) = conn.execute("SELECT count(*) FROM emr.visit").fetchone() or (0,)
    assert n > 0
    assert "持续写入结束" in result.output


# --- the clock: a backfill lies in the past whatever the hour ------------------------------------

PLANNED = {("drug_order", "stop_time")}  # a planned time, not something that happened


def _happened(g: Group) -> list[tuple[str, str, dt.datetime]]:
    return [x for x in g.times() if x[:2] not in PLANNED]


def test_an_encounter_trails_its_start_by_at_most_the_tail(codes: Codes) -> None:
    """ENCOUNTER_TAIL bounds every catalogue path (inpatients' vitals, notes, labs, cards, scenarios);
    the clock relies on it to keep a backfilled day in the past."""
    longest = dt.timedelta()
    for seed in (1, 2, 3):
        hosp = Hospital(codes, ORG, DAY, seed=seed, patients=300, invalid_ratio=0.0, surveillance=True)
        for result in iter_days(hosp, DAY, 2):
            for g in result.groups:
                if g.rows.get("daily_stats"):
                    continue  # written at the end of the day, not trailing a visit
                for table, field, v in _happened(g):
                    assert v - g.time <= ENCOUNTER_TAIL, (table, field, v - g.time)
                    longest = max(longest, v - g.time)
    assert longest > ENCOUNTER_TAIL - dt.timedelta(hours=3)  # the bound is tight enough to mean something


@pytest.mark.parametrize("minute", [1, 59, 3 * 60 + 30, 9 * 60, 14 * 60 + 1, 23 * 60 + 59])
def test_the_default_backfill_lies_in_the_past_at_any_hour(codes: Codes, minute: int) -> None:
    """``gen``'s default day (yesterday), squeezed by ``now``: every row happened at least
    BACKFILL_LAG before ``now``, on that day, at 00:01 as at 23:59 (CI runs at any hour)."""
    now = dt.datetime(2026, 12, 3) + dt.timedelta(minutes=minute)
    day = backfill_day(now)
    assert day == dt.date(2026, 12, 2)
    hosp = Hospital(codes, ORG, day, seed=5, patients=150, invalid_ratio=0.0, now=now)
    result = hosp.day(day)
    visits = [g for g in result.groups if g.rows.get("visit") and g.time.date() == day]
    assert len(visits) >= 150
    for g in result.groups:
        written = now if g.rows.get("daily_stats") else now - BACKFILL_LAG  # the statistics are written by now
        for table, field, v in _happened(g):
            assert v <= written, (table, field, v, now)
    assert max(g.time for g in visits) > dt.datetime.combine(day, dt.time(9))  # squeezed, not crushed
    cards = [r for g in visits for r in g.rows.get("report_card", ())]
    assert cards and all(c["report_time"].date() == day for c in cards)  # none spills into today
    reported = [r for g in result.groups for r in g.rows.get("report_card", ()) if r["report_time"].date() == day]
    assert result.census.cards == len(reported)  # the day's statistics count every card of the day


# --- fingerprint: the generator's exact output, pinned (refactoring must not change a byte) -----

FINGERPRINTS = {
    # (seed, patients, days, invalid_ratio, now): sha256 of every group (time, rows, updates) in
    # generation order, the deliberate faults and the census. Covers deaths with a corrected card,
    # transfers, infants, the "today" clock squeeze (now) and both fault settings. The example code
    # tables (mappings/) and python-stdnum's region history feed the output too: update a digest only
    # for a deliberate change of the generated data, and say so in the commit message.
    (13, 400, 4, 0.05, None): "6366a52c26faf2e8e4f794dddf05ac6631463f9a1006f738456b7b77a37f5ed4",
    (7, 150, 3, 0.1, dt.datetime(2026, 10, 14, 15, 30)):
        "f1e2fc4a55ba49a2e33ba9abfddf3f1ce67a50025e31bcf687adecc748119603",
    (3, 200, 1, 0.0, None): "e8c39a5ed6fbed4ffcc6f00fda60eeeaaba15a7b2fcb220a916ab6b996780f0e",
}


def _fingerprint(codes: Codes, seed: int, patients: int, days: int, ratio: float, now: dt.datetime | None) -> str:
    """sha256 over the reprs (type and value, key order kept) of everything ``cdcsync gen`` would write."""
    import hashlib

    from cdcsync.synth.hospital import Hospital, iter_days

    digest = hashlib.sha256()

    def put(*parts: object) -> None:
        digest.update(repr(parts).encode())

    hosp = Hospital(codes, ORG, DAY, seed=seed, patients=patients, invalid_ratio=ratio, now=now)
    groups = [hosp.base_group(dt.datetime.combine(DAY, dt.time()) - dt.timedelta(days=30))]
    for result in iter_days(hosp, DAY, days):
        groups += result.groups
        put("day", result.date, sorted(result.invalid.items()), result.census)
    for g in groups:
        put("group", g.time)
        for table, rows in g.rows.items():
            for row in rows:
                put(table, [(k, type(v).__name__, v) for k, v in row.items()])
        for upd in g.updates:
            put("update", upd.table, list(upd.key.items()), list(upd.values.items()))
    return digest.hexdigest()


@pytest.mark.parametrize("params", list(FINGERPRINTS), ids=str)
def test_generator_output_is_pinned(codes: Codes, params: tuple[Any, ...]) -> None:
    """Same seed, same bytes: a change here changes what `cdcsync gen` writes for existing seeds."""
    got = _fingerprint(codes, *params)
    assert got == FINGERPRINTS[params], f"generated data changed for {params}: {got}"


# --- the catalogue file --------------------------------------------------------------------------


def test_catalogue_codes_resolve_in_the_example_hospital(codes: Codes) -> None:
    """What the catalogue names (national codes) the example hospital has local codes for, so its
    conditions produce their labs, drugs and exams. (Dysentery's notifiable codes are not in the
    example table: the example hospital files no dysentery cards.)"""
    from cdcsync.synth.catalog import load_catalog

    catalog = load_catalog()
    assert {c.key for c in catalog.conditions} >= {"flu", "covid", "tb", "hbv", "syphilis"}
    for cond in catalog.conditions:
        assert codes.with_prefix("icd10", cond.icd), cond.key
        for lab in cond.labs:
            assert codes.get("specimen_type", *lab.specimen), (cond.key, lab.report)
            for loinc in [it.loinc for it in lab.items] + ([lab.pathogen.item] if lab.pathogen else []):
                assert codes.get("lab_item", loinc), (cond.key, loinc)
        assert all(codes.get("drug", d.atc) and codes.get("route", d.route) for d in cond.drugs), cond.key
        assert all(codes.get("exam_type", e.type) for e in cond.exams), cond.key
        if cond.notifiable and cond.key != "dysentery":
            assert codes.get("notifiable_disease", *cond.notifiable), cond.key


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("los: [3, 7]", "los: [3, 7.5]"), "conditions[2].los: expected [min, max] whole numbers, got [3, 7.5]"),
        (('specimen: ["01"]', "specimen: [01]"), "labs.cbc.specimen[0]: expected a quoted code string"),
        (("labs: [cbc, crp]", "labs: [cbc, crpp]"), "conditions[1].labs[1]: expected one of cbc, crp, "),
        (("    fever: 0.4", "    fevr: 0.4"), "conditions[0].fevr: expected one of key, diagnosis,"),
        (("fever: 0.92", "fever: 92"), "conditions[2].fever: expected a probability between 0 and 1, got 92"),
        (("{outpatient: 20, emergency: 5}", "{outpatient: 20, emergncy: 5}"), "conditions[0].weight.emergncy:"),
        (("  cbc:\n", "  cbc:\n  cbc:\n"), "列：YAML 格式错误：键 'cbc' 重复"),  # with the line
    ],
)
def test_catalogue_errors_name_file_and_key(tmp_path: Any, edit: tuple[str, str], message: str) -> None:
    from cdcsync.synth.catalog import DEFAULT_PATH, load_catalog
    from cdcsync.synth.codes import SynthError

    old, new = edit
    text = DEFAULT_PATH.read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / "catalog.yaml"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(SynthError) as err:
        load_catalog(bad)
    assert "catalog.yaml: " in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)
