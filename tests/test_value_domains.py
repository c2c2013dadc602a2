"""National value domains, the example hospital's local tables, the loader's errors and CSV import."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdcsync.mapping.cli import codes
from cdcsync.mapping.domains import (
    MappingError,
    default_mappings_dir,
    load_code_tables,
    load_local,
    load_national,
)
from cdcsync.mapping.importer import CodeImportError, import_csv

REPO = Path(__file__).resolve().parents[1]
MAPPINGS = REPO / "mappings"
DOMAIN_IDS = """id_type sex ethnicity marital_status nationality education occupation population_group region org
patient_belong notifiable_disease icd10 diagnosis_status case_type clinical_severity death_diagnosis lab_conclusion
infection_route contact_mode card_category visit_type diagnosis_category department lab_item specimen_type
qualitative_result abnormal_flag pathogen exam_type drug route order_category discharge_mode admission_route
document_type death_cause modify_flag procedure payment_method blood_type rh_blood_type admission_condition
relationship""".split()  # noqa: SIM905 - readable list of 44 ids


@pytest.fixture(scope="module")
def national() -> dict:
    return load_national(MAPPINGS)


@pytest.fixture
def tmp_mappings(tmp_path: Path) -> Path:
    root = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, root)
    return root


def names(domain) -> dict[str, str]:
    return {c.code: c.name for c in domain}


# --- the national domains ----------------------------------------------------------------------------


def test_all_fixed_domains_present(national: dict) -> None:
    assert len(DOMAIN_IDS) == 44
    assert set(DOMAIN_IDS) <= set(national)
    assert len(national) >= 40


def test_every_domain_names_standard_and_version_date(national: dict) -> None:
    for d in national.values():
        assert d.standard.strip(), d.id
        assert isinstance(d.version_date, dt.date), d.id
        assert dt.date(1980, 1, 1) <= d.version_date <= dt.date.today(), d.id
        assert len(d) > 0, d.id
        if d.subset:
            assert d.source_note, f"{d.id}: a subset must say so in source_note"


def test_sex_gb_t_2261_1(national: dict) -> None:
    sex = national["sex"]
    assert "GB/T 2261.1-2003" in sex.standard
    assert names(sex) == {"0": "未知的性别", "1": "男性", "2": "女性", "5": "女性改(变)为男性",
                          "6": "男性改(变)为女性", "9": "未说明的性别"}


def test_ethnicity_gb_t_3304(national: dict) -> None:
    eth = national["ethnicity"]
    assert "GB/T 3304-1991" in eth.standard
    codes = list(eth.codes)
    assert codes == [f"{i:02d}" for i in range(1, 57)]
    assert eth.name_of("01") == "汉族"
    assert eth.name_of("03") == "回族"
    assert eth.name_of("11") == "满族"
    assert eth.name_of("56") == "基诺族"


def test_marital_status_and_id_type(national: dict) -> None:
    assert national["marital_status"].name_of("20") == "已婚"
    assert national["marital_status"].name_of("40") == "离婚"
    assert "GB/T 2261.2-2003" in national["marital_status"].standard
    assert national["id_type"].name_of("01") == "居民身份证"
    assert national["blood_type"].name_of("4") == "AB型"
    assert national["discharge_mode"].name_of("5") == "死亡"
    assert national["nationality"].name_of("CHN") == "中国"
    assert national["nationality"].codes["CHN"].attrs["numeric"] == "156"
    assert national["region"].name_of("110000") == "北京市"
    assert national["region"].subset


def test_notifiable_diseases(national: dict) -> None:
    nd = national["notifiable_disease"]
    by_name = {c.name: c for c in nd}
    assert by_name["鼠疫"].attrs["category"] == "甲类" and "A20" in by_name["鼠疫"].attrs["icd10"]
    assert by_name["霍乱"].attrs["category"] == "甲类" and "A00" in by_name["霍乱"].attrs["icd10"]
    assert by_name["新型冠状病毒感染"].attrs["category"] == "乙类"
    assert by_name["手足口病"].attrs["category"] == "丙类"
    top = [c for c in nd if "parent" not in c.attrs]
    per_class = {k: sum(1 for c in top if c.attrs["category"] == k) for k in ("甲类", "乙类", "丙类")}
    assert per_class == {"甲类": 2, "乙类": 28, "丙类": 11}
    for c in nd:
        assert c.attrs["category"] in ("甲类", "乙类", "丙类")
        assert c.attrs["icd10"], c.code
        if "parent" in c.attrs:
            assert nd.codes[c.attrs["parent"]].attrs["category"] == c.attrs["category"]


def test_icd10_codes_referenced_elsewhere_exist(national: dict) -> None:
    icd = national["icd10"]
    assert icd.subset and len(icd) >= 150
    for c in national["notifiable_disease"]:
        for code in c.attrs["icd10"]:
            assert code in icd, f"notifiable_disease {c.code} {c.name}: {code} not in icd10"
    for domain in ("death_diagnosis", "death_cause"):
        for c in national[domain]:
            assert icd.name_of(c.code) == c.name, (domain, c.code)


# --- the example hospital ------------------------------------------------------------------------------


def test_example_hospital_targets_exist() -> None:
    tables = load_code_tables(MAPPINGS, "example")  # strict: raises on a missing target
    assert tables.issues == ()
    assert set(tables.local) == set(DOMAIN_IDS), "the example hospital has a table for every domain"
    for table in tables.local.values():
        dom = tables.national[table.domain]
        for local, nat in table.map.items():
            assert nat in dom, f"{table.domain}: {local} -> {nat}"


def test_map_semantics() -> None:
    t = load_code_tables(MAPPINGS, "example")
    assert t.map("sex", "M") == "1" and t.map("sex", "F") == "2"
    assert t.map("sex", "2") == "2"  # passthrough of a national code
    assert t.map("sex", "7") is None and t.map("sex", None) is None
    assert t.map("id_type", "SFZ") == "01"
    assert t.map("id_type", "01") is None  # no passthrough for id_type in the example
    assert t.map("icd10", "J18.900x001") == "J18.9" and t.map("icd10", "J18.9") == "J18.9"
    assert t.map("drug", "YP000123") == t.map("drug", "YP000124") == "J05AH02"  # many-to-one
    assert t.map("department", "HXNK") == t.map("department", "0301") == "03.01"
    assert t.map("lab_item", "LIS-CRP") == "1988-5"
    assert t.map("visit_type", "JZ") == "2"
    assert t.map("region", "310103") == "310101"  # abolished 卢湾区 → 黄浦区
    assert t.map("no_such_domain", "x") is None
    assert t.version.startswith(t.version_hash) and t.version.endswith(t.version_date.isoformat())


def test_default_mappings_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CDCSYNC_MAPPINGS_DIR", raising=False)
    assert default_mappings_dir() == MAPPINGS
    monkeypatch.setenv("CDCSYNC_MAPPINGS_DIR", str(tmp_path))
    assert default_mappings_dir() == tmp_path


# --- bad files: one line naming file and key -----------------------------------------------------------


def _error(root: Path) -> str:
    with pytest.raises(MappingError) as info:
        load_code_tables(root, "example")
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_local_target_missing_is_one_line(tmp_mappings: Path) -> None:
    path = tmp_mappings / "local/example/sex.yaml"
    path.write_text(path.read_text(encoding="utf-8") + '  "X7": "7"\n', encoding="utf-8")
    msg = _error(tmp_mappings)
    assert msg.endswith('local/example/sex.yaml: map.X7: 国家代码 "7" 不在值域 sex（GB/T 2261.1-2003）中')
    relaxed = load_code_tables(tmp_mappings, "example", strict=False)
    assert [(i.domain, i.local_code, i.national_code) for i in relaxed.issues] == [("sex", "X7", "7")]
    assert relaxed.map("sex", "X7") is None and relaxed.map("sex", "M") == "1"


@pytest.mark.parametrize(
    ("file", "old", "new", "expect"),
    [
        ("national/sex.yaml", '{code: "1", name: "男性"}', '{code: 1, name: "男性"}',
         ["national/sex.yaml", "codes[1].code", "应为带引号的代码"]),
        ("national/sex.yaml", '{code: "2", name: "女性"}', '{code: "1", name: "女性"}',
         ["national/sex.yaml", "codes[2].code", "代码 '1' 重复"]),
        ("national/sex.yaml", "version_date: 2003-01-01", "version_date: 2003-13-01",
         ["national/sex.yaml", "month must be in 1..12", "YYYY-MM-DD"]),
        ("national/sex.yaml", "standard:", "standards:", ["national/sex.yaml", "standards", "未知的键"]),
        ("national/marital_status.yaml", "id: marital_status", "id: marital",
         ["national/marital_status.yaml", "id:", "marital_status"]),
        ("national/sex.yaml", '{code: "9", name: "未说明的性别"}', '{code: "9"}',
         ["national/sex.yaml", "codes[5]", "'name'"]),
        ("local/example/sex.yaml", '"F": "2"', '"M": "2"', ["local/example/sex.yaml", "键 'M' 重复", "第 "]),
        ("local/example/sex.yaml", '"F": "2"', 'NO: "2"', ["local/example/sex.yaml", "布尔值", "加引号"]),
        ("local/example/sex.yaml", '"F": "2"', '"F": [2', ["local/example/sex.yaml", "第 ", "YAML 格式错误"]),
        ("local/example/sex.yaml", "passthrough: true", "passthrough: yes please",
         ["local/example/sex.yaml", "passthrough", "true 或 false"]),
        ("local/example/sex.yaml", "hospital: example", "hospital: other",
         ["local/example/sex.yaml", "hospital", "example"]),
    ],
)
def test_bad_file_one_line_error(tmp_mappings: Path, file: str, old: str, new: str, expect: list[str]) -> None:
    path = tmp_mappings / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    msg = _error(tmp_mappings)
    for part in expect:
        assert part in msg, (part, msg)


def test_cli_bad_file_no_traceback(tmp_mappings: Path) -> None:
    (tmp_mappings / "national/sex.yaml").write_text("id: sex\nname: 性别\n", encoding="utf-8")
    result = CliRunner().invoke(codes, ["--mappings-dir", str(tmp_mappings), "list"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("错误：") and "sex.yaml" in lines[0] and "standard" in lines[0]
    assert "Traceback" not in result.output


# --- CSV import ----------------------------------------------------------------------------------------

ICD_CSV = "代码,名称,备注\nA00,霍乱,\nA00.0,古典生物型霍乱,x\nJ18.9,未特指的肺炎,\n"


def test_import_utf8_keeps_header(tmp_mappings: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "icd.csv"
    quoted = ICD_CSV.replace("A00.0,古典生物型霍乱,x", '"A00.0","古典生物型霍乱",x')
    csv_file.write_text("\ufeff" + quoted, encoding="utf-8")
    result = import_csv(tmp_mappings, "icd10", csv_file)
    assert result.encoding == "utf-8" and result.previous_count > 150
    dom = load_national(tmp_mappings)["icd10"]
    assert list(dom.codes) == ["A00", "A00.0", "J18.9"] and dom.name_of("A00.0") == "古典生物型霍乱"
    assert dom.standard.startswith("ICD-10") and dom.version_date == dt.date(2016, 1, 1) and not dom.subset
    assert "导入" in (dom.source_note or "")
    assert not list((tmp_mappings / "national").glob(".*tmp"))
    # the example hospital's icd10 table now points at codes that are gone: reported, not hidden
    assert any("J06.900 -> J06.9" in d for d in result.dangling)


def test_import_gbk_via_cli_keeps_attributes(tmp_mappings: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "nd.csv"
    rows = "病种编码,病种名称\n101,鼠疫\n102,霍乱\n999,新发传染病\n"
    csv_file.write_bytes(rows.encode("gbk"))
    result = CliRunner().invoke(codes, ["--mappings-dir", str(tmp_mappings), "import", "--domain",
                                        "notifiable_disease", "--code-column", "病种编码", "--name-column",
                                        "病种名称", "--version-date", "2024-01-01", str(csv_file)])
    assert result.exit_code == 0, result.output
    assert "3 条" in result.output and "GB18030" in result.output
    nd = load_national(tmp_mappings)["notifiable_disease"]
    assert nd.version_date == dt.date(2024, 1, 1)
    assert nd.codes["101"].attrs["category"] == "甲类"  # kept from the shipped file
    assert nd.name_of("999") == "新发传染病" and nd.codes["999"].attrs == {}


def test_import_broken_lines_reported_and_nothing_written(tmp_mappings: Path, tmp_path: Path) -> None:
    target = tmp_mappings / "national/icd10.yaml"
    before = target.read_bytes()
    csv_file = tmp_path / "bad.csv"
    csv_file.write_bytes("代码,名称\nA00,霍乱\n,无代码\nA00,重复的霍乱\nA01\nA02,\n\nB05,麻疹\n".encode("gbk"))
    with pytest.raises(CodeImportError) as info:
        import_csv(tmp_mappings, "icd10", csv_file)
    problems = info.value.problems
    assert problems == [
        "第 3 行：代码为空",
        "第 4 行：代码 A00 重复（第 2 行已有）",
        "第 5 行：只有 1 列，至少需要 2 列",
        "第 6 行：代码 A02 的名称为空",
    ]
    assert "\n" not in str(info.value) and "bad.csv" in str(info.value)
    assert target.read_bytes() == before
    result = CliRunner().invoke(codes, ["--mappings-dir", str(tmp_mappings), "import", "--domain", "icd10",
                                        str(csv_file)])
    assert result.exit_code == 2
    assert "第 3 行" in result.output and "第 6 行" in result.output and "Traceback" not in result.output


def test_import_unknown_column_and_domain(tmp_mappings: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "x.csv"
    csv_file.write_text(ICD_CSV, encoding="utf-8")
    with pytest.raises(CodeImportError, match="表头中没有代码列 'nope'"):
        import_csv(tmp_mappings, "icd10", csv_file, code_column="nope")
    with pytest.raises(MappingError, match="没有值域"):
        import_csv(tmp_mappings, "no_such", csv_file)


# --- version -------------------------------------------------------------------------------------------


def test_version_changes_when_a_file_changes(tmp_mappings: Path) -> None:
    v1 = load_code_tables(tmp_mappings, "example")
    assert load_code_tables(tmp_mappings, "example").version == v1.version  # deterministic
    path = tmp_mappings / "local/example/sex.yaml"
    path.write_text(path.read_text(encoding="utf-8") + '  "W": "2"\n', encoding="utf-8")
    v2 = load_code_tables(tmp_mappings, "example")
    assert v2.version_hash != v1.version_hash and v2.map("sex", "W") == "2"
    nat = tmp_mappings / "national/modify_flag.yaml"
    nat.write_text(nat.read_text(encoding="utf-8").replace("version_date: 2024-05-06", "version_date: 2026-11-20"),
                   encoding="utf-8")
    v3 = load_code_tables(tmp_mappings, "example")
    assert v3.version_hash != v2.version_hash and v3.version_date == dt.date(2026, 11, 20)


def test_cli_list_and_show() -> None:
    runner = CliRunner()
    out = runner.invoke(codes, ["--mappings-dir", str(MAPPINGS), "list", "--hospital", "example"])
    assert out.exit_code == 0, out.output
    assert "共 44 个值域" in out.output and "GB/T 3304-1991" in out.output
    out = runner.invoke(codes, ["--mappings-dir", str(MAPPINGS), "show", "sex", "--hospital", "example"])
    assert out.exit_code == 0 and "M -> 1 男性" in out.output
    out = runner.invoke(codes, ["--mappings-dir", str(MAPPINGS), "show", "nope"])
    assert out.exit_code == 2 and "没有值域" in out.output
    assert load_local(MAPPINGS, "example")["sex"].passthrough
