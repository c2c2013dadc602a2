"""``cdcsync codes import``: replace a (subset) national domain with the official full code file (CSV).

The CSV may be UTF-8 (with or without BOM) or GBK/GB18030, as files from Chinese standards bodies
usually are. Nothing is written unless every row is good: a partial official table is worse than the
shipped subset. The domain's header (id, name, standard, version date) is kept from the existing file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cdcsync.mapping.domains import (
    LOCAL_DIR,
    NATIONAL_DIR,
    Code,
    MappingError,
    ValueDomain,
    display_path,
    dump_domain,
    load_yaml_text,
    parse_local,
    parse_national,
)

ENCODINGS = ("auto", "utf-8", "gbk", "gb18030")
CODE_HEADERS = ("code", "代码", "编码", "值", "代码值", "值代码", "疾病编码", "编码值")
NAME_HEADERS = ("name", "名称", "值含义", "含义", "中文名称", "疾病名称", "说明", "描述")
_IMPORT_MARK = " [导入] "


class CodeImportError(MappingError):
    """The CSV cannot be imported; ``problems`` holds one line per bad row."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass
class ImportResult:
    domain: ValueDomain
    path: Path
    previous_count: int
    encoding: str
    dangling: list[str] = field(default_factory=list)  # "hospital: local -> national" no longer valid


def decode(data: bytes, encoding: str, where: str) -> tuple[str, str]:
    """Text and the encoding used. ``auto``: UTF-8 (BOM or valid UTF-8), else GB18030 (a GBK superset)."""
    if encoding not in ENCODINGS:
        raise CodeImportError(f"{where}: 编码应为 {'、'.join(ENCODINGS)} 之一，实际为 {encoding!r}")
    if encoding == "auto":
        if data.startswith(b"\xef\xbb\xbf"):
            return data[3:].decode("utf-8", errors="strict"), "utf-8"
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            encoding = "gb18030"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CodeImportError(f"{where}: 第 {line} 行：不是有效的 {encoding} 文本（{exc.reason}）") from None
    return text.removeprefix("\ufeff"), encoding


def _column(header: list[str], wanted: str | None, candidates: Sequence[str], fallback: int, what: str,
            where: str) -> int:
    names = [h.strip().lower() for h in header]
    if wanted is not None:
        key = wanted.strip().lower()
        if key in names:
            return names.index(key)
        if key.isdigit() and 1 <= int(key) <= len(header):
            return int(key) - 1  # 1-based column number
        raise CodeImportError(f"{where}: 第 1 行：表头中没有{what}列 {wanted!r}（表头为 {'、'.join(header)}）")
    for cand in candidates:
        if cand.lower() in names:
            return names.index(cand.lower())
    if fallback >= len(header):
        raise CodeImportError(f"{where}: 第 1 行：表头至少应有 {fallback + 1} 列")
    return fallback


