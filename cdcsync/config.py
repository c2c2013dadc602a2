"""Settings: a YAML file, overridden key by key from the environment, validated into typed models.

``CDCSYNC_DATABASE__DSN=...`` overrides ``database.dsn``; list items are addressed by index
(``CDCSYNC_DESTINATIONS__0__PATH``). Values are parsed as YAML scalars, so ``true``/``10`` keep
their types. Errors are one line naming the file, the key and what was expected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from cdcsync import yamlfile
from cdcsync.config_error import ConfigError as ConfigError
from cdcsync.settings import DestinationName, SettingsModel
from cdcsync.settings.api import ApiSettings
from cdcsync.settings.backup import BackupSettings
from cdcsync.settings.control import ControlSettings
from cdcsync.settings.database import DatabaseSettings
from cdcsync.settings.ops import OpsSettings
from cdcsync.settings.surveil import SurveilSettings
from cdcsync.settings.workbench import WorkbenchSettings
from cdcsync.sink.http_settings import HttpDestination

ENV_PREFIX = "CDCSYNC_"


class StreamSettings(SettingsModel):
    status_interval_s: float = Field(10.0, gt=0)
    batch_max_events: int = Field(1000, ge=1)
    batch_max_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    linger_ms: int = Field(200, ge=0)
    # Acknowledged positions are written (and confirmed to PostgreSQL) at most this often; a crash
    # replays at most this much, which deterministic ids make harmless.
    checkpoint_interval_ms: int = Field(1000, ge=0)
    # Batches handed to a destination and not yet acknowledged: the stream reads on while the
    # destination works (1: deliver one batch while the next one fills).
    in_flight_batches: int = Field(4, ge=1, le=64)
    heartbeat_interval_s: float = Field(60.0, gt=0)
    wal_retention_warn_mb: int = Field(1024, ge=1)
    # WAL safety (cdcsync.source.walsafety): warn when a slot may write less than this much more
    # WAL before PostgreSQL invalidates it, when the pg_wal volume has less free space than this,
    # and when max_slot_wal_keep_size is below this (status and ``db init``).
    wal_safe_size_warn_mb: int = Field(2048, ge=1)
    wal_free_warn_mb: int = Field(2048, ge=1)
    wal_keep_min_mb: int = Field(10240, ge=1)
    shutdown_timeout_s: float = Field(30.0, gt=0)
    snapshot_on_new: bool = True


class JsonlDestination(SettingsModel):
    name: DestinationName
    kind: Literal["jsonl"]
    enabled: bool = True
    path: Path


class MemoryDestination(SettingsModel):
    """Keeps events in the process; for tests and benchmarks (``null: true`` drops them)."""

    name: DestinationName
    kind: Literal["memory"]
    enabled: bool = True
    null: bool = False


DestinationSettings = JsonlDestination | MemoryDestination | HttpDestination
Destination = Annotated[DestinationSettings, Field(discriminator="kind")]


class LoggingSettings(SettingsModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = False


class Settings(SettingsModel):
    org_code: str = Field(pattern=r"^[0-9A-Z]{6,22}$")
    hospital: str = "example"
    # National value domains shipped with the release (None: the release's own mappings/); the
    # hospital's local tables live under <local_mappings_dir or mappings_dir>/local/<hospital>.
    mappings_dir: Path | None = None
    local_mappings_dir: Path | None = None
    state_dir: Path = Path(".cdcsync")
    database: DatabaseSettings = DatabaseSettings()
    stream: StreamSettings = StreamSettings()
    destinations: list[Destination] = Field(default_factory=list)
    logging: LoggingSettings = LoggingSettings()
    api: ApiSettings = ApiSettings()
    backup: BackupSettings = BackupSettings()
    ops: OpsSettings = OpsSettings()
    control: ControlSettings = ControlSettings()
    surveil: SurveilSettings = SurveilSettings()
    workbench: WorkbenchSettings = WorkbenchSettings()

    @field_validator("destinations")
    @classmethod
    def _unique_names(cls, value: list[Any]) -> list[Any]:
        names = [d.name for d in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"目的地名称重复：{', '.join(dupes)}")
        return value

    def destination(self, name: str) -> DestinationSettings:
        for dest in self.destinations:
            if dest.name == name:
                return dest
        raise ConfigError(f"配置中没有名为 {name!r} 的目的地（已配置：{', '.join(self.destination_names)}）")

    @property
    def destination_names(self) -> list[str]:
        return [d.name for d in self.destinations]

    @property
    def enabled_destinations(self) -> list[DestinationSettings]:
        return [d for d in self.destinations if d.enabled]


TOP_LEVEL_KEYS = frozenset(Settings.model_fields)


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if path[0] not in TOP_LEVEL_KEYS:
            continue  # e.g. CDCSYNC_CONFIG, CDCSYNC_PG_USER: not settings keys
        try:
            value = yamlfile.load(raw) if raw != "" else ""
        except yamlfile.YamlProblem as exc:
            raise ConfigError(f"环境变量 {name}：{exc}") from None
        node: Any = data
        for i, key in enumerate(path[:-1]):
            nxt_is_index = path[i + 1].isdigit()
            if isinstance(node, list):
                idx = int(key)
                while len(node) <= idx:
                    node.append({})
                node = node[idx]
                continue
            if key not in node or node[key] is None:
                node[key] = [] if nxt_is_index else {}
            node = node[key]
        last = path[-1]
        if isinstance(node, list):
            idx = int(last)
            while len(node) <= idx:
                node.append({})
            node[idx] = value
        else:
            node[last] = value
    return data


PUSHED_UPSTREAM = Path("control") / "upstream" / "current" / "upstream.json"
PUSHED_TIMELINESS = Path("control") / "timeliness" / "current" / "timeliness.json"


def _read_pushed(state_dir: Path, rel: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((state_dir / rel).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{state_dir / rel}: 无法读取国家平台下发的配置：{exc}") from None
    return doc if isinstance(doc, dict) else None


def _apply_pushed(data: dict[str, Any]) -> dict[str, Any]:
    """Overlay what the national platform pushed on 8882 and is in force (docs/control-plane.md):
    ``upstream`` (per destination: address, switch, limits) and ``timeliness`` (evaluation
    thresholds). The file gives the hospital's own settings; the environment still overrides both."""
    state_dir = Path(data.get("state_dir") or Settings.model_fields["state_dir"].default)
    upstream = _read_pushed(state_dir, PUSHED_UPSTREAM)
    if upstream and isinstance(data.get("destinations"), list):
        pushed = {d.get("name"): d for d in upstream.get("destinations", []) if isinstance(d, dict)}
        data["destinations"] = [
            {**d, **{k: v for k, v in pushed[d["name"]].items() if k != "name"}}
            if isinstance(d, dict) and d.get("name") in pushed else d
            for d in data["destinations"]]
    timeliness = _read_pushed(state_dir, PUSHED_TIMELINESS)
    if timeliness and isinstance(timeliness.get("evaluation"), dict) and timeliness["evaluation"]:
        ops = dict(data.get("ops") or {})
        ops["evaluation"] = {**(ops.get("evaluation") or {}), **timeliness["evaluation"]}
        data["ops"] = ops
    return data


