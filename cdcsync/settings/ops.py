"""Settings of the operations loop (section ``ops`` of the config file): heartbeats to the
platforms, fault thresholds, alert channels, the dynamic evaluation's thresholds, and the
compaction of the delivered-keys log.

In ``cdcsync/settings/`` (see there) so that ``ops/`` and the config do not import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from cdcsync.settings import Email, NetTimeout, SettingsModel, Weight


class HeartbeatSettings(SettingsModel):
    enabled: bool = True
    # How often each platform hears from the hospital; the platform calls the hospital offline
    # after missing about three of them (docs/upstream-protocol.md section 7).
    interval_s: float = Field(60.0, ge=0.05, le=3600)
    timeout_s: NetTimeout = 10.0


class FaultSettings(SettingsModel):
    # A destination that has not acknowledged anything for this long while its sends fail (or
    # whose stream is not running) is a fault (DEST_STOPPED).
    destination_stopped_after_s: float = Field(300.0, gt=0)


class SmtpChannel(SettingsModel):
    host: str
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password_file: Path | None = None  # mode 0600
    sender: Email
    recipients: list[Email] = Field(min_length=1)
    timeout_s: NetTimeout = 10.0


class WebhookChannel(SettingsModel):
    url: str = Field(pattern=r"^https?://\S+$")
    # The HMAC-SM3 key (mode 0600): the receiver checks X-Cdcsync-Signature with it.
    secret_file: Path
    timeout_s: NetTimeout = 10.0
    ca_bundle: Path | None = None


class AlertSettings(SettingsModel):
    smtp: list[SmtpChannel] = Field(default_factory=list)
    webhooks: list[WebhookChannel] = Field(default_factory=list)
    # A channel that failed is tried again on the next ops tick, at most this often.
    retry_s: float = Field(60.0, ge=0)


class EvaluationSettings(SettingsModel):
    """Thresholds and weights of the four scores (docs/evaluation.md)."""

    # 正确性 weights: validation/mapping pass, platform acceptance, required-field completeness,
    # agreement of report cards with NNDRS (a component without data that day is left out).
    w_validation: Weight = 0.4
    w_platform: Weight = 0.3
    w_completeness: Weight = 0.1
    w_cards: Weight = 0.2
    # 稳定性: weights of daemon uptime, stream uptime, backups; points off per restart (capped).
    w_daemon_uptime: Weight = 0.4
    w_stream_uptime: Weight = 0.4
    w_backup: Weight = 0.2
    restart_penalty: float = Field(5.0, ge=0)
    restart_penalty_max: float = Field(20.0, ge=0)
    # 适应性 weights: software, value domains (code tables) and rule pack against what the
    # platform announced, OS security updates. An OS package group (OpenSSL, PostgreSQL) updated
    # within fresh_days scores 1, linearly down to 0 at stale_days; code tables older than the
    # platform's announced ones score 0.
    w_software: Weight = 0.3
    w_value_domains: Weight = 0.3
    w_rule_pack: Weight = 0.1
    w_os_packages: Weight = 0.3
    package_fresh_days: int = Field(90, ge=1)
    package_stale_days: int = Field(365, ge=2)
    # Where dpkg keeps one ``<package>.list`` per installed package (rewritten on every upgrade:
    # its mtime is the package's last update). Absent (not Debian/Ubuntu): not measured.
    dpkg_info_dir: Path = Path("/var/lib/dpkg/info")
    # Levels for the words shown next to a score.
    good: float = Field(95.0, ge=0, le=100)
    fair: float = Field(80.0, ge=0, le=100)
    # How often the daemon recomputes today's scores (and stores them in the history).
    refresh_s: float = Field(300.0, ge=1)


class CompactionSettings(SettingsModel):
    """The periodic compaction of ``cdcsync.delivered_keys`` (cdcsync/ops/compaction.py)."""

    enabled: bool = True
    # How often the daemon checks whether a destination's key log is due (a cheap query).
    check_interval_s: float = Field(600.0, ge=1)
    # A destination is compacted once the log grew by max(min_entries, growth_ratio × the
    # entries left by its last compaction) since then: the log stays within about
    # (1 + growth_ratio) × the keys held, and a small set is not rewritten every few minutes.
    min_entries: int = Field(200_000, ge=1)
    growth_ratio: float = Field(1.0, gt=0)
    # Beijing hours (0–23) in which a compaction may start, e.g. [1, 2, 3, 4] for the night;
    # empty: at any hour.
    hours: list[Annotated[int, Field(ge=0, le=23)]] = Field(default_factory=list)


class OpsSettings(SettingsModel):
    heartbeat: HeartbeatSettings = HeartbeatSettings()
    faults: FaultSettings = FaultSettings()
    alerts: AlertSettings = AlertSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    compaction: CompactionSettings = CompactionSettings()
