"""``cdcsync sso add-his|list|revoke``: the per-HIS secrets of single sign-on (docs/sso.md)."""

from __future__ import annotations

from pathlib import Path

import click

from cdcsync.cli_context import AppContext, fail, pass_app
from cdcsync.workbench.sso import HisRegistry


def _registry(app: AppContext) -> HisRegistry:
    s = app.settings
    return HisRegistry(s.workbench.secrets_dir(s.state_dir))


@click.group("sso")
def sso() -> None:
    """工作台（8884）单点登录：每个院内系统（HIS）一个签名密钥。"""


@sso.command("add-his")
@click.argument("name")
@click.option("--sm2-public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="院内系统以 SM2 签名票据时：其 SM2 公钥（PEM），不生成共享密钥")
@pass_app
def add_his(app: AppContext, name: str, sm2_public_key: Path | None) -> None:
    """为院内系统 NAME 生成 HMAC-SM3 签名密钥（文件权限 600），或登记其 SM2 公钥。"""
    try:
        path = _registry(app).add_sm2(name, sm2_public_key) if sm2_public_key else _registry(app).add(name)
    except ValueError as exc:
        fail(str(exc))
    if sm2_public_key:
        click.echo(f"已登记院内系统 {name} 的 SM2 公钥：{path}。票据格式见 docs/sso.md（alg: SM2-SM3）。")
        return
    click.echo(f"已为院内系统 {name} 生成单点登录密钥：{path}（权限 600）。")
    click.echo("请通过安全途径把该文件的内容交给 HIS 厂商；票据格式见 docs/sso.md。")


@sso.command("list")
@pass_app
def list_his(app: AppContext) -> None:
    """列出已登记的院内系统（不显示密钥）。"""
    names = _registry(app).names()
    if not names:
        click.echo("尚未登记任何院内系统（cdcsync sso add-his NAME）。")
    for name, since in names:
        click.echo(f"{name}\t密钥生成于 {since:%Y-%m-%d %H:%M} UTC")


@sso.command("revoke")
@click.argument("name")
@pass_app
def revoke_his(app: AppContext, name: str) -> None:
    """吊销院内系统 NAME 的密钥：其后该系统签发的票据一律拒绝（已建立的会话到闲置超时为止）。"""
    try:
        moved = _registry(app).revoke(name)
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"已吊销院内系统 {name} 的单点登录密钥（文件已改名为 {moved.name}）。")


COMMANDS: list[click.Command] = [sso]
