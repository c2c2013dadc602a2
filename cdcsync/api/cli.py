"""``cdcsync serve`` (the HTTP listeners alone) and ``cdcsync api-keys add|list|scope|revoke``."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import click
import psycopg

from cdcsync.cli_context import AppContext, fail, pass_app

if TYPE_CHECKING:
    from cdcsync.api.auth import ApiKeyInfo, KeyScope


@click.command("serve")
@pass_app
def serve_cmd(app: AppContext) -> None:
    """只启动 HTTP 服务（数据操作API 8881、监控 8883、PC端web 8884），不启动同步。"""
    from cdcsync.api import ApiStartError
    from cdcsync.api.server import start_servers
    from cdcsync.settings.api import api_settings

    settings = app.settings
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        handle = start_servers(settings, started_at=time.time())
    except ApiStartError as exc:
        fail(str(exc))
    api = api_settings(settings)
    for name, port in handle.ports.items():
        cfg = getattr(api, name)
        scheme = "https" if cfg.tls else "http"
        click.echo(f"已启动 {name}：{scheme}://{cfg.host}:{port}/" + ("status.html" if name == "web" else ""))
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
        fail(f"无法连接镜像数据库：{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def _missing_table() -> NoReturn:
    fail("数据库中没有 cdcsync.api_key 表，请先执行 cdcsync db init")


def _missing_migration() -> NoReturn:
    fail("cdcsync.api_key 表缺少授权范围字段，请先执行 cdcsync db init（迁移 011_api_key_scopes.sql）")


def _expiry(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"--expires 应为日期 YYYY-MM-DD（如 2027-12-31），实际为 {value!r}")


def _table_names() -> list[str]:
    from cdcsync.spec import load_spec

    return [t.name for t in load_spec().tables]


def _show(k: ApiKeyInfo, own_org_code: str) -> None:
    def t(v: object) -> str:
        return v.strftime("%Y-%m-%d %H:%M") if hasattr(v, "strftime") else "-"

    words = k.scope.describe(own_org_code)
    click.echo(f"{k.name}（标识 {k.key_id}）：{k.state}")
    click.echo(f"  允许的表    {words['tables']}")
    click.echo(f"  允许的操作  {words['ops']}")
    click.echo(f"  医疗机构    {words['org_codes']}")
    click.echo(f"  用途        {words['apis']}")
    if "reminders" in k.scope.apis:
        click.echo(f"  提醒范围    医生：{words['doctors']}；科室：{words['depts']}")
    click.echo(f"  有效期至    {k.expires_on.isoformat() + '（含当日）' if k.expires_on else '长期'}")
    click.echo(f"  创建 {t(k.created_at)}  最近使用 {t(k.last_used_at)}" + (f"  备注 {k.note}" if k.note else ""))


def _scope_from(tables: Sequence[str], ops: Sequence[str], org_codes: Sequence[str] | None,
                apis: Sequence[str] = ("data",), doctors: Sequence[str] | None = None,
                depts: Sequence[str] | None = None) -> KeyScope:
    from cdcsync.api.auth import ApiKeyError, make_scope

    try:
        return make_scope(tables, ops, org_codes, _table_names(), apis, doctors, depts)
    except ApiKeyError as exc:
        fail(str(exc))


_TABLES_HELP = "允许写入的表，逗号分隔（如 visit,diagnosis），* 表示全部表"
_OPS_HELP = "允许的操作：upsert（新增/更新）、delete（删除），逗号分隔"
_ORG_HELP = "允许写入的医疗机构代码（可重复）；不指定则仅本机构（配置项 org_code）"
_APIS_HELP = "密钥用途：data（推送EMR数据）、reminders（监测预警提醒与处理回写），逗号分隔；默认 data"
_DOCTOR_HELP = "reminders 用途允许的医生工号（可重复）；不指定则本机构全部医生"
_DEPT_HELP = "reminders 用途允许的科室代码（可重复）；不指定则本机构全部科室"


@api_keys.command("add")
@click.argument("name")
@click.option("--tables", help=_TABLES_HELP + "（data 用途必填）")
@click.option("--ops", help=_OPS_HELP + "（data 用途必填）")
@click.option("--org-code", "org_codes", multiple=True, help=_ORG_HELP)
@click.option("--apis", default="data", show_default=True, help=_APIS_HELP)
@click.option("--doctor", "doctors", multiple=True, help=_DOCTOR_HELP)
@click.option("--dept", "depts", multiple=True, help=_DEPT_HELP)
@click.option("--expires", help="有效期截止日 YYYY-MM-DD（北京时间当日 24 时失效）；不指定则长期有效")
@click.option("--note", help="备注（如厂商名称、联系人）")
@pass_app
def keys_add(app: AppContext, name: str, tables: str | None, ops: str | None, org_codes: tuple[str, ...],
             apis: str, doctors: tuple[str, ...], depts: tuple[str, ...], expires: str | None,
             note: str | None) -> None:
    """为客户端 NAME 生成密钥（只显示这一次，请妥善转交厂商），并限定其用途、可写的表、操作与医疗机构。"""
    from cdcsync.api.auth import ApiKeyError, create_key, list_keys

    if "data" in [a.strip() for a in apis.split(",")] and not (tables and ops):
        fail("data 用途的密钥必须用 --tables 与 --ops 指定允许写入的表与操作")
    scope = _scope_from([tables or "*"], [ops or "upsert,delete"], org_codes or None, [apis],
                        doctors or None, depts or None)
    expires_on = _expiry(expires)
    with _connect(app) as conn:
        try:
            key = create_key(conn, name, note, scope, expires_on)
            info = list_keys(conn, name)[0]
        except ApiKeyError as exc:
            fail(str(exc))
        except psycopg.errors.UndefinedTable:
            _missing_table()
        except psycopg.errors.UndefinedColumn:
            _missing_migration()
    click.echo(f"已为客户端 {name} 生成 API 密钥（只显示这一次，前置软件不保存明文）：")
    click.echo(key)
    click.echo("调用时在请求头中携带：Authorization: Bearer <密钥>（或 X-Api-Key: <密钥>）")
    _show(info, app.settings.org_code)


@api_keys.command("list")
@pass_app
def keys_list(app: AppContext) -> None:
    """列出客户端密钥及其授权范围（不含密钥本身）。"""
    from cdcsync.api.auth import list_keys

    with _connect(app) as conn:
        try:
            keys = list_keys(conn)
        except psycopg.errors.UndefinedTable:
            _missing_table()
        except psycopg.errors.UndefinedColumn:
            _missing_migration()
    if not keys:
        click.echo("尚无客户端密钥（用 cdcsync api-keys add 名称 --tables 表 --ops 操作 创建）。")
        return
    for k in keys:
        _show(k, app.settings.org_code)


@api_keys.command("scope")
@click.argument("name")
@click.option("--tables", help=_TABLES_HELP)
@click.option("--ops", help=_OPS_HELP)
@click.option("--org-code", "org_codes", multiple=True, help="允许写入的医疗机构代码（可重复，替换原有设置）")
@click.option("--own-org", is_flag=True, help="恢复为仅本机构（配置项 org_code）")
@click.option("--expires", help="新的有效期截止日 YYYY-MM-DD")
@click.option("--no-expiry", is_flag=True, help="取消有效期限制")
@pass_app
def keys_scope(app: AppContext, name: str, tables: str | None, ops: str | None, org_codes: tuple[str, ...],
               own_org: bool, expires: str | None, no_expiry: bool) -> None:
    """修改客户端 NAME 的授权范围或有效期（未指定的项保持不变，立即生效）。"""
    from cdcsync.api.auth import ApiKeyError, list_keys, update_key

    if org_codes and own_org:
        fail("--org-code 与 --own-org 不能同时使用")
    if expires and no_expiry:
        fail("--expires 与 --no-expiry 不能同时使用")
    if not (tables or ops or org_codes or own_org or expires or no_expiry):
        fail("请至少指定一项要修改的内容：--tables、--ops、--org-code、--own-org、--expires 或 --no-expiry")
    with _connect(app) as conn:
        try:
            found = list_keys(conn, name)
            if not found:
                raise ApiKeyError(f"没有名为 {name!r} 的客户端密钥（用 cdcsync api-keys list 查看）")
            old = found[0].scope
            orgs: Sequence[str] | None = old.org_codes
            if org_codes:
                orgs = org_codes
            elif own_org:
                orgs = None
            scope = _scope_from([tables] if tables else old.tables, [ops] if ops else old.ops, orgs,
                                old.apis, old.doctors, old.depts)
            change: dict[str, Any] = {}
            if expires or no_expiry:
                change["expires_on"] = _expiry(expires)
            info = update_key(conn, name, scope, **change)
        except ApiKeyError as exc:
            fail(str(exc))
        except psycopg.errors.UndefinedTable:
            _missing_table()
        except psycopg.errors.UndefinedColumn:
            _missing_migration()
    click.echo(f"已修改客户端 {name} 的授权范围（立即生效）：")
    _show(info, app.settings.org_code)


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
            fail(str(exc))
        except psycopg.errors.UndefinedTable:
            _missing_table()
    click.echo(f"已吊销客户端 {name} 的密钥。" if changed else f"客户端 {name} 的密钥此前已吊销。")


COMMANDS: list[click.Command] = [serve_cmd, api_keys]
