"""National value domains (值域代码) and hospital local→national code tables, loaded from ``mappings/``.

Layout: ``mappings/national/<domain>.yaml`` (one national code list per domain) and
``mappings/local/<hospital>/<domain>.yaml`` (that hospital's local→national table).
Every problem in a file is a :class:`MappingError` whose message is one line naming the file,
the key or entry and what was expected, so the CLI can print it without a traceback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdcsync import yamlfile
from cdcsync.resources import shared_dir

NATIONAL_DIR = "national"
LOCAL_DIR = "local"
_DOMAIN_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_NATIONAL_KEYS = {"id", "name", "standard", "version_date", "source_note", "subset", "codes", "replaced"}
# Layers of national value domains (docs/control-plane.md): shipped with the release
# (``<mappings_dir>/national``) and pushed by the national platform or imported by an admin
# (``<state_dir>/mappings/current/national``). Per domain the newer version date wins; on a tie
# the pushed one. The hospital's local tables are a third layer no push or upgrade touches.
LAYER_SHIPPED = "shipped"
LAYER_PUSHED = "pushed"
_LOCAL_KEYS = {"domain", "hospital", "version_date", "map", "passthrough", "note"}


class MappingError(ValueError):
    """A code-table file is wrong: one line naming file, key and what was expected."""


@dataclass(frozen=True)
class Code:
    code: str
    name: str
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ValueDomain:
    """One national value domain: its codes plus the standard/document they come from."""

    id: str
    name: str
    standard: str
    version_date: dt.date
    subset: bool
    codes: Mapping[str, Code]
    source_note: str | None = None
    path: Path | None = None
    # Codes this version retired, with their successor in this version: a local entry still
    # pointing at a retired code maps to the successor (the hospital's table stays untouched).
    replaced: Mapping[str, str] = field(default_factory=dict)
    layer: str = LAYER_SHIPPED

    def resolve(self, code: str) -> str | None:
        """``code`` when it is in the domain, else its successor when that is, else None."""
        if code in self.codes:
            return code
        successor = self.replaced.get(code)
        return successor if successor is not None and successor in self.codes else None

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    def __len__(self) -> int:
        return len(self.codes)

    def __iter__(self) -> Iterator[Code]:
        return iter(self.codes.values())

    def name_of(self, code: str) -> str | None:
        entry = self.codes.get(code)
        return entry.name if entry else None


@dataclass(frozen=True)
class LocalTable:
    """A hospital's local→national table for one domain (many-to-one allowed)."""

    domain: str
    hospital: str
    version_date: dt.date
    map: Mapping[str, str]
    passthrough: bool = False
    path: Path | None = None


@dataclass(frozen=True)
class MappingIssue:
    """A local table entry whose national target is not in the national domain."""

    file: str
    domain: str
    local_code: str
    national_code: str
    message: str


