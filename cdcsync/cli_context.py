"""What every ``cdcsync`` sub-command shares, without importing ``cdcsync.cli``.

``cli.py`` builds the top-level group and imports each sub-command module to register it; the
sub-command modules import this light module instead (the click context object, config loading on
first use, the one-line user-error convention), so no sub-command module imports ``cli.py``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import click
import psycopg

from cdcsync.beijing import BEIJING
from cdcsync.config import ConfigError, Settings, load_settings


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

# The config file this process was started with (``-c``), for the commands it spawns (the 8884
# admin's detached ``upgrade apply``). A variable, not os.environ: in-process CLI runs in tests
# must not leak a config path into later ones.
_started_with: str | None = None


def remember_config_path(path: str | None) -> None:
    global _started_with
    _started_with = os.path.abspath(path) if path else None


def config_path_in_use() -> str | None:
    """``-c`` of this process, else ``$CDCSYNC_CONFIG`` (None: settings from defaults/environment)."""
    return _started_with or os.environ.get("CDCSYNC_CONFIG") or None


def fail(message: str) -> NoReturn:
    """One Chinese line on stderr, exit 2: how every command reports a user error."""
    click.echo(f"错误：{message}", err=True)
    sys.exit(2)


# --- shared by the commands that take --dsn / --mappings-dir / --since ---------------------------


def optional_settings(app: AppContext) -> Settings | None:
    """The settings, or None when no config file was given and none is needed (--dsn etc.)."""
    if app.config_path is None:
        try:
            return app.settings
        except ConfigError:
            return None
    return app.settings  # a named config file that is wrong is an error worth seeing


def mappings_location(app: AppContext, mappings_dir: str | None, hospital: str | None) -> tuple[Path | None, str]:
    settings = optional_settings(app)
    root = Path(mappings_dir) if mappings_dir else (settings.mappings_dir if settings else None)
    return root, hospital or (settings.hospital if settings else "example")


def conninfo(app: AppContext, dsn: str | None) -> str:
    if dsn:
        return dsn
    settings = optional_settings(app)
    if settings is None:
        raise click.UsageError("请用 -c 指定配置文件，或用 --dsn 给出数据库连接串")
    return settings.database.conninfo()


def parse_since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"应为日期或日期时间（如 2026-11-20 或 2026-11-20T08:00），实际为 {value!r}",
                                 param_hint="--since") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=BEIJING)
    return parsed


def dumps_text(obj: Any) -> str:
    from cdcsync.event import dumps

    return dumps(obj).decode()


@contextlib.contextmanager
def db_errors() -> Iterator[None]:
    """A database error becomes one line for the operator, not a traceback."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        first = str(exc).strip().splitlines()[0]
        raise click.ClickException(f"数据库中缺少所需的表（{first}）；请先执行 cdcsync db init") from None
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"数据库错误：{first}") from None


def connect_autocommit(conninfo: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"无法连接镜像库：{str(exc).strip().splitlines()[0]}") from None