def read_codes(
    text: str,
    where: str,
    code_column: str | None = None,
    name_column: str | None = None,
    attr_columns: Sequence[str] = (),
) -> list[Code]:
    """Rows of the CSV as codes; every bad row is reported by its line number."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    problems: list[str] = []
    codes: list[Code] = []
    first_line: dict[str, int] = {}
    ci = ni = need = 0
    ai: list[tuple[str, int]] = []
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                ci = _column(header, code_column, CODE_HEADERS, 0, "代码", where)
                ni = _column(header, name_column, NAME_HEADERS, 1 if ci != 1 else 0, "名称", where)
                ai = [(a, _column(header, a, (), -1, "属性", where)) for a in attr_columns]
                need = max([ci, ni] + [i for _, i in ai]) + 1
                continue
            if len(row) < need:
                problems.append(f"第 {line} 行：只有 {len(row)} 列，至少需要 {need} 列")
                continue
            code, name = row[ci].strip(), row[ni].strip()
            if not code:
                problems.append(f"第 {line} 行：代码为空")
                continue
            if not name:
                problems.append(f"第 {line} 行：代码 {code} 的名称为空")
                continue
            if code in first_line:
                problems.append(f"第 {line} 行：代码 {code} 重复（第 {first_line[code]} 行已有）")
                continue
            first_line[code] = line
            attrs = {a: row[i].strip() for a, i in ai if row[i].strip()}
            codes.append(Code(code, name, attrs))
    except csv.Error as exc:
        problems.append(f"第 {reader.line_num} 行：CSV 格式错误（{exc}）")
    if problems:
        raise CodeImportError(f"{where}: {len(problems)} 行有误，未写入任何内容；{problems[0]}", problems)
    if header is None or not codes:
        raise CodeImportError(f"{where}: 没有数据行（第一行应为表头，其后每行一个代码）")
    return codes


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def import_csv(
    mappings_dir: Path,
    domain_id: str,
    csv_path: Path,
    *,
    code_column: str | None = None,
    name_column: str | None = None,
    attr_columns: Sequence[str] = (),
    encoding: str = "auto",
    version_date: dt.date | None = None,
    subset: bool = False,
    base: ValueDomain | None = None,
    into: Path | None = None,
    local_dir: Path | None = None,
) -> ImportResult:
    """Replace ``mappings/national/<domain_id>.yaml`` with the codes of ``csv_path``.

    ``base`` + ``into``: the layered form (cdcsync.control.imports): the header comes from the
    domain in force ``base``, the file is written as ``into/<domain_id>.yaml`` (a new generation of
    the pushed layer) and the shipped file stays untouched; ``local_dir`` holds ``local/``."""
    if base is not None and into is not None:
        existing, target = base, Path(into) / f"{domain_id}.yaml"
    else:
        target = Path(mappings_dir) / NATIONAL_DIR / f"{domain_id}.yaml"
        if not target.is_file():
            raise MappingError(
                f"{display_path(target)}: 没有值域 {domain_id!r}（只能替换已有值域，表头信息取自原文件）")
        existing = parse_national(target)
    where = display_path(csv_path)
    try:
        raw = Path(csv_path).read_bytes()
    except OSError as exc:
        raise CodeImportError(f"{where}: 无法读取文件（{exc.strerror}）") from None
    text, used = decode(raw, encoding, where)
    rows = read_codes(text, where, code_column, name_column, attr_columns)
    # Attributes not in the CSV (category, icd10 …) survive for codes that are still there.
    codes = {
        c.code: Code(c.code, c.name, {**existing.codes[c.code].attrs, **c.attrs}) if c.code in existing.codes else c
        for c in rows
    }
    base_note = (existing.source_note or "").split(_IMPORT_MARK.strip())[0].strip()
    stamp = f"{_IMPORT_MARK.strip()} 自 {Path(csv_path).name} 导入 {len(codes)} 条（{dt.date.today().isoformat()}）。"
    new = ValueDomain(
        id=existing.id,
        name=existing.name,
        standard=existing.standard,
        version_date=version_date or existing.version_date,
        subset=subset,
        codes=codes,
        source_note=f"{base_note} {stamp}".strip(),
        path=target,
        replaced={k: v for k, v in existing.replaced.items() if v in codes},
    )
    out = dump_domain(new)
    parse_national(target, load_yaml_text(out, display_path(target)))  # never write what we cannot read
    _atomic_write(target, out)

    dangling: list[str] = []
    local_root = Path(local_dir or mappings_dir) / LOCAL_DIR
    if local_root.is_dir():
        for hospital_dir in sorted(p for p in local_root.iterdir() if p.is_dir()):
            table_path = hospital_dir / f"{domain_id}.yaml"
            if table_path.is_file():
                table = parse_local(table_path, hospital_dir.name)
                dangling += [f"{hospital_dir.name}: {k} -> {v}" for k, v in table.map.items()
                             if new.resolve(v) is None]
    return ImportResult(new, target, len(existing.codes), used, dangling)
