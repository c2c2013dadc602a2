"""The ``cdcsync`` command: one sub-command group per concern."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from cdcsync import __version__
from cdcsync.api.cli import COMMANDS as API_COMMANDS
from cdcsync.cli_context import AppContext, pass_app, remember_config_path
from cdcsync.control.cli import COMMANDS as CONTROL_COMMANDS
from cdcsync.crypto.cli import keys
from cdcsync.engine.cli import COMMANDS as STREAM_COMMANDS
from cdcsync.extras import optional_command
from cdcsync.mapping.cli import codes, mappings_group
from cdcsync.ops.backup.cli import COMMANDS as BACKUP_COMMANDS
from cdcsync.ops.doctor_cli import COMMANDS as DOCTOR_COMMANDS
from cdcsync.ops.evaluate_cli import evaluate
from cdcsync.quarantine.cli import COMMANDS as QUARANTINE_COMMANDS
from cdcsync.recon.cli import COMMANDS as RECON_COMMANDS
from cdcsync.surveil.cases_cli import COMMANDS as CASES_COMMANDS
from cdcsync.surveil.cli import rules_group
from cdcsync.surveil.replay_cli import replay_cmd
from cdcsync.synth.cli import gen
from cdcsync.validate.cli import validate_cmd
from cdcsync.workbench.cli import COMMANDS as WORKBENCH_COMMANDS


class CdcsyncGroup(click.Group):
    """Turns expected user errors into one line on stderr (exit 2) instead of a traceback, and
    resolves the optional commands on demand (:data:`OPTIONAL_COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *OPTIONAL_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in OPTIONAL_COMMANDS:
            return _optional_command(cmd_name)
        return super().get_command(ctx, cmd_name)

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
    remember_config_path(config_path)  # for the detached ``upgrade apply`` of the 8884 admin
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


# Commands of the ``sim`` extra, imported only when named (or listed by ``--help``): importing them
# to see whether the extra is installed would load the reference platform's web stack (FastAPI,
# uvicorn) on every command. A missing extra gives the stand-in that names it (cdcsync.extras).
OPTIONAL_COMMANDS: dict[str, tuple[str, str, str]] = {
    "upstream-sim": ("cdcsync.upstream_sim.cli", "upstream_sim_command", "sim"),
    "demo": ("cdcsync.demo", "demo", "sim"),
}


def _optional_command(name: str) -> click.Command:
    module, attr, extra = OPTIONAL_COMMANDS[name]
    found: list[click.Command] = []
    with optional_command(found, name, extra):
        found.append(getattr(importlib.import_module(module), attr))
    return found[0]


# Sub-commands live beside the code they drive; registering one is one entry in this list.
for _command in [
    codes,
    mappings_group,
    validate_cmd,
    keys,
    gen,
    *STREAM_COMMANDS,
    *QUARANTINE_COMMANDS,
    *RECON_COMMANDS,
    *API_COMMANDS,
    *BACKUP_COMMANDS,
    *DOCTOR_COMMANDS,
    *CONTROL_COMMANDS,
    *WORKBENCH_COMMANDS,
    evaluate,
    rules_group,
    *CASES_COMMANDS,
]:
    main.add_command(_command)
rules_group.add_command(replay_cmd)  # `rules replay` lives beside the rules consumer
