"""Import an NNDRS (大疫情网) card export into ``recon.nndrs_card``.

The export is CSV (or tab-separated) with Chinese headers, in UTF-8 (with or without BOM),
UTF-16 with BOM, or GBK/GB18030. Headers are mapped to columns by ``nndrs_columns.yaml`` (or a
province's own file). Rows are upserted by card id, so importing the same file twice changes
nothing. A malformed row is reported with its line number and what is wrong, and skipped.
Messages never contain patient values: only line numbers, column names and expectations.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from cdcsync import yamlfile

DEFAULT_COLUMNS = Path(__file__).with_name("nndrs_columns.yaml")

CARD_COLUMNS: tuple[str, ...] = (
    "card_id", "card_no", "patient_name", "id_no", "sex", "birth_date", "population_group", "region_code",
    "disease_name", "case_class", "onset_date", "diagnosis_time", "death_date", "report_org", "report_date",
    "entry_time", "audit_status", "deleted_time", "report_org_code",
)
_DATE_COLUMNS = {"birth_date": "出生日期", "onset_date": "发病日期", "death_date": "死亡日期",
                 "report_date": "填卡日期"}
_TIME_COLUMNS = {"diagnosis_time": "诊断时间", "entry_time": "录入时间", "deleted_time": "删除时间"}


VALUE_KINDS = ("sex", "case_class", "disease", "population_group")


class NndrsImportError(ValueError):
    """The file as a whole cannot be imported (encoding, header, mapping file): one line, no values."""


@dataclass(frozen=True)
class ColumnMapping:
    columns: Mapping[str, tuple[str, ...]]
    required: tuple[str, ...]
    values: Mapping[str, Mapping[str, str]]
    header_search_rows: int = 10
    source: str = "nndrs_columns.yaml"


@dataclass
class RowError:
    line: int
    message: str


@dataclass
class ImportSummary:
    file: str
    encoding: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    unknown_disease: int = 0
    unmapped_headers: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.errors)

    def text(self) -> str:
        lines = [
            f"{self.file}（编码 {self.encoding}）：读取 {self.rows} 行报告卡，新增 {self.inserted}，"
            f"更新 {self.updated}，未变 {self.unchanged}，跳过 {self.skipped}。"
        ]
        if self.unknown_disease:
            lines.append(f"注意：{self.unknown_disease} 张卡的疾病名称无法对应国家病种代码，比对时按病种不一致处理；"
                         "可在列映射文件的 values.disease 中补充别名。")
        if self.unmapped_headers:
            lines.append(f"未映射的列（保存在 extra 中）：{'、'.join(self.unmapped_headers)}")
        return "\n".join(lines)


def _norm(text: str) -> str:
    table = str.maketrans({"（": "(", "）": ")", "\u3000": "", " ": "", "\t": "", "\ufeff": ""})
    return text.translate(table).strip().lower()


def load_column_mapping(path: Path | None = None) -> ColumnMapping:
    path = Path(path) if path else DEFAULT_COLUMNS
    where = path.name if path == DEFAULT_COLUMNS else str(path)
    try:
        data = yamlfile.load(path.read_bytes())
    except FileNotFoundError:
        raise NndrsImportError(f"{where}：列映射文件不存在") from None
    except yamlfile.YamlProblem as exc:
        raise NndrsImportError(f"{where}：{exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
        raise NndrsImportError(f"{where}：columns：应为“列名: [表头, …]”的映射")
    columns: dict[str, tuple[str, ...]] = {}
    for col, headers in data["columns"].items():
        if col not in CARD_COLUMNS:
            raise NndrsImportError(f"{where}：columns.{col}：未知列，应为 {', '.join(CARD_COLUMNS)} 之一")
        if isinstance(headers, str):
            headers = [headers]
        if not isinstance(headers, list) or not all(isinstance(h, str) and h.strip() for h in headers):
            raise NndrsImportError(f"{where}：columns.{col}：应为表头文字的列表")
        columns[col] = tuple(headers)
    required = data.get("required") or []
    if not isinstance(required, list) or any(r not in columns for r in required):
        raise NndrsImportError(f"{where}：required：应为 columns 中已定义列名的列表")
    if "card_id" not in columns and "card_no" not in columns:
        raise NndrsImportError(f"{where}：columns：至少要定义 card_id 或 card_no")
    # A province's file adds to (and may override) the packaged display values.
    values: dict[str, dict[str, str]] = (
        {k: dict(v) for k, v in load_column_mapping().values.items()} if path != DEFAULT_COLUMNS else {})
    for kind, table in (data.get("values") or {}).items():
        if kind not in VALUE_KINDS or not isinstance(table, dict):
            raise NndrsImportError(
                f"{where}：values.{kind}：应为 {'、'.join(VALUE_KINDS)} 之一的“显示值: 国家代码”映射")
        values.setdefault(kind, {}).update({_norm(str(k)): str(v) for k, v in table.items()})
    rows = data.get("header_search_rows", 10)
    if not isinstance(rows, int) or rows < 1:
        raise NndrsImportError(f"{where}：header_search_rows：应为正整数")
    return ColumnMapping(columns, tuple(required), values, rows, where)


def decode(raw: bytes, where: str) -> tuple[str, str]:
    """Text and the encoding name: UTF-8 (BOM or not), UTF-16 with BOM, else GB18030 (covers GBK)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="strict"), "UTF-8（带BOM）"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "UTF-16"
    try:
        return raw.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030"), "GBK/GB18030"
    except UnicodeDecodeError as exc:
        raise NndrsImportError(
            f"{where}：无法识别文件编码（不是 UTF-8 也不是 GBK/GB18030，第 {exc.start} 字节处）") from None


