"""Settings of the hospital-facing HTTP listeners (section ``api`` of the config file).

Each listener can be switched off and bound to its own host:port: the requirements document fixes
8881/8883/8884 but allows another port when one is taken ("如已被占用，可更换").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from cdcsync.config import Settings


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenerSettings(_Model):
    enabled: bool = True
    # All interfaces by default: HIS servers, the national platform and doctors' PCs reach the 前置机
    # over the network. Bind to one interface address to narrow it.
    host: str = "0.0.0.0"  # noqa: S104 - intended, see above
    port: int = Field(ge=0, le=65535)  # 0 = any free port (tests)


DEFAULT_PORTS = {"data": 8881, "monitor": 8883, "web": 8884}


class ApiSettings(_Model):
    data: ListenerSettings = ListenerSettings(port=DEFAULT_PORTS["data"])
    monitor: ListenerSettings = ListenerSettings(port=DEFAULT_PORTS["monitor"])
    web: ListenerSettings = ListenerSettings(port=DEFAULT_PORTS["web"])
    # Bearer token the national platform sends to /api/v1/status and /metrics (file mode 600).
    # Without it those two endpoints answer 503: the status is never served unprotected.
    monitor_token_file: Path | None = None
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_batch_records: int = Field(1000, ge=1, le=10000)

    @model_validator(mode="before")
    @classmethod
    def _listener_defaults(cls, data: Any) -> Any:
        # A partial listener section (``data: {enabled: false}``) keeps the default port.
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, port in DEFAULT_PORTS.items():
            section = merged.get(name)
            if isinstance(section, dict) and "port" not in section:
                merged[name] = {**section, "port": port}
        return merged


def api_settings(settings: Settings, override: ApiSettings | None = None) -> ApiSettings:
    """The ``api`` section, or ``override`` (tests and the demo bind listeners elsewhere)."""
    return override or settings.api
