"""A synthetic hospital day as rows of the ``emr.*`` mirror tables, seeded and deterministic.

Every coded value is a key of the hospital's local code table (looked up through the national
code it maps to), so valid rows map cleanly. A configurable share of rows is made invalid on
purpose, one fault per row, in kinds the validators catch (see :data:`INVALID_KINDS`); their
primary keys are returned so tests can find them without looking at patient values.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cdcsync.mapping.domains import CodeTables
from cdcsync.synth import people
from cdcsync.synth.load import Group, Row, Update

# kind -> the table whose rows carry it. "unknown_local_code" hits patient.sex_code and visit.dept_code.
INVALID_KINDS: dict[str, tuple[str, ...]] = {
    "bad_id_check_digit": ("patient",),
    "unknown_local_code": ("patient", "visit"),
    "vital_out_of_range": ("vital_sign",),
    "birth_after_visit": ("visit",),
    "discharge_before_admission": ("discharge",),
}
InvalidKey = tuple[str, tuple[str, ...]]  # (table, primary key values)

OUTPATIENT, EMERGENCY, INPATIENT = "1", "2", "3"  # national visit_type codes


class SynthError(ValueError):
    """The code tables lack something the generator needs (one line, names the domain)."""


def expected_invalid(rows_per_table: Mapping[str, int], ratio: float) -> dict[str, int]:
    """How many invalid rows of each kind a day with these row counts gets (an upper bound)."""
    n = rows_per_table.get
    return {
        "bad_id_check_digit": round(ratio * n("patient", 0)),
        "unknown_local_code": round(ratio * n("patient", 0) / 2) + round(ratio * n("visit", 0) / 2),
        "vital_out_of_range": round(ratio * n("vital_sign", 0)),
        "birth_after_visit": round(ratio * n("visit", 0)),
        "discharge_before_admission": round(ratio * n("discharge", 0)),
    }


# --------------------------------------------------------------------------- code lookup


class Codes:
    """Local codes of one hospital, found through the national code they map to."""

    def __init__(self, tables: CodeTables) -> None:
        self.tables = tables
        self._by_national: dict[str, dict[str, list[str]]] = {}
        for domain, table in tables.local.items():
            rev: dict[str, list[str]] = {}
            for local, national in table.map.items():
                rev.setdefault(national, []).append(local)
            self._by_national[domain] = rev

    def _rev(self, domain: str) -> dict[str, list[str]]:
        try:
            return self._by_national[domain]
        except KeyError:
            raise SynthError(f"医院 {self.tables.hospital!r} 缺少值域 {domain} 的本地代码表") from None

    def get(self, domain: str, *nationals: str) -> str | None:
        """First local code mapping to one of ``nationals`` (in order), else None."""
        rev = self._rev(domain)
        for code in nationals:
            hit = rev.get(code)
            if hit:
                return hit[0]
        return None

    def need(self, domain: str, *nationals: str) -> str:
        hit = self.get(domain, *nationals)
        if hit is None:
            raise SynthError(f"值域 {domain} 的本地代码表中没有映射到 {'/'.join(nationals)} 的代码")
        return hit

    def all(self, domain: str, *nationals: str) -> list[str]:
        rev = self._rev(domain)
        return [loc for code in nationals for loc in rev.get(code, [])]

    def with_prefix(self, domain: str, prefixes: Sequence[str]) -> list[tuple[str, str]]:
        """(local, national) pairs whose national code starts with the first prefix that has any."""
        rev = self._rev(domain)
        for prefix in prefixes:
            hits = [(loc, nat) for nat in sorted(rev) if nat.startswith(prefix) for loc in rev[nat]]
            if hits:
                return hits
        return []

    def national(self, domain: str, local: str) -> str:
        return self.tables.local[domain].map[local]

    def name(self, domain: str, local: str) -> str:
        dom = self.tables.national.get(domain)
        nat = self.national(domain, local)
        return (dom.name_of(nat) if dom else None) or nat

    def unknown(self, domain: str, candidates: Sequence[str]) -> str:
        """A value that is neither a local code nor (for passthrough tables) a national one."""
        table = self.tables.local[domain]
        dom = self.tables.national.get(domain)
        for cand in candidates:
            if cand not in table.map and not (table.passthrough and dom is not None and cand in dom):
                return cand
        raise SynthError(f"值域 {domain}: 找不到未映射的代码")


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class LabItem:
    loinc: str
    unit: str
    low: float
    high: float


@dataclass(frozen=True)
class Lab:
    report: str
    specimen: tuple[str, ...]  # national specimen_type codes
    items: tuple[LabItem, ...] = ()
    pathogen: tuple[str, str, str] | None = None  # (lab item LOINC, pathogen taxonomy id, method)
    ct: bool = False


@dataclass(frozen=True)
class Drug:
    atc: str
    name: str
    spec: str
    form: str
    dose: float
    unit: str
    freq: str
    per_day: int
    route: str  # national route code
    days: int


@dataclass(frozen=True)
class Condition:
    key: str
    diagnosis: str
    icd: tuple[str, ...]
    weight: dict[str, float]  # national visit type -> relative weight
    depts: tuple[str, ...]  # national department codes by preference
    symptoms: tuple[str, ...]
    complaint: str
    age: tuple[float, float] = (18, 85)
    fever: float = 0.0
    notifiable: tuple[str, ...] = ()  # national notifiable_disease codes
    suspected: float = 0.0
    chronic: bool = False
    labs: tuple[Lab, ...] = ()
    positive: float = 0.0
    exams: tuple[tuple[str, str, str, str], ...] = ()  # (national exam type, item, part, finding)
    drugs: tuple[Drug, ...] = ()
    severe: float = 0.0
    los: tuple[int, int] = (3, 10)
    route: str | None = None  # national infection_route
    contact: str | None = None  # national contact_mode
    exposure: str | None = None
    procedure: str | None = None  # national ICD-9-CM-3
    death_dx: str | None = None  # national death_diagnosis code
    respiratory: bool = False


_CBC = Lab(
    "血常规",
    ("01",),
    (
        LabItem("6690-2", "10^9/L", 3.5, 9.5),
        LabItem("751-8", "10^9/L", 1.8, 6.3),
        LabItem("731-0", "10^9/L", 1.1, 3.2),
        LabItem("718-7", "g/L", 115, 175),
        LabItem("777-3", "10^9/L", 125, 350),
    ),
)
_CRP = Lab("C反应蛋白测定", ("02",), (LabItem("1988-5", "mg/L", 0, 10), LabItem("33959-8", "ng/mL", 0, 0.5)))
_LIVER = Lab(
    "肝功能",
    ("02",),
    (LabItem("1742-6", "U/L", 9, 50), LabItem("1920-8", "U/L", 15, 40), LabItem("1975-2", "μmol/L", 0, 23)),
)
_FLU = Lab("甲型流感病毒抗原检测", ("08", "07"), pathogen=("80382-5", "11320", "胶体金法"))
_FLU_NAT = Lab("甲型流感病毒核酸检测", ("08", "07"), pathogen=("92142-9", "11320", "实时荧光RT-PCR"), ct=True)
_COV = Lab("新型冠状病毒核酸检测", ("08", "07"), pathogen=("94500-6", "2697049", "实时荧光RT-PCR"), ct=True)
_TB = Lab("结核分枝杆菌核酸检测", ("06",), pathogen=("38379-4", "1773", "GeneXpert MTB/RIF"), ct=True)
_TB_SMEAR = Lab("痰涂片抗酸染色", ("06",), pathogen=("11545-1", "1773", "萋-尼氏抗酸染色"))
_HBV = Lab("乙肝两对半", ("02",), pathogen=("5196-1", "10407", "化学发光法"))
_RPR = Lab("梅毒血清学检测", ("02",), pathogen=("20507-0", "160", "快速血浆反应素试验"))
_STOOL = Lab("粪便细菌培养", ("05",), pathogen=("625-4", "620", "细菌培养"))
_UCULT = Lab("尿培养", ("04",), pathogen=("630-4", "562", "细菌培养"))

_OSELTAMIVIR = Drug("J05AH02", "磷酸奥司他韦胶囊", "75mg*10粒", "胶囊剂", 75, "mg", "bid", 2, "1", 5)
_BALOXAVIR = Drug("J05AX25", "玛巴洛沙韦片", "20mg*2片", "片剂", 40, "mg", "once", 1, "1", 1)
_PAXLOVID = Drug("J05AE30", "奈玛特韦片/利托那韦片组合包装", "150mg/100mg*30片", "片剂", 300, "mg", "bid", 2, "1", 5)
_ISONIAZID = Drug("J04AC01", "异烟肼片", "0.1g*100片", "片剂", 0.3, "g", "qd", 1, "1", 60)
_RIFAMPICIN = Drug("J04AB02", "利福平胶囊", "0.15g*100粒", "胶囊剂", 0.45, "g", "qd", 1, "1", 60)
_PZA = Drug("J04AK01", "吡嗪酰胺片", "0.25g*100片", "片剂", 1.5, "g", "qd", 1, "1", 60)
_EMB = Drug("J04AK02", "盐酸乙胺丁醇片", "0.25g*100片", "片剂", 0.75, "g", "qd", 1, "1", 60)
_ENTECAVIR = Drug("J05AF10", "恩替卡韦片", "0.5mg*7片", "片剂", 0.5, "mg", "qd", 1, "1", 28)
_TAF = Drug("J05AF13", "富马酸丙酚替诺福韦片", "25mg*30片", "片剂", 25, "mg", "qd", 1, "1", 30)
_BENZATHINE = Drug("J01CE08", "注射用苄星青霉素", "120万单位", "注射剂", 240, "万单位", "qw", 1, "403", 21)
_LEVO = Drug("J01MA12", "左氧氟沙星片", "0.5g*4片", "片剂", 0.5, "g", "qd", 1, "1", 5)
_AMOX = Drug("J01CA04", "阿莫西林胶囊", "0.25g*24粒", "胶囊剂", 0.5, "g", "tid", 3, "1", 5)
_CEFTRIAXONE = Drug("J01DD04", "注射用头孢曲松钠", "1g", "注射剂", 2, "g", "qd", 1, "404", 7)
_CEFUROXIME = Drug("J01DC02", "头孢呋辛酯片", "0.25g*12片", "片剂", 0.25, "g", "bid", 2, "1", 5)
_AZITHRO = Drug("J01FA10", "阿奇霉素片", "0.25g*6片", "片剂", 0.5, "g", "qd", 1, "1", 3)
_RIBAVIRIN = Drug("J05AP01", "利巴韦林颗粒", "50mg*18袋", "颗粒剂", 100, "mg", "tid", 3, "1", 5)
_RABIES_VAC = Drug("J07BG01", "冻干人用狂犬病疫苗(Vero细胞)", "1.0ml/瓶", "注射剂", 1, "ml", "once", 1, "403", 1)
_RABIES_IG = Drug("J06BB05", "狂犬病人免疫球蛋白", "200IU/瓶", "注射剂", 20, "IU/kg", "once", 1, "403", 1)

_FLU_EXPO = "发病前一周内有流感样病例接触史，同班同学或同事中有类似发热、咳嗽症状者。"

CONDITIONS: tuple[Condition, ...] = (
    Condition(
        "uri",
        "急性上呼吸道感染",
        ("J06",),
        {OUTPATIENT: 20, EMERGENCY: 5},
        ("03.01", "07.04", "07", "16.02"),
        ("咳嗽", "咽痛", "流涕", "发热"),
        "咽痛、流涕{d}天",
        age=(1, 80),
        fever=0.4,
        labs=(_CBC,),
        drugs=(_AMOX, _CEFUROXIME),
        respiratory=True,
    ),
    Condition(
        "bronchitis",
        "急性支气管炎",
        ("J20",),
        {OUTPATIENT: 8, EMERGENCY: 1},
        ("03.01", "07.04"),
        ("咳嗽", "咳痰", "发热"),
        "咳嗽、咳痰{d}天",
        age=(2, 85),
        fever=0.3,
        labs=(_CBC, _CRP),
        drugs=(_AZITHRO,),
        respiratory=True,
    ),
    Condition(
        "flu",
        "流行性感冒",
        ("J11", "J10"),
        {OUTPATIENT: 9, EMERGENCY: 4, INPATIENT: 1},
        ("16.02", "03.01", "07.04", "20"),
        ("发热", "咳嗽", "肌肉酸痛", "乏力", "头痛"),
        "发热伴咳嗽、全身酸痛{d}天",
        age=(2, 88),
        fever=0.92,
        notifiable=("301",),
        suspected=0.5,
        labs=(_FLU, _FLU_NAT, _CBC),
        positive=0.65,
        drugs=(_OSELTAMIVIR, _BALOXAVIR),
        severe=0.06,
        los=(3, 7),
        exposure=_FLU_EXPO,
        death_dx="J96.0",
        respiratory=True,
    ),
    Condition(
        "covid",
        "新型冠状病毒感染",
        ("U07",),
        {OUTPATIENT: 3, EMERGENCY: 2, INPATIENT: 1},
        ("16.02", "03.01", "16"),
        ("发热", "咳嗽", "咽痛", "乏力", "嗅觉减退"),
        "发热、咽痛{d}天",
        age=(5, 92),
        fever=0.8,
        notifiable=("227",),
        suspected=0.4,
        labs=(_COV, _CBC, _CRP),
        positive=0.75,
        exams=(("DX", "胸部正位片", "胸部", "双肺纹理增多，散在斑片影"),),
        drugs=(_PAXLOVID,),
        severe=0.1,
        los=(5, 12),
        exposure="发病前5天内有新冠病毒感染者密切接触史。",
        death_dx="J96.0",
        respiratory=True,
    ),
    Condition(
        "tb",
        "肺结核",
        ("A16", "A15"),
        {OUTPATIENT: 2, INPATIENT: 1.5},
        ("17", "16", "03.01"),
        ("咳嗽", "咳痰", "咯血", "盗汗", "消瘦", "低热"),
        "反复咳嗽、咳痰{d}周，伴午后低热、盗汗",
        age=(16, 85),
        fever=0.3,
        notifiable=("21302", "21303", "21304"),
        suspected=0.5,
        labs=(_TB, _TB_SMEAR, _CBC),
        positive=0.55,
        exams=(("DX", "胸部正位片", "胸部", "右上肺野斑片状及条索状阴影，内见小透亮区"),),
        drugs=(_ISONIAZID, _RIFAMPICIN, _PZA, _EMB),
        severe=0.05,
        los=(10, 20),
        contact="10",
        exposure="其父亲曾患肺结核，同住一室。",
        death_dx="A16.2",
    ),
    Condition(
        "hbv",
        "慢性乙型病毒性肝炎",
        ("B18.1",),
        {OUTPATIENT: 3, INPATIENT: 0.6},
        ("16.03", "16", "03.02"),
        ("乏力", "食欲减退", "腹胀"),
        "乏力、食欲减退{d}月",
        age=(20, 75),
        notifiable=("20302",),
        chronic=True,
        labs=(_HBV, _LIVER),
        positive=0.97,
        exams=(("US", "肝胆脾彩超", "上腹部", "肝实质回声增粗，脾稍大"),),
        drugs=(_ENTECAVIR, _TAF),
        los=(7, 14),
        exposure="其母亲为乙肝表面抗原携带者。",
    ),
    Condition(
        "hfmd",
        "手足口病",
        ("B08.4",),
        {OUTPATIENT: 4, EMERGENCY: 1, INPATIENT: 0.4},
        ("07", "16.01", "16"),
        ("发热", "手足皮疹", "口腔疱疹", "食欲减退"),
        "发热伴手、足、口腔疱疹{d}天",
        age=(0.6, 6),
        fever=0.8,
        notifiable=("311",),
        suspected=0.2,
        labs=(_CBC,),
        drugs=(_RIBAVIRIN,),
        los=(3, 6),
        exposure="所在幼儿园同班有手足口病患儿。",
    ),
    Condition(
        "syphilis",
        "梅毒",
        ("A53", "A51"),
        {OUTPATIENT: 1.5},
        ("13.02", "13.01"),
        ("皮疹", "外生殖器溃疡"),
        "外生殖器无痛性溃疡{d}周",
        age=(20, 70),
        notifiable=("22205", "22204"),
        suspected=0.05,
        labs=(_RPR,),
        positive=0.95,
        drugs=(_BENZATHINE,),
        route="02",
        contact="02",
    ),
    Condition(
        "dysentery",
        "细菌性痢疾",
        ("A03",),
        {OUTPATIENT: 1.5, EMERGENCY: 1, INPATIENT: 0.3},
        ("16.01", "03.02", "20", "07"),
        ("腹泻", "黏液脓血便", "腹痛", "里急后重", "发热"),
        "腹痛、腹泻伴黏液脓血便{d}天",
        age=(2, 80),
        fever=0.6,
        notifiable=("212", "21201"),
        suspected=0.3,
        labs=(_STOOL, _CBC),
        positive=0.5,
        drugs=(_LEVO,),
        los=(3, 7),
        exposure="发病前一天曾在路边摊进食凉拌菜。",
    ),
    Condition(
        "diarrhea",
        "感染性腹泻",
        ("A09",),
        {OUTPATIENT: 4, EMERGENCY: 2},
        ("16.01", "03.02", "07", "20"),
        ("腹泻", "呕吐", "腹痛"),
        "腹泻、呕吐{d}天",
        age=(0.6, 85),
        fever=0.3,
        notifiable=("310",),
        labs=(_CBC,),
    ),
    Condition(
        "pneumonia",
        "社区获得性肺炎",
        ("J18",),
        {OUTPATIENT: 2, EMERGENCY: 3, INPATIENT: 4},
        ("03.01", "20", "07.04"),
        ("发热", "咳嗽", "咳痰", "胸闷"),
        "发热、咳嗽、咳黄痰{d}天",
        age=(1, 95),
        fever=0.8,
        labs=(_CBC, _CRP),
        exams=(("DX", "胸部正位片", "胸部", "右下肺野片状高密度影"),),
        drugs=(_CEFTRIAXONE, _AZITHRO),
        severe=0.12,
        los=(5, 12),
        death_dx="J18.9",
        respiratory=True,
    ),
    Condition(
        "copd",
        "慢性阻塞性肺病急性加重",
        ("J44",),
        {OUTPATIENT: 2, EMERGENCY: 2, INPATIENT: 2},
        ("03.01", "20"),
        ("咳嗽", "咳痰", "气促", "胸闷"),
        "反复咳嗽、咳痰{d}年，加重伴气促3天",
        age=(55, 92),
        fever=0.2,
        labs=(_CBC, _CRP),
        exams=(("DX", "胸部正位片", "胸部", "双肺透亮度增高，肺纹理紊乱"),),
        drugs=(_LEVO, _CEFTRIAXONE),
        severe=0.15,
        los=(7, 14),
        death_dx="J96.0",
        chronic=True,
    ),
    Condition(
        "uti",
        "泌尿道感染",
        ("N39",),
        {OUTPATIENT: 3, EMERGENCY: 1},
        ("04.04", "03.06", "20"),
        ("尿频", "尿急", "尿痛"),
        "尿频、尿急、尿痛{d}天",
        age=(18, 85),
        fever=0.2,
        labs=(_UCULT, _CBC),
        positive=0.4,
        drugs=(_LEVO,),
    ),
    Condition(
        "hypertension",
        "原发性高血压",
        ("I10",),
        {OUTPATIENT: 12},
        ("03.04",),
        ("头晕", "头痛"),
        "反复头晕{d}年",
        age=(40, 90),
        chronic=True,
    ),
    Condition(
        "gastritis",
        "慢性胃炎",
        ("K29",),
        {OUTPATIENT: 7},
        ("03.02",),
        ("上腹痛", "腹胀", "反酸"),
        "上腹部隐痛{d}月",
        age=(18, 85),
        chronic=True,
        exams=(("ES", "电子胃镜", "胃", "胃窦黏膜充血水肿"),),
    ),
    Condition(
        "fever",
        "发热待查",
        ("R50",),
        {OUTPATIENT: 3, EMERGENCY: 3},
        ("16.02", "20", "07"),
        ("发热", "乏力"),
        "发热{d}天",
        age=(1, 85),
        fever=1.0,
        labs=(_CBC, _CRP),
        respiratory=True,
    ),
    Condition(
        "dogbite",
        "犬咬伤",
        ("W54",),
        {EMERGENCY: 2},
        ("20",),
        ("伤口疼痛",),
        "被犬咬伤右手{d}小时",
        age=(3, 80),
        drugs=(_RABIES_VAC, _RABIES_IG),
    ),
)

_TITLES = ("主任医师", "副主任医师", "主治医师", "主治医师", "住院医师", "住院医师")
_WORK_UNITS = (
    "第一中学",
    "科技有限公司",
    "市人民政府办公室",
    "建筑工程公司",
    "商贸有限公司",
    "实验小学",
    "物流有限公司",
    "机械制造厂",
    "人民医院",
    "农业合作社",
)
_PLACES = (
    "本市某小学",
    "本区某幼儿园",
    "某建筑工地宿舍",
    "本市农贸市场",
    "家庭聚餐",
    "外省旅游景区",
    "公司办公室",
    "某养老院",
)
_WARDS = ("一病区", "二病区", "三病区", "四病区", "五病区")
_POSTAL = {"11": "100", "12": "300", "31": "200", "32": "210", "33": "310", "42": "430", "44": "510", "51": "610"}
_NON_BMP_NOTE = ("家属𠮷先生陪同就诊，", "患者之子罗𬱖代诉，")
_HISTORY = (
    "病程中无畏寒、寒战，无胸痛、咯血，无恶心、呕吐，精神、食欲欠佳，睡眠可，大小便无明显异常，近期体重无明显变化。",
    "既往体健，否认高血压、糖尿病、冠心病等慢性病史，否认手术、外伤、输血史，否认食物、药物过敏史。",
    "预防接种史随当地进行。个人史：生于原籍，无长期外地居住史，无疫区、疫水接触史，无吸烟、饮酒嗜好。",
    "家族史：父母健在，否认家族中有类似疾病患者，否认家族性遗传病史。",
)
_ROUND = (
    "{title}查房：详细询问病史并查看患者后指出，患者目前诊断{diag}，诊断依据：①典型临床表现；②相关实验室及影像学检查结果支持。",
    "需与其他感染性及非感染性疾病相鉴别：后者多有相应的典型病史及特征性表现，可通过进一步检查明确。",
    "治疗上继续目前方案，注意监测药物不良反应，定期复查肝肾功能及血常规，必要时请相关科室会诊协助诊治。",
    "患者今日一般情况可，{s}较前好转，体温{t}℃，饮食睡眠尚可，大小便正常。查体同前，未见新的阳性体征。",
    "今日复查结果回报：白细胞计数{wbc}×10^9/L，C反应蛋白{crp}mg/L，较前{trend}。继续当前治疗，密切观察病情变化。",
)


# --------------------------------------------------------------------------- state


@dataclass
class Patient:
    patient_id: str
    person: people.Person
    sex: str  # local sex code
    id_type: str
    id_no: str
    region: str  # local region code of the current address
    belong: str
    occupation: str | None
    marital: str | None
    education: str | None
    ethnicity: str
    work_unit: str | None
    relation: str
    visits: int = 0


@dataclass
class Stay:
    visit_id: str
    inpatient_no: str
    patient: Patient
    cond: Condition
    dept: str
    ward: str
    bed: str
    admitted: dt.datetime
    leave_on: dt.date
    dies: bool
    diag_local: str
    card: Row | None = None
    admission_route: str = ""


@dataclass
class Census:
    """What the day's daily_stats row must say."""

    outpatient: int = 0
    emergency: int = 0
    fever_clinic: int = 0
    admissions: int = 0
    discharges: int = 0
    deaths: int = 0
    cards: int = 0
    in_hospital: int = 0