_DATE_RE = re.compile(
    r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    r"(?:[ T]+(\d{1,2})[:：时](\d{1,2})(?:[:：分](\d{1,2})(?:\.\d+)?秒?)?)?$")
_COMPACT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?$")


def parse_datetime(text: str) -> dt.datetime | None:
    """'2024-05-06', '2024/5/6 08:30', '2024年5月6日', '20240506' …; None when empty; ValueError when bad."""
    text = text.strip()
    if not text:
        return None
    m = _DATE_RE.match(text) or _COMPACT_RE.match(text)
    if not m:
        raise ValueError(text)
    y, mo, d, h, mi, s = (int(p) if p else 0 for p in m.groups())
    return dt.datetime(y, mo, d, h, mi, s)


class _RowProblem(ValueError):
    pass


def _code(kind: str, text: str, label: str, mapping: ColumnMapping, names: Mapping[str, str],
          codes: frozenset[str], *, strict: bool) -> str | None:
    text = text.strip()
    if not text:
        return None
    key = _norm(text)
    hit = mapping.values.get(kind, {}).get(key) or names.get(key)
    if hit is None and text in codes:
        hit = text
    if hit is None and strict:
        raise _RowProblem(f"{label}无法识别（应为列映射文件 values.{kind} 中的值或国家代码）")
    return hit


@dataclass(frozen=True)
class _Domains:
    disease_names: Mapping[str, str]
    disease_codes: frozenset[str]
    case_names: Mapping[str, str]
    case_codes: frozenset[str]
    sex_names: Mapping[str, str]
    sex_codes: frozenset[str]
    group_names: Mapping[str, str]
    group_codes: frozenset[str]


def _domains(tables: Any | None) -> _Domains:
    def dom(name: str) -> tuple[dict[str, str], frozenset[str]]:
        d = tables.national.get(name) if tables is not None else None
        if d is None:
            return {}, frozenset()
        return {_norm(c.name): c.code for c in d}, frozenset(d.codes)

    dn, dc = dom("notifiable_disease")
    cn, cc = dom("diagnosis_status")
    sn, sc = dom("sex")
    gn, gc = dom("population_group")
    return _Domains(dn, dc, cn, cc, sn, sc, gn, gc)


