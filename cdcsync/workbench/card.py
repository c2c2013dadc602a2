"""The 传染病报告卡 (2019 revision) on the workbench: fields, prefill from the EMR, NNDRS-style checks.

Every coded field holds a NATIONAL code of a domain under ``mappings/national/``; the prefill maps
the HIS's local codes through the hospital's tables (a code with no mapping is left empty for the
doctor). :func:`check_card` returns {field: Chinese message} — the form shows each next to its field.

Supplementary cards (附卡) are an extension point: :data:`SUPPLEMENTS` maps a disease code to a
:class:`Supplement` (its fields and its check); 乙型肝炎 is implemented. Add one entry per附卡.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cdcsync.beijing import BEIJING
from cdcsync.mapping.domains import CodeTables, ValueDomain
from cdcsync.validate.formats import id_birth_date, id_number_birth, id_sex_code

AGE_UNITS = {"岁": 365.25, "月": 30.44, "天": 1.0}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text | date | datetime | select | textarea | number
    domain: str | None = None  # national value domain of a select
    choices: tuple[tuple[str, str], ...] = ()  # fixed choices of a select (code, label)
    required: bool = False
    max_len: int = 100
    hint: str | None = None


FIELDS: tuple[Field, ...] = (
    Field("patient_name", "患者姓名", required=True, max_len=50),
    Field("parent_name", "患儿家长姓名", max_len=50, hint="14 岁及以下必填"),
    Field("id_type_code", "有效证件类别", "select", domain="id_type"),
    Field("id_no", "有效证件号码", max_len=32),
    Field("sex_code", "性别", "select", domain="sex", required=True),
    Field("birth_date", "出生日期", "date", hint="不详时填写年龄"),
    Field("age_value", "年龄", "number", max_len=3),
    Field("age_unit", "年龄单位", "select", choices=(("岁", "岁"), ("月", "月"), ("天", "天"))),
    Field("work_unit", "工作单位（学校）", max_len=100),
    Field("phone", "联系电话", max_len=32),
    Field("patient_belong_code", "病人属于", "select", domain="patient_belong", required=True),
    Field("current_addr_region_code", "现住址地区代码", required=True, max_len=12,
          hint="国家疾控地区代码（县区 6 位或乡镇 9–12 位）"),
    Field("current_addr_detail", "现住详细地址", max_len=200),
    Field("population_group_code", "人群分类", "select", domain="population_group", required=True),
    Field("diagnosis_status_code", "病例分类", "select", domain="diagnosis_status", required=True),
    Field("case_type_code", "急性/慢性", "select", domain="case_type", hint="乙肝、丙肝、血吸虫病填写"),
    Field("onset_date", "发病日期", "date", required=True),
    Field("diagnosis_time", "诊断日期时间", "datetime", required=True),
    Field("death_date", "死亡日期", "date"),
    Field("disease_code", "传染病病种", "select", domain="notifiable_disease", required=True),
    Field("other_disease_name", "其他传染病名称", max_len=100),
    Field("remark", "备注", "textarea", max_len=500),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)

# Diseases whose 病例分类 must be filled as 急性/慢性 (2019 card: 乙肝、丙肝、血吸虫病).
NEEDS_CASE_TYPE = ("20302", "20303", "224")

# Allowed 病例分类 (diagnosis_status: 1 疑似, 2 临床诊断, 3 确诊, 4 病原携带者, 5 阳性检测) per disease,
# following the NNDRS rules the 防保科 know: carriers only for 霍乱、痢疾、伤寒副伤寒 (and HIV感染者 is
# a subtype, not a carrier); HIV/AIDS and 梅毒, 淋病 only laboratory-confirmed; 乙肝 no 疑似; the
# 阳性检测 category only for 丙肝 and 肺结核 without pathogen. Codes not listed: 疑似, 临床诊断, 确诊.
DEFAULT_STATUSES = ("1", "2", "3")
ALLOWED_STATUSES: dict[str, tuple[str, ...]] = {
    "102": ("1", "2", "3", "4"),
    "21201": ("1", "2", "3", "4"), "21202": ("1", "2", "3", "4"),
    "21401": ("1", "2", "3", "4"), "21402": ("1", "2", "3", "4"),
    "20201": ("3",), "20202": ("3",),
    "22201": ("2", "3"), "22202": ("2", "3"), "22203": ("2", "3"), "22204": ("2", "3"), "22205": ("2", "3"),
    "221": ("3",),
    "20302": ("2", "3"), "20303": ("2", "3", "5"),
}


# -- supplementary cards -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Supplement:
    kind: str
    title: str
    fields: tuple[Field, ...]
    check: Callable[[Mapping[str, str], Mapping[str, str]], dict[str, str]] = field(
        default=lambda _card, _sup: {})


def _check_hepatitis_b(card: Mapping[str, str], sup: Mapping[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for f in HEPATITIS_B.fields:
        if f.required and not sup.get(f.name):
            errors[f"sup_{f.name}"] = f"乙肝附卡：请填写{f.label}"
    first = sup.get("first_symptom_date")
    if first and card.get("onset_date") and first > card["onset_date"]:
        errors["sup_first_symptom_date"] = "乙肝附卡：首次出现症状时间不能晚于发病日期"
    if card.get("case_type_code") == "1" and sup.get("hbsag_positive_since") == "1":
        errors["sup_hbsag_positive_since"] = "乙肝附卡：HBsAg 阳性超过 6 个月时不应报告为急性乙肝"
    return errors


HEPATITIS_B = Supplement(
    kind="hepatitis_b",
    title="乙型肝炎病例附卡",
    fields=(
        Field("hbsag_positive_since", "HBsAg 阳性时间", "select", required=True,
              choices=(("1", ">6个月"), ("2", "≤6个月"), ("3", "既往未检测或不详"))),
        Field("first_symptom_date", "首次出现乙肝症状和体征时间", "date", hint="不详可不填"),
        Field("alt", "本次 ALT（U/L）", "number", max_len=6),
        Field("anti_hbc_igm", "抗-HBc IgM 1:1000 检测结果", "select", required=True,
              choices=(("1", "阳性"), ("2", "阴性"), ("3", "未测"))),
        Field("liver_biopsy", "肝穿检测结果", "select",
              choices=(("1", "急性病变"), ("2", "慢性病变"), ("3", "未测"))),
        Field("hbsag_seroconversion", "恢复期血清 HBsAg 阴转、抗 HBs 阳转", "select",
              choices=(("1", "是"), ("2", "否"), ("3", "未测"))),
    ),
    check=_check_hepatitis_b,
)

SUPPLEMENTS: dict[str, Supplement] = {"20302": HEPATITIS_B}


def supplement_for(disease_code: str | None) -> Supplement | None:
    return SUPPLEMENTS.get(disease_code or "")


# -- choices -------------------------------------------------------------------------------------


def choices(f: Field, tables: CodeTables) -> list[tuple[str, str]]:
    if f.choices:
        return list(f.choices)
    if f.domain is None:
        return []
    dom: ValueDomain = tables.domain(f.domain)
    if f.domain == "notifiable_disease":
        parents = {str(c.attrs.get("parent")) for c in dom if c.attrs.get("parent")}
        # A disease with subtypes is reported by its subtype (肺结核、病毒性肝炎、梅毒…).
        return [(c.code, f"{c.code} {c.name}") for c in dom if c.code not in parents]
    return [(c.code, c.name) for c in dom]


# -- prefill -------------------------------------------------------------------------------------


def _one(conn: psycopg.Connection[Any], table: str, where: Mapping[str, Any], order: str | None = None
         ) -> dict[str, Any] | None:
    query = sql.SQL("SELECT * FROM emr.{} WHERE {}").format(
        sql.Identifier(table), sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in where))
    if order:
        query += sql.SQL(" ORDER BY {} DESC NULLS LAST").format(sql.Identifier(order))
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query + sql.SQL(" LIMIT 1"), list(where.values()))
        return cur.fetchone()


def _date(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    return value.isoformat() if isinstance(value, dt.date) else ""


def _datetime(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M") if isinstance(value, dt.datetime) else ""


def prefill(conn: psycopg.Connection[Any], tables: CodeTables, *, org_code: str, patient_id: str,
            visit_id: str | None, disease_code: str, evidence_keys: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """The card's values from the mirror: patient, visit and the diagnosis that triggered the case."""
    out: dict[str, str] = dict.fromkeys(FIELD_NAMES, "")
    out["disease_code"] = disease_code if disease_code in tables.domain("notifiable_disease") else ""
    pat = _one(conn, "patient", {"org_code": org_code, "patient_id": patient_id})
    if pat:
        out["patient_name"] = pat.get("name") or ""
        out["sex_code"] = tables.map("sex", pat.get("sex_code")) or ""
        out["birth_date"] = _date(pat.get("birth_date"))
        out["id_type_code"] = tables.map("id_type", pat.get("id_type_code")) or ""
        out["id_no"] = pat.get("id_no") or ""
        out["phone"] = pat.get("phone") or ""
        out["work_unit"] = pat.get("work_unit") or ""
        out["current_addr_detail"] = pat.get("current_addr_detail") or ""
        region = pat.get("current_addr_region_code")
        out["current_addr_region_code"] = (tables.map("region", region) or region or "") if region else ""
        if pat.get("contact_relation_code") and tables.map("relationship", pat.get("contact_relation_code")) in (
                "51", "52"):  # father / mother (WS 364 relationship)
            out["parent_name"] = pat.get("contact_name") or ""
    diag = None
    for table, key in evidence_keys:
        if table == "diagnosis":
            diag = _one(conn, "diagnosis", key)
            if diag:
                break
    if diag is None and visit_id:
        diag = _one(conn, "diagnosis", {"org_code": org_code, "visit_id": visit_id}, order="diagnosis_time")
    if diag:
        out["onset_date"] = _date(diag.get("onset_date"))
        out["diagnosis_time"] = _datetime(diag.get("diagnosis_time"))
        out["diagnosis_status_code"] = tables.map("diagnosis_status", diag.get("diagnosis_status_code")) or ""
    if not out["birth_date"] and visit_id:
        visit = _one(conn, "visit", {"org_code": org_code, "visit_id": visit_id})
        if visit and visit.get("age_years") is not None:
            out["age_value"], out["age_unit"] = str(visit["age_years"]), "岁"
    return out


