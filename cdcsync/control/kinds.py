"""What each kind of package means: how it is staged, checked and what applying it switches.

Every kind keeps its versions as generations (cdcsync.control.generations):
``value_domains`` under ``<state_dir>/mappings`` (the pushed layer of cdcsync.mapping.layers),
the others under ``<state_dir>/control/<kind>``. Staging writes a new generation; applying
switches ``current`` to it. Nothing under the hospital's ``local/`` tables or its secrets is
ever written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pydantic import ValidationError

from cdcsync import yamlfile
from cdcsync.config import Settings
from cdcsync.control.generations import Generations
from cdcsync.control.package import Package, PackageError
from cdcsync.control.trust import TRUST_FIELDS, TrustError, check_trust, materialize
from cdcsync.mapping.coverage import check_coverage
from cdcsync.mapping.domains import (
    NATIONAL_DIR,
    CodeTables,
    MappingError,
    dump_domain,
    load_code_tables,
    load_yaml_text,
    parse_national,
)
from cdcsync.mapping.layers import MappingLayers, pushed_root
from cdcsync.settings.ops import EvaluationSettings
from cdcsync.sink.http_settings import HttpDestination
from cdcsync.spec import Spec, load_spec
from cdcsync.spec.model import TIMELINESS
from cdcsync.surveil.pack import PackError, parse_pack

RULES_FILE = "pack.yaml"


@dataclass
class Staged:
    generation: str
    path: Path
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckResult:
    blocking: bool
    detail: dict[str, Any]
    message: str


def generations_for(settings: Settings, kind: str) -> Generations:
    if kind == "value_domains":
        return Generations(pushed_root(settings.state_dir))
    return Generations(Path(settings.state_dir) / "control" / kind)


def _new_generation(settings: Settings, pkg: Package) -> tuple[Generations, str, Path]:
    gens = generations_for(settings, pkg.kind)
    name, path = gens.create(f"v{pkg.version:06d}-{pkg.package_id}")
    return gens, name, path


def _invalid(message: str, **detail: Any) -> PackageError:
    return PackageError("invalid_payload", message, state="verified", http_status=422, detail=detail)


# --------------------------------------------------------------------------- value_domains


def stage_value_domains(settings: Settings, pkg: Package, payload: Any) -> Staged:
    if not isinstance(payload, dict) or not isinstance(payload.get("domains"), list) or not payload["domains"]:
        raise _invalid("value_domains 配置内容应为 {\"domains\": [值域, …], \"block_on_unmapped\": true/false}")
    if not isinstance(payload.get("block_on_unmapped", False), bool):
        raise _invalid("block_on_unmapped：应为 true 或 false")
    layers = MappingLayers.from_settings(settings)
    in_force = layers.load().national
    gens, name, gen = _new_generation(settings, pkg)
    target = gen / NATIONAL_DIR
    target.mkdir()
    current = gens.current()
    if current is not None and (gens.path(current) / NATIONAL_DIR).is_dir():
        for f in sorted((gens.path(current) / NATIONAL_DIR).iterdir()):
            shutil.copy2(f, target / f.name)  # earlier pushes of other domains stay in force
    changed = []
    for i, doc in enumerate(payload["domains"]):
        did = doc.get("id") if isinstance(doc, dict) else None
        if not isinstance(did, str) or not did:
            raise _invalid(f"domains[{i}].id：缺少值域标识")
        path = target / f"{did}.yaml"
        try:
            domain = parse_national(path, doc)
            text = dump_domain(domain)
            parse_national(path, load_yaml_text(text, f"domains[{i}]"))  # never write what we cannot read
        except MappingError as exc:
            raise _invalid(f"domains[{i}]（{did}）：{exc}") from None
        old = in_force.get(did)
        if old is not None and domain.version_date < old.version_date:
            raise PackageError("stale_domain", f"值域 {did} 的版本日期 {domain.version_date} 早于当前生效的 "
                               f"{old.version_date}（{old.layer}），不会生效", state="verified", http_status=409)
        path.write_text(text, encoding="utf-8")
        changed.append({"id": did, "version_date": domain.version_date.isoformat(), "codes": len(domain),
                        "previous_version_date": old.version_date.isoformat() if old else None})
    return Staged(name, gen, {"domains": changed, "block_on_unmapped": bool(payload.get("block_on_unmapped"))})


def check_value_domains(settings: Settings, staged: Staged, spec: Spec, conn: psycopg.Connection[Any] | None
                        ) -> CheckResult:
    """What `codes import` and `mappings check` report, new with this version only."""
    layers = MappingLayers.from_settings(settings)
    old = layers.load()
    new: CodeTables = load_code_tables(layers.mappings_dir, layers.hospital, strict=False, pushed_dir=staged.path,
                                       local_dir=layers.local_dir)
    before = {(i.domain, i.local_code) for i in old.issues}
    dangling = [{"domain": i.domain, "local_code": i.local_code, "national_code": i.national_code}
                for i in new.issues if (i.domain, i.local_code) not in before]
    unmapped: list[dict[str, Any]] = []
    if conn is not None:
        was = {(u.domain, u.table, u.field, u.local_code) for u in check_coverage(old, spec, conn).unmapped}
        unmapped = [{"domain": u.domain, "table": u.table, "field": u.field, "local_code": u.local_code,
                     "rows": u.rows}
                    for u in check_coverage(new, spec, conn).unmapped
                    if (u.domain, u.table, u.field, u.local_code) not in was]
    block = bool(staged.summary.get("block_on_unmapped"))
    detail = {"dangling_local_entries": dangling, "newly_unmapped_in_data": unmapped, "new_mapping_version":
              new.version}
    gaps = len(dangling) + len(unmapped)
    if not gaps:
        return CheckResult(False, detail, "检查通过：本院对照表的全部条目在新版本中仍有效")
    msg = (f"新版本值域使本院 {len(dangling)} 条对照失效、数据中 {len(unmapped)} 个本地代码无法对照")
    return CheckResult(block, detail, msg + ("；配置包要求此时不生效" if block else "；已记录，配置包未要求阻止生效"))


# --------------------------------------------------------------------------- rules


def stage_rules(settings: Settings, pkg: Package, payload: Any) -> Staged:
    """A surveillance rule pack: {"file_name": "x.yaml", "content": "<YAML>"}, checked by the rules
    engine's own loader (cdcsync.surveil.pack, what ``cdcsync rules check`` runs)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("content"), str):
        raise _invalid("rules 配置内容应为 {\"file_name\": \"pack.yaml\", \"content\": \"<YAML 文本>\"}")
    label = f"规则包 {str(payload.get('file_name') or 'pack.yaml')[:80]}"
    try:
        pack = parse_pack(yamlfile.load(payload["content"]), label)
    except yamlfile.YamlProblem as exc:
        raise _invalid(f"{label}：{exc}") from None
    except PackError as exc:
        raise _invalid(str(exc)) from None
    _, name, gen = _new_generation(settings, pkg)
    (gen / RULES_FILE).write_text(payload["content"], encoding="utf-8")
    return Staged(name, gen, {"pack": pack.name, "pack_version": pack.version})


