"""``cdcsync config history | rollback``: the configuration packages the national platform pushed."""

from __future__ import annotations

import getpass
import json
from typing import Any

import click
import psycopg

from cdcsync.cli_context import AppContext, fail, pass_app
from cdcsync.control import store
from cdcsync.control.package import PackageError
from cdcsync.control.service import rollback

_STATE = {"received": "已接收", "verified": "已验证", "staged": "已暂存", "checked": "已检查", "applied": "已生效",
          "acknowledged": "已确认", "refused": "已拒收", "rolled_back": "已回退", "reapplied": "回退后重新生效"}


@click.group("config")
def config_group() -> None:
    """配置更新：国家平台下发的配置包（值域代码、规则包、上级平台地址、时效要求）。"""


def _last(events: list[dict[str, Any]]) -> dict[str, Any]:
    return events[-1] if events else {}


@config_group.command("history")
@click.option("--kind", type=click.Choice(["value_domains", "upstream", "timeliness", "rules"]), help="只看该类别")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出（含每一步的记录）")
@pass_app
def history_cmd(app: AppContext, kind: str | None, limit: int, as_json: bool) -> None:
    """列出配置包：记录号、类别、版本、状态、签名密钥、生效时间。"""
    try:
        with psycopg.connect(app.settings.database.conninfo(), autocommit=True) as conn:
            rows = store.history(conn, limit, kind)
    except psycopg.Error as exc:
        fail(f"无法读取配置包记录：{str(exc).strip().splitlines()[0]}")
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, default=str, indent=1))
        return
    if not rows:
        click.echo("尚未收到配置包")
        return
    click.echo("记录号  类别           版本   配置包标识                 状态          签名密钥           生效时间")
    for r in rows:
        last = _last(r["events"])
        applied = next((e["at"] for e in r["events"] if e["state"] == "applied"), None)
        state = _STATE.get(last.get("state", ""), last.get("state", ""))
        if last.get("reason") and last.get("state") == "refused":
            state += f"（{last['reason']}）"
        click.echo(f"{r['id']:<7} {r['kind'] or '-':<14} {r['version'] or '-':<6} {(r['package_id'] or '-')[:26]:<26} "
                   f"{state:<12} {(r['signer_key_id'] or '-')[:16]:<18} "
                   f"{applied.isoformat(timespec='seconds') if applied else '-'}")
        if last.get("state") == "refused":
            click.echo(f"        原因：{last.get('message', '')}")


@config_group.command("rollback")
@click.argument("ident")
@pass_app
def rollback_cmd(app: AppContext, ident: str) -> None:
    """回退：IDENT（记录号或配置包标识）须为其类别当前生效的版本，恢复到此前生效的版本。"""
    try:
        result = rollback(app.settings, ident, f"local:{getpass.getuser()}")
    except PackageError as exc:
        fail(str(exc))
    except psycopg.Error as exc:
        fail(f"回退失败：{str(exc).strip().splitlines()[0]}")
    now = result["now_in_force"]
    click.echo(f"已回退 {result['kind']} 记录 {result['rolled_back']}；现在生效："
               f"{'记录 ' + str(now) if now else '随软件发布的版本'}（运行中的服务数秒内自动加载）")


COMMANDS = [config_group]


@click.group("upgrade")
def upgrade_group() -> None:
    """版本管理：检查国家平台发布的新版本、下载并验证安装包、安装新版本与回退。"""


