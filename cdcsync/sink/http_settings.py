"""Settings of an upstream platform destination (``kind: http``): national or provincial.

Kept apart from ``cdcsync.config`` (which adds the model to its destination union) so that the
sink and the config do not import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from cdcsync.net import is_loopback
from cdcsync.settings import DestinationName, SettingsModel


class HttpDestination(SettingsModel):
    """One platform: where to POST, how to trust its TLS certificate, which SM2 keys to use."""

    name: DestinationName
    kind: Literal["http"]
    enabled: bool = True
    # production: the platform of record; test: a trial platform (大疫情测试网, 双轨运行) that the
    # status page and the reports label as such.
    environment: Literal["production", "test"] = "production"
    # Base URL of the platform, e.g. https://cdc.example.gov.cn:8888 (the API path is appended).
    url: str
    # CA certificates (PEM) that sign the platform's TLS certificate; None: the system store.
    ca_bundle: Path | None = None
    hospital_key: Path  # SM2 private key, PKCS#8 PEM, mode 0600
    hospital_key_id: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")  # if set, must match the key file
    # The hospital's SM2 certificate issued by the CA for hospital_key (PEM, intermediates may
    # follow); sent with every batch (X-Certificate). None: the platform knows the bare key.
    hospital_certificate: Path | None = None
    # The platform's SM2 key: either pinned as a bare key (PUBLIC KEY PEM) ...
    platform_public_key: Path | None = None
    # ... or as certificates validated against platform_ca_file (several during a rotation:
    # batches are encrypted to the first one valid now, replies signed by any valid one accepted).
    platform_certificates: list[Path] = Field(default_factory=list, max_length=8)
    platform_ca_file: Path | None = None  # CA certificates (PEM) that issue the platform's SM2 certificates
    batch_max_events: int = Field(1000, ge=1, le=50_000)
    batch_max_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=32 * 1024 * 1024)
    linger_ms: int = Field(200, ge=0, le=60_000)
    timeout_s: float = Field(30.0, gt=0, le=600)
    max_in_flight_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    retry_initial_s: float = Field(0.5, gt=0, le=60)
    retry_max_s: float = Field(30.0, gt=0, le=3600)
    # A 400/413/422 answer repeated this many times with the same reason is final (a poison
    # batch): the batch is bisected down to the refused event(s), which are quarantined with the
    # platform's reason (rule PLT400/PLT413/PLT422) while the rest is delivered in order.
    poison_after_attempts: int = Field(3, ge=1, le=100)
    # More refused events than this in a row with nothing accepted in between: the platform refuses
    # everything (a configuration or version problem, not the data). Quarantining stops; the batch
    # is retried and the failure shown in status until the platform accepts again.
    poison_max_consecutive: int = Field(10, ge=1, le=10_000)
    # Plain HTTP for loopback trials only (e.g. upstream-sim --insecure-http); never to a real platform.
    insecure_http: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"应为 https://主机[:端口] 形式的平台地址，实际为 {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("平台地址不应包含查询参数或片段（? 或 #）")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _platform_key_source(self) -> HttpDestination:
        if (self.platform_public_key is None) == (not self.platform_certificates):
            raise ValueError("平台密钥须二选一配置：platform_public_key（公钥）或 platform_certificates（证书）")
        if self.platform_certificates and self.platform_ca_file is None:
            raise ValueError("platform_certificates 需要同时配置 platform_ca_file（签发平台证书的 CA 证书）")
        if self.platform_ca_file is not None and not self.platform_certificates:
            raise ValueError("platform_ca_file 只与 platform_certificates 一起使用")
        return self

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> HttpDestination:
        parts = urlsplit(self.url)
        if parts.scheme == "http":
            if not self.insecure_http:
                raise ValueError(f"url: 平台地址 {self.url} 未加密（http），请使用 https；"
                                 "本机试运行可设置 insecure_http: true")
            if not is_loopback(parts.hostname or ""):
                raise ValueError(
                    f"url: insecure_http 只允许本机回环地址（127.0.0.1、::1、localhost），实际为 {parts.hostname}"
                )
        return self

    @property
    def batches_url(self) -> str:
        return f"{self.url}/api/v1/edr/batches"

    @property
    def heartbeats_url(self) -> str:
        return f"{self.url}/api/v1/edr/heartbeats"
