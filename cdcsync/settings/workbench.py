"""Settings of the workbench (section ``workbench`` of the config file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from cdcsync.settings import SettingsModel


class HisCallbackSettings(SettingsModel):
    """POST every write-back row to the HIS (院内传报卡数据回传), besides the table it can read."""

    url: str = Field(pattern=r"^https?://")
    his: str  # the registered HIS whose SSO key signs the callbacks (cdcsync sso add-his)
    timeout_s: float = Field(10.0, gt=0, le=120)
    interval_s: float = Field(5.0, gt=0, le=600)  # how often pending rows are looked for
    max_backoff_s: float = Field(600.0, ge=1, le=86400)  # retry delay cap after failures


class WorkbenchSettings(SettingsModel):
    enabled: bool = True
    # Where `cdcsync sso add-his` keeps one secret file per HIS (mode 0600). Default: <state_dir>/sso.
    sso_dir: Path | None = None
    ticket_ttl_s: int = Field(60, ge=5, le=600)  # a ticket is valid this long after its iat
    clock_skew_s: int = Field(30, ge=0, le=300)  # tolerated difference between the HIS's clock and ours
    session_idle_s: int = Field(1800, ge=60, le=86400)  # a session unused this long ends
    session_max_s: int = Field(12 * 3600, ge=300, le=7 * 86400)  # absolute session lifetime
    # Origins allowed to frame the workbench (CSP frame-ancestors), e.g. "http://his.example:8080";
    # none: only a popup window (or our own origin) may show it.
    frame_ancestors: list[Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?$")]] = Field(
        default_factory=list)
    # Mark the session cookie Secure (set it when 8884 is served over TLS).
    secure_cookie: bool = False
    snooze_choices_min: list[int] = Field(default_factory=lambda: [15, 30, 60, 120])
    his_callback: HisCallbackSettings | None = None
    # Audit lines older than this are purged (hourly housekeeping); at least 180 days (the
    # trigger refuses younger ones), as the 网络安全法 asks of logs.
    audit_retention_days: int = Field(365, ge=180, le=36500)

    def secrets_dir(self, state_dir: Path) -> Path:
        return self.sso_dir if self.sso_dir is not None else state_dir / "sso"
