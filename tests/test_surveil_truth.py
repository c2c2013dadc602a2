"""Ground truth: ``gen --truth`` writes the cases a correct engine leaves open; the engine over the
generated rows (events through the validation and mapping stage) matches it 100 % for every kind,
and ``rules evaluate`` tells when it does not."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.surveil.cases import Kind


@pytest.mark.parametrize("seed", [1, 2])
def test_engine_matches_the_truth_of_the_synthetic_hospital(migrated_db: str, tmp_path: Path, seed: int) -> None:
    truth = tmp_path / "truth.jsonl"
    runner = CliRunner()
    gen = runner.invoke(main, ["gen", "--dsn", migrated_db, "--seed", str(seed), "--patients", "120", "--days", "2",
                               "--date", "2026-10-01", "--truth", str(truth)])
    assert gen.exit_code == 0, gen.output
    lines = [json.loads(line) for line in truth.read_text(encoding="utf-8").splitlines()]
    assert {c["kind"] for c in lines} == {k.value for k in Kind}  # every kind is exercised
    assert all(set(c) == {"kind", "status", "disease", "patient_id", "visit_id"} for c in lines)

    # Nothing ran yet: every truth case is missed.
    before = runner.invoke(main, ["rules", "evaluate", "--truth", str(truth), "--dsn", migrated_db])
    assert before.exit_code == 1 and "不一致" in before.output

    ran = runner.invoke(main, ["rules", "evaluate", "--truth", str(truth), "--dsn", migrated_db, "--run",
                               "--json"])
    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout)
    assert report["perfect"] and report["missing"] == [] and report["extra"] == []
    assert all(k["recall"] == 1.0 and k["precision"] == 1.0 and k["truth"] > 0 for k in report["kinds"])

    # The negatives: a negative flu test, oseltamivir with a reported flu diagnosis, a disease the
    # HIS reported itself: none of their visits has a case.
    with psycopg.connect(migrated_db) as conn:
        negatives = conn.execute(
            "SELECT count(*) FROM cdcsync.surveil_case c WHERE c.visit_id IN ("
            " SELECT visit_id FROM emr.lab_result WHERE lab_result_id LIKE '%LSR00' AND pathogen_code IS NULL"
            " UNION SELECT visit_id FROM emr.drug_order WHERE drug_order_id LIKE '%MS' AND drug_code = 'YP000123')"
        ).fetchone()
    assert negatives == (0,)

    # A case the engine did not open is reported as missed, per kind.
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        store_case = conn.execute("SELECT case_id FROM cdcsync.surveil_case WHERE kind = 'special_drug'"
                                  " AND status = '待核查' LIMIT 1").fetchone()
        assert store_case is not None
        from cdcsync.surveil.cases import Actor, CaseStore

        CaseStore(conn).close_excluded(store_case[0], "测试：人为排除", Actor("D001", "doctor"))
    after = runner.invoke(main, ["rules", "evaluate", "--truth", str(truth), "--dsn", migrated_db])
    assert after.exit_code == 1 and "漏报" in after.output


def test_truth_file_errors_name_the_line(tmp_path: Path, migrated_db: str) -> None:
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"kind": "death", "status": "待核查", "disease": "202", "patient_id": "P", "visit_id": null}\n'
                   '{"kind": "cough"}\n', encoding="utf-8")
    out = CliRunner().invoke(main, ["rules", "evaluate", "--truth", str(bad), "--dsn", migrated_db])
    assert out.exit_code == 2 and "第 2 行" in out.output and str(bad) in out.output


def test_rules_as_the_stream_delivers_match_the_truth(migrated_db: str) -> None:
    """As the consumer sees it: each load transaction (one table of one day, as ``gen`` writes)
    is handed to the engine right after its commit, the mirror holding only what is committed."""
    import datetime as dt

    from cdcsync.event import Change, Event
    from cdcsync.spec import load_spec
    from cdcsync.surveil.evaluate import TruthEntry, actual_cases, evaluate
    from cdcsync.surveil.mirror import RULE_TABLES, mirror_events
    from cdcsync.surveil.pack import load_pack
    from cdcsync.surveil.rules import RuleEngine, holder_mapper
    from cdcsync.synth.hospital import Hospital, iter_days, load_codes
    from cdcsync.synth.load import load_bulk
    from cdcsync.synth.truth import expected_cases
    from cdcsync.validate.stage import ValidationStage
    from tests.surveil_rows import ORG, holder

    spec, pack = load_spec(), load_pack()
    first = dt.date(2026, 11, 1)
    hosp = Hospital(load_codes(None, "example"), ORG, first, seed=3, patients=250, surveillance=True)
    base = hosp.base_group(dt.datetime.combine(first, dt.time()) - dt.timedelta(days=30))
    engine = RuleEngine(pack, mapper=holder_mapper(holder()))
    seen: set[str] = set()
    written: list[tuple[str, dict[str, object]]] = []
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for day in iter_days(hosp, first, 3):
            groups = [base, *day.groups] if day.date == first else day.groups
            rows: dict[str, list[dict[str, object]]] = {}
            for g in groups:
                for table, batch in g.rows.items():
                    rows.setdefault(table, []).extend(batch)
            for table in spec.tables:
                if not rows.get(table.name):
                    continue
                load_bulk(conn, spec, {table.name: rows[table.name]})
                written.extend((table.name, r) for r in rows[table.name])
                if table.name not in RULE_TABLES:
                    continue
                with psycopg.connect(migrated_db) as tx:
                    events = [e for e in mirror_events(tx, holder(), ORG, "emr", tables=[table.name])
                              if e.id not in seen]
                    tx.rollback()
                    with tx.transaction():
                        engine.apply(tx, events)
                    seen.update(e.id for e in events)
            load_bulk(conn, spec, {}, [u for g in groups for u in g.updates])

        stage = ValidationStage(holder(), ORG, "truth")
        tables = holder().current().tables
        now = dt.datetime.now(dt.UTC)
        mapped = []
        for n, (table, row) in enumerate(written):
            if table in RULE_TABLES:
                out = stage(Change("c", "emr", table, None, {k: row.get(k) for k in tables[table].table.field_names},
                                   1, 1, now, n))
                if isinstance(out, Event) and out.after is not None:
                    mapped.append((table, out.after))
        truth = [TruthEntry((c.kind, c.status, c.disease, c.patient_id, c.visit_id), frozenset(c.other_visits))
                 for c in expected_cases(pack, mapped)]
        result = evaluate(truth, actual_cases(conn))
    assert {s.kind for s in result.scores if s.truth} == {k.value for k in Kind}
    assert result.perfect, (result.missing[:5], result.extra[:5])
