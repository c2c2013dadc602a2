"""Settings of backups (section ``backup`` of the config file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from cdcsync.settings import SettingsModel


class BackupSettings(SettingsModel):

    # Where backups are written, one directory per backup; None: ``<state_dir>/backups``.
    # Put it on another disk than the database (or mount a network share there).
    dir: Path | None = None
    # Retention: the newest backup of each of the last ``keep_daily`` days that have one, and of
    # each of the last ``keep_weekly`` ISO weeks; the newest verified backup is always kept.
    keep_daily: int = Field(7, ge=1, le=366)
    keep_weekly: int = Field(4, ge=0, le=520)
    # A last verified backup older than this (or none at all) is an alert on every status view.
    max_age_hours: float = Field(26.0, gt=0)
    # Private keys, tokens and password files (files only their owner may read) are kept
    # SM4-GCM encrypted under the 16-byte key in this file (32 hex digits, mode 0600);
    # ``cdcsync backup keygen`` writes one. Keep a copy of it away from the server.
    key_file: Path | None = None
    # false: private keys and secrets are left out of the backup (re-issue them after a restore).
    include_secrets: bool = True
    # More files or directories for the archive (rule packs, local code tables kept elsewhere).
    extra_paths: list[Path] = Field(default_factory=list)
    # The account that may take a physical backup (REPLICATION); None: ``database``.
    physical_dsn: str | None = None
    # What ``cdcsync backup run`` takes when --kind is not given (the timer runs this).
    default_kind: Literal["logical", "physical", "all"] = "logical"
    # Rows hashed per table when a test restore is compared with the source.
    verify_sample_rows: int = Field(100, ge=0, le=100_000)
    # Directory of pg_dump/pg_restore/pg_basebackup/initdb; None: found like the test cluster's.
    pg_bindir: Path | None = None

    def directory(self, state_dir: Path) -> Path:
        return self.dir if self.dir is not None else state_dir / "backups"
