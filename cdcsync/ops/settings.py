"""Settings of the operations loop (section ``ops`` of the config file): heartbeats to the
platforms, fault thresholds, alert channels, and the dynamic evaluation's thresholds.

Kept apart from ``cdcsync.config`` (which adds it as ``Settings.ops``) so that the ops modules
and the config do not import each other.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeartbeatSettings(_Model):
    enabled: bool = True
    # How often each platform hears from the hospital; the platform calls the hospital offline
    # after missing about three of them (docs/upstream-protocol.md section 7).
    interval_s: float = Field(60.0, ge=0.05, le=3600)
    timeout_s: float = Field(10.0, gt=0, le=120)


class FaultSettings(_Model):
    # A destination that has not acknowledged anything for this long while its sends fail (or
    # whose stream is not running) is a fault (DEST_STOPPED).
    destination_stopped_after_s: float = Field(300.0, gt=0)


class SmtpChannel(_Model):
    host: str
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password_file: Path | None = None  # mode 0600
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    recipients: list[str] = Field(min_length=1)
    timeout_s: float = Field(10.0, gt=0, le=120)

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if "@" not in a or any(c.isspace() for c in a)]
        if bad:
            raise ValueError(f"收件人地址格式不正确：{', '.join(bad)}")
        return value


class WebhookChannel(_Model):
    url: str = Field(pattern=r"^https?://\S+$")
    # The HMAC-SM3 key (mode 0600): the receiver checks X-Cdcsync-Signature with it.
    secret_file: Path
    timeout_s: float = Field(10.0, gt=0, le=120)
    ca_bundle: Path | None = None


class AlertSettings(_Model):
    smtp: list[SmtpChannel] = Field(default_factory=list)
    webhooks: list[WebhookChannel] = Field(default_factory=list)
    # A channel that failed is tried again on the next ops tick, at most this often.
    retry_s: float = Field(60.0, ge=0)


class EvaluationSettings(_Model):
    """Thresholds and weights of the four scores (docs/evaluation.md)."""

    # 正确性 weights: validation/mapping pass, platform acceptance, required-field completeness,
    # agreement of report cards with NNDRS (a component without data that day is left out).
    w_validation: float = Field(0.4, ge=0)
    w_platform: float = Field(0.3, ge=0)
    w_completeness: float = Field(0.1, ge=0)
    w_cards: float = Field(0.2, ge=0)
    # 稳定性: weights of daemon uptime, stream uptime, backups; points off per restart (capped).
    w_daemon_uptime: float = Field(0.4, ge=0)
    w_stream_uptime: float = Field(0.4, ge=0)
    w_backup: float = Field(0.2, ge=0)
    restart_penalty: float = Field(5.0, ge=0)
    restart_penalty_max: float = Field(20.0, ge=0)
    # 适应性: an OS package (OpenSSL, PostgreSQL) updated within fresh_days scores 1, linearly
    # down to 0 at stale_days; a mapping older than the platform's announced one scores 0.
    package_fresh_days: int = Field(90, ge=1)
    package_stale_days: int = Field(365, ge=2)
    # Levels for the words shown next to a score.
    good: float = Field(95.0, ge=0, le=100)
    fair: float = Field(80.0, ge=0, le=100)
    # How often the daemon recomputes today's scores (and stores them in the history).
    refresh_s: float = Field(300.0, ge=1)


class OpsSettings(_Model):
    heartbeat: HeartbeatSettings = HeartbeatSettings()
    faults: FaultSettings = FaultSettings()
    alerts: AlertSettings = AlertSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