def display_path(path: Path) -> str:
    """Path as the user would type it: relative to the working directory when possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


_STD_REF = re.compile(r"^(?:GB/T|GB|WS/T|WS|GA/T|GA)\s*[0-9.]+(?:-[0-9]{4})?")


def standard_ref(standard: str) -> str:
    """Short reference of a standard ("GB/T 2261.1-2003") for messages; else its first 40 chars."""
    m = _STD_REF.match(standard)
    return m.group(0) if m else standard[:40]


def default_mappings_dir() -> Path:
    """``$CDCSYNC_MAPPINGS_DIR``, else ``mappings/`` of the checkout or of the installed package."""
    return shared_dir("mappings", "CDCSYNC_MAPPINGS_DIR")


def load_yaml_text(text: str, where: str) -> Any:
    """Parse YAML text (:mod:`cdcsync.yamlfile`); errors name ``where`` and the line."""
    try:
        return yamlfile.load(text)
    except yamlfile.YamlProblem as exc:
        raise MappingError(f"{where}: {exc}") from None


def _read_yaml(path: Path) -> Any:
    where = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{where}: 文件不存在") from None
    except UnicodeDecodeError as exc:
        raise MappingError(f"{where}: 应为 UTF-8 文本（第 {exc.start} 字节：{exc.reason}）") from None
    return load_yaml_text(text, where)


def _code_str(value: Any, where: str, key: str) -> str:
    """Codes must be quoted strings: YAML turns 01 into 1 and yes/no/on/off into booleans."""
    if isinstance(value, bool):
        raise MappingError(f"{where}: {key}: 应为带引号的代码，实际为布尔值 {value}"
                           "（YAML 会把 yes/no/on/off/true/false 读成布尔值，请给代码加引号）")
    if isinstance(value, int | float):
        raise MappingError(f"{where}: {key}: 应为带引号的代码，实际为数字 {value}"
                           "（代码请加引号，前导零才不会丢失，如 \"01\"）")
    if not isinstance(value, str):
        raise MappingError(f"{where}: {key}: 应为代码字符串，实际为 {type(value).__name__}")
    if not value or value != value.strip():
        raise MappingError(f"{where}: {key}: 代码不能为空、首尾不能有空格，实际为 {value!r}")
    return value


def _date(value: Any, where: str, key: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise MappingError(f"{where}: {key}: 应为日期 YYYY-MM-DD，实际为 {value!r}")


def _text(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MappingError(f"{where}: {key}: 应为非空文本，实际为 {value!r}")
    return value.strip()


def _mapping(data: Any, where: str, allowed: set[str], required: list[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MappingError(f"{where}: 顶层应为 YAML 映射（键: 值），实际为 {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise MappingError(f"{where}: {key}: 未知的键（应为 {'、'.join(sorted(allowed))} 之一）")
    for key in required:
        if key not in data:
            raise MappingError(f"{where}: {key}: 缺少必填项")
    return data


def parse_national(path: Path, data: Any = None) -> ValueDomain:
    """Read and check one ``mappings/national/<id>.yaml`` file (``data``: already-parsed content)."""
    where = display_path(path)
    if data is None:
        data = _read_yaml(path)
    data = _mapping(data, where, _NATIONAL_KEYS, ["id", "name", "standard", "version_date", "codes"])
    domain_id = _text(data["id"], where, "id")
    if domain_id != path.stem or not _DOMAIN_ID.match(domain_id):
        raise MappingError(f"{where}: id: 应为 {path.stem!r}（与文件名相同），实际为 {domain_id!r}")
    subset = data.get("subset", False)
    if not isinstance(subset, bool):
        raise MappingError(f"{where}: subset: 应为 true 或 false，实际为 {subset!r}")
    note = data.get("source_note")
    if note is not None and not isinstance(note, str):
        raise MappingError(f"{where}: source_note: 应为文本，实际为 {type(note).__name__}")
    raw_codes = data["codes"]
    if not isinstance(raw_codes, list) or not raw_codes:
        raise MappingError(f"{where}: codes: 应为非空列表，每项为 {{code, name}}")
    codes: dict[str, Code] = {}
    for i, entry in enumerate(raw_codes):
        key = f"codes[{i}]"
        if not isinstance(entry, dict):
            raise MappingError(f"{where}: {key}: 应为 {{code: ..., name: ...}} 形式的映射，实际为 {entry!r}")
        if "code" not in entry or "name" not in entry:
            raise MappingError(f"{where}: {key}: 应同时有 'code' 和 'name'，实际的键为 {sorted(map(str, entry))}")
        code = _code_str(entry["code"], where, f"{key}.code")
        name = _text(entry["name"], where, f"{key}.name ({code})")
        if code in codes:
            raise MappingError(f"{where}: {key}.code: 代码 {code!r} 重复（已定义为 {codes[code].name}）")
        attrs = {str(k): v for k, v in entry.items() if k not in ("code", "name")}
        codes[code] = Code(code, name, attrs)
    raw_replaced = data.get("replaced") or {}
    if not isinstance(raw_replaced, dict):
        raise MappingError(f"{where}: replaced: 应为“停用代码: 替代代码”的映射")
    replaced: dict[str, str] = {}
    for old, new in raw_replaced.items():
        old_code = _code_str(old, where, f"replaced key {old!r}")
        new_code = _code_str(new, where, f"replaced.{old_code}")
        if new_code not in codes:
            raise MappingError(f"{where}: replaced.{old_code}: 替代代码 {new_code!r} 不在本值域中")
        if old_code in codes:
            raise MappingError(f"{where}: replaced.{old_code}: 停用代码不能同时列在 codes 中")
        replaced[old_code] = new_code
    return ValueDomain(
        id=domain_id,
        name=_text(data["name"], where, "name"),
        standard=_text(data["standard"], where, "standard"),
        version_date=_date(data["version_date"], where, "version_date"),
        subset=subset,
        codes=codes,
        source_note=note.strip() if isinstance(note, str) else None,
        path=path,
        replaced=replaced,
    )


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_national(mappings_dir: Path) -> dict[str, ValueDomain]:
    """All national value domains under ``<mappings_dir>/national``."""
    directory = Path(mappings_dir) / NATIONAL_DIR
    if not directory.is_dir():
        raise MappingError(f"{display_path(directory)}: 国家值域目录不存在")
    return {d.id: d for d in map(parse_national, _yaml_files(directory))}


def pushed_national_dir(pushed_dir: Path | None) -> Path | None:
    """``<pushed_dir>/national`` when it exists (the layer is empty before the first push)."""
    if pushed_dir is None:
        return None
    directory = Path(pushed_dir) / NATIONAL_DIR
    return directory if directory.is_dir() else None


def load_national_layers(mappings_dir: Path, pushed_dir: Path | None = None) -> dict[str, ValueDomain]:
    """Shipped domains overlaid with the pushed/imported ones: per domain the newer version date
    wins, a tie goes to the pushed layer. Each domain records the layer it came from."""
    merged = load_national(mappings_dir)
    directory = pushed_national_dir(pushed_dir)
    if directory is None:
        return merged
    for path in _yaml_files(directory):
        d = parse_national(path)
        base = merged.get(d.id)
        if base is None or d.version_date >= base.version_date:
            merged[d.id] = ValueDomain(d.id, d.name, d.standard, d.version_date, d.subset, d.codes, d.source_note,
                                       d.path, d.replaced, LAYER_PUSHED)
    return merged


def parse_local(path: Path, hospital: str | None = None) -> LocalTable:
    """Read and check one ``mappings/local/<hospital>/<domain>.yaml`` file (targets are checked later)."""
    where = display_path(path)
    data = _mapping(_read_yaml(path), where, _LOCAL_KEYS, ["domain", "version_date", "map"])
    domain = _text(data["domain"], where, "domain")
    if domain != path.stem:
        raise MappingError(f"{where}: domain: 应为 {path.stem!r}（与文件名相同），实际为 {domain!r}")
    expected_hospital = hospital or path.parent.name
    owner = data.get("hospital", expected_hospital)
    if owner != expected_hospital:
        raise MappingError(f"{where}: hospital: 应为 {expected_hospital!r}（与目录名相同），实际为 {owner!r}")
    passthrough = data.get("passthrough", False)
    if not isinstance(passthrough, bool):
        raise MappingError(f"{where}: passthrough: 应为 true 或 false，实际为 {passthrough!r}")
    raw = data["map"]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: map: 应为“本院代码: 国家代码”的映射")
    table: dict[str, str] = {}
    for local, national in raw.items():
        local_code = _code_str(local, where, f"map key {local!r}")
        table[local_code] = _code_str(national, where, f"map.{local_code}")
    if not table and not passthrough:
        raise MappingError(f"{where}: map: 至少需要一条对照（或设置 passthrough: true）")
    return LocalTable(
        domain=domain,
        hospital=expected_hospital,
        version_date=_date(data["version_date"], where, "version_date"),
        map=table,
        passthrough=passthrough,
        path=path,
    )


def load_local(mappings_dir: Path, hospital: str) -> dict[str, LocalTable]:
    """The hospital's local tables under ``<mappings_dir>/local/<hospital>`` (unchecked targets)."""
    directory = Path(mappings_dir) / LOCAL_DIR / hospital
    if not directory.is_dir():
        raise MappingError(f"{display_path(directory)}: 没有医院 {hospital!r} 的本院代码对照表")
    return {t.domain: t for t in (parse_local(p, hospital) for p in _yaml_files(directory))}


