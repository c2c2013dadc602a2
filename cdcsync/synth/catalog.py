"""The synthetic hospital's clinical catalogue: conditions, lab panels, drugs, departments, text pools.

The data lives in ``catalog.yaml`` beside this module (shipped as package data); this module holds
the frozen dataclasses the generator works with and the loader that checks the file structurally.
Every problem is a :class:`~cdcsync.synth.codes.SynthError` whose one-line message names the file,
the key path and what was expected, e.g. ``catalog.yaml: conditions[3].los: expected [min, max]
whole numbers, got [3, 7.5]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from cdcsync.mapping.domains import MappingError, display_path, load_yaml_text
from cdcsync.synth.codes import SynthError

DEFAULT_PATH = Path(__file__).with_name("catalog.yaml")
OUTPATIENT, EMERGENCY, INPATIENT = "1", "2", "3"  # national visit_type codes
VISIT_TYPES: Mapping[str, str] = MappingProxyType(
    {"outpatient": OUTPATIENT, "emergency": EMERGENCY, "inpatient": INPATIENT}
)


@dataclass(frozen=True)
class LabItem:
    """A numeric lab result with its reference range."""

    loinc: str
    unit: str
    low: float
    high: float


@dataclass(frozen=True)
class Pathogen:
    """A qualitative pathogen test: the lab item, the pathogen it finds, and how."""

    item: str  # lab item LOINC
    taxon: str  # pathogen taxonomy id
    method: str


@dataclass(frozen=True)
class Lab:
    """One lab report (panel): numeric items and/or a pathogen test."""

    report: str
    specimen: tuple[str, ...]  # national specimen_type codes by preference
    items: tuple[LabItem, ...] = ()
    pathogen: Pathogen | None = None
    ct: bool = False  # a positive pathogen result carries a Ct value (nucleic acid tests)


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
class Exam:
    """An imaging/endoscopy exam and its typical finding for the condition."""

    type: str  # national exam_type code
    item: str
    part: str
    finding: str


@dataclass(frozen=True)
class Condition:
    key: str
    diagnosis: str
    icd: tuple[str, ...]
    weight: Mapping[str, float]  # national visit type -> relative weight
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
    exams: tuple[Exam, ...] = ()
    drugs: tuple[Drug, ...] = ()
    severe: float = 0.0
    los: tuple[int, int] = (3, 10)
    route: str | None = None  # national infection_route
    contact: str | None = None  # national contact_mode
    exposure: str | None = None
    procedure: str | None = None  # national ICD-9-CM-3
    death_dx: str | None = None  # national death_diagnosis code
    respiratory: bool = False


@dataclass(frozen=True)
class Catalog:
    conditions: tuple[Condition, ...]
    dept_names: Mapping[str, str]  # local department code -> name (overrides the national name)
    depts_without_beds: frozenset[str]  # national department codes
    titles: tuple[str, ...]
    round_titles: tuple[str, ...]
    school_units: tuple[str, ...]
    work_units: tuple[str, ...]
    exposure_places: tuple[str, ...]
    wards: tuple[str, ...]
    postal_prefixes: Mapping[str, str]  # province code -> first three postal code digits
    non_bmp_remarks: tuple[str, ...]
    history: tuple[str, ...]  # [0] present illness, [1] past history, then personal/family
    ward_round: tuple[str, ...]


# --------------------------------------------------------------------------- structural checks

T = TypeVar("T")
N = TypeVar("N", int, float)


class _Path:
    """Where in the file a value sits, for error messages (``conditions[3].los``)."""

    def __init__(self, file: str, parts: tuple[str, ...] = ()) -> None:
        self.file, self.parts = file, parts

    def __truediv__(self, part: str | int) -> _Path:
        return _Path(self.file, (*self.parts, f"[{part}]" if isinstance(part, int) else str(part)))

    def fail(self, expected: str, got: Any) -> SynthError:
        key = "".join(p if p.startswith("[") else f".{p}" for p in self.parts).lstrip(".")
        return SynthError(f"{self.file}: {key}: expected {expected}, got {got!r}")


def _text(v: Any, at: _Path) -> str:
    if not isinstance(v, str) or not v:
        raise at.fail("a non-empty string", v)
    return v


def _code(v: Any, at: _Path) -> str:
    if not isinstance(v, str) or not v or v != v.strip():
        raise at.fail('a quoted code string such as "01" (YAML reads 01 as a number)', v)
    return v


def _number(v: Any, at: _Path) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise at.fail("a number", v)
    return v  # ints stay ints: the generator's arithmetic and formatting see exactly what is written


def _whole(v: Any, at: _Path) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise at.fail("a whole number", v)
    return v


def _share(v: Any, at: _Path) -> float:
    if _number(v, at) < 0 or v > 1:
        raise at.fail("a probability between 0 and 1", v)
    return v


def _flag(v: Any, at: _Path) -> bool:
    if not isinstance(v, bool):
        raise at.fail("true or false", v)
    return v


def _list(v: Any, at: _Path, item: Callable[[Any, _Path], T], *, empty: bool = False) -> tuple[T, ...]:
    if not isinstance(v, list) or (not v and not empty):
        raise at.fail("a list" if empty else "a non-empty list", v)
    return tuple(item(x, at / i) for i, x in enumerate(v))


def _pair(v: Any, at: _Path, item: Callable[[Any, _Path], N]) -> tuple[N, N]:
    what = "[min, max] whole numbers" if item is _whole else "[min, max] numbers"
    if not isinstance(v, list) or len(v) != 2:
        raise at.fail(what, v)
    try:
        lo, hi = item(v[0], at), item(v[1], at)
    except SynthError:
        raise at.fail(what, v) from None
    if lo > hi:
        raise at.fail(f"{what} with min <= max", v)
    return lo, hi


def _mapping(v: Any, at: _Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise at.fail("a mapping", v)
    missing = [k for k in required if k not in v]
    if missing:
        raise at.fail(f"the keys {', '.join(missing)}", sorted(map(str, v)))
    unknown = sorted(str(k) for k in v if k not in required and k not in optional)
    if unknown:
        raise (at / unknown[0]).fail(f"one of {', '.join(required + optional)}", unknown[0])
    return v


def _ref(table: Mapping[str, T]) -> Callable[[Any, _Path], T]:
    def get(v: Any, at: _Path) -> T:
        if not isinstance(v, str) or v not in table:
            raise at.fail(f"one of {', '.join(table)}", v)
        return table[v]

    return get


# --------------------------------------------------------------------------- sections


def _lab(v: Any, at: _Path) -> Lab:
    d = _mapping(v, at, ("report", "specimen"), ("items", "pathogen", "ct"))
    items = _list(d.get("items", []), at / "items", _lab_item, empty=True)
    pathogen = None
    if "pathogen" in d:
        p = _mapping(d["pathogen"], at / "pathogen", ("item", "taxon", "method"))
        pathogen = Pathogen(
            _code(p["item"], at / "pathogen" / "item"),
            _code(p["taxon"], at / "pathogen" / "taxon"),
            _text(p["method"], at / "pathogen" / "method"),
        )
    if not items and pathogen is None:
        raise at.fail("items or a pathogen test", sorted(d))
    return Lab(
        _text(d["report"], at / "report"),
        _list(d["specimen"], at / "specimen", _code),
        items,
        pathogen,
        _flag(d.get("ct", False), at / "ct"),
    )


def _lab_item(v: Any, at: _Path) -> LabItem:
    d = _mapping(v, at, ("loinc", "unit", "low", "high"))
    low, high = _number(d["low"], at / "low"), _number(d["high"], at / "high")
    if low > high:
        raise (at / "high").fail(f"a number >= low ({low})", high)
    return LabItem(_code(d["loinc"], at / "loinc"), _text(d["unit"], at / "unit"), low, high)


def _drug(v: Any, at: _Path) -> Drug:
    d = _mapping(v, at, ("atc", "name", "spec", "form", "dose", "unit", "freq", "per_day", "route", "days"))
    return Drug(
        atc=_code(d["atc"], at / "atc"),
        name=_text(d["name"], at / "name"),
        spec=_text(d["spec"], at / "spec"),
        form=_text(d["form"], at / "form"),
        dose=_number(d["dose"], at / "dose"),
        unit=_text(d["unit"], at / "unit"),
        freq=_text(d["freq"], at / "freq"),
        per_day=_whole(d["per_day"], at / "per_day"),
        route=_code(d["route"], at / "route"),
        days=_whole(d["days"], at / "days"),
    )


def _exam(v: Any, at: _Path) -> Exam:
    d = _mapping(v, at, ("type", "item", "part", "finding"))
    return Exam(*(_text(d[k], at / k) for k in ("type", "item", "part", "finding")))


_CONDITION_REQUIRED = ("key", "diagnosis", "icd", "weight", "depts", "symptoms", "complaint")
_CONDITION_OPTIONAL = (
    "age", "fever", "notifiable", "suspected", "chronic", "labs", "positive", "exams", "drugs", "severe",
    "los", "route", "contact", "exposure", "procedure", "death_dx", "respiratory",
)  # fmt: skip


def _condition(v: Any, at: _Path, labs: Mapping[str, Lab], drugs: Mapping[str, Drug]) -> Condition:
    d = _mapping(v, at, _CONDITION_REQUIRED, _CONDITION_OPTIONAL)
    weight = _mapping(d["weight"], at / "weight", (), tuple(VISIT_TYPES))
    if not weight:
        raise (at / "weight").fail(f"a weight for at least one of {', '.join(VISIT_TYPES)}", weight)
    # Optional fields: only what the file states, so the dataclass defaults stay the single source.
    checks: dict[str, Callable[[Any, _Path], Any]] = {
        "age": lambda x, a: _pair(x, a, _number),
        "fever": _share,
        "notifiable": lambda x, a: _list(x, a, _code),
        "suspected": _share,
        "chronic": _flag,
        "labs": lambda x, a: _list(x, a, _ref(labs)),
        "positive": _share,
        "exams": lambda x, a: _list(x, a, _exam),
        "drugs": lambda x, a: _list(x, a, _ref(drugs)),
        "severe": _share,
        "los": lambda x, a: _pair(x, a, _whole),
        "route": _code,
        "contact": _code,
        "exposure": _text,
        "procedure": _code,
        "death_dx": _code,
        "respiratory": _flag,
    }
    optional = {k: check(d[k], at / k) for k, check in checks.items() if k in d}
    complaint = _text(d["complaint"], at / "complaint")
    if "{d}" not in complaint:
        raise (at / "complaint").fail("a text with {d} (days since onset)", complaint)
    return Condition(
        key=_text(d["key"], at / "key"),
        diagnosis=_text(d["diagnosis"], at / "diagnosis"),
        icd=_list(d["icd"], at / "icd", _code),
        weight=MappingProxyType({VISIT_TYPES[k]: _number(w, at / "weight" / k) for k, w in weight.items()}),
        depts=_list(d["depts"], at / "depts", _code),
        symptoms=_list(d["symptoms"], at / "symptoms", _text),
        complaint=complaint,
        **optional,
    )


def _named(v: Any, at: _Path, item: Callable[[Any, _Path], T]) -> dict[str, T]:
    if not isinstance(v, dict) or not v:
        raise at.fail("a non-empty mapping of name -> entry", v)
    return {_text(k, at / str(k)): item(x, at / str(k)) for k, x in v.items()}


def parse_catalog(data: Any, where: str) -> Catalog:
    """Check the loaded YAML of a catalogue file and build the :class:`Catalog`."""
    top = _Path(where)
    pools = ("titles", "round_titles", "school_units", "work_units", "exposure_places", "wards")
    texts = ("non_bmp_remarks", "history", "ward_round")
    d = _mapping(data, top, ("labs", "drugs", "conditions", "departments", "postal_prefixes", *pools, *texts))
    labs = _named(d["labs"], top / "labs", _lab)
    drugs = _named(d["drugs"], top / "drugs", _drug)
    conditions = _list(d["conditions"], top / "conditions", lambda v, at: _condition(v, at, labs, drugs))
    keys = [c.key for c in conditions]
    if len(set(keys)) != len(keys):
        raise (top / "conditions").fail("unique keys", sorted(k for k in keys if keys.count(k) > 1))
    depts = _mapping(d["departments"], top / "departments", ("names", "without_beds"))
    names = _named(depts["names"], top / "departments" / "names", _text)
    history = _list(d["history"], top / "history", _text)
    if len(history) < 2:
        raise (top / "history").fail("at least the present-illness and past-history paragraphs", list(history))
    return Catalog(
        conditions=conditions,
        dept_names=MappingProxyType(names),
        depts_without_beds=frozenset(_list(depts["without_beds"], top / "departments" / "without_beds", _code)),
        **{k: _list(d[k], top / k, _text) for k in pools},
        postal_prefixes=MappingProxyType(_named(d["postal_prefixes"], top / "postal_prefixes", _code)),
        non_bmp_remarks=_list(d["non_bmp_remarks"], top / "non_bmp_remarks", _text),
        history=history,
        ward_round=_list(d["ward_round"], top / "ward_round", _text),
    )


def load_catalog(path: Path | None = None) -> Catalog:
    """The catalogue in ``path`` (default: the one shipped with cdcsync, read once per process)."""
    return _load(path or DEFAULT_PATH)


@functools.cache
def _load(path: Path) -> Catalog:
    where = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SynthError(f"{where}: cannot read the catalogue ({exc.strerror or type(exc).__name__})") from None
    try:
        data = load_yaml_text(text, where)
    except MappingError as exc:
        raise SynthError(str(exc)) from None
    return parse_catalog(data, where)
