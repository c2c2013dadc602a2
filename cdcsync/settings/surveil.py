"""Settings of the surveillance rules consumer (``surveil:`` in the config file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from cdcsync.settings import SettingsModel

SURVEIL_SLOT = "cdcsync_surveil"
SURVEIL_CONSUMER = "surveil"


class SurveilSettings(SettingsModel):
    """``enabled``: None (default) runs the rules consumer inside ``cdcsync run`` when the mirror has
    the case tables (migration 030); ``false`` never, ``true`` always (a missing table is then an
    error). ``pack``: the rule pack file (None: the shipped default pack). ``batch_max_events`` /
    ``linger_ms``: how many events, or how long, one case transaction (with its checkpoint) collects.
    ``expire_after_days``: an open case this long past its due time without any closing action is
    marked 已过期 by the consumer's sweep (every ``expire_sweep_s``); 0 never expires a case."""

    enabled: bool | None = None
    pack: Path | None = None
    slot: str = Field(default=SURVEIL_SLOT, pattern=r"^[a-z0-9_]{1,63}$")
    batch_max_events: int = Field(default=2000, ge=1, le=100_000)
    linger_ms: int = Field(default=200, ge=0, le=60_000)
    reload_interval_s: float = Field(default=2.0, gt=0, le=3600)
    expire_after_days: float = Field(default=7.0, ge=0, le=366)
    expire_sweep_s: float = Field(default=60.0, gt=0, le=86_400)
