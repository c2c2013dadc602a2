"""An NNDRS-style card export (大疫情网导出) of the mirror's report cards, with known differences.

What the demo and the tests import with ``cdcsync nndrs import``: GB18030 CSV with a title line and
the usual Chinese headers (those of ``cdcsync/recon/nndrs_columns.yaml``), display names instead of
codes. Half of the cards carry the hospital's 卡片编号 (written back), the other half a number of
NNDRS's own, so the comparison has to pair them on patient identity; cards of a patient with more
than one card keep the hospital number (identity alone could not tell them apart), and some cards
without a hospital number lack the ID number too (paired on name + birth date + sex).

Planted among the cards reported on ``day`` (see :class:`Planted`, written beside the export as
``<file>.planted.json``): cards missing from the export (only in the front end), cards only in the
export, one different disease subtype, one different onset date, one different case class, and a
deleted duplicate (删除时间 and 审核状态 已删除) that the comparison must leave out. The answer key
names cards by number only, never by patient.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cdcsync.synth import people
from cdcsync.synth.codes import Codes

HEADERS: tuple[str, ...] = (
    "卡片ID", "卡片编号", "患者姓名", "有效证件号", "性别", "出生日期", "人群分类", "现住地址国标", "疾病名称",
    "病例分类", "发病日期", "诊断时间", "死亡日期", "报告单位", "报告单位编码", "填卡日期", "录入时间", "审核状态",
    "删除时间",
)
TITLE = "传染病报告卡查询结果（cdcsync 演示数据，非真实患者）"
SEX_NAMES = {"1": "男", "2": "女", "0": "未知"}


@dataclass
class Planted:
    """The answer key: what the card comparison of ``date`` must find, by card number."""

    date: str
    frontend_only: list[str] = field(default_factory=list)
    nndrs_only: list[str] = field(default_factory=list)
    differences: dict[str, str] = field(default_factory=dict)  # front-end card number -> field
    deleted: list[str] = field(default_factory=list)  # NNDRS card numbers in a deleted state
    exported: int = 0

    def summary(self) -> str:
        return (f"大疫情网导出 {self.exported} 张卡片，其中故意放入的差异：仅前置软件 {len(self.frontend_only)} 张，"
                f"仅大疫情网 {len(self.nndrs_only)} 张，内容不一致 {len(self.differences)} 张"
                f"（{'、'.join(_FIELD_LABELS[f] for f in self.differences.values())}），"
                f"已删除 {len(self.deleted)} 张（不应计入比对）")


_FIELD_LABELS = {"subtype": "病种亚型", "onset_date": "发病日期", "case_class": "病例分类"}


def _cards(conn: psycopg.Connection[Any], org_code: str, codes: Codes) -> list[dict[str, Any]]:
    """The mirror's cards of ``org_code``, the latest per card number (a correction replaces the first card)."""
    cancelled = codes.get("modify_flag", "3")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT DISTINCT ON (card_no) * FROM emr.report_card WHERE org_code = %s AND card_no IS NOT NULL"
                    " AND modify_flag IS DISTINCT FROM %s ORDER BY card_no, report_time DESC, update_time DESC",
                    (org_code, cancelled))
        return list(cur.fetchall())


def _national(codes: Codes, domain: str, local: str | None) -> str | None:
    if local is None:
        return None
    return codes.tables.local[domain].map.get(local) if domain in codes.tables.local else local


def _name(codes: Codes, domain: str, national: str | None) -> str:
    if national is None:
        return ""
    dom = codes.tables.national.get(domain)
    return (dom.name_of(national) if dom else None) or national


def _sibling_subtype(codes: Codes, disease: str) -> str | None:
    """Another subtype of the same disease (乙型肝炎 -> 肝炎（未分型）…), or None."""
    dom = codes.tables.national.get("notifiable_disease")
    if dom is None:
        return None
    parent = {c.code: c.attrs.get("parent") for c in dom}
    mine = parent.get(disease)
    if not mine:
        return None
    others = sorted(c for c, p in parent.items() if p == mine and c != disease)
    return others[-1] if others else None


