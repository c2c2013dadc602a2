"""``cdcsync serve`` (the HTTP listeners alone) and ``cdcsync api-keys add|list|revoke``."""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType
from typing import NoReturn

import click
import psycopg

from cdcsync.cli import AppContext, pass_app


def _fail(message: str) -> NoReturn:
    """One Chinese line on stderr, exit 2 (the convention of cdcsync.cli for user errors)."""
    click.echo(f"错误：{message}", err=True)
    sys.exit(2)


@click.command("serve")
@pass_app
def serve_cmd(app: AppContext) -> None:
    """只启动 HTTP 服务（数据操作API 8881、监控 8883、PC端web 8884），不启动同步。"""
    from cdcsync.api.server import ApiStartError, start_servers
    from cdcsync.api.settings import api_settings

    settings = app.settings
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        handle = start_servers(settings, started_at=time.time())
    except ApiStartError as exc:
        _fail(str(exc))
    api = api_settings(settings)
    for name, port in handle.ports.items():
        host = getattr(api, name).host
        click.echo(f"已启动 {name}：http://{host}:{port}/" + ("status.html" if name == "web" else ""))
    if not handle.running:
        click.echo("配置中没有启用任何 HTTP 服务（api.data/monitor/web.enabled 均为 false）。", err=True)
        return
    try:
        while not stop.is_set() and handle.alive():
            stop.wait(1.0)
    finally:
        handle.stop()
    click.echo("HTTP 服务已停止。")


@click.group("api-keys")
def api_keys() -> None:
    """数据操作API（8881）客户端密钥：每个院内系统一个。"""


def _connect(app: AppContext) -> psycopg.Connection:
    try:
        return psycopg.connect(app.settings.database.conninfo(), connect_timeout=10)
    except psycopg.OperationalError as exc:
        _fail(f"无法连接镜像数据库：{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def _missing_table() -> NoReturn:
    _fail("数据库中没有 cdcsync.api_key 表，请先执行 cdcsync db init")


@api_keys.command("add")
@click.argument("name")
@click.option("--note", help="备注（如厂商名称、联系人）")
@pass_app
def keys_add(app: AppContext, name: str, note: str | None) -> None:
    """为客户端 NAME 生成密钥（只显示这一次，请妥善转交厂商）。"""
    from cdcsync.api.auth import ApiKeyError, create_key

    with _connect(app) as conn:
        try:
            key = create_key(conn, name, note)
        except ApiKeyError as exc:
            _fail(str(exc))
        except psycopg.errors.UndefinedTable:
            _missing_table()
    click.echo(f"已为客户端 {name} 生成 API 密钥（只显示这一次，前置软件不保存明文）：")
    click.echo(key)
    click.echo("调用时在请求头中携带：Authorization: Bearer <密钥>（或 X-Api-Key: <密钥>）")


@api_keys.command("list")
@pass_app
def keys_list(app: AppContext) -> None:
    """列出客户端密钥（不含密钥本身）。"""
    from cdcsync.api.auth import list_keys

    with _connect(app) as conn:
        try:
            keys = list_keys(conn)
        except psycopg.errors.UndefinedTable:
            _missing_table()
    if not keys:
        click.echo("尚无客户端密钥（用 cdcsync api-keys add 名称 创建）。")
        return

    def t(v: object) -> str:
        return v.strftime("%Y-%m-%d %H:%M") if hasattr(v, "strftime") else "-"

    click.echo(f"{'名称':<16}{'标识':<14}{'状态':<6}{'创建时间':<18}{'最近使用':<18}备注")
    for k in keys:
        state = "已吊销" if k.revoked_at else "在用"
        click.echo(f"{k.name:<18}{k.key_id:<14}{state:<6}{t(k.created_at):<20}{t(k.last_used_at):<20}{k.note or ''}")


@api_keys.command("revoke")
@click.argument("name")
@pass_app
def keys_revoke(app: AppContext, name: str) -> None:
    """吊销客户端 NAME 的密钥（立即生效，之后的请求得到 403）。"""
    from cdcsync.api.auth import ApiKeyError, revoke_key

    with _connect(app) as conn:
        try:
            changed = revoke_key(conn, name)
        except ApiKeyError as exc:
            _fail(str(exc))
        except psycopg.errors.UndefinedTable:
            _missing_table()
    click.echo(f"已吊销客户端 {name} 的密钥。" if changed else f"客户端 {name} 的密钥此前已吊销。")


COMMANDS: list[click.Command] = [serve_cmd, api_keys]