def check_local(
    national: Mapping[str, ValueDomain], local: Mapping[str, LocalTable]
) -> list[MappingIssue]:
    """Entries whose domain or national target does not exist (in file order)."""
    issues: list[MappingIssue] = []
    for table in local.values():
        where = display_path(table.path) if table.path else f"local/{table.hospital}/{table.domain}.yaml"
        domain = national.get(table.domain)
        if domain is None:
            issues.append(MappingIssue(where, table.domain, "", "",
                                       f"{where}: domain: {table.domain!r} 不是国家值域"))
            continue
        for local_code, national_code in table.map.items():
            if domain.resolve(national_code) is None:
                issues.append(MappingIssue(
                    where, table.domain, local_code, national_code,
                    f"{where}: map.{local_code}: 国家代码 \"{national_code}\" 不在值域 "
                    f"{domain.id}（{standard_ref(domain.standard)}）中",
                ))
    return issues


def _version(paths: list[Path], dates: list[dt.date], root: Path) -> tuple[str, dt.date]:
    digest = hashlib.sha256()
    for p in sorted(paths):
        try:
            rel = p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = p.name
        data = p.read_bytes()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:12], max(dates) if dates else dt.date.min


@dataclass(frozen=True)
class CodeTables:
    """National domains + one hospital's local tables: the mapping set used by the pipeline.

    ``version`` ("<sha256 prefix>@<newest version_date>") changes whenever any file changes;
    it is recorded on every event so a receiver knows which tables mapped it.
    """

    mappings_dir: Path
    hospital: str
    national: Mapping[str, ValueDomain]
    local: Mapping[str, LocalTable]
    version_hash: str
    version_date: dt.date
    issues: tuple[MappingIssue, ...] = ()

    @property
    def version(self) -> str:
        return f"{self.version_hash}@{self.version_date.isoformat()}"

    def domain(self, domain_id: str) -> ValueDomain:
        try:
            return self.national[domain_id]
        except KeyError:
            raise MappingError(f"未知的值域 {domain_id!r}") from None

    def map(self, domain: str, local_code: str | None) -> str | None:
        """National code for ``local_code`` in ``domain``, or None when it is not mapped.

        A domain with no local table maps nothing: an unmapped code is never passed through.
        Entries whose national target does not exist were dropped at load (see ``issues``).
        """
        if local_code is None:
            return None
        table = self.local.get(domain)
        if table is None:
            return None
        hit = table.map.get(local_code)
        if hit is not None:
            dom = self.national.get(domain)
            return dom.resolve(hit) if dom is not None else hit
        if table.passthrough:
            dom = self.national.get(domain)
            if dom is not None and local_code in dom:
                return local_code
        return None


