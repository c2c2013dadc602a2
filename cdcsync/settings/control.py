"""Settings of the control plane (section ``control``; the 8882 listener is ``api.control``).

In ``cdcsync/settings/`` (see there) so that ``control/`` and the config do not import each other.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from cdcsync.settings import DestinationName, SettingsModel


class ControlSettings(SettingsModel):
    # The upstream destination (kind http) whose configured platform key or certificates verify
    # packages (the same trust as for its replies) and whose hospital key signs our replies.
    # None: the destination named "national", else the first http destination.
    destination: DestinationName | None = None
    max_package_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # A package's created_at may lie at most this far in the future (clock skew).
    max_clock_skew_s: float = Field(600.0, gt=0)
    # Where release manifests and wheels come from (cdcsync upgrade check/download): base URL of the
    # national platform; None: the url of the destination above. TLS trust: update_ca_bundle, else
    # that destination's ca_bundle.
    update_url: str | None = None
    update_ca_bundle: Path | None = None
    # The daemon checks for a new release this often (0: never), each time shifted by a random
    # delay up to update_check_jitter_s so that hospitals do not all ask at once.
    update_check_interval_h: float = Field(24.0, ge=0)
    update_check_jitter_s: float = Field(3600.0, ge=0)
    # ``cdcsync upgrade apply | rollback`` (docs/control-plane.md, "Upgrades"): each release is a
    # venv in <releases_root>/<version>/; <releases_root>/current is the link the service runs.
    releases_root: Path = Path("/opt/cdcsync/releases")
    # Dependencies are installed offline: pip --no-index --find-links <a verified copy of the
    # release wheel and of the manifest's signed dependency bundle> [--find-links wheelhouse].
    # The wheelhouse is the administrator's own trusted directory (not checked against a manifest).
    wheelhouse: Path | None = None
    # Instead of a wheelhouse: a site-packages directory that already holds the dependencies
    # (e.g. of a base environment), made visible in each release venv by a .pth path entry;
    # the release wheel is then installed without dependencies.
    dependency_site: Path | None = None
    # The interpreter (with pip >= 22.3) that creates release venvs and installs into them
    # (None: the one running this command if it has pip, else its base interpreter).
    python: Path | None = None
    # How the service is restarted after the switch (argv, no shell).
    restart_command: list[str] = Field(default_factory=lambda: ["systemctl", "restart", "cdcsync"], min_length=1)
    # The "升级" button on 8884 runs ``<apply_command> [-c CONFIG] upgrade apply`` detached (argv,
    # no shell); None: this interpreter with ``-m cdcsync``.
    apply_command: list[str] | None = Field(None, min_length=1)
    # After a restart the new release must report healthy within this time, and stay healthy for
    # health_settle_s (a release that dies right after start is caught), else it is rolled back.
    health_timeout_s: float = Field(120.0, gt=0)
    health_settle_s: float = Field(5.0, ge=0)
    # A release flagged with irreversible migrations is installed (and rolled back from) only
    # when a verified backup finished within this many hours exists.
    upgrade_backup_max_age_h: float = Field(24.0, gt=0)