@upgrade_group.command("check")
@pass_app
def upgrade_check(app: AppContext) -> None:
    """获取并验签版本清单：显示 当前版本 / 可用新版本 / 更新说明。有新版本时退出码为 0，已是最新为 3。"""
    from cdcsync.control.release import ManifestError
    from cdcsync.control.upgrade import UpgradeError, check

    try:
        r = check(app.settings)
    except (UpgradeError, ManifestError) as exc:
        fail(str(exc))
    except psycopg.Error as exc:
        fail(f"无法记录检查结果：{str(exc).strip().splitlines()[0]}")
    click.echo(f"当前版本：{r.current}")
    click.echo(f"可用新版本：{r.manifest.version if r.newer else '无（已是最新）'}"
               f"（平台发布于 {r.manifest.published_at}）")
    if r.newer:
        if not r.supported:
            click.echo(f"注意：当前版本低于可直接升级的最低版本 {r.manifest.min_supported_version}，须先升级到中间版本")
        if r.manifest.irreversible_migrations:
            click.echo("注意：此版本含不可回退的数据库迁移，升级前须有经过验证的备份")
        click.echo("更新说明：")
        for line in r.manifest.notes.splitlines():
            click.echo(f"  {line}")
    raise SystemExit(0 if r.newer else 3)


@upgrade_group.command("download")
@pass_app
def upgrade_download(app: AppContext) -> None:
    """下载最新版本的安装包及其已签名的依赖包，并在使用前核对大小、SM3 摘要与平台签名（不安装）。"""
    from cdcsync.control.bundle import BundleError
    from cdcsync.control.release import ManifestError
    from cdcsync.control.upgrade import UpgradeError, download

    try:
        path = download(app.settings)
    except (UpgradeError, ManifestError, BundleError) as exc:
        fail(str(exc))
    except psycopg.Error as exc:
        fail(f"无法记录下载结果：{str(exc).strip().splitlines()[0]}")
    click.echo(f"已下载并验证：{path}")


@upgrade_group.command("apply")
@click.option("--version", "version", help="要安装的已下载版本（默认：已下载的最新版本）")
@pass_app
def upgrade_apply(app: AppContext, version: str | None) -> None:
    """安装已下载的新版本：再次核对安装包，离线安装到独立环境，执行数据库迁移，切换当前版本，
    重启服务并等待健康检查；未能正常运行时自动回退到原版本。成功退出码 0，已自动回退为 1。"""
    from cdcsync.control.apply import apply
    from cdcsync.control.bundle import BundleError
    from cdcsync.control.release import ManifestError
    from cdcsync.control.releases import InstallError
    from cdcsync.control.upgrade import UpgradeError

    try:
        out = apply(app.settings, app.config_path, version, say=click.echo)
    except (UpgradeError, ManifestError, InstallError, BundleError) as exc:
        fail(str(exc))
    except psycopg.Error as exc:
        fail(f"无法记录升级过程：{str(exc).strip().splitlines()[0]}")
    click.echo(out.message)
    raise SystemExit(0 if out.ok else 1)


@upgrade_group.command("rollback")
@pass_app
def upgrade_rollback(app: AppContext) -> None:
    """回退到上一版本：切换当前版本链接，重启服务并等待健康检查。含不可回退迁移的版本须有升级前的已验证备份。"""
    from cdcsync.control.apply import rollback
    from cdcsync.control.releases import InstallError
    from cdcsync.control.upgrade import UpgradeError

    try:
        out = rollback(app.settings, say=click.echo)
    except (UpgradeError, InstallError) as exc:
        fail(str(exc))
    except psycopg.Error as exc:
        fail(f"无法记录回退过程：{str(exc).strip().splitlines()[0]}")
    click.echo(out.message)
    raise SystemExit(0 if out.ok else 1)


@upgrade_group.command("history")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@pass_app
def upgrade_history(app: AppContext, limit: int) -> None:
    """版本检查、下载、安装与回退记录。"""
    from cdcsync.control.upgrade import history

    try:
        rows = history(app.settings, limit)
    except psycopg.Error as exc:
        fail(f"无法读取版本管理记录：{str(exc).strip().splitlines()[0]}")
    for r in rows:
        click.echo(f"{r['at'].isoformat(timespec='seconds')}  {r['action']:<8} {r['outcome']:<11} "
                   f"当前 {r['current_version']}  可用 {r['available_version'] or '-'}  {r['message']}")


COMMANDS.append(upgrade_group)