MappingSet = CodeTables


def load_code_tables(
    mappings_dir: Path | None = None, hospital: str = "example", *, strict: bool = True,
    pushed_dir: Path | None = None, local_dir: Path | None = None,
) -> CodeTables:
    """Load national domains and the hospital's local tables.

    ``strict``: the first local entry pointing at a non-existent national code raises
    :class:`MappingError`; otherwise such entries are left out of the map and listed in ``issues``
    (what ``cdcsync mappings check`` reports). ``pushed_dir``: the pushed/imported layer
    (:func:`load_national_layers`); ``local_dir``: where ``local/<hospital>/`` lives when not
    under ``mappings_dir`` (the hospital's tables kept outside the installed release).
    """
    root = Path(mappings_dir) if mappings_dir is not None else default_mappings_dir()
    national = load_national_layers(root, pushed_dir)
    local = load_local(local_dir if local_dir is not None else root, hospital)
    issues = check_local(national, local)
    if issues and strict:
        raise MappingError(issues[0].message)
    if issues:
        bad = {(i.domain, i.local_code) for i in issues}
        local = {
            d: LocalTable(t.domain, t.hospital, t.version_date,
                          {k: v for k, v in t.map.items() if (d, k) not in bad}, t.passthrough, t.path)
            for d, t in local.items() if d in national
        }
    paths = [d.path for d in national.values() if d.path] + [t.path for t in local.values() if t.path]
    dates = [d.version_date for d in national.values()] + [t.version_date for t in local.values()]
    vhash, vdate = _version(paths, dates, root)
    return CodeTables(root, hospital, national, local, vhash, vdate, tuple(issues))


# --- YAML writing (used by the importer and to regenerate files) -------------------------------


def _quote(value: Any) -> str:
    """A flow-style YAML scalar; strings are always double-quoted JSON-style (valid YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_quote(v) for v in value) + "]"
    import json

    return json.dumps(str(value), ensure_ascii=False)


def dump_domain(domain: ValueDomain) -> str:
    """Serialize a national domain in the canonical layout (one code per line)."""
    lines = [
        f"id: {domain.id}",
        f"name: {_quote(domain.name)}",
        f"standard: {_quote(domain.standard)}",
        f"version_date: {domain.version_date.isoformat()}",
    ]
    if domain.source_note:
        lines.append(f"source_note: {_quote(domain.source_note)}")
    lines.append(f"subset: {'true' if domain.subset else 'false'}")
    if domain.replaced:
        lines.append("replaced:")
        lines += [f"  {_quote(old)}: {_quote(new)}" for old, new in domain.replaced.items()]
    lines.append("codes:")
    for c in domain.codes.values():
        parts = [f"code: {_quote(c.code)}", f"name: {_quote(c.name)}"]
        parts += [f"{k}: {_quote(v)}" for k, v in c.attrs.items()]
        lines.append("  - {" + ", ".join(parts) + "}")
    return "\n".join(lines) + "\n"