def _header_index(rows: Sequence[list[str]], mapping: ColumnMapping) -> tuple[int, dict[str, int]]:
    """Position of the header row among the first lines and column -> field index."""
    for pos, row in enumerate(rows):
        normalized = [_norm(h) for h in row]
        index: dict[str, int] = {}
        for col, headers in mapping.columns.items():
            for h in headers:
                if _norm(h) in normalized:
                    index[col] = normalized.index(_norm(h))
                    break
        if "card_id" in index or "card_no" in index:
            return pos, index
    wanted = "、".join(mapping.columns.get("card_id", ()) + mapping.columns.get("card_no", ()))
    raise NndrsImportError(f"前 {len(rows)} 行中没有找到表头行（应含“{wanted}”之一的列；"
                           f"省级导出格式不同时请用 --columns 指定列映射文件，当前 {mapping.source}）")


def read_cards(path: Path, mapping: ColumnMapping, tables: Any | None = None,
               ) -> tuple[list[dict[str, Any]], ImportSummary]:
    """Parse the file into card dicts (columns of recon.nndrs_card) and a summary with row errors."""
    where = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NndrsImportError(f"{path}：文件不存在") from None
    except OSError as exc:
        raise NndrsImportError(f"{path}：无法读取（{exc.strerror}）") from None
    text, encoding = decode(raw, where)
    summary = ImportSummary(file=where, encoding=encoding)
    first = text.split("\n", mapping.header_search_rows)[: mapping.header_search_rows]
    delimiter = "\t" if sum(line.count("\t") for line in first) > sum(line.count(",") for line in first) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    head: list[tuple[int, list[str]]] = []
    for row in reader:
        head.append((reader.line_num, row))
        if len(head) >= mapping.header_search_rows:
            break
    pos, index = _header_index([r for _, r in head], mapping)
    header_line, header = head[pos]
    missing = [c for c in mapping.required if c not in index]
    if missing:
        labels = "、".join(mapping.columns[c][0] for c in missing)
        raise NndrsImportError(f"{where}：第 {header_line} 行表头缺少必需的列：{labels}")
    used = set(index.values())
    extra_idx = {i: h.strip() for i, h in enumerate(header) if i not in used and h.strip()}
    summary.unmapped_headers = list(extra_idx.values())
    doms = _domains(tables)

    pending = head[pos + 1:]
    cards: dict[str, dict[str, Any]] = {}
    prev_line = header_line

    def records() -> Any:
        nonlocal prev_line
        for end_line, row in pending:
            yield end_line, row
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, exc
                continue
            yield reader.line_num, row

    for end_line, row in records():
        line = prev_line + 1
        prev_line = end_line
        if isinstance(row, csv.Error):
            summary.errors.append(RowError(line, f"CSV 格式错误（{row}）"))
            continue
        if not any(cell.strip() for cell in row):
            continue
        summary.rows += 1
        try:
            card = _card(row, index, extra_idx, len(header), mapping, doms)
        except _RowProblem as exc:
            summary.errors.append(RowError(line, str(exc)))
            continue
        if card["disease_code"] is None:
            summary.unknown_disease += 1
        card["source_file"] = where
        card["source_line"] = line
        if card["card_id"] in cards:
            earlier = cards[card["card_id"]]["source_line"]
            summary.warnings.append(RowError(line, f"卡片ID与第 {earlier} 行重复，以本行为准"))
            summary.rows -= 1  # counted once: the later row replaces the earlier one
        cards[card["card_id"]] = card
    return list(cards.values()), summary


