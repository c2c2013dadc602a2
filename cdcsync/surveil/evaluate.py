"""``cdcsync rules evaluate``: recall and precision of the cases against a ground-truth file.

The truth file (``cdcsync gen --truth``) has one JSON object per line: kind, status, disease,
patient_id, visit_id. It lists the cases that must be open for staff when the rules have seen the
data. They are compared with the open cases in ``cdcsync.surveil_case``. Cases closed by a report
card (已报卡, 已订正) are left out on both sides. Whether such a case was briefly open depends only on
whether the card arrived before or after the signal.

A case matches when kind, disease, patient and visit are equal. A match with a different status
counts as a miss for the truth and as a false case for the engine.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from cdcsync.surveil.cases import OPEN_STATUSES, Kind

Key = tuple[str, str, str, str, str | None]  # kind, status, disease, patient, visit
_FIELDS = ("kind", "status", "disease", "patient_id", "visit_id")


class TruthError(ValueError):
    """A truth file that cannot be read; the message names the file and the line."""


@dataclass(frozen=True)
class TruthEntry:
    key: Key
    other_visits: frozenset[str] = frozenset()  # card_mismatch: the case may carry one of these visits

    def matches(self, found: Key) -> bool:
        if found[:4] != self.key[:4]:
            return False
        return found[4] == self.key[4] or (found[4] is not None and found[4] in self.other_visits)


def read_truth(path: Path) -> list[TruthEntry]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TruthError(f"{path}: 真值文件不存在") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TruthError(f"{path}: 无法读取真值文件（{type(exc).__name__}）") from None
    out: list[TruthEntry] = []
    kinds = {k.value for k in Kind}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TruthError(f"{path}: 第 {n} 行不是有效的 JSON（{exc.msg}）") from None
        if not isinstance(obj, dict):
            raise TruthError(f"{path}: 第 {n} 行应为 JSON 对象")
        missing = [f for f in _FIELDS if f not in obj]
        if missing:
            raise TruthError(f"{path}: 第 {n} 行缺少字段 {', '.join(missing)}")
        if obj["kind"] not in kinds:
            raise TruthError(f"{path}: 第 {n} 行 kind {obj['kind']!r} 无效，应为 {'、'.join(sorted(kinds))} 之一")
        for f in ("status", "disease", "patient_id"):
            if not isinstance(obj[f], str) or not obj[f]:
                raise TruthError(f"{path}: 第 {n} 行 {f} 应为非空文本")
        if obj["visit_id"] is not None and not isinstance(obj["visit_id"], str):
            raise TruthError(f"{path}: 第 {n} 行 visit_id 应为文本或 null")
        others = obj.get("other_visits", [])
        if not isinstance(others, list) or not all(isinstance(v, str) for v in others):
            raise TruthError(f"{path}: 第 {n} 行 other_visits 应为文本列表")
        out.append(TruthEntry((obj["kind"], obj["status"], obj["disease"], obj["patient_id"], obj["visit_id"]),
                              frozenset(others)))
    return out


def actual_cases(conn: psycopg.Connection[Any]) -> list[Key]:
    rows = conn.execute("SELECT kind, status, disease_code, patient_id, visit_id FROM cdcsync.surveil_case"
                        " WHERE status = ANY(%s)", ([str(s) for s in OPEN_STATUSES],)).fetchall()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


@dataclass(frozen=True)
class KindScore:
    kind: str
    truth: int
    found: int
    matched: int

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.found if self.found else 1.0

    @property
    def perfect(self) -> bool:
        return self.matched == self.truth == self.found


@dataclass(frozen=True)
class Evaluation:
    scores: list[KindScore]
    missing: list[Key]  # in the truth, not found
    extra: list[Key]  # found, not in the truth

    @property
    def perfect(self) -> bool:
        return all(s.perfect for s in self.scores)

    def as_dict(self) -> dict[str, Any]:
        return {"perfect": self.perfect,
                "kinds": [{"kind": s.kind, "truth": s.truth, "found": s.found, "matched": s.matched,
                           "recall": s.recall, "precision": s.precision} for s in self.scores],
                "missing": [dict(zip(_FIELDS, k, strict=True)) for k in self.missing],
                "extra": [dict(zip(_FIELDS, k, strict=True)) for k in self.extra]}


def evaluate(truth: list[TruthEntry] | list[Key], found: list[Key]) -> Evaluation:
    entries = [t if isinstance(t, TruthEntry) else TruthEntry(t) for t in truth]
    pool = Counter(found)
    matched: Counter[str] = Counter()
    missing: list[Key] = []
    # exact visits first, then the alternatives: an alternative never takes another entry's exact match
    pending = []
    for entry in entries:
        if pool[entry.key] > 0:
            pool[entry.key] -= 1
            matched[entry.key[0]] += 1
        else:
            pending.append(entry)
    for entry in pending:
        hit = next((k for k, n in pool.items() if n > 0 and entry.matches(k)), None)
        if hit is None:
            missing.append(entry.key)
        else:
            pool[hit] -= 1
            matched[entry.key[0]] += 1
    extra = sorted(pool.elements(), key=str)
    scores = [KindScore(k.value, sum(1 for e in entries if e.key[0] == k.value),
                        sum(1 for f in found if f[0] == k.value), matched[k.value]) for k in Kind]
    return Evaluation(scores, sorted(missing, key=str), extra)
