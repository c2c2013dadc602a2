"""The ``cdcsync`` command: one sub-command group per concern."""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from cdcsync import __version__
from cdcsync.config import Settings, load_settings


@dataclass
class AppContext:
    config_path: str | None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


pass_app = click.make_pass_decorator(AppContext)


class CdcsyncGroup(click.Group):
    """Turns expected user errors into one line on stderr (exit 2) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        import psycopg

        from cdcsync.errors import USER_ERRORS

        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            click.echo(f"错误：{exc}", err=True)
            sys.exit(2)
        except psycopg.errors.InsufficientPrivilege as exc:  # a login without the role it needs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"错误：数据库账号权限不足（{first}）；各命令所需的角色见 README“安装”一节"
                       "（cdcsync_daemon、cdcsync_api、cdcsync_his）", err=True)
            sys.exit(2)
        except psycopg.OperationalError as exc:  # unreachable database, wrong password, …
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"错误：无法连接数据库（检查 database.dsn 与数据库服务）：{first}", err=True)
            sys.exit(2)


@click.group(cls=CdcsyncGroup)
@click.option("-c", "--config", "config_path", envvar="CDCSYNC_CONFIG", type=click.Path(dir_okay=False),
              help="配置文件（YAML），也可用环境变量 CDCSYNC_CONFIG 指定")
@click.option("-v", "--verbose", is_flag=True, help="输出调试日志")
@click.version_option(__version__, prog_name="cdcsync")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """cdcsync：传染病智能监测预警前置软件（医院端）。"""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per POST otherwise
    ctx.obj = AppContext(config_path)


@main.group()
def db() -> None:
    """数据库：初始化镜像库结构与内部状态表。"""


@db.command("init")
@click.option("--dsn", help="数据库连接串（默认取配置文件 database.dsn）")
@pass_app
def db_init(app: AppContext, dsn: str | None) -> None:
    """执行 sql/ 中尚未执行的迁移文件，并使发布（publication）只包含数据集规范中的表。可重复执行。"""
    from cdcsync.db.migrate import PUBLICATION, apply_migrations

    result = apply_migrations(dsn or app.settings.database.conninfo())
    for name in result.applied:
        click.echo(f"已执行迁移：{name}")
    for name in result.changed:
        click.echo(f"警告：迁移文件 {name} 在执行后被修改过（不会重复执行）", err=True)
    if result.publication_created:
        click.echo(f"已创建发布：{PUBLICATION}（只包含数据集规范中的表）")
    if result.published and not result.publication_created:
        click.echo(f"发布 {PUBLICATION} 新增表：{', '.join(result.published)}")
    if result.unpublished:
        click.echo(f"发布 {PUBLICATION} 已移除不在数据集规范中的表（不再发送）：{', '.join(result.unpublished)}")
    if result.missing_tables:
        click.echo(f"警告：数据库中没有规范中的表 emr.{'、emr.'.join(result.missing_tables)}（未发布）", err=True)
    if not result.applied and not result.publication_changed:
        click.echo(f"数据库已是最新（{len(result.skipped)} 个迁移均已执行），未做任何更改。")
    for role in result.roles:
        click.echo(role.line(), err=role.status == "missing")
    _check_wal_keep(app, dsn)


def _check_wal_keep(app: AppContext, dsn: str | None) -> None:
    """Print max_slot_wal_keep_size and warn when it is unlimited or too small (README, install)."""
    import psycopg

    from cdcsync.config import ConfigError, StreamSettings
    from cdcsync.source.walsafety import init_check

    try:
        stream = app.settings.stream
    except ConfigError:  # ``--dsn`` without a config file: the default thresholds
        stream = StreamSettings()
    with psycopg.connect(dsn or app.settings.database.conninfo(), autocommit=True) as conn:
        for line in init_check(conn, stream):
            click.echo(line, err=line.startswith("警告"))


# Modules of commands that need an optional extra: their command names and the extra.
_OPTIONAL: dict[str, tuple[tuple[str, ...], str]] = {
    "cdcsync.upstream_sim.cli": (("upstream-sim",), "sim"),
    "cdcsync.demo": (("demo",), "sim"),
}


def _register(module: str, attr: str) -> None:
    """Sub-commands live beside the code they drive (``COMMANDS`` lists, or one command). A command
    whose extra is not installed still appears, and says which extra to install."""
    try:
        found = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if module not in _OPTIONAL:
            raise
        from cdcsync.extras import missing_extra_command

        names, extra = _OPTIONAL[module]
        for name in names:
            main.add_command(missing_extra_command(name, extra, exc.name))
        return
    for cmd in found if isinstance(found, list) else [found]:
        main.add_command(cmd)


for _module, _attr in [
    ("cdcsync.mapping.cli", "codes"),
    ("cdcsync.crypto.cli", "keys"),
    ("cdcsync.synth.cli", "gen"),
    ("cdcsync.stream_cli", "COMMANDS"),
    ("cdcsync.quarantine_cli", "COMMANDS"),
    ("cdcsync.recon.cli", "COMMANDS"),
    ("cdcsync.upstream_sim.cli", "upstream_sim_command"),
    ("cdcsync.api.cli", "COMMANDS"),
    ("cdcsync.demo", "demo"),
    ("cdcsync.ops.backup.cli", "COMMANDS"),
    ("cdcsync.ops.doctor_cli", "COMMANDS"),
    ("cdcsync.ops.evaluate_cli", "evaluate"),
]:
    _register(_module, _attr)