def rules_pack_path(settings: Settings) -> Path | None:
    """The rule pack in force: the pushed one when there is one, else ``surveil.pack`` (None: the
    shipped default pack). The rules consumer loads this path."""
    pushed = generations_for(settings, "rules").link / RULES_FILE
    return pushed if pushed.is_file() else settings.surveil.pack


# --------------------------------------------------------------------------- upstream / timeliness

# What a push may change on a configured destination: addresses, switches and limits, and (as
# PEM text, cdcsync.control.trust) the platform's public key or certificates. Never the
# hospital's key or certificate (the hospital's secrets).
UPSTREAM_KEYS = frozenset({"url", "enabled", "environment", "batch_max_events", "batch_max_bytes", "linger_ms",
                           "timeout_s", "retry_initial_s", "retry_max_s"})


def stage_upstream(settings: Settings, pkg: Package, payload: Any) -> Staged:
    if not isinstance(payload, dict) or not isinstance(payload.get("destinations"), list):
        raise _invalid("upstream 配置内容应为 {\"destinations\": [{\"name\": …, \"url\": …}, …]}")
    configured = {d.name: d for d in settings.destinations if isinstance(d, HttpDestination)}
    out = []
    for i, d in enumerate(payload["destinations"]):
        if not isinstance(d, dict) or d.get("name") not in configured:
            raise _invalid(f"destinations[{i}].name：应为已配置的上级平台之一（{'、'.join(configured) or '无'}）")
        extra = sorted(set(d) - UPSTREAM_KEYS - TRUST_FIELDS - {"name"})
        if extra:
            raise _invalid(f"destinations[{i}]：不允许下发的配置项 {', '.join(extra)}（医院密钥与证书只在本机配置）")
        try:
            check_trust(i, d, configured[d["name"]])
        except TrustError as exc:
            raise _invalid(str(exc)) from None
        base = configured[d["name"]].model_dump()
        merged = {**base, **{k: v for k, v in d.items() if k in UPSTREAM_KEYS}}
        try:
            HttpDestination.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise _invalid(f"destinations[{i}].{'.'.join(map(str, first['loc']))}：{first['msg']}") from None
        out.append(d)
    _, name, gen = _new_generation(settings, pkg)
    out = [materialize(d, gen) for d in out]
    (gen / "upstream.json").write_text(json.dumps({"destinations": out}, ensure_ascii=False, indent=1), "utf-8")
    return Staged(name, gen, {"destinations": [d["name"] for d in out]})


def stage_timeliness(settings: Settings, pkg: Package, payload: Any) -> Staged:
    if not isinstance(payload, dict):
        raise _invalid("timeliness 配置内容应为 {\"tables\": {表: 时效类别}, \"evaluation\": {阈值: 值}}")
    tables = payload.get("tables", {})
    if not isinstance(tables, dict):
        raise _invalid("tables：应为 表名 -> 时效类别 的映射")
    spec_tables = {t.name for t in load_spec().tables}
    for t, cls in tables.items():
        if t not in spec_tables:
            raise _invalid(f"tables.{t}：不是数据集规范中的表")
        if cls not in TIMELINESS:
            raise _invalid(f"tables.{t}：时效类别应为 {'、'.join(TIMELINESS)} 之一，实际为 {cls!r}")
    evaluation = payload.get("evaluation", {})
    if not isinstance(evaluation, dict):
        raise _invalid("evaluation：应为 阈值名 -> 值 的映射")
    try:
        EvaluationSettings.model_validate({**settings.ops.evaluation.model_dump(), **evaluation})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _invalid(f"evaluation.{'.'.join(map(str, first['loc']))}：{first['msg']}") from None
    _, name, gen = _new_generation(settings, pkg)
    (gen / "timeliness.json").write_text(json.dumps({"tables": tables, "evaluation": evaluation},
                                                    ensure_ascii=False, indent=1), "utf-8")
    return Staged(name, gen, {"tables": len(tables), "evaluation": sorted(evaluation)})


StageFn = Callable[[Settings, Package, Any], Staged]
STAGERS: dict[str, StageFn] = {"value_domains": stage_value_domains, "rules": stage_rules,
                               "upstream": stage_upstream, "timeliness": stage_timeliness}
