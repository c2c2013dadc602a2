"""Rule packs: the versioned YAML data behind the early-warning rules (diseases, ICD-10 sets,
pathogens, lab items, drugs, due times, sources), loaded into typed, frozen values.

A pack is data, not code: a hospital or the national platform's config push replaces the file
(setting ``surveil.rule_pack``), ``cdcsync rules check FILE`` validates one first. Every error is a
:class:`PackError` whose message names the file, the YAML path (``diseases[3].icd10[0]``) and what
was expected, in Chinese for the 防保科 staff who maintain packs. The format is in
docs/surveillance.md; the shipped pack is ``cdcsync/surveil/packs/default.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdcsync import yamlfile
from cdcsync.surveil.cases import Kind

DEFAULT_PACK = Path(__file__).resolve().parent / "packs" / "default.yaml"
FORMAT = 1
CLASSES = ("甲", "乙", "丙", "其他")
_ICD = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,39}$")


class PackError(ValueError):
    """A rule pack that cannot be used; the message names file, YAML path and what was expected."""


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    title: str


@dataclass(frozen=True, slots=True)
class Disease:
    code: str  # national notifiable_disease code (其他: the pack's own code)
    name: str
    cls: str  # 甲 | 乙 | 丙 | 其他
    managed_as_class_a: bool
    icd10: tuple[str, ...]
    subtypes: tuple[str, ...]  # report-card disease codes that fall under this disease
    source: str


@dataclass(frozen=True, slots=True)
class DrugGroup:
    id: str
    label: str
    diseases: tuple[str, ...]  # a diagnosis of any of these makes the drug expected
    codes: tuple[str, ...]  # national drug codes (ATC)
    source: str


@dataclass(frozen=True, slots=True)
class DueHours:
    class_a: float
    managed_as_class_a: float
    other: float


@dataclass(frozen=True, slots=True)
class RulePack:
    """A loaded, validated rule pack. Look-ups go through the methods (national codes in)."""

    name: str
    version: str
    title: str
    path: str
    sources: Mapping[str, Source]
    due: DueHours
    suspected_statuses: frozenset[str]
    confirmed_statuses: frozenset[str]
    positive_results: frozenset[str]
    kinds: frozenset[Kind]
    onset_tolerance_days: int
    diseases: tuple[Disease, ...]
    pathogens: Mapping[str, str]  # pathogen code -> disease code
    lab_items: Mapping[str, str]  # lab item code -> disease code
    drugs: tuple[DrugGroup, ...]
    _by_code: Mapping[str, Disease] = field(repr=False, default_factory=dict)
    _icd: Mapping[str, str] = field(repr=False, default_factory=dict)  # prefix -> disease code
    _drug: Mapping[str, DrugGroup] = field(repr=False, default_factory=dict)
    _by_name: Mapping[str, str] = field(repr=False, default_factory=dict)

    def disease(self, code: str) -> Disease | None:
        """The disease of a pack code, or of a report card's disease code (subtypes included)."""
        return self._by_code.get(code)

    def disease_by_name(self, name: str) -> Disease | None:
        code = self._by_name.get(name.strip())
        return self._by_code.get(code) if code else None

    def disease_for_icd(self, code: str | None) -> Disease | None:
        """The disease whose ICD-10 set holds ``code`` (longest prefix: A22.1 before A22)."""
        if not code:
            return None
        code = code.strip().upper()
        icd = self._icd
        while code:
            hit = icd.get(code)
            if hit is not None:
                return self._by_code[hit]
            if "." in code:
                code = code[:-1].rstrip(".")
            else:
                return None
        return None

    def disease_for_pathogen(self, code: str | None) -> Disease | None:
        hit = self.pathogens.get(code) if code else None
        return self._by_code[hit] if hit else None

    def disease_for_lab_item(self, code: str | None) -> Disease | None:
        hit = self.lab_items.get(code) if code else None
        return self._by_code[hit] if hit else None

    def drug_group(self, code: str | None) -> DrugGroup | None:
        return self._drug.get(code) if code else None

    def due_hours(self, disease: Disease) -> float:
        if disease.cls == "甲":
            return self.due.class_a
        if disease.managed_as_class_a:
            return self.due.managed_as_class_a
        return self.due.other

    def enabled(self, kind: Kind) -> bool:
        return kind in self.kinds

    def summary(self) -> dict[str, Any]:
        """What ``cdcsync rules list --json`` prints."""
        per_class: dict[str, list[dict[str, Any]]] = {c: [] for c in CLASSES}
        for d in self.diseases:
            per_class[d.cls].append({"code": d.code, "name": d.name, "managed_as_class_a": d.managed_as_class_a,
                                     "due_hours": self.due_hours(d), "icd10": list(d.icd10),
                                     "subtypes": list(d.subtypes), "source": d.source})
        return {
            "name": self.name, "version": self.version, "title": self.title, "path": self.path,
            "kinds": [str(k) for k in Kind if k in self.kinds],
            "due_hours": {"class_a": self.due.class_a, "managed_as_class_a": self.due.managed_as_class_a,
                          "other": self.due.other},
            "diseases": per_class,
            "pathogens": len(self.pathogens), "lab_items": len(self.lab_items),
            "drugs": [{"id": g.id, "label": g.label, "diseases": list(g.diseases), "codes": list(g.codes),
                       "source": g.source} for g in self.drugs],
            "sources": {s.id: s.title for s in self.sources.values()},
        }


