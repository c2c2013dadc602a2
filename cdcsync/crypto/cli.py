"""`cdcsync keys`: generate and inspect SM2 key pairs (messages for hospital staff, in Chinese)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click

from cdcsync.crypto import CryptoError
from cdcsync.crypto.keys import key_id, load_any_key, write_keypair
from cdcsync.crypto.sm2 import OID_SM2, SM2PrivateKey


@click.group("keys", help="SM2 密钥管理（医院签名密钥、平台公钥）。")
def keys() -> None:
    pass


@keys.command("generate", help="生成 SM2 密钥对：DIR/NAME.key（私钥，权限 0600）和 DIR/NAME.pub（公钥）。")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="输出目录（不存在则创建，权限 0700）。",
)
@click.option("--name", default="hospital", show_default=True, help="文件名（不含扩展名）。")
@click.option("--force", is_flag=True, help="覆盖已有的密钥文件（旧私钥将无法恢复）。")
def generate(out_dir: Path, name: str, force: bool) -> None:
    try:
        key_path, pub_path, key = write_keypair(out_dir, name, force=force)
    except CryptoError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"已生成 SM2 密钥对（曲线 SM2 {OID_SM2}）：")
    click.echo(f"  私钥  {key_path}  （权限 0600，请妥善保管，切勿外传）")
    click.echo(f"  公钥  {pub_path}  （提交给国家/省级平台登记）")
    click.echo(f"  密钥标识（X-Key-Id）  {key_id(key.public_key)}")


@keys.command("show", help="显示密钥文件的类型与密钥标识（不显示私钥内容）。")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def show(file: Path) -> None:
    try:
        key = load_any_key(file)
    except CryptoError as exc:
        raise click.ClickException(str(exc)) from None
    pub = key.public_key if isinstance(key, SM2PrivateKey) else key
    click.echo(f"文件      {file}")
    click.echo(f"类型      {'SM2 私钥（PKCS#8）' if isinstance(key, SM2PrivateKey) else 'SM2 公钥'}")
    if isinstance(key, SM2PrivateKey):
        click.echo(f"权限      {stat.S_IMODE(os.stat(file).st_mode):04o}")
    click.echo(f"曲线      SM2 ({OID_SM2})")
    click.echo(f"密钥标识  {key_id(pub)}")
    click.echo(f"公钥      {pub.to_bytes().hex()}")


@keys.command("tls-selfsigned", help="为 HTTP 服务（8881/8883/8884）生成首次使用的自签名 TLS 证书："
                                     "DIR/server.pem、DIR/server.key（权限 0600）与 DIR/ca.pem（交给客户端信任）。")
@click.option("--host", "hosts", required=True, multiple=True,
              help="客户端访问前置机所用的主机名或 IP 地址（写入证书的 SAN，可重复）。")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="输出目录（不存在则创建，权限 0700）。")
@click.option("--force", is_flag=True, help="覆盖已有的证书文件（已信任旧证书的客户端需重新配置）。")
def tls_selfsigned(hosts: tuple[str, ...], out_dir: Path, force: bool) -> None:
    from cdcsync.crypto.tls import write_self_signed

    try:
        files = write_self_signed(out_dir, list(hosts), organization="cdcsync 前置机", force=force)
    except CryptoError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"已生成自签名 TLS 证书（ECDSA P-256，适用于：{'、'.join(hosts)}）：")
    click.echo(f"  证书  {files.cert}  → 配置 api.<服务>.tls_cert_file")
    click.echo(f"  私钥  {files.key}  （权限 0600）→ 配置 api.<服务>.tls_key_file")
    click.echo(f"  CA    {files.ca_cert}  → 交给 HIS 厂商/国家平台作为信任的 CA 证书")
    click.echo("正式运行请改用医院 CA 签发的证书（见 README「HTTP 服务的 TLS」）。")
