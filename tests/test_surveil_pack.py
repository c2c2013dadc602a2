"""Rule packs: the shipped pack loads with the current list; a bad pack is refused with the file,
the YAML path and what was expected; ``rules check`` / ``rules list`` for staff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.surveil.cases import Kind
from cdcsync.surveil.pack import DEFAULT_PACK, PackError, load_pack


def test_default_pack_holds_the_current_list() -> None:
    pack = load_pack()
    assert pack.version and pack.kinds == frozenset(Kind)
    by_name = {d.name: d for d in pack.diseases}
    assert {d.name for d in pack.diseases if d.cls == "甲"} == {"鼠疫", "霍乱"}
    assert by_name["新型冠状病毒感染"].cls == "乙" and by_name["猴痘"].cls == "乙"
    assert by_name["手足口病"].cls == "丙" and any(d.cls == "其他" for d in pack.diseases)
    assert pack.due_hours(by_name["霍乱"]) == 2 and pack.due_hours(by_name["肺炭疽"]) == 2
    assert pack.due_hours(by_name["传染性非典型肺炎"]) == 2 and pack.due_hours(by_name["肺结核"]) == 24
    icd = pack.disease_for_icd
    assert (icd("A22.1").name, icd("A22.0").name, icd("A15.3").name, icd("u07.1").name) == (
        "肺炭疽", "炭疽", "肺结核", "新型冠状病毒感染")
    assert icd("J18.9") is None and icd("") is None and icd(None) is None
    assert pack.disease("21302") is by_name["肺结核"]  # a card's subtype falls under its disease
    assert pack.disease_for_pathogen("2697049") is by_name["新型冠状病毒感染"]
    group = pack.drug_group("J05AH02")
    assert group is not None and group.id == "neuraminidase_inhibitor" and "301" in group.diseases
    assert pack.drug_group("J05AF07") is None  # tenofovir also treats hepatitis B: not a signal
    # every entry names a source that the pack lists
    assert all(d.source in pack.sources for d in pack.diseases) and all(g.source in pack.sources for g in pack.drugs)


def _variant(tmp_path: Path, change: object) -> Path:
    data = yaml.safe_load(DEFAULT_PACK.read_text(encoding="utf-8"))
    change(data)  # type: ignore[operator]
    path = tmp_path / "pack.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(("change", "where", "expected"), [
    (lambda d: d["diseases"][0].update({"class": "丁"}), "diseases[0].class", "甲、乙、丙、其他"),
    (lambda d: d["diseases"][3]["icd10"].append("A15"), "diseases[15].icd10[0]", "已属于病种 202"),
    (lambda d: d["diseases"][3]["icd10"].append("A1"), "diseases[3].icd10[6]", "ICD-10 类目或亚目"),
    (lambda d: d["diseases"][5].update({"source": "wiki"}), "diseases[5].source", "sources 中列出的来源编号"),
    (lambda d: d["pathogens"][0].update({"disease": "999"}), "pathogens[0].disease", "diseases 中列出的病种代码"),
    (lambda d: d["drugs"][1]["codes"].append("J04AC01"), "drugs[1].codes[5]", "已属于药品组 anti_tb"),
    (lambda d: d.update({"kinds": ["notifiable_diagnosis", "rumour"]}), "kinds[1]", "notifiable_diagnosis"),
    (lambda d: d["due_hours"].update({"other": 0}), "due_hours.other", "0.25–720"),
    (lambda d: d["diseases"][0].update({"managed_as_class_a": True}), "diseases[0].managed_as_class_a", "乙类"),
    (lambda d: d.update({"format": 2}), "format", "规则包格式版本"),
    (lambda d: d.update({"colour": "red"}), "colour", "未知的项"),
    (lambda d: d.pop("version"), "version", "缺少必填项"),
])
def test_a_bad_pack_names_file_path_and_expectation(tmp_path: Path, change: object, where: str,
                                                     expected: str) -> None:
    path = _variant(tmp_path, change)
    with pytest.raises(PackError) as err:
        load_pack(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {where}: ") and expected in message, message


def test_unreadable_packs(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="规则包文件不存在"):
        load_pack(tmp_path / "none.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("format: 1\ndiseases: [\n", encoding="utf-8")
    with pytest.raises(PackError, match=r"broken.yaml: 第 \d+ 行第 \d+ 列：YAML 格式错误"):
        load_pack(broken)


def test_rules_check_and_list(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["rules", "check"])
    assert ok.exit_code == 0 and "规则包有效" in ok.output and "甲类 2" in ok.output
    bad = _variant(tmp_path, lambda d: d["diseases"][0].update({"class": "丁"}))
    refused = runner.invoke(main, ["rules", "check", str(bad)])
    assert refused.exit_code == 1 and "规则包无效" in refused.output and "diseases[0].class" in refused.output
    listed = runner.invoke(main, ["rules", "list", "--json"])
    assert listed.exit_code == 0
    summary = json.loads(listed.output)
    assert summary["version"] == load_pack().version and set(summary["kinds"]) == {k.value for k in Kind}
    assert [d["name"] for d in summary["diseases"]["甲"]] == ["鼠疫", "霍乱"]
    text = runner.invoke(main, ["rules", "list"])
    assert text.exit_code == 0 and "肺炭疽" in text.output and "按甲类管理" in text.output