def _card(row: list[str], index: Mapping[str, int], extra_idx: Mapping[int, str], width: int,
          mapping: ColumnMapping, doms: _Domains) -> dict[str, Any]:
    if len(row) != width:
        raise _RowProblem(f"有 {len(row)} 列，表头有 {width} 列（可能是未加引号的逗号或换行）")

    def cell(col: str) -> str:
        i = index.get(col)
        return row[i].strip() if i is not None else ""

    card: dict[str, Any] = {}
    card_no = cell("card_no")
    card_id = cell("card_id") or card_no
    if not card_id:
        raise _RowProblem("卡片ID和卡片编号都为空")
    card["card_id"] = card_id
    card["card_no"] = card_no or card_id
    for col in ("patient_name", "id_no", "population_group", "region_code", "report_org", "audit_status",
                "report_org_code"):
        card[col] = cell(col) or None
    card["population_group_code"] = _code("population_group", cell("population_group"), "人群分类", mapping,
                                          doms.group_names, doms.group_codes, strict=False)
    disease_name = cell("disease_name")
    if not disease_name:
        raise _RowProblem("疾病名称为空")
    card["disease_name"] = disease_name
    card["disease_code"] = _code("disease", disease_name, "疾病名称", mapping, doms.disease_names,
                                 doms.disease_codes, strict=False)
    case = cell("case_class")
    card["case_class_name"] = case or None
    card["case_class_code"] = _code("case_class", case, "病例分类", mapping, doms.case_names, doms.case_codes,
                                    strict=True)
    card["sex_code"] = _code("sex", cell("sex"), "性别", mapping, doms.sex_names, doms.sex_codes, strict=True)
    for col, label in _DATE_COLUMNS.items():
        try:
            value = parse_datetime(cell(col))
        except ValueError:
            raise _RowProblem(f"{label}不是有效日期（应为 YYYY-MM-DD、YYYY/M/D 或 YYYY年M月D日）") from None
        card[col] = value.date() if value else None
    for col, label in _TIME_COLUMNS.items():
        try:
            card[col] = parse_datetime(cell(col))
        except ValueError:
            raise _RowProblem(f"{label}不是有效的日期时间（应为 YYYY-MM-DD HH:MM[:SS]）") from None
    if "onset_date" in mapping.required and card["onset_date"] is None:
        raise _RowProblem("发病日期为空")
    card["extra"] = json.dumps({h: row[i] for i, h in extra_idx.items() if i < len(row) and row[i].strip()},
                               ensure_ascii=False)
    return card


_DB_COLUMNS = (
    "card_id", "card_no", "patient_name", "id_no", "sex_code", "birth_date", "population_group", "region_code",
    "disease_name", "disease_code", "case_class_name", "case_class_code", "onset_date", "diagnosis_time",
    "death_date", "report_org", "report_date", "entry_time", "audit_status", "deleted_time", "population_group_code",
    "report_org_code", "extra", "source_file", "source_line",
)
_COMPARED = [c for c in _DB_COLUMNS if c not in ("card_id", "source_file", "source_line")]
_UPSERT = (
    f"INSERT INTO recon.nndrs_card AS n ({', '.join(_DB_COLUMNS)}) VALUES "
    f"({', '.join('%(' + c + ')s' for c in _DB_COLUMNS)}) "
    f"ON CONFLICT (card_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _DB_COLUMNS if c != "card_id")
    + ", imported_at = now() WHERE ("
    + ", ".join(f"n.{c}" for c in _COMPARED) + ") IS DISTINCT FROM ("
    + ", ".join(f"EXCLUDED.{c}" for c in _COMPARED) + ") "
    "RETURNING (xmax = 0) AS inserted"
)


def import_file(conn: psycopg.Connection, path: Path, mapping: ColumnMapping | None = None,
                tables: Any | None = None) -> ImportSummary:
    """Read and upsert one export in a single transaction; row errors are in the summary."""
    cards, summary = read_cards(Path(path), mapping or load_column_mapping(), tables)
    with conn.transaction(), conn.cursor() as cur:
        for card in cards:
            cur.execute(_UPSERT, card)
            hit = cur.fetchone()
            if hit is None:
                summary.unchanged += 1
            elif hit[0]:
                summary.inserted += 1
            else:
                summary.updated += 1
    return summary