@dataclass
class DayResult:
    date: dt.date
    groups: list[Group]
    invalid: dict[str, list[InvalidKey]]
    census: Census


@dataclass
class GenResult:
    rows: dict[str, list[Row]] = field(default_factory=dict)
    updates: list[Update] = field(default_factory=list)
    invalid: dict[str, list[InvalidKey]] = field(default_factory=lambda: {k: [] for k in INVALID_KINDS})
    census: dict[dt.date, Census] = field(default_factory=dict)

    def add_group(self, group: Group) -> None:
        for table, rows in group.rows.items():
            self.rows.setdefault(table, []).extend(rows)
        self.updates.extend(group.updates)

    @property
    def counts(self) -> dict[str, int]:
        return {t: len(r) for t, r in self.rows.items()}

    @property
    def invalid_counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.invalid.items()}


# --------------------------------------------------------------------------- the hospital


def _d(x: float, places: int = 1) -> Decimal:
    return Decimal(f"{x:.{places}f}")


class Hospital:
    """Generates days in order; state (inpatients, known patients) carries from day to day."""

    def __init__(
        self,
        codes: Codes,
        org_code: str,
        start: dt.date,
        *,
        seed: int = 1,
        patients: int = 2000,
        invalid_ratio: float = 0.02,
        now: dt.datetime | None = None,
    ) -> None:
        self.c = codes
        self.org = org_code
        self.seed = seed
        self.patients = patients
        self.ratio = invalid_ratio
        self.now = now
        self.stays: list[Stay] = []
        self.known: list[Patient] = []
        self.first_day: dt.date | None = None
        # Ids carry the first generated date so runs starting on different dates never collide.
        self.tag = f"{start:%y%m%d}"
        self._cards: dict[dt.date, int] = {}
        self._serial = 0
        self._flag_new = codes.need("modify_flag", "1")
        self._flag_upd = codes.need("modify_flag", "2")
        self._conds = [cd for cd in CONDITIONS if codes.with_prefix("icd10", cd.icd)]
        self._regions = self._load_regions()
        self._home = self._regions[0]
        rng = random.Random(f"{seed}:base")
        self._depts = self._make_depts(rng)
        self._staff = self._make_staff(rng)

    # ---- base data

    def _load_regions(self) -> list[people.Region]:
        dom = self.c.tables.national.get("region")
        names = {c.code: c.name for c in dom} if dom else {}
        out = []
        for local, nat in self.c.tables.local["region"].map.items():
            if local != nat or nat.endswith("00") or nat[:2] + "0000" not in names:
                continue
            prov = names[nat[:2] + "0000"]
            out.append(people.Region(local, prov, names.get(nat[:4] + "00", prov), names.get(nat, "")))
        if not out:
            raise SynthError("值域 region 的本地代码表中没有县级行政区划代码")
        return out

    def _make_depts(self, rng: random.Random) -> dict[str, tuple[str, str, bool]]:
        """local dept code -> (name, national code, has beds)."""
        dom = self.c.tables.national["department"]
        out: dict[str, tuple[str, str, bool]] = {}
        for local, nat in self.c.tables.local["department"].map.items():
            name = {"FRMZ": "发热门诊", "CDMZ": "肠道门诊"}.get(local) or (dom.name_of(nat) or nat).removesuffix("专业")
            out[local] = (name, nat, nat not in ("01", "02", "16.02", "16.01", "20", "30", "31", "32", "12", "10"))
        return out

    def _make_staff(self, rng: random.Random) -> dict[str, list[tuple[str, str, str]]]:
        """dept -> [(staff id, name, title)]."""
        staff: dict[str, list[tuple[str, str, str]]] = {}
        n = 0
        for dept in self._depts:
            team = []
            for _ in range(rng.randint(3, 6)):
                n += 1
                male = rng.random() < 0.5
                team.append((f"D{n:05d}", people.full_name(rng, male, non_bmp_ratio=0), rng.choice(_TITLES)))
            staff[dept] = team
        return staff

    def base_group(self, when: dt.datetime) -> Group:
        g = Group(when)
        rng = random.Random(f"{self.seed}:base-rows")
        nat_to_local = {nat: loc for loc, (_, nat, _) in reversed(self._depts.items())}
        for local, (name, nat, beds) in self._depts.items():
            parent = nat.split(".")[0] if "." in nat else None
            g.add(
                "dept",
                {
                    **self._common(when, rng),
                    "dept_code": local,
                    "dept_name": name,
                    "parent_dept_code": nat_to_local.get(parent) if parent else None,
                    "outpatient_flag": True,
                    "inpatient_flag": beds,
                    "bed_count": rng.randint(30, 60) if beds else 0,
                    "active_flag": True,
                },
            )
        sexes = (self.c.need("sex", "1"), self.c.need("sex", "2"))
        for dept, team in self._staff.items():
            for sid, name, title in team:
                g.add(
                    "staff",
                    {
                        **self._common(when, rng),
                        "staff_id": sid,
                        "staff_name": name,
                        "sex_code": rng.choice(sexes),
                        "dept_code": dept,
                        "title_name": title,
                        "practice_cert_no": f"1{rng.randrange(10**13, 10**14)}",
                        "phone": people.mobile(rng),
                        "active_flag": True,
                    },
                )
        return g

    # ---- helpers

    def _common(self, t: dt.datetime, rng: random.Random, *, updated: bool = False) -> Row:
        ct = t + dt.timedelta(seconds=rng.randint(30, 600))
        return {
            "org_code": self.org,
            "modify_flag": self._flag_upd if updated else self._flag_new,
            "collect_time": ct,
            "update_time": ct,
        }

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    def _dept_for(self, cond: Condition, rng: random.Random, *, beds: bool = False) -> str:
        for nat in cond.depts:
            locs = [loc for loc, (_, n, b) in self._depts.items() if n == nat and (b or not beds)]
            if locs:
                return rng.choice(locs)
        locs = [loc for loc, (_, _, b) in self._depts.items() if b or not beds]
        return rng.choice(locs)

    def _doctor(self, dept: str, rng: random.Random) -> tuple[str, str, str]:
        return rng.choice(self._staff[dept])

    def _clock(self, day: dt.date, frac: float) -> dt.datetime:
        """A moment of ``day`` at fraction ``frac`` of it, squeezed before ``now`` when the day is today."""
        start = dt.datetime.combine(day, dt.time())
        span = 86400.0
        if self.now is not None and self.now < start + dt.timedelta(days=1):
            span = max(60.0, (self.now - start).total_seconds() - 3 * 3600)
        return start + dt.timedelta(seconds=int(frac * span))

    @staticmethod
    def _frac(kind: str, rng: random.Random) -> float:
        if kind == EMERGENCY:
            return rng.random()
        hour = rng.choices((8, 9, 10, 11, 13, 14, 15, 16), weights=(14, 18, 16, 10, 6, 12, 12, 8))[0]
        return (hour + rng.random()) / 24

    # ---- patients

    def _new_patient(self, rng: random.Random, day: dt.date, cond: Condition, when: dt.datetime) -> tuple[Patient, Row]:
        age = rng.uniform(*cond.age)
        person = people.make_person(rng, self._regions, day, age_years=age, non_bmp_ratio=0.004)
        years = people.age_on(person.birth_date, day)
        c = self.c
        region = self._home if rng.random() < 0.7 else rng.choice(self._regions)
        hn = self.c.national("region", self._home.code)
        rn = self.c.national("region", region.code)
        belong_nat = "1" if rn == hn else "2" if rn[:4] == hn[:4] else "3" if rn[:2] == hn[:2] else "4"
        if years < 16:
            occupation = c.get("occupation", "31") if years >= 6 else None
            marital, education = c.get("marital_status", "10"), c.get("education", "80") if years >= 7 else None
            work = f"{region.county}{rng.choice(('实验小学', '第一中学', '幼儿园'))}" if years >= 3 else None
            relation = c.need("relationship", rng.choice(("51", "52")))
        else:
            occ_nat = (
                "80"
                if years >= 62
                else "31"
                if years < 23
                else rng.choice(("11", "13", "17", "21", "24", "27", "51", "54", "70", "90"))
            )
            occupation = c.get("occupation", occ_nat)
            marital = c.get("marital_status", "10" if years < 25 else rng.choice(("20", "20", "20", "20", "30", "40")))
            education = c.get("education", rng.choice(("20", "30", "40", "60", "70", "80")))
            work = None if occ_nat in ("80", "70", "90") else f"{region.city}{rng.choice(_WORK_UNITS)}"
            relation = c.need("relationship", rng.choice(("10", "20", "30")))
        foreign = years >= 18 and rng.random() < 0.01
        id_type = c.need("id_type", "03" if foreign else "01")
        id_no = f"E{rng.randrange(10**7, 10**8)}" if foreign else person.id_no
        pat = Patient(
            patient_id=f"P{self.tag}{self._next():07d}",
            person=person,
            sex=c.need("sex", "1" if person.male else "2"),
            id_type=id_type,
            id_no=id_no,
            region=region.code,
            belong=c.need("patient_belong", belong_nat),
            occupation=occupation,
            marital=marital,
            education=education,
            ethnicity=c.need("ethnicity", "01")
            if rng.random() < 0.92
            else rng.choice(c.all("ethnicity", "03", "08", "11", "15")),
            work_unit=work,
            relation=relation,
        )
        row = {
            **self._common(when, rng),
            "patient_id": pat.patient_id,
            "health_card_no": None,
            "name": person.name,
            "sex_code": pat.sex,
            "birth_date": person.birth_date,
            "id_type_code": id_type,
            "id_no": id_no,
            "ethnicity_code": pat.ethnicity,
            "nationality_code": c.need("nationality", "USA" if foreign else "CHN"),
            "marital_status_code": marital,
            "occupation_code": occupation,
            "education_code": education,
            "abo_blood_type_code": c.get("blood_type", rng.choice(("1", "2", "3", "4", "5", "6"))),
            "rh_blood_type_code": c.get("rh_blood_type", "2" if rng.random() < 0.9 else "3"),
            "phone": None if years < 12 else person.phone,
            "current_addr_region_code": region.code,
            "current_addr_detail": people.street_address(region, rng),
            "household_addr_region_code": region.code if rng.random() < 0.8 else rng.choice(self._regions).code,
            "household_addr_detail": person.address,
            "postal_code": _POSTAL.get(region.code[:2], "100") + f"{rng.randrange(1000):03d}",
            "work_unit": work,
            "contact_name": person.contact_name,
            "contact_relation_code": relation,
            "contact_phone": person.contact_phone,
            "register_time": when,
        }
        return pat, row

    def _patient_for(self, rng: random.Random, day: dt.date, cond: Condition, when: dt.datetime, g: Group) -> Patient:
        if self.known and rng.random() < 0.2:
            pat = rng.choice(self.known)
            if cond.age[0] <= people.age_on(pat.person.birth_date, day) <= cond.age[1] + 5:
                return pat
        pat, row = self._new_patient(rng, day, cond, when)
        g.add("patient", row)
        self.known.append(pat)
        if len(self.known) > 20000:  # bounded memory in steady mode
            del self.known[:10000]
        return pat

    # ---- clinical rows

    def _visit_row(
        self,
        rng: random.Random,
        pat: Patient,
        visit_id: str,
        kind: str,
        t: dt.datetime,
        dept: str,
        doc: tuple[str, str, str],
        cond: Condition,
        fever_clinic: bool,
        inpatient_no: str | None,
        complaint: str,
    ) -> Row:
        birth = pat.person.birth_date
        years = people.age_on(birth, t.date())
        months = None
        if years < 1:
            months = min(
                11,
                (t.date().year - birth.year) * 12
                + t.date().month
                - birth.month
                - (1 if t.date().day < birth.day else 0),
            )
        end = None
        if kind == OUTPATIENT:
            end = t + dt.timedelta(minutes=rng.randint(10, 90))
        elif kind == EMERGENCY:
            end = t + dt.timedelta(minutes=rng.randint(40, 360))
        return {
            **self._common(t, rng),
            "visit_id": visit_id,
            "patient_id": pat.patient_id,
            "visit_type_code": self.c.need("visit_type", kind),
            "outpatient_no": None if kind == INPATIENT else f"MZ{pat.patient_id[1:]}",
            "inpatient_no": inpatient_no,
            "visit_time": t,
            "visit_end_time": end,
            "dept_code": dept,
            "dept_name": self._depts[dept][0],
            "doctor_id": doc[0],
            "doctor_name": doc[1],
            "birth_date": birth,
            "age_years": years,
            "age_months": months,
            "chief_complaint": complaint,
            "first_visit_flag": pat.visits == 0,
            "fever_clinic_flag": fever_clinic,
            "payment_method_code": self.c.get("payment_method", rng.choice(("01", "02", "03", "07"))),
        }

    def _vitals(
        self,
        rng: random.Random,
        g: Group,
        vid: str,
        pat: Patient,
        t: dt.datetime,
        fever: bool,
        cond: Condition,
        n: int = 1,
    ) -> None:
        years = people.age_on(pat.person.birth_date, t.date())
        child = years < 12
        for i in range(n):
            mt = t + dt.timedelta(minutes=3 + i * rng.randint(180, 300))
            temp = rng.uniform(37.6, 40.1) if fever and i == 0 else rng.uniform(36.1, 37.2)
            if child:
                weight, height = 3.5 + years * 2.6 + rng.uniform(-1, 2), 55 + years * 6.5 + rng.uniform(-3, 3)
            else:
                weight, height = rng.uniform(45, 90), rng.uniform(150, 185)
            g.add(
                "vital_sign",
                {
                    **self._common(mt, rng),
                    "vital_sign_id": f"{vid}V{mt:%m%d%H%M}{i}",
                    "visit_id": vid,
                    "patient_id": pat.patient_id,
                    "measure_time": mt,
                    "temperature": _d(temp),
                    "pulse": rng.randint(90, 130) if child else rng.randint(62, 105) + (15 if fever else 0),
                    "resp_rate": rng.randint(20, 32) if child else rng.randint(14, 22),
                    "sbp": None if child else rng.randint(100, 165),
                    "dbp": None if child else rng.randint(60, 98),
                    "spo2": _d(rng.uniform(88, 95) if cond.key in ("pneumonia", "copd") else rng.uniform(95, 100)),
                    "weight": _d(weight),
                    "height": _d(height),
                    "recorder_id": None,
                },
            )

    def _diagnosis(
        self,
        rng: random.Random,
        g: Group,
        vid: str,
        pat: Patient,
        kind: str,
        cat: str,
        seq: int,
        icd: str,
        name: str,
        status: str,
        onset: dt.date,
        t: dt.datetime,
        dept: str,
        doc: tuple[str, str, str],
        suffix: str = "",
    ) -> None:
        g.add(
            "diagnosis",
            {
                **self._common(t, rng),
                "diagnosis_id": f"{vid}D{suffix}{seq:02d}",
                "visit_id": vid,
                "patient_id": pat.patient_id,
                "visit_type_code": self.c.need("visit_type", kind),
                "diagnosis_category_code": self.c.need("diagnosis_category", cat),
                "diagnosis_seq": seq,
                "main_diagnosis_flag": seq == 1,
                "diagnosis_code": icd,
                "diagnosis_name": name,
                "diagnosis_status_code": self.c.need("diagnosis_status", status),
                "onset_date": onset,
                "diagnosis_time": t,
                "dept_code": dept,
                "doctor_id": doc[0],
                "doctor_name": doc[1],
            },
        )

    def _labs(
        self,
        rng: random.Random,
        g: Group,
        vid: str,
        pat: Patient,
        kind: str,
        t: dt.datetime,
        dept: str,
        doc: tuple[str, str, str],
        cond: Condition,
        positive: bool,
        *,
        tag: str = "",
    ) -> None:
        c = self.c
        for li, lab in enumerate(cond.labs):
            if rng.random() > (0.85 if lab.pathogen else 0.6):
                continue
            items: list[tuple[LabItem | None, str]] = []
            if lab.pathogen:
                if c.get("lab_item", lab.pathogen[0]) is None:
                    continue
                items.append((None, lab.pathogen[0]))
            items += [(it, it.loinc) for it in lab.items if c.get("lab_item", it.loinc) is not None]
            if not items:
                continue
            specimen = c.get("specimen_type", *lab.specimen) or c.need("specimen_type", "18")
            apply = t + dt.timedelta(minutes=rng.randint(5, 20))
            sample = apply + dt.timedelta(minutes=rng.randint(5, 30))
            receive = sample + dt.timedelta(minutes=rng.randint(5, 30))
            report = receive + dt.timedelta(minutes=rng.randint(20, 150))
            rid = f"{vid}L{tag}{li:02d}"
            g.add(
                "lab_report",
                {
                    **self._common(report, rng),
                    "lab_report_id": rid,
                    "visit_id": vid,
                    "patient_id": pat.patient_id,
                    "visit_type_code": c.need("visit_type", kind),
                    "apply_no": f"SQ{rid}",
                    "report_name": lab.report,
                    "apply_dept_code": dept,
                    "apply_doctor_id": doc[0],
                    "apply_time": apply,
                    "specimen_no": f"{rng.randrange(10**11, 10**12)}",
                    "specimen_type_code": specimen,
                    "sample_time": sample,
                    "receive_time": receive,
                    "report_time": report,
                    "report_doctor_id": None,
                    "audit_doctor_id": None,
                    "audit_time": report + dt.timedelta(minutes=rng.randint(2, 20)),
                },
            )
            for ii, (item, loinc) in enumerate(items):
                local = c.need("lab_item", loinc)
                row: Row = {
                    **self._common(report, rng),
                    "lab_result_id": f"{rid}R{ii:02d}",
                    "lab_report_id": rid,
                    "visit_id": vid,
                    "patient_id": pat.patient_id,
                    "lab_item_code": local,
                    "lab_item_name": c.name("lab_item", local),
                    "report_time": report,
                }
                if item is None:
                    assert lab.pathogen is not None
                    row.update(
                        result_value="阳性" if positive else "阴性",
                        qualitative_result_code=c.need("qualitative_result", "2" if positive else "1"),
                        reference_range="阴性",
                        abnormal_flag_code=c.need("abnormal_flag", "A" if positive else "N"),
                        test_method=lab.pathogen[2],
                    )
                    if positive:
                        row["pathogen_code"] = c.get("pathogen", lab.pathogen[1])
                        if lab.ct:
                            row["ct_value"] = _d(rng.uniform(16, 35), 2)
                else:
                    bacterial = cond.key in ("pneumonia", "dysentery", "uti", "copd")
                    span = item.high - item.low
                    hi_bias = 1.6 if bacterial and item.loinc in ("6690-2", "751-8", "1988-5", "33959-8") else 0.0
                    value = item.low + span * (rng.uniform(0.1, 0.95) + hi_bias * rng.random())
                    flag = "H" if value > item.high else "L" if value < item.low else "N"
                    places = 2 if span < 5 else 1
                    row.update(
                        result_value=f"{value:.{places}f}",
                        result_numeric=_d(value, places),
                        result_unit=item.unit,
                        reference_range=f"{item.low:g}-{item.high:g}",
                        reference_low=_d(item.low, 2),
                        reference_high=_d(item.high, 2),
                        abnormal_flag_code=c.need("abnormal_flag", flag),
                        test_method=None,
                    )
                g.add("lab_result", row)

    def _exams(
        self,
        rng: random.Random,
        g: Group,
        vid: str,
        pat: Patient,
        kind: str,
        t: dt.datetime,
        dept: str,
        doc: tuple[str, str, str],
        cond: Condition,
    ) -> None:
        for ei, (etype, item, part, finding) in enumerate(cond.exams):
            local = self.c.get("exam_type", etype)
            if local is None or rng.random() > 0.75:
                continue
            apply = t + dt.timedelta(minutes=rng.randint(5, 30))
            exam = apply + dt.timedelta(minutes=rng.randint(10, 90))
            report = exam + dt.timedelta(minutes=rng.randint(20, 120))
            g.add(
                "exam_report",
                {
                    **self._common(report, rng),
                    "exam_report_id": f"{vid}E{ei:02d}",
                    "visit_id": vid,
                    "patient_id": pat.patient_id,
                    "visit_type_code": self.c.need("visit_type", kind),
                    "exam_type_code": local,
                    "exam_item_code": f"JC{ei + 1:04d}",
                    "exam_item_name": item,
                    "exam_part": part,
                    "apply_dept_code": dept,
                    "apply_doctor_id": doc[0],
                    "apply_time": apply,
                    "exam_time": exam,
                    "report_time": report,
                    "findings": f"{part}：{finding}。余未见明显异常。",
                    "conclusion": f"{finding}，考虑{cond.diagnosis}，请结合临床。",
                    "abnormal_flag_code": self.c.need("abnormal_flag", "A"),
                    "report_doctor_id": None,
                    "audit_doctor_id": None,
                },
            )

    def _drugs(
        self,
        rng: random.Random,
        g: Group,
        vid: str,
        pat: Patient,
        kind: str,
        t: dt.datetime,
        dept: str,
        doc: tuple[str, str, str],
        cond: Condition,
    ) -> None:
        long_term = kind == INPATIENT
        for di, drug in enumerate(cond.drugs):
            local = self.c.get("drug", drug.atc)
            if local is None or (di > 0 and rng.random() < 0.3):
                continue
            order = t + dt.timedelta(minutes=rng.randint(10, 40))
            days = drug.days if not long_term else min(drug.days, 14)
            g.add(
                "drug_order",
                {
                    **self._common(order, rng),
                    "drug_order_id": f"{vid}M{di:02d}",
                    "visit_id": vid,
                    "patient_id": pat.patient_id,
                    "visit_type_code": self.c.need("visit_type", kind),
                    "prescription_no": None if long_term else f"CF{vid}",
                    "order_category_code": self.c.need("order_category", "1" if long_term else "2"),
                    "drug_code": local,
                    "drug_name": drug.name,
                    "drug_spec": drug.spec,
                    "dosage_form": drug.form,
                    "dose": _d(drug.dose, 4),
                    "dose_unit": drug.unit,
                    "frequency": drug.freq,
                    "route_code": self.c.need("route", drug.route),
                    "days": days,
                    "total_quantity": _d(drug.dose * drug.per_day * days, 4),
                    "quantity_unit": drug.unit,
                    "order_time": order,
                    "start_time": order,
                    "stop_time": None if long_term else order + dt.timedelta(days=days),
                    "dept_code": dept,
                    "doctor_id": doc[0],
                },
            )

    def _note(
        self,
        rng: random.Random,
        g: Group,
        vid: str,
        pat: Patient,
        doc_type: str,
        title: str,
        content: str,
        t: dt.datetime,
        dept: str,
        doc: tuple[str, str, str],
        suffix: str,
    ) -> None:
        g.add(
            "progress_note",
            {
                **self._common(t, rng),
                "note_id": f"{vid}N{suffix}",
                "visit_id": vid,
                "patient_id": pat.patient_id,
                "document_type_code": self.c.need("document_type", doc_type),
                "title": title,
                "content": content,
                "record_time": t,
                "dept_code": dept,
                "author_id": doc[0],
                "author_name": doc[1],
            },
        )

    def _long_note(self, rng: random.Random, cond: Condition, complaint: str, days: int, target: int) -> str:
        sym = "、".join(cond.symptoms[:3])
        parts = [f"病例特点：患者主因“{complaint}”入院。"]
        if rng.random() < 0.05:
            parts.append(rng.choice(_NON_BMP_NOTE))
        parts.append(f"患者于{days}天前无明显诱因出现{sym}，自行服用药物（具体不详）后症状无明显缓解，遂来我院就诊。")
        parts += _HISTORY
        parts.append(f"初步诊断：{cond.diagnosis}。诊疗计划：完善相关检查，予抗感染及对症支持治疗，密切观察病情变化。")
        titles = ("主任医师", "副主任医师", "主治医师")
        while sum(map(len, parts)) < target:
            parts.append(
                rng.choice(_ROUND).format(
                    title=rng.choice(titles),
                    diag=cond.diagnosis,
                    s=sym,
                    t=f"{rng.uniform(36.2, 38.5):.1f}",
                    wbc=f"{rng.uniform(3.5, 15):.1f}",
                    crp=f"{rng.uniform(1, 80):.1f}",
                    trend=rng.choice(("好转", "相仿", "下降")),
                )
            )
        return "".join(parts)

    def _card(
        self,
        rng: random.Random,
        g: Group,
        vid: str,
        pat: Patient,
        cond: Condition,
        icd: str,
        status: str,
        onset: dt.date,
        diag_t: dt.datetime,
        dept: str,
        doc: tuple[str, str, str],
        positive: bool,
        seq: int = 0,
    ) -> Row | None:
        c = self.c
        disease = c.get("notifiable_disease", *cond.notifiable)
        if disease is None:
            return None
        if cond.key == "tb":
            disease = c.get("notifiable_disease", "21302" if positive else "21304") or disease
        years = people.age_on(pat.person.birth_date, onset)
        if years < 7:
            group = "01" if years >= 3 else "02"
        elif years < 23:
            group = "03"
        elif years >= 62:
            group = "16"
        else:
            group = rng.choice(("07", "09", "11", "15", "17", "18"))
        report = diag_t + dt.timedelta(minutes=rng.randint(20, 180))
        p = pat.person
        row = {
            **self._common(report, rng),
            "card_id": f"{vid}C{seq}",
            "card_no": f"{report:%Y}{self.tag}{self._next():08d}",
            "card_category_code": c.need("card_category", "1"),
            "visit_id": vid,
            "patient_id": pat.patient_id,
            "patient_name": p.name,
            "parent_name": p.contact_name if years <= 14 else None,
            "id_type_code": pat.id_type,
            "id_no": pat.id_no,
            "sex_code": pat.sex,
            "birth_date": p.birth_date,
            "age_years": years,
            "ethnicity_code": pat.ethnicity,
            "marital_status_code": pat.marital,
            "education_code": pat.education,
            "work_unit": pat.work_unit,
            "phone": p.phone if years >= 12 else p.contact_phone,
            "patient_belong_code": pat.belong,
            "current_addr_region_code": pat.region,
            "current_addr_detail": p.address,
            "population_group_code": c.need("population_group", group),
            "disease_code": disease,
            "other_disease_name": None,
            "diagnosis_code": icd,
            "diagnosis_status_code": c.need("diagnosis_status", status),
            "case_type_code": c.get("case_type", "2" if cond.chronic else "1") if cond.key == "hbv" else None,
            "clinical_severity_code": c.get("clinical_severity", "1" if rng.random() < 0.8 else "2")
            if cond.key == "covid"
            else None,
            "onset_date": onset,
            "diagnosis_time": diag_t,
            "death_date": None,
            "death_diagnosis_code": None,
            "lab_conclusion_code": c.get("lab_conclusion", "3") if positive and cond.key == "covid" else None,
            "infection_route_code": c.get("infection_route", cond.route) if cond.route else None,
            "contact_mode_code": c.get("contact_mode", cond.contact) if cond.contact and cond.route else None,
            "corrected_disease_name": None,
            "report_dept_code": dept,
            "report_doctor_id": doc[0],
            "report_doctor": doc[1],
            "report_time": report,
            "fill_date": report.date(),
            "remark": None,
        }
        g.add("report_card", row)
        self._cards[report.date()] = self._cards.get(report.date(), 0) + 1
        return row

    def _exposure(
        self, rng: random.Random, g: Group, vid: str, pat: Patient, cond: Condition, onset: dt.date, t: dt.datetime
    ) -> None:
        if not cond.exposure or rng.random() > 0.5:
            return
        start = onset - dt.timedelta(days=rng.randint(2, 10))
        travel = rng.random() < 0.2
        g.add(
            "exposure_history",
            {
                **self._common(t, rng),
                "exposure_id": f"{vid}X01",
                "visit_id": vid,
                "patient_id": pat.patient_id,
                "contact_mode_code": self.c.get("contact_mode", cond.contact) if cond.contact else None,
                "case_contact_flag": True,
                "travel_country_code": None,
                "travel_region_code": rng.choice(self._regions).code if travel else None,
                "place_desc": rng.choice(_PLACES),
                "start_date": start,
                "end_date": start + dt.timedelta(days=rng.randint(0, 2)),
                "exposure_desc": cond.exposure,
                "record_time": t + dt.timedelta(minutes=8),
                "recorder_id": None,
            },
        )

    # ---- encounters

    def _choose(self, rng: random.Random, kind: str) -> Condition:
        conds = [cd for cd in self._conds if kind in cd.weight]
        return rng.choices(conds, weights=[cd.weight[kind] for cd in conds])[0]

    def _encounter(
        self,
        rng: random.Random,
        day: dt.date,
        kind: str,
        t: dt.datetime,
        census: Census,
        *,
        admitted_before: bool = False,
    ) -> Group:
        cond = self._choose(rng, kind)
        g = Group(t)
        pat = self._patient_for(rng, day if not admitted_before else t.date(), cond, t, g)
        fever = rng.random() < cond.fever
        days = rng.randint(1, 6)
        complaint = cond.complaint.format(d=days)
        onset = (t - dt.timedelta(days=days)).date() if not cond.chronic else (t - dt.timedelta(days=30)).date()
        if onset < pat.person.birth_date:
            onset = pat.person.birth_date
        inpatient = kind == INPATIENT
        dept = self._dept_for(cond, rng, beds=inpatient)
        doc = self._doctor(dept, rng)
        n = self._next()
        prefix = {OUTPATIENT: "MZ", EMERGENCY: "JZ", INPATIENT: "ZY"}[kind]
        vid = f"{prefix}{t:%y%m%d}{self.tag}{n:07d}"
        ipno = f"{self.tag}{n:07d}" if inpatient else None
        fever_clinic = not inpatient and fever and cond.respiratory
        g.add("visit", self._visit_row(rng, pat, vid, kind, t, dept, doc, cond, fever_clinic, ipno, complaint))
        pat.visits += 1
        if not admitted_before:
            if kind == OUTPATIENT:
                census.outpatient += 1
            elif kind == EMERGENCY:
                census.emergency += 1
            else:
                census.admissions += 1
            census.fever_clinic += fever_clinic
        for si, sym in enumerate(s for s in cond.symptoms if s != "发热" or fever):
            if si >= 3:
                break
            g.add(
                "symptom",
                {
                    **self._common(t, rng),
                    "symptom_id": f"{vid}S{si:02d}",
                    "visit_id": vid,
                    "patient_id": pat.patient_id,
                    "chief_complaint_flag": si == 0,
                    "symptom_code": None,
                    "symptom_name": sym,
                    "symptom_desc": f"{sym}{days}天" if si == 0 else None,
                    "onset_time": dt.datetime.combine(onset, dt.time(8)),
                    "duration_days": (t.date() - onset).days,
                    "record_time": t + dt.timedelta(minutes=5),
                    "recorder_id": doc[0],
                },
            )
        self._vitals(rng, g, vid, pat, t, fever, cond)
        positive = bool(cond.labs) and rng.random() < cond.positive
        self._labs(rng, g, vid, pat, kind, t, dept, doc, cond, positive)
        self._exams(rng, g, vid, pat, kind, t, dept, doc, cond)
        icds = self.c.with_prefix("icd10", cond.icd)
        icd = rng.choice(icds)[0]
        if positive:
            status = "3"
        elif cond.key == "fever" or (cond.notifiable and rng.random() < cond.suspected):
            status = "1"  # suspected case: the early-warning side's main customer
        else:
            status = "2"
        diag_t = t + dt.timedelta(minutes=rng.randint(15, 180))
        self._diagnosis(
            rng, g, vid, pat, kind, "2" if inpatient else "1", 1, icd, cond.diagnosis, status, onset, diag_t, dept, doc
        )
        if people.age_on(pat.person.birth_date, day) >= 55 and cond.key != "hypertension" and rng.random() < 0.3:
            htn = self.c.with_prefix("icd10", ("I10",))
            if htn:
                self._diagnosis(
                    rng,
                    g,
                    vid,
                    pat,
                    kind,
                    "2" if inpatient else "1",
                    2,
                    htn[0][0],
                    "原发性高血压",
                    "2",
                    pat.person.birth_date + dt.timedelta(days=365 * 40),
                    diag_t,
                    dept,
                    doc,
                )
        self._drugs(rng, g, vid, pat, kind, t, dept, doc, cond)
        card = None
        if cond.notifiable and not (status == "1" and cond.key in ("flu", "diarrhea")):
            card = self._card(rng, g, vid, pat, cond, icd, status, onset, diag_t, dept, doc, positive)
        self._exposure(rng, g, vid, pat, cond, onset, t)
        if inpatient:
            self._admit(rng, g, vid, ipno or "", pat, cond, t, dept, doc, complaint, days, icd, card, kind)
        else:
            note = (
                f"主诉：{complaint}。现病史：患者{days}天前出现{'、'.join(cond.symptoms[:2])}，今日来我院"
                f"{self._depts[dept][0]}就诊。既往史：否认特殊病史，否认药物过敏史。"
                f"{rng.choice(_NON_BMP_NOTE) if rng.random() < 0.02 else ''}"
                f"查体：神志清楚，{'体温升高，' if fever else ''}咽部{'充血' if cond.respiratory else '无充血'}。"
                f"初步诊断：{cond.diagnosis}。处理：对症治疗，嘱多饮水、注意休息，如症状加重及时复诊。"
            )
            self._note(rng, g, vid, pat, "01", "门（急）诊病历", note, t + dt.timedelta(minutes=20), dept, doc, "01")
        return g

    def _admit(
        self,
        rng: random.Random,
        g: Group,
        vid: str,
        ipno: str,
        pat: Patient,
        cond: Condition,
        t: dt.datetime,
        dept: str,
        doc: tuple[str, str, str],
        complaint: str,
        days: int,
        icd: str,
        card: Row | None,
        kind: str,
    ) -> None:
        route = self.c.need("admission_route", "1" if rng.random() < 0.4 else "2")
        ward, bed = rng.choice(_WARDS), f"{rng.randint(1, 60):02d}"
        g.add(
            "admission",
            {
                **self._common(t, rng),
                "admission_id": f"{vid}A",
                "visit_id": vid,
                "patient_id": pat.patient_id,
                "inpatient_no": ipno,
                "admission_time": t,
                "dept_code": dept,
                "ward": ward,
                "bed_no": bed,
                "admission_route_code": route,
                "admission_condition_code": self.c.need("admission_condition", "1"),
                "chief_complaint": complaint,
                "present_illness": f"患者{days}天前出现{'、'.join(cond.symptoms[:3])}。{_HISTORY[0]}",
                "past_history": _HISTORY[1],
                "epidemiological_history": cond.exposure or "否认传染病患者接触史，否认疫区旅居史。",
                "admission_diagnosis_code": icd,
                "admission_diagnosis_name": cond.diagnosis,
                "doctor_id": doc[0],
                "record_time": t + dt.timedelta(hours=rng.randint(1, 8)),
            },
        )
        target = 3000 if rng.random() < 0.3 else rng.randint(500, 1500)
        self._note(
            rng,
            g,
            vid,
            pat,
            "03",
            "首次病程记录",
            self._long_note(rng, cond, complaint, days, target),
            t + dt.timedelta(hours=rng.randint(1, 8)),
            dept,
            doc,
            "00",
        )
        los = rng.randint(*cond.los)
        dies = rng.random() < cond.severe * (0.5 if people.age_on(pat.person.birth_date, t.date()) > 65 else 0.15)
        self.stays.append(
            Stay(vid, ipno, pat, cond, dept, ward, bed, t, t.date() + dt.timedelta(days=los), dies, icd, card, route)
        )

    def _round(self, rng: random.Random, day: dt.date, stay: Stay) -> Group:
        t = self._clock(day, (8 + rng.random() * 2) / 24)
        g = Group(t)
        doc = self._doctor(stay.dept, rng)
        content = self._long_note(rng, stay.cond, stay.cond.complaint.format(d=3), 3, rng.randint(200, 600))
        self._note(
            rng,
            g,
            stay.visit_id,
            stay.patient,
            "04" if rng.random() < 0.7 else "05",
            "日常病程记录",
            content,
            t,
            stay.dept,
            doc,
            f"{day:%y%m%d}",
        )
        self._vitals(rng, g, stay.visit_id, stay.patient, t, False, stay.cond, n=rng.randint(2, 3))
        return g

    def _leave(self, rng: random.Random, day: dt.date, stay: Stay, census: Census) -> Group:
        t = self._clock(day, (9 + rng.random() * 3) / 24)
        if t <= stay.admitted:
            t = stay.admitted + dt.timedelta(hours=1)
        g = Group(t)
        c = self.c
        doc = self._doctor(stay.dept, rng)
        pat, p, vid = stay.patient, stay.patient.person, stay.visit_id
        days = (t.date() - stay.admitted.date()).days
        mode = "5" if stay.dies else "2" if rng.random() < 0.03 else "1"
        transfer = c.get("org", "12110000400000000X") if mode == "2" else None
        census.discharges += 1
        g.add(
            "discharge",
            {
                **self._common(t, rng),
                "discharge_id": f"{vid}O",
                "visit_id": vid,
                "patient_id": pat.patient_id,
                "inpatient_no": stay.inpatient_no,
                "admission_time": stay.admitted,
                "discharge_time": t,
                "dept_code": stay.dept,
                "inpatient_days": days,
                "discharge_mode_code": c.need("discharge_mode", mode),
                "transfer_org_code": transfer,
                "discharge_diagnosis_code": stay.diag_local,
                "discharge_diagnosis_name": stay.cond.diagnosis,
                "treatment_summary": f"入院后完善相关检查，明确诊断为{stay.cond.diagnosis}，予规范治疗。",
                "discharge_condition": "患者病情危重，经抢救无效死亡。"
                if stay.dies
                else "患者症状明显好转，生命体征平稳。",
                "discharge_advice": None if stay.dies else "注意休息，按时服药，1周后门诊复查。",
                "doctor_id": doc[0],
                "record_time": t + dt.timedelta(hours=1),
            },
        )
        self._diagnosis(
            rng,
            g,
            vid,
            pat,
            INPATIENT,
            "6" if stay.dies else "5",
            1,
            stay.diag_local,
            stay.cond.diagnosis,
            "3" if stay.cond.notifiable else "2",
            stay.admitted.date(),
            t,
            stay.dept,
            doc,
            suffix="O",
        )
        years = people.age_on(p.birth_date, stay.admitted.date())
        months = None
        if years < 1:
            ad = stay.admitted.date()
            months = min(
                11,
                (ad.year - p.birth_date.year) * 12
                + ad.month
                - p.birth_date.month
                - (1 if ad.day < p.birth_date.day else 0),
            )
        proc = c.get("procedure", "47.01") if stay.cond.procedure else None
        g.add(
            "medical_record_home",
            {
                **self._common(t, rng),
                "home_page_id": f"{vid}H",
                "visit_id": vid,
                "patient_id": pat.patient_id,
                "inpatient_no": stay.inpatient_no,
                "admission_times": max(1, pat.visits),
                "payment_method_code": c.get("payment_method", "01"),
                "name": p.name,
                "sex_code": pat.sex,
                "birth_date": p.birth_date,
                "age_years": years,
                "age_months": months,
                "nationality_code": c.need("nationality", "USA" if pat.id_type == c.get("id_type", "03") else "CHN"),
                "ethnicity_code": pat.ethnicity,
                "id_type_code": pat.id_type,
                "id_no": pat.id_no,
                "occupation_code": pat.occupation,
                "marital_status_code": pat.marital,
                "current_addr_region_code": pat.region,
                "current_addr_detail": p.address,
                "phone": p.phone if years >= 12 else None,
                "work_unit": pat.work_unit,
                "contact_name": p.contact_name,
                "contact_relation_code": pat.relation,
                "contact_phone": p.contact_phone,
                "admission_route_code": stay.admission_route,
                "admission_time": stay.admitted,
                "admission_dept_code": stay.dept,
                "discharge_time": t,
                "discharge_dept_code": stay.dept,
                "inpatient_days": days,
                "outpatient_diagnosis_code": stay.diag_local,
                "outpatient_diagnosis_name": stay.cond.diagnosis,
                "main_diagnosis_code": stay.diag_local,
                "main_diagnosis_name": stay.cond.diagnosis,
                "admission_condition_code": c.need("admission_condition", "1"),
                "main_procedure_code": proc,
                "main_procedure_name": "腹腔镜下阑尾切除术" if proc else None,
                "main_procedure_date": stay.admitted.date() if proc else None,
                "abo_blood_type_code": c.get("blood_type", "5"),
                "rh_blood_type_code": c.get("rh_blood_type", "3"),
                "discharge_mode_code": c.need("discharge_mode", mode),
                "transfer_org_code": transfer,
                "attending_doctor_id": doc[0],
                "total_cost": _d(days * rng.uniform(800, 3500), 2),
            },
        )
        g.updates.append(
            Update(
                "visit",
                {"org_code": self.org, "visit_id": vid},
                {
                    "visit_end_time": t,
                    "modify_flag": self._flag_upd,
                    "update_time": t + dt.timedelta(minutes=rng.randint(1, 30)),
                },
            )
        )
        if stay.dies:
            census.deaths += 1
            death_t = t - dt.timedelta(minutes=rng.randint(30, 120))
            if death_t <= stay.admitted:
                death_t = t
            cause = c.get("death_cause", stay.cond.death_dx or "J18.9", "J18.9") or c.need("death_cause", "A41.9")
            g.add(
                "death_record",
                {
                    **self._common(t, rng),
                    "death_record_id": f"{vid}W",
                    "visit_id": vid,
                    "patient_id": pat.patient_id,
                    "visit_type_code": c.need("visit_type", INPATIENT),
                    "inpatient_no": stay.inpatient_no,
                    "admission_time": stay.admitted,
                    "death_time": death_t,
                    "dept_code": stay.dept,
                    "death_cause_code": cause,
                    "death_cause_name": c.name("death_cause", cause),
                    "underlying_cause_code": stay.diag_local,
                    "underlying_cause_name": stay.cond.diagnosis,
                    "death_diagnosis_name": f"{c.name('death_cause', cause)}；{stay.cond.diagnosis}",
                    "rescue_summary": "患者病情突然加重，予气管插管、心肺复苏等抢救措施，抢救无效，宣布临床死亡。",
                    "autopsy_flag": False,
                    "doctor_id": doc[0],
                    "record_time": t,
                },
            )
            if stay.card is not None:
                ddx = c.get("death_diagnosis", stay.cond.death_dx or "J96.0", "J96.0", "J18.9")
                report = t + dt.timedelta(minutes=rng.randint(10, 60))
                card = {
                    **stay.card,
                    **self._common(report, rng),
                    "card_id": f"{vid}C1",
                    "card_category_code": c.need("card_category", "2"),
                    "death_date": death_t.date(),
                    "death_diagnosis_code": ddx,
                    "report_time": report,
                    "fill_date": report.date(),
                    "remark": "订正：患者死亡",
                }
                g.add("report_card", card)
                self._cards[report.date()] = self._cards.get(report.date(), 0) + 1
        return g

    # ---- days

    def _seed_census(self, rng: random.Random, day: dt.date, census: Census) -> list[Group]:
        """Inpatients already in hospital when generation starts (admitted on earlier days)."""
        groups = []
        per_day = self.patients * 0.06
        for back in range(12, 0, -1):
            d = day - dt.timedelta(days=back)
            for _ in range(round(per_day * (1 - back / 13))):
                t = dt.datetime.combine(d, dt.time()) + dt.timedelta(seconds=int(self._frac(INPATIENT, rng) * 86400))
                g = self._encounter(rng, d, INPATIENT, t, census, admitted_before=True)
                stay = self.stays[-1]
                stay.leave_on = max(stay.leave_on, day)
                groups.append(g)
        return groups

    def day(self, day: dt.date) -> DayResult:
        rng = random.Random(f"{self.seed}:{day.isoformat()}")
        census = Census()
        groups: list[Group] = []
        if self.first_day is None:
            self.first_day = day
            groups += self._seed_census(rng, day, census)
        staying: list[Stay] = []
        for stay in self.stays:
            if stay.leave_on <= day:
                groups.append(self._leave(rng, day, stay, census))
            else:
                if stay.admitted.date() < day:
                    groups.append(self._round(rng, day, stay))
                staying.append(stay)
        self.stays = staying
        kinds = rng.choices((OUTPATIENT, EMERGENCY, INPATIENT), weights=(78, 14, 8), k=self.patients)
        for kind in kinds:
            t = self._clock(day, self._frac(kind, rng))
            groups.append(self._encounter(rng, day, kind, t, census))
        census.in_hospital = len(self.stays)
        # Cards count on the day they were reported (a late-evening visit's card may fall on the next day).
        census.cards = self._cards.pop(day, 0)
        groups.sort(key=lambda g: g.time)
        invalid = self._spoil(rng, groups)
        end = dt.datetime.combine(day, dt.time()) + dt.timedelta(days=1, minutes=30)
        if self.now is not None and end > self.now:
            end = self.now
        stats = Group(end)
        stats.add(
            "daily_stats",
            {
                **self._common(end, rng),
                "stat_date": day,
                "outpatient_count": census.outpatient,
                "emergency_count": census.emergency,
                "fever_clinic_count": census.fever_clinic,
                "inpatient_count": census.in_hospital,
                "admission_count": census.admissions,
                "discharge_count": census.discharges,
                "death_count": census.deaths,
                "report_card_count": census.cards,
            },
        )
        groups.append(stats)
        return DayResult(day, groups, invalid, census)

    # ---- deliberate faults

    def _spoil(self, rng: random.Random, groups: list[Group]) -> dict[str, list[InvalidKey]]:
        rows: dict[str, list[Row]] = {}
        for g in groups:
            for table, batch in g.rows.items():
                rows.setdefault(table, []).extend(batch)
        want = expected_invalid({t: len(r) for t, r in rows.items()}, self.ratio)
        out: dict[str, list[InvalidKey]] = {k: [] for k in INVALID_KINDS}
        c = self.c
        id_card = c.need("id_type", "01")
        pts = [r for r in rows.get("patient", []) if r["id_type_code"] == id_card]
        n_bad, n_sex = want["bad_id_check_digit"], round(self.ratio * len(rows.get("patient", [])) / 2)
        picked = rng.sample(pts, min(len(pts), n_bad + n_sex))
        bad_sex = c.unknown("sex", ("男", "W", "Z"))
        for i, r in enumerate(picked):
            if i < n_bad:
                r["id_no"] = people.corrupt_check_digit(r["id_no"])
                out["bad_id_check_digit"].append(("patient", (r["org_code"], r["patient_id"])))
            else:
                r["sex_code"] = bad_sex
                out["unknown_local_code"].append(("patient", (r["org_code"], r["patient_id"])))
        visits = rows.get("visit", [])
        n_dept, n_birth = round(self.ratio * len(visits) / 2), want["birth_after_visit"]
        bad_dept = c.unknown("department", ("9999", "XXXX"))
        for i, r in enumerate(rng.sample(visits, min(len(visits), n_dept + n_birth))):
            key = ("visit", (r["org_code"], r["visit_id"]))
            if i < n_dept:
                r["dept_code"] = bad_dept
                out["unknown_local_code"].append(key)
            else:
                r["birth_date"] = r["visit_time"].date() + dt.timedelta(days=rng.randint(1, 400))
                r["age_years"] = r["age_months"] = None
                out["birth_after_visit"].append(key)
        vitals = rows.get("vital_sign", [])
        for r in rng.sample(vitals, min(len(vitals), want["vital_out_of_range"])):
            # Typical keying slips: a missing decimal point or a dropped digit.
            r["temperature"] = Decimal(rng.choice(("365.0", "372.0", "3.7", "47.5", "29.0")))
            out["vital_out_of_range"].append(("vital_sign", (r["org_code"], r["vital_sign_id"])))
        dis = rows.get("discharge", [])
        for r in rng.sample(dis, min(len(dis), want["discharge_before_admission"])):
            r["admission_time"] = r["discharge_time"] + dt.timedelta(hours=rng.randint(2, 6))
            r["inpatient_days"] = 0
            out["discharge_before_admission"].append(("discharge", (r["org_code"], r["discharge_id"])))
        return out