# -- checks --------------------------------------------------------------------------------------


def _parse_date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _parse_datetime(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def age_in_years(birth: dt.date, at: dt.date) -> int:
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def check_card(values: Mapping[str, str], tables: CodeTables, now: dt.datetime) -> dict[str, str]:
    """What NNDRS would refuse, as {field: Chinese message}. ``now``: Beijing wall time (naive)."""
    errors: dict[str, str] = {}
    v = {k: (values.get(k) or "").strip() for k in FIELD_NAMES}
    today = now.date()
    for f in FIELDS:
        val = v[f.name]
        if f.required and not val:
            errors[f.name] = f"请填写{f.label}"
            continue
        if len(val) > f.max_len:
            errors[f.name] = f"{f.label}不能超过 {f.max_len} 个字符"
        elif val and f.kind == "select" and val not in dict(choices(f, tables)):
            errors[f.name] = f"{f.label}的代码 {val} 不在国家值域中，请从列表中选择"
    dates: dict[str, dt.date] = {}
    for name in ("birth_date", "onset_date", "death_date"):
        if v[name] and name not in errors:
            d = _parse_date(v[name])
            if d is None:
                errors[name] = "日期格式应为 年-月-日"
            elif d > today:
                errors[name] = "日期不能晚于今天"
            else:
                dates[name] = d
    diag_time = None
    if v["diagnosis_time"] and "diagnosis_time" not in errors:
        diag_time = _parse_datetime(v["diagnosis_time"])
        if diag_time is None:
            errors["diagnosis_time"] = "诊断时间格式应为 年-月-日 时:分"
        elif diag_time > now + dt.timedelta(minutes=5):
            errors["diagnosis_time"] = "诊断时间不能晚于当前时间（报告时间）"
    onset, birth, death = dates.get("onset_date"), dates.get("birth_date"), dates.get("death_date")
    if onset and diag_time and onset > diag_time.date():
        errors["onset_date"] = "发病日期不能晚于诊断日期"
    if birth and onset and birth > onset:
        errors["birth_date"] = "出生日期不能晚于发病日期"
    if death and onset and death < onset:
        errors["death_date"] = "死亡日期不能早于发病日期"
    # No order between death and diagnosis: a post-mortem diagnosis is legal.

    # Age: birth date or age with unit; consistent when both; a parent's name under 14.
    age_years: float | None = None
    if v["age_value"]:
        try:
            age_num = int(v["age_value"])
        except ValueError:
            errors["age_value"] = "年龄应为整数"
            age_num = -1
        if age_num >= 0:
            if v["age_unit"] not in AGE_UNITS:
                errors["age_unit"] = "请选择年龄单位（岁、月、天）"
            else:
                age_years = age_num * AGE_UNITS[v["age_unit"]] / 365.25
                if age_years > 150:
                    errors["age_value"] = "年龄超出合理范围"
        elif "age_value" not in errors:
            errors["age_value"] = "年龄不能为负数"
    if not birth and not v["age_value"] and "birth_date" not in errors:
        errors["birth_date"] = "出生日期不详时须填写年龄"
    if birth:
        at = onset or today
        real = age_in_years(birth, at)
        if age_years is not None and v["age_unit"] == "岁" and abs(real - age_years) > 1:
            errors["age_value"] = f"年龄与出生日期不符（按出生日期为 {real} 岁）"
        age_years = (at - birth).days / 365.25
    if age_years is not None and age_years < 14 and not v["parent_name"]:
        errors["parent_name"] = "14 岁及以下的患者须填写家长姓名"

    # ID number: check digit, birth date and sex it encodes.
    if v["id_type_code"] == "01" and not errors.get("id_no"):
        idn = v["id_no"].upper()
        if not idn:
            errors["id_no"] = "证件类别为居民身份证时须填写证件号码"
        elif id_number_birth(idn, today) is None:
            errors["id_no"] = ("身份证号码校验位错误" if len(idn) == 18 and id_birth_date(idn) is not None
                               else "身份证号码应为 18 位且出生日期有效")
        else:
            if birth and id_birth_date(idn) != birth:
                errors["id_no"] = "身份证号码中的出生日期与填写的出生日期不一致"
            elif v["sex_code"] in ("1", "2") and id_sex_code(idn) != v["sex_code"]:
                errors["id_no"] = "身份证号码中的性别与填写的性别不一致"
    elif v["id_no"] and not v["id_type_code"]:
        errors["id_type_code"] = "填写证件号码时须选择证件类别"

    # Disease: allowed case classification, 急性/慢性, other disease name.
    disease = v["disease_code"]
    status = v["diagnosis_status_code"]
    if disease and status and "disease_code" not in errors and "diagnosis_status_code" not in errors:
        allowed = ALLOWED_STATUSES.get(disease, DEFAULT_STATUSES)
        if status not in allowed:
            dom = tables.domain("diagnosis_status")
            names = "、".join(dom.name_of(c) or c for c in allowed)
            errors["diagnosis_status_code"] = f"该病种的病例分类只能是：{names}"
    if disease in NEEDS_CASE_TYPE and not v["case_type_code"]:
        errors["case_type_code"] = "该病种须填写急性或慢性"
    region = v["current_addr_region_code"]
    if region and "current_addr_region_code" not in errors:
        if not (region.isdigit() and len(region) in (6, 9, 12)):
            errors["current_addr_region_code"] = "现住址地区代码应为 6、9 或 12 位数字"
        elif "region" in tables.national and region not in tables.domain("region"):
            # the platforms check it against the same table (emr.report_card_frontend, domain region)
            errors["current_addr_region_code"] = f"现住址地区代码 {region} 不在国家地区代码表中"
    if v["phone"] and not v["phone"].replace("-", "").isdigit():
        errors["phone"] = "联系电话只能包含数字和连字符"
    return errors


def check_supplement(disease_code: str, card: Mapping[str, str], sup: Mapping[str, str]) -> dict[str, str]:
    s = supplement_for(disease_code)
    return s.check(card, sup) if s else {}


def beijing_now() -> dt.datetime:
    return dt.datetime.now(BEIJING).replace(tzinfo=None)
