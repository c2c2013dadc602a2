"""What every ``cdcsync`` sub-command shares, without importing ``cdcsync.cli``.

``cli.py`` builds the top-level group and imports each sub-command module to register it; the
sub-command modules import this light module instead (the click context object, config loading on
first use, the one-line user-error convention), so no sub-command module imports ``cli.py``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import NoReturn

import click

from cdcsync.config import Settings, load_settings


@dataclass
class AppContext:
    """The click context object: the ``-c/--config`` path, settings loaded on first use (a command
    that never needs them, e.g. ``keys generate``, works without a config file)."""

    config_path: str | None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


pass_app = click.make_pass_decorator(AppContext)


def fail(message: str) -> NoReturn:
    """One Chinese line on stderr, exit 2: how every command reports a user error."""
    click.echo(f"错误：{message}", err=True)
    sys.exit(2)