# -- loading -------------------------------------------------------------------------------------


class _Reader:
    """Typed access to the parsed YAML with errors that name the file and the path."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, expected: str, got: Any = None, *, show: bool = True) -> PackError:
        tail = f"（实际为 {got!r}）" if show and got is not None else ""
        return PackError(f"{self.path}: {where or '(根)'}: {expected}{tail}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "应为键值映射（mapping）", type(value).__name__)
        return value

    def seq(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, "应为列表", type(value).__name__)
        return value

    def text(self, node: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
        value = node.get(key)
        if value is None:
            if required:
                raise self.fail(_join(where, key), "缺少必填项")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(_join(where, key), "应为文本", value)
        text = str(value).strip()
        if required and not text:
            raise self.fail(_join(where, key), "不能为空")
        return text

    def codes(self, node: dict[str, Any], key: str, where: str) -> list[str]:
        items = self.seq(node.get(key, []), _join(where, key))
        out: list[str] = []
        for i, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
                raise self.fail(f"{_join(where, key)}[{i}]", "应为非空代码（文本）", item)
            out.append(str(item).strip())
        return out

    def number(self, node: dict[str, Any], key: str, where: str, *, lo: float, hi: float) -> float:
        value = node.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.fail(_join(where, key), f"应为 {lo:g}–{hi:g} 之间的数", value)
        return float(value)

    def unknown(self, node: dict[str, Any], allowed: set[str], where: str) -> None:
        extra = sorted(str(k) for k in node if k not in allowed)
        if extra:
            raise self.fail(_join(where, extra[0]), f"未知的项（检查拼写；允许：{'、'.join(sorted(allowed))}）")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


_TOP = {"format", "name", "version", "title", "sources", "due_hours", "diagnosis_status", "positive_results",
        "kinds", "card_check", "diseases", "pathogens", "lab_items", "drugs"}


def load_pack(path: Path | str | None = None) -> RulePack:
    """Load and validate a rule pack (None: the shipped default pack)."""
    file = Path(path) if path is not None else DEFAULT_PACK
    label = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PackError(f"{label}: 规则包文件不存在") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PackError(f"{label}: 无法读取规则包（{type(exc).__name__}）") from None
    try:
        data = yamlfile.load(text)
    except yamlfile.YamlProblem as exc:
        raise PackError(f"{label}: {exc}") from None
    return parse_pack(data, label)


def parse_pack(data: Any, label: str) -> RulePack:
    r = _Reader(label)
    top = r.mapping(data, "")
    r.unknown(top, _TOP, "")
    if top.get("format") != FORMAT:
        raise r.fail("format", f"应为 {FORMAT}（本程序支持的规则包格式版本）", top.get("format"))
    version = r.text(top, "version", "")
    if not _VERSION.match(version):
        raise r.fail("version", "应为 1–40 位字母、数字、点、横线或下划线（如 2026.12.1）", version)
    name = r.text(top, "name", "")
    title = r.text(top, "title", "", required=False) or name

    sources: dict[str, Source] = {}
    for sid, node in r.mapping(top.get("sources"), "sources").items():
        where = f"sources.{sid}"
        node = r.mapping(node, where)
        r.unknown(node, {"title", "url"}, where)
        sources[str(sid)] = Source(str(sid), r.text(node, "title", where))
    if not sources:
        raise r.fail("sources", "至少要列出一个来源")

    def source_of(node: dict[str, Any], where: str) -> str:
        sid = r.text(node, "source", where)
        if sid not in sources:
            raise r.fail(_join(where, "source"), f"应为 sources 中列出的来源编号（{'、'.join(sources)}）", sid)
        return sid

    due_node = r.mapping(top.get("due_hours"), "due_hours")
    r.unknown(due_node, {"class_a", "managed_as_class_a", "other", "source"}, "due_hours")
    due = DueHours(*(r.number(due_node, k, "due_hours", lo=0.25, hi=720)
                     for k in ("class_a", "managed_as_class_a", "other")))
    source_of(due_node, "due_hours")

    st = r.mapping(top.get("diagnosis_status"), "diagnosis_status")
    r.unknown(st, {"suspected", "confirmed"}, "diagnosis_status")
    suspected = frozenset(r.codes(st, "suspected", "diagnosis_status"))
    confirmed = frozenset(r.codes(st, "confirmed", "diagnosis_status"))
    if not suspected or not confirmed:
        raise r.fail("diagnosis_status", "suspected 与 confirmed 都至少要有一个诊断状态代码")
    if suspected & confirmed:
        raise r.fail("diagnosis_status", f"诊断状态代码 {sorted(suspected & confirmed)[0]} 不能既算疑似又算确诊")
    positive = frozenset(r.codes(top, "positive_results", ""))
    if not positive:
        raise r.fail("positive_results", "至少要有一个算作阳性的定性结果代码")

    kinds: set[Kind] = set()
    for i, item in enumerate(r.seq(top.get("kinds"), "kinds")):
        try:
            kinds.add(Kind(str(item)))
        except ValueError:
            raise r.fail(f"kinds[{i}]", f"应为 {'、'.join(k.value for k in Kind)} 之一", item) from None

    cc = r.mapping(top.get("card_check", {}), "card_check")
    r.unknown(cc, {"onset_tolerance_days"}, "card_check")
    tolerance = int(r.number({"v": cc.get("onset_tolerance_days", 0)}, "v", "card_check.onset_tolerance_days",
                             lo=0, hi=365)) if cc else 0

    diseases: list[Disease] = []
    by_code: dict[str, Disease] = {}
    icd: dict[str, str] = {}
    for i, node in enumerate(r.seq(top.get("diseases"), "diseases")):
        where = f"diseases[{i}]"
        node = r.mapping(node, where)
        r.unknown(node, {"code", "name", "class", "managed_as_class_a", "icd10", "subtypes", "source"}, where)
        code = r.text(node, "code", where)
        cls = r.text(node, "class", where)
        if cls not in CLASSES:
            raise r.fail(_join(where, "class"), "应为 甲、乙、丙、其他 之一", cls)
        managed = node.get("managed_as_class_a", False)
        if not isinstance(managed, bool):
            raise r.fail(_join(where, "managed_as_class_a"), "应为 true 或 false", managed)
        if managed and cls != "乙":
            raise r.fail(_join(where, "managed_as_class_a"), "只有乙类病种可以按甲类管理", cls)
        codes = r.codes(node, "icd10", where)
        for j, c in enumerate(codes):
            if not _ICD.match(c):
                raise r.fail(f"{where}.icd10[{j}]", "应为 ICD-10 类目或亚目（如 A15、A22.1）", c)
            if c in icd:
                raise r.fail(f"{where}.icd10[{j}]", f"ICD-10 {c} 已属于病种 {icd[c]}，同一代码只能属于一个病种")
            icd[c] = code
        disease = Disease(code, r.text(node, "name", where), cls, managed, tuple(codes),
                          tuple(r.codes(node, "subtypes", where)), source_of(node, where))
        for c in (code, *disease.subtypes):
            if c in by_code:
                raise r.fail(_join(where, "code"), f"病种代码 {c} 重复（已用于 {by_code[c].name}）")
            by_code[c] = disease
        diseases.append(disease)
    if not diseases:
        raise r.fail("diseases", "至少要有一个病种")

    def disease_ref(node: dict[str, Any], where: str) -> str:
        code = r.text(node, "disease", where)
        if code not in by_code:
            raise r.fail(_join(where, "disease"), "应为 diseases 中列出的病种代码", code)
        return by_code[code].code

    def coded_map(key: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for i, node in enumerate(r.seq(top.get(key, []), key)):
            where = f"{key}[{i}]"
            node = r.mapping(node, where)
            r.unknown(node, {"code", "disease", "source"}, where)
            code = r.text(node, "code", where)
            if code in out:
                raise r.fail(_join(where, "code"), f"代码 {code} 重复")
            out[code] = disease_ref(node, where)
            source_of(node, where)
        return out

    pathogens = coded_map("pathogens")
    lab_items = coded_map("lab_items")

    drugs: list[DrugGroup] = []
    drug_index: dict[str, DrugGroup] = {}
    for i, node in enumerate(r.seq(top.get("drugs", []), "drugs")):
        where = f"drugs[{i}]"
        node = r.mapping(node, where)
        r.unknown(node, {"id", "label", "diseases", "codes", "source"}, where)
        refs = r.codes(node, "diseases", where)
        if not refs:
            raise r.fail(_join(where, "diseases"), "至少要有一个病种")
        for j, ref in enumerate(refs):
            if ref not in by_code:
                raise r.fail(f"{where}.diseases[{j}]", "应为 diseases 中列出的病种代码", ref)
        group = DrugGroup(r.text(node, "id", where), r.text(node, "label", where),
                          tuple(by_code[ref].code for ref in refs), tuple(r.codes(node, "codes", where)),
                          source_of(node, where))
        if not group.codes:
            raise r.fail(_join(where, "codes"), "至少要有一个药品代码")
        for j, c in enumerate(group.codes):
            if c in drug_index:
                raise r.fail(f"{where}.codes[{j}]", f"药品代码 {c} 已属于药品组 {drug_index[c].id}")
            drug_index[c] = group
        drugs.append(group)

    return RulePack(
        name=name, version=version, title=title, path=label, sources=sources, due=due,
        suspected_statuses=suspected, confirmed_statuses=confirmed, positive_results=positive,
        kinds=frozenset(kinds), onset_tolerance_days=tolerance, diseases=tuple(diseases),
        pathogens=pathogens, lab_items=lab_items, drugs=tuple(drugs),
        _by_code=by_code, _icd=icd, _drug=drug_index, _by_name={d.name: d.code for d in diseases},
    )