def iter_days(hospital: Hospital, start: dt.date, days: int | None) -> Iterator[DayResult]:
    """Day after day from ``start``; forever when ``days`` is None."""
    i = 0
    while days is None or i < days:
        yield hospital.day(start + dt.timedelta(days=i))
        i += 1


def generate(
    codes: Codes,
    org_code: str,
    start: dt.date,
    *,
    days: int = 1,
    seed: int = 1,
    patients: int = 2000,
    invalid_ratio: float = 0.02,
    now: dt.datetime | None = None,
) -> GenResult:
    """All rows of ``days`` hospital days (plus dept/staff base rows), deterministic for a seed."""
    hosp = Hospital(codes, org_code, start, seed=seed, patients=patients, invalid_ratio=invalid_ratio, now=now)
    result = GenResult()
    result.add_group(hosp.base_group(dt.datetime.combine(start, dt.time()) - dt.timedelta(days=30)))
    for day in iter_days(hosp, start, days):
        for g in day.groups:
            result.add_group(g)
        for kind, keys in day.invalid.items():
            result.invalid[kind].extend(keys)
        result.census[day.date] = day.census
    return result


def load_codes(mappings_dir: Any = None, hospital: str = "example") -> Codes:
    from cdcsync.mapping.domains import load_code_tables

    return Codes(load_code_tables(mappings_dir, hospital, strict=False))