def pushed_table_classes(state_dir: str | Path) -> dict[str, str]:
    """Per-table timeliness classes of the ``timeliness`` package in force ({} when none): they
    replace the dataset spec's class in the evaluation (cdcsync.ops.evaluate.timeliness). The
    stager checked tables and classes; anything else in the file is ignored."""
    doc = _read_pushed(Path(state_dir), PUSHED_TIMELINESS) or {}
    tables = doc.get("tables")
    if not isinstance(tables, dict):
        return {}
    return {str(t): c for t, c in tables.items() if isinstance(c, str)}


def with_pushed(settings: Settings) -> Settings:
    """``settings`` with the pushed configuration now in force overlaid (the running daemon, after
    the national platform applied an ``upstream`` package on 8882)."""
    try:
        return Settings.model_validate(_apply_pushed(settings.model_dump(mode="json")))
    except ValidationError as exc:
        raise ConfigError(_format_error("国家平台下发的配置", exc)) from None


def _format_error(source: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ""
        for item in err["loc"]:
            if isinstance(item, int):
                loc += f"[{item}]"
            elif item in ("jsonl", "memory", "http", "function-after[_unique_names(), list[...]]"):
                continue  # discriminator tags and validator wrappers say nothing to a user
            else:
                loc += f".{item}" if loc else str(item)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "未知的配置项（检查拼写）"
        elif err["type"] == "missing":
            msg = "缺少必填项"
        elif err["type"] == "union_tag_invalid":
            msg = f"kind 应为 jsonl、memory、http 之一，实际为 {err.get('input', {}).get('kind')!r}"
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # our own Chinese message: no "Value error, " prefix
        elif "input" in err and not isinstance(err["input"], dict | list):
            msg = f"{msg}（实际值：{err['input']!r}）"
        parts.append(f"{loc or '(根)'}: {msg}")
    return f"{source}: " + "; ".join(parts)


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read ``path`` (or ``$CDCSYNC_CONFIG``), apply environment overrides, validate."""
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get("CDCSYNC_CONFIG")
    data: dict[str, Any] = {}
    source = "环境变量"
    if path:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: 配置文件不存在") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: 无法读取配置文件：{exc}") from exc
        try:
            loaded = yamlfile.load(text)
        except yamlfile.YamlProblem as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: 顶层应为键值映射（mapping），实际为 {type(loaded).__name__}")
        data = loaded
    data = _apply_pushed(data)
    data = _apply_env(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None
