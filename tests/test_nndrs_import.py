"""`cdcsync nndrs import`: encodings, broken rows named by line, idempotent upsert, no patient values printed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cdcsync.mapping.domains import load_code_tables
from cdcsync.recon.cli import COMMANDS
from cdcsync.recon.nndrs import import_file, load_column_mapping, parse_datetime, read_cards

REPO = Path(__file__).resolve().parents[1]
HEADER = "卡片ID,卡片编号,患者姓名,有效证件号,性别,出生日期,人群分类,现住地址国标,疾病名称,病例分类,发病日期,诊断时间,死亡日期,报告单位,录入时间,审核状态,联系电话"  # noqa: E501
ROWS = [
    "1001,NO1,张三,110101199003071234,男,1990-03-07,农民,110101,乙型肝炎,确诊病例,2024-05-03,2024-05-05 15:00,,示例医院,2024-05-06 10:00:00,已审核,13800000000",  # noqa: E501
    "1002,NO2,李四,110101198501011236,女,1985/1/1,工人,110101,新型冠状病毒感染,临床诊断病例,2024年5月2日,2024/5/5 8:30,,示例医院,2024-05-06 11:00,已审核,",  # noqa: E501
    "1003,NO3,王五,110101197001011238,男,1970-13-45,工人,110101,手足口病,疑似病例,2024-05-04,2024-05-05 09:00,,示例医院,2024-05-06 12:00,未审核,",  # noqa: E501
    "1004,NO4,赵六,110101196001011230,男,1960-01-01,离退人员,110101,某种怪病,确诊病例,2024-05-01,2024-05-05 10:00,,示例医院,2024-05-06 12:30,已审核,",  # noqa: E501
]


def write(path: Path, lines: list[str], encoding: str) -> Path:
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


@pytest.fixture
def tables():  # type: ignore[no-untyped-def]
    return load_code_tables(REPO / "mappings", "example")


def test_parse_datetime_formats() -> None:
    assert parse_datetime("2024-05-06") == dt.datetime(2024, 5, 6)
    assert parse_datetime("2024/5/6 8:30") == dt.datetime(2024, 5, 6, 8, 30)
    assert parse_datetime("2024年5月6日") == dt.datetime(2024, 5, 6)
    assert parse_datetime("20240506") == dt.datetime(2024, 5, 6)
    assert parse_datetime(" ") is None
    with pytest.raises(ValueError):
        parse_datetime("2024-13-45")


def test_gbk_file_with_broken_row(tmp_path: Path, migrated_db: str, tables) -> None:  # type: ignore[no-untyped-def]
    f = write(tmp_path / "cards.csv", ["传染病报告卡查询结果", HEADER, *ROWS], "gbk")
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        summary = import_file(conn, f, load_column_mapping(), tables)
        assert summary.encoding == "GBK/GB18030"
        assert (summary.rows, summary.inserted, summary.skipped) == (4, 3, 1)
        assert [(e.line, e.message) for e in summary.errors] == [
            (5, "出生日期不是有效日期（应为 YYYY-MM-DD、YYYY/M/D 或 YYYY年M月D日）")]
        assert summary.unknown_disease == 1
        got = conn.execute("SELECT card_id, card_no, sex_code, disease_code, case_class_code, onset_date,"
                           " diagnosis_time, extra ->> '联系电话' FROM recon.nndrs_card ORDER BY card_id").fetchall()
        assert got == [
            ("1001", "NO1", "1", "20302", "3", dt.date(2024, 5, 3), dt.datetime(2024, 5, 5, 15), "13800000000"),
            ("1002", "NO2", "2", "227", "2", dt.date(2024, 5, 2), dt.datetime(2024, 5, 5, 8, 30), None),
            ("1004", "NO4", "1", None, "3", dt.date(2024, 5, 1), dt.datetime(2024, 5, 5, 10), None),
        ]
        again = import_file(conn, f, load_column_mapping(), tables)
        assert (again.inserted, again.updated, again.unchanged, again.skipped) == (0, 0, 3, 1)
        assert conn.execute("SELECT count(*) FROM recon.nndrs_card").fetchone() == (3,)
        # a corrected export updates the card in place
        fixed = write(tmp_path / "fixed.csv", [HEADER, ROWS[0].replace("2024-05-03", "2024-05-02")], "utf-8-sig")
        third = import_file(conn, fixed, load_column_mapping(), tables)
        assert (third.encoding, third.inserted, third.updated) == ("UTF-8（带BOM）", 0, 1)
        assert conn.execute("SELECT onset_date FROM recon.nndrs_card WHERE card_id = '1001'").fetchone() == (
            dt.date(2024, 5, 2),)


def test_cli_reports_line_without_patient_values(tmp_path: Path, migrated_db: str) -> None:
    f = write(tmp_path / "cards.csv", [HEADER, ROWS[0], ROWS[2], "1005,NO5,钱七,,男"], "gb18030")
    group = next(c for c in COMMANDS if c.name == "nndrs")
    result = CliRunner().invoke(group, ["import", str(f), "--dsn", migrated_db,
                                        "--mappings-dir", str(REPO / "mappings"), "--hospital", "example"])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "cards.csv 第 3 行：出生日期不是有效日期" in out
    assert "cards.csv 第 4 行：有 5 列，表头有 17 列" in out
    assert "新增 1" in out and "跳过 2" in out
    for value in ("张三", "王五", "钱七", "110101199003071234", "1970-13-45"):
        assert value not in out


def test_province_columns_file_and_utf8(tmp_path: Path, tables) -> None:  # type: ignore[no-untyped-def]
    cols = tmp_path / "province.yaml"
    cols.write_text("columns:\n  card_no: [报告卡编码]\n  disease_name: [病种]\n  case_class: [分类]\n"
                    "  onset_date: [发病时间]\nrequired: [disease_name]\n", encoding="utf-8")
    f = write(tmp_path / "p.csv", ["报告卡编码,病种,分类,发病时间", "X1,甲肝,确诊病例,2024-05-01"], "utf-8")
    cards, summary = read_cards(f, load_column_mapping(cols), tables)
    assert summary.encoding == "UTF-8" and not summary.errors
    assert cards[0]["card_id"] == "X1" and cards[0]["disease_code"] == "20301"


def test_missing_header_is_one_clear_error(tmp_path: Path, migrated_db: str) -> None:
    f = write(tmp_path / "bad.csv", ["a,b,c", "1,2,3"], "utf-8")
    group = next(c for c in COMMANDS if c.name == "nndrs")
    result = CliRunner().invoke(group, ["import", str(f), "--dsn", migrated_db])
    assert result.exit_code == 2
    assert "没有找到表头行" in result.output and "Traceback" not in result.output


def test_deleted_state_population_group_and_reporting_unit_columns(  # type: ignore[no-untyped-def]
        tmp_path: Path, tables) -> None:
    f = write(tmp_path / "d.csv", [
        "卡片编号,疾病名称,病例分类,发病日期,人群分类,报告单位编码,审核状态,删除时间",
        "N1,乙肝,确诊病例,2024-05-01,学生（大中小学）,12110000400000000X,已终审,",
        "N2,乙肝,确诊病例,2024-05-01,某种职业,12110000400000000X,已删除,2024/5/6 10:00",
        "N3,乙肝,确诊病例,2024-05-01,农民,,已删除,2024-05-06 99:00",
    ], "gb18030")
    cards, summary = read_cards(f, load_column_mapping(), tables)
    by_no = {c["card_no"]: c for c in cards}
    assert by_no["N1"]["population_group_code"] == "03" and by_no["N1"]["deleted_time"] is None
    assert by_no["N1"]["report_org_code"] == "12110000400000000X"
    # an unknown 人群分类 still loads (compared as its text); 删除时间 is parsed like any time
    assert by_no["N2"]["population_group_code"] is None and by_no["N2"]["population_group"] == "某种职业"
    assert by_no["N2"]["deleted_time"] == dt.datetime(2024, 5, 6, 10)
    assert [(e.line, e.message) for e in summary.errors] == [
        (4, "删除时间不是有效的日期时间（应为 YYYY-MM-DD HH:MM[:SS]）")]
