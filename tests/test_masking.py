"""Masking: every free-text field and every date of birth is pii, and `quarantine show`/`list` mask it."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.quarantine.store import MASK, masked_row
from cdcsync.spec import load_spec
from tests.cdc_util import settings_for

SPEC = load_spec()
TEXT_TYPES = ("varchar", "text")
# Free text by its Chinese description: whatever is called so must be masked.
FREE_TEXT_WORDS = ("主诉", "描述", "病史", "所见", "结论", "经过", "备注", "医嘱", "情况", "记录内容", "地址")


@pytest.mark.parametrize("table", [t.name for t in SPEC.tables])
def test_every_text_field_is_masked_or_declared_safe(table: str) -> None:
    undeclared = [f.name for f in SPEC.table(table).fields
                  if f.type in TEXT_TYPES and not f.domain and not f.pii_declared]
    assert not undeclared, f"{table}: say pii: true or pii: false for {undeclared}"
    births = [f.name for f in SPEC.table(table).fields if "birth" in f.name and not f.pii]
    assert not births, f"{table}: dates of birth must be pii: {births}"
    free = [f.name for f in SPEC.table(table).fields
            if f.type in TEXT_TYPES and not f.domain and not f.name.endswith(("_id", "_code", "_no"))
            and any(w in f.comment for w in FREE_TEXT_WORDS) and not f.pii]
    assert not free, f"{table}: free-text fields not marked pii: {free}"


def test_long_and_free_text_fields_are_pii() -> None:
    # text columns and long varchars hold narrative; the few that do not are names of items.
    for t in SPEC.tables:
        for f in t.fields:
            if f.type == "text" or (f.type == "varchar" and (f.length or 0) >= 1000):
                assert f.pii, f"{t.name}.{f.name}"


def test_masked_row_hides_free_text_birth_dates_and_unknown_columns() -> None:
    row = {"org_code": "O1", "visit_id": "V1", "patient_id": "P1", "chief_complaint": "发热三天，张三之母代诉",
           "birth_date": "1980-01-02", "visit_type_code": "1", "visit_type_code_local": "MZ",
           "vendor_extra": "某某", "dept_name": "发热门诊", "doctor_name": None}
    masked = masked_row(SPEC, "visit", row)
    assert masked is not None
    assert masked["chief_complaint"] == MASK and masked["birth_date"] == MASK and masked["vendor_extra"] == MASK
    assert masked["visit_id"] == "V1" and masked["visit_type_code_local"] == "MZ" and masked["dept_name"] == "发热门诊"
    assert masked["doctor_name"] is None


def test_quarantine_show_and_list_print_no_free_text_or_birth_date(migrated_db: str, tmp_path: Path) -> None:
    _, cfg = settings_for(migrated_db, tmp_path)
    secrets = {"chief_complaint": "咳嗽伴发热五天秘密主诉", "birth_date": "1931-07-19",
               "present_illness": "患者王秘密于五天前受凉后出现发热", "epidemiological_history": "曾赴某地旅居秘密"}
    rows = {
        "visit": {"org_code": "O1", "visit_id": "V1", "patient_id": "P1", "chief_complaint": secrets["chief_complaint"],
                  "birth_date": secrets["birth_date"]},
        "admission": {"org_code": "O1", "admission_id": "A1", "patient_id": "P1",
                      "present_illness": secrets["present_illness"],
                      "epidemiological_history": secrets["epidemiological_history"]},
    }
    with psycopg.connect(migrated_db) as conn:
        for i, (table, raw) in enumerate(rows.items()):
            conn.execute(
                "INSERT INTO cdcsync.quarantine (event_id, destination, table_name, primary_key, lsn, rule_id,"
                " field, message, raw_row) VALUES (%s, 't', %s, %s, '0/1', 'VAL001', 'visit_time', '缺少必填字段', %s)",
                (f"E{i}", table, json.dumps({"org_code": "O1"}), json.dumps(raw, ensure_ascii=False)))
    runner = CliRunner()
    outputs = []
    for args in (["quarantine", "show", "E0"], ["quarantine", "show", "E1"], ["quarantine", "show", "E0", "--json"],
                 ["quarantine", "list", "--status", "all"]):
        out = runner.invoke(main, ["-c", str(cfg), *args])
        assert out.exit_code == 0, out.output
        outputs.append(out.output)
    assert MASK in outputs[0] and MASK in outputs[1] and "V1" in outputs[0]
    text = "\n".join(outputs)
    leaked = [k for k, v in secrets.items() if v in text]
    assert not leaked, leaked
