"""Settings of the hospital-facing HTTP listeners (section ``api`` of the config file).

Each listener can be switched off and bound to its own host:port: the requirements document fixes
8881/8883/8884 but allows another port when one is taken ("如已被占用，可更换").

TLS: each listener takes ``tls_cert_file``/``tls_key_file`` (PEM; the key file must be mode 0600)
and optionally ``tls_client_ca_file`` (mutual TLS: only clients with a certificate from that CA
get through the handshake). 8881 carries patient data and bearer keys and 8883 the monitoring
token, so serving either on a non-loopback address without TLS is refused unless the admin sets
``allow_plain_http: true`` — and then every start logs a warning that the status shows too
(:func:`plain_http_findings`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from cdcsync.net import is_loopback
from cdcsync.settings import SettingsModel
from cdcsync.settings.database import DatabaseSettings

if TYPE_CHECKING:
    from cdcsync.config import Settings


class ListenerSettings(SettingsModel):
    enabled: bool = True
    # All interfaces by default: HIS servers, the national platform and doctors' PCs reach the 前置机
    # over the network. Bind to one interface address to narrow it.
    host: str = "0.0.0.0"  # noqa: S104 - intended, see above
    port: int = Field(ge=0, le=65535)  # 0 = any free port (tests)
    tls_cert_file: Path | None = None  # PEM certificate (chain) of this listener
    tls_key_file: Path | None = None  # PEM private key, mode 0600
    tls_client_ca_file: Path | None = None  # PEM CA bundle: clients must present a certificate it issued
    allow_plain_http: bool = False  # explicit consent to plain HTTP on a non-loopback address

    @model_validator(mode="after")
    def _tls_complete(self) -> ListenerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file 与 tls_key_file 须同时配置（证书与私钥）")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("配置了 tls_client_ca_file（双向 TLS）时还须配置 tls_cert_file 与 tls_key_file")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


class DataListenerSettings(ListenerSettings):
    # The interactive API documentation (/docs, /openapi.json), served from local files (no CDN);
    # false in production where vendors get the documentation otherwise.
    docs: bool = True


DEFAULT_PORTS = {"data": 8881, "control": 8882, "monitor": 8883, "web": 8884}


class ApiSettings(SettingsModel):
    data: DataListenerSettings = DataListenerSettings(port=DEFAULT_PORTS["data"])
    monitor: ListenerSettings = ListenerSettings(port=DEFAULT_PORTS["monitor"])
    web: ListenerSettings = ListenerSettings(port=DEFAULT_PORTS["web"])
    # 8882: configuration packages from the national platform (cdcsync.control). Off until
    # configured: it needs TLS and an upstream destination whose platform key verifies packages.
    control: ListenerSettings = ListenerSettings(port=DEFAULT_PORTS["control"], enabled=False)
    # Bearer token the national platform sends to /api/v1/status and /metrics (file mode 600).
    # Without it those two endpoints answer 503: the status is never served unprotected.
    monitor_token_file: Path | None = None
    # The database account of the data API (8881), a login holding role cdcsync_api (sql/200_roles.sql):
    # the listener open to the HIS network then cannot read the daemon's state. Unset: ``database``.
    database: DatabaseSettings | None = None
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_batch_records: int = Field(1000, ge=1, le=10000)
    # Per API key: sustained requests per second, the burst allowed above it, and requests in
    # progress at once (the database connections are shared, one client must not hold them all).
    rate_limit_per_second: float = Field(20.0, gt=0)
    rate_limit_burst: int = Field(60, ge=1)
    max_concurrent_per_client: int = Field(2, ge=1)

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


# Listeners that carry secrets or patient data: plain HTTP on the network needs explicit consent.
PROTECTED_LISTENERS: dict[str, str] = {"data": "数据操作API", "monitor": "监控管理", "control": "配置更新"}


def plain_http_findings(api: ApiSettings, only: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
    """(refusals, warnings) about enabled protected listeners serving plain HTTP off loopback.

    A refusal stops the start; a warning (``allow_plain_http: true``) is logged at every start and
    shown by ``cdcsync status``, the status page and 8883. ``only``: the listeners about to start.
    """
    refusals: list[str] = []
    warnings: list[str] = []
    names = set(PROTECTED_LISTENERS if only is None else only)
    for name, purpose in PROTECTED_LISTENERS.items():
        cfg: ListenerSettings = getattr(api, name)
        if name not in names or not cfg.enabled or cfg.tls or is_loopback(cfg.host):
            continue
        where = f"{purpose}（api.{name}，{cfg.host}:{cfg.port}）"
        if cfg.allow_plain_http:
            warnings.append(f"{where}以明文 HTTP 对网络提供服务（allow_plain_http: true），"
                            "传输中的数据与密钥未加密；请尽快配置 TLS 证书")
        else:
            refusals.append(
                f"{where}未配置 TLS，拒绝以明文 HTTP 在非本机地址上提供服务：请配置 api.{name}.tls_cert_file 与 "
                f"tls_key_file（首次使用可执行 cdcsync keys tls-selfsigned 生成），或将 api.{name}.host 改为 "
                f"127.0.0.1，或明确设置 api.{name}.allow_plain_http: true"
            )
    return refusals, warnings


def plain_http_warnings(settings: Settings) -> list[str]:
    """The warnings of :func:`plain_http_findings` for the configured ``api`` section."""
    return plain_http_findings(settings.api)[1]
