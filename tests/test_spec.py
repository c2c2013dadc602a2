"""The dataset spec loads, follows the dataset conventions, and its generated files are current."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdcsync.spec import DOMAINS, RULE_KINDS, SpecError, load_spec
from cdcsync.spec.ddl import generate_ddl
from cdcsync.spec.docs import generate_docs

REPO = Path(__file__).resolve().parents[1]
SPEC_FILE = REPO / "cdcsync" / "spec" / "dataset.yaml"

EXPECTED_TABLES = {
    "patient", "visit", "diagnosis", "symptom", "vital_sign", "lab_report", "lab_result", "exam_report",
    "drug_order", "progress_note", "admission", "discharge", "medical_record_home", "death_record",
    "report_card", "report_card_frontend", "exposure_history", "dept", "staff", "daily_stats",
}


def test_spec_loads_with_every_table() -> None:
    spec = load_spec()
    assert spec.version == "1.0"
    assert set(spec.table_names) == EXPECTED_TABLES
    assert len(spec.digest) == 16
    assert load_spec() is spec  # cached


def test_every_table_has_common_columns() -> None:
    for t in load_spec().tables:
        for col in ("org_code", "modify_flag", "collect_time", "update_time"):
            assert t.has_field(col), f"{t.name} lacks {col}"
        assert t.field("org_code").required and t.field("modify_flag").domain == "modify_flag"
        assert t.field("collect_time").type == "timestamp" and t.field("update_time").required


def test_primary_keys_exist_are_required_and_start_with_org_code() -> None:
    for t in load_spec().tables:
        assert t.primary_key[0] == "org_code"
        for col in t.primary_key:
            assert t.field(col).required, f"{t.name}.{col}"
        assert t.has_field(t.business_time)


def test_domains_are_from_the_fixed_list() -> None:
    used: set[str] = set()
    for t in load_spec().tables:
        for f in t.coded_fields:
            assert f.domain is not None and f.domain in DOMAINS
            used.add(f.domain)
    assert len(used) >= 40  # the dataset exercises (almost) every national domain


def test_pii_fields_are_marked() -> None:
    spec = load_spec()
    for table, col in [("patient", "name"), ("patient", "id_no"), ("patient", "phone"),
                       ("patient", "current_addr_detail"), ("report_card", "patient_name"),
                       ("progress_note", "content")]:
        assert spec.table(table).field(col).pii, f"{table}.{col}"
    assert not spec.table("patient").field("sex_code").pii


def test_rules_reference_existing_fields() -> None:
    spec = load_spec()
    ids = [r.id for t in spec.tables for r in t.rules]
    assert len(ids) == len(set(ids))
    kinds = {r.kind for t in spec.tables for r in t.rules}
    assert kinds == set(RULE_KINDS)
    for t in spec.tables:
        for r in t.rules:
            assert r.fields and all(t.has_field(f) for f in r.fields), r.id
    vs001 = spec.table("vital_sign").rules[0]
    assert (vs001.id, vs001.param("field"), vs001.param("min"), vs001.param("max")) == ("VS001", "temperature", 34, 43)


def test_helpers() -> None:
    patient = load_spec().table("patient")
    assert patient.field("sex_code").sql_type == "varchar(16)"
    assert load_spec().table("vital_sign").field("temperature").sql_type == "numeric(4,1)"
    assert {f.name for f in patient.coded_fields} >= {"sex_code", "id_type_code", "ethnicity_code"}
    with pytest.raises(KeyError):
        patient.field("nope")


def test_generated_ddl_matches_committed_migration() -> None:
    committed = (REPO / "sql" / "002_emr_mirror.sql").read_text(encoding="utf-8")
    assert generate_ddl() == committed, "regenerate: python -m cdcsync.spec.ddl > sql/002_emr_mirror.sql"


def test_generated_docs_match_committed_reference() -> None:
    committed = (REPO / "docs" / "dataset.md").read_text(encoding="utf-8")
    assert generate_docs() == committed, "regenerate: python -m cdcsync.spec.docs > docs/dataset.md"


def test_ddl_does_not_create_a_publication() -> None:
    assert "CREATE PUBLICATION" not in generate_ddl().upper()


# ---------------------------------------------------------------- bad spec files


Change = Callable[[dict[str, Any]], None]


def _mutated(tmp_path: Path, change: Change) -> Path:
    doc = yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))
    change(doc)
    path = tmp_path / "dataset.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def _set(path: list[Any], value: object) -> Change:
    def change(doc: dict[str, Any]) -> None:
        node: Any = doc
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return change


def _delete(path: list[Any]) -> Change:
    def change(doc: dict[str, Any]) -> None:
        node: Any = doc
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
    return change


BAD_CASES = [
    (_set(["tables", "patient", "fields", 3, "type"], "strng"),
     'tables.patient.fields[3].type: expected one of varchar, text', '"strng"'),
    (_set(["tables", "patient", "fields", 4, "domain"], "gender"),
     "tables.patient.fields[4].domain: expected one of id_type, sex", '"gender"'),
    (_delete(["tables", "patient", "fields", 3, "length"]),
     "tables.patient.fields[3].length: missing required key", None),
    (_set(["tables", "patient", "primary_key"], ["org_code", "patient_no"]),
     'tables.patient.primary_key[1]: no field "patient_no"', None),
    (_set(["tables", "patient", "primary_key"], ["org_code", "id_no"]),
     'tables.patient.primary_key[1]: primary-key field "id_no" must be required', None),
    (_set(["tables", "visit", "business_time"], "visit_tme"),
     'tables.visit.business_time: no field "visit_tme"', None),
    (_set(["tables", "visit", "business_time"], "dept_code"),
     'tables.visit.business_time: field "dept_code" is varchar', None),
    (_set(["tables", "visit", "timeliness"], "hourly"),
     "tables.visit.timeliness: expected one of realtime, 2h, 24h, daily", None),
    (_set(["tables", "patient", "fields", 4, "comment"], "sex"),
     "tables.patient.fields[4].comment: expected a Chinese description", None),
    (_set(["tables", "patient", "fields", 4, "colour"], "red"),
     "tables.patient.fields[4].colour: unknown key", None),
    (_set(["tables", "vital_sign", "rules", 0, "kind"], "between"),
     "tables.vital_sign.rules[0].kind: expected one of range, date_order", None),
    (_set(["tables", "vital_sign", "rules", 0, "field"], "temp"),
     'tables.vital_sign.rules[0].field: no field "temp"', None),
    (_set(["tables", "vital_sign", "rules", 0, "min"], 50),
     "tables.vital_sign.rules[0].min: min 50 is greater than max 43", None),
    (_set(["tables", "vital_sign", "rules", 1, "id"], "VS001"),
     'tables.vital_sign.rules[1].id: duplicate rule id "VS001"', None),
    (_set(["version"], 1.0), "version: expected a non-empty string", None),
    (_delete(["tables", "dept", "comment"]), "tables.dept.comment: missing required key", None),
]


@pytest.mark.parametrize(("change", "expected", "also"), BAD_CASES)
def test_bad_spec_gives_one_line_error(tmp_path: Path, change: Change, expected: str, also: str | None) -> None:
    path = _mutated(tmp_path, change)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {expected}"), message
    if also:
        assert also in message


def test_yaml_syntax_and_duplicate_keys(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: '1.0'\ntables: {patient: [\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"broken\.yaml: 第 \d+ 行第 \d+ 列：YAML 格式错误"):
        load_spec(broken)

    dup = tmp_path / "dup.yaml"
    dup.write_text("version: '1.0'\nversion: '1.1'\nname: 数据集\ntables: {}\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"dup\.yaml: 第 2 行第 1 列：YAML 格式错误：键 'version' 重复"):
        load_spec(dup)

    with pytest.raises(SpecError, match=r"missing\.yaml: cannot read file"):
        load_spec(tmp_path / "missing.yaml")