def _time(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


def build_export(cards: Sequence[Mapping[str, Any]], codes: Codes, day: dt.date, *, seed: int,
                 org_name: str = "演示医院") -> tuple[list[list[str]], Planted]:
    """Export rows (in HEADERS order) and the planted differences among the cards reported on ``day``."""
    rng = random.Random(f"{seed}:nndrs-export")
    planted = Planted(day.isoformat())
    per_patient: dict[str, int] = {}
    for c in cards:
        per_patient[c["patient_id"]] = per_patient.get(c["patient_id"], 0) + 1
    todays = [c for c in cards if c["report_time"].date() == day]
    pool = [c for c in todays if per_patient[c["patient_id"]] == 1]
    rng.shuffle(pool)

    def take(pred: Any = None) -> Mapping[str, Any] | None:
        for i, c in enumerate(pool):
            if pred is None or pred(c):
                return pool.pop(i)
        return None

    # the picky ones first: a day with few cards still plants a subtype and a case class if it can
    subtype = take(lambda c: _sibling_subtype(codes, _national(codes, "notifiable_disease", c["disease_code"]) or ""))
    case = take(lambda c: _national(codes, "diagnosis_status", c["diagnosis_status_code"]) is not None)
    missing = [c for c in (take(), take()) if c is not None]
    onset = take()
    duplicated = take()
    templates = [take(), take()]
    planted.frontend_only = sorted(c["card_no"] for c in missing)

    serial = 0

    def nndrs_no() -> str:
        nonlocal serial
        serial += 1
        return f"{day:%Y}9{rng.randrange(10**8, 10**9)}{serial:04d}"

    rows: list[list[str]] = []
    skip = {c["card_no"] for c in missing}
    for i, c in enumerate(sorted(cards, key=lambda c: c["card_no"])):
        if c["card_no"] in skip:
            continue
        values = _values(c, codes, org_name)
        own_number = per_patient[c["patient_id"]] > 1 or i % 2 == 0
        if not own_number:
            values["卡片编号"] = values["卡片ID"] = nndrs_no()
            if i % 6 == 1:
                values["有效证件号"] = ""  # paired on name + birth date + sex
        if subtype is not None and c["card_no"] == subtype["card_no"]:
            nat = _national(codes, "notifiable_disease", c["disease_code"]) or ""
            values["疾病名称"] = _name(codes, "notifiable_disease", _sibling_subtype(codes, nat))
            planted.differences[c["card_no"]] = "subtype"
        if onset is not None and c["card_no"] == onset["card_no"]:
            values["发病日期"] = _date(c["onset_date"] - dt.timedelta(days=2))
            planted.differences[c["card_no"]] = "onset_date"
        if case is not None and c["card_no"] == case["card_no"]:
            status = _national(codes, "diagnosis_status", c["diagnosis_status_code"])
            values["病例分类"] = _name(codes, "diagnosis_status", "2" if status == "3" else "3")
            planted.differences[c["card_no"]] = "case_class"
        rows.append([values[h] for h in HEADERS])
        if duplicated is not None and c["card_no"] == duplicated["card_no"]:
            # entered twice in NNDRS, the duplicate deleted by the county CDC: must not count
            number = nndrs_no()
            dup = dict(values, 卡片ID=number, 卡片编号=number, 审核状态="已删除",
                       删除时间=_time(c["report_time"] + dt.timedelta(hours=1)))
            planted.deleted.append(dup["卡片编号"])
            rows.append([dup[h] for h in HEADERS])
    for t in templates:
        if t is None:
            continue
        # a card typed straight into NNDRS for a patient the mirror never saw
        values = _values(t, codes, org_name)
        male = values["性别"] == "男"
        birth = t["birth_date"] or dt.date(1980, 1, 1)
        region = (_national(codes, "region", t["current_addr_region_code"]) or "110101")[:6]
        values.update({"卡片编号": nndrs_no(), "患者姓名": people.full_name(rng, male, non_bmp_ratio=0),
                       "有效证件号": people.id_number(region, birth, male, rng)})
        values["卡片ID"] = values["卡片编号"]
        planted.nndrs_only.append(values["卡片编号"])
        rows.append([values[h] for h in HEADERS])  # the template itself was exported unchanged above
    planted.nndrs_only.sort()
    planted.exported = len(rows) - len(planted.deleted)
    return rows, planted


def _values(c: Mapping[str, Any], codes: Codes, org_name: str) -> dict[str, str]:
    sex = _national(codes, "sex", c["sex_code"]) or ""
    disease = _national(codes, "notifiable_disease", c["disease_code"])
    entry = c["report_time"] + dt.timedelta(minutes=5)
    return {
        "卡片ID": f"{c['card_no']}",
        "卡片编号": c["card_no"],
        "患者姓名": c["patient_name"] or "",
        "有效证件号": c["id_no"] or "",
        "性别": SEX_NAMES.get(sex, _name(codes, "sex", sex)),
        "出生日期": _date(c["birth_date"]),
        "人群分类": _name(codes, "population_group", _national(codes, "population_group", c["population_group_code"])),
        "现住地址国标": _national(codes, "region", c["current_addr_region_code"]) or "",
        "疾病名称": _name(codes, "notifiable_disease", disease),
        "病例分类": _name(codes, "diagnosis_status", _national(codes, "diagnosis_status", c["diagnosis_status_code"])),
        "发病日期": _date(c["onset_date"]),
        "诊断时间": _time(c["diagnosis_time"]),
        "死亡日期": _date(c["death_date"]),
        "报告单位": org_name,
        "报告单位编码": c["org_code"],
        "填卡日期": _date(c["report_time"].date()),
        "录入时间": _time(entry),
        "审核状态": "已终审",
        "删除时间": "",
    }


def write_export(conn: psycopg.Connection[Any], codes: Codes, org_code: str, path: Path, day: dt.date, *,
                 seed: int) -> Planted:
    """Write the export of the mirror's cards to ``path`` (GB18030) and the answer key beside it."""
    rows, planted = build_export(_cards(conn, org_code, codes), codes, day, seed=seed)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([TITLE])
    writer.writerow(HEADERS)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode("gb18030"))
    planted_path(path).write_text(json.dumps(asdict(planted), ensure_ascii=False, indent=2), encoding="utf-8")
    return planted


def planted_path(export: Path) -> Path:
    return export.with_name(export.name + ".planted.json")


def read_planted(export: Path) -> Planted:
    return Planted(**json.loads(planted_path(export).read_text(encoding="utf-8")))
