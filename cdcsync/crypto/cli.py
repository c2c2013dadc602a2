"""`cdcsync keys`: generate and inspect SM2 key pairs (messages for hospital staff, in Chinese)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click

from cdcsync.crypto import CryptoError
from cdcsync.crypto.der import OID_SM2
from cdcsync.crypto.keys import key_id, load_any_key, write_keypair
from cdcsync.crypto.sm2 import SM2PrivateKey


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


@keys.command(
    "csr",
    help="为医院 SM2 私钥生成证书申请（PKCS#10，SM2-with-SM3 签名），提交给 CA 签发医院证书。"
    "主题：C=CN, O=医院名称, CN=医院名称, organizationIdentifier=机构代码。",
)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="医院 SM2 私钥（PKCS#8 PEM，权限 0600）。")
@click.option("--org-code", required=True, help="医疗机构代码（与上报请求头 X-Org-Code 相同）。")
@click.option("--name", required=True, help="医院名称（证书主题中的 O 与 CN）。")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="输出的证书申请文件（PEM）。")
@click.option("--sm2-id", type=click.Choice(["empty", "1234567812345678"]), default="empty", show_default=True,
              help="申请签名所用的 SM2 用户 ID：empty 为 OpenSSL 3 命令行的默认（openssl req -verify 直接通过）；"
              "1234567812345678 为 GB/T 35276 的默认 ID（CA 按国密标准验证时选用）。")
@click.option("--force", is_flag=True, help="覆盖已有的输出文件。")
def csr_cmd(key_file: Path, org_code: str, name: str, out_file: Path, sm2_id: str, force: bool) -> None:
    from cdcsync.crypto.keys import load_private_key
    from cdcsync.crypto.x509 import ORG_CODE_RE, build_csr, csr_pem

    name = name.strip()
    if not 0 < len(name) <= 64:
        raise click.BadParameter("医院名称应为 1-64 个字符", param_hint="--name")
    if not ORG_CODE_RE.fullmatch(org_code):
        raise click.BadParameter(f"机构代码应为 1-64 位字母、数字或连字符，实际为 {org_code!r}",
                                 param_hint="--org-code")
    if out_file.exists() and not force:
        raise click.ClickException(f"{out_file} 已存在；如确需覆盖请加 --force")
    try:
        key = load_private_key(key_file)
        der = build_csr(key, org_code=org_code, name=name, uid=b"" if sm2_id == "empty" else sm2_id.encode())
        out_file.write_bytes(csr_pem(der))
    except CryptoError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{out_file}: 无法写入证书申请（{exc.strerror}）") from None
    click.echo(f"已生成证书申请 {out_file}")
    click.echo(f"  主题      C=CN, O={name}, CN={name}, organizationIdentifier={org_code}")
    click.echo(f"  密钥标识  {key_id(key.public_key)}")
    check = f"openssl req -in {out_file} -verify -noout"
    if sm2_id != "empty":
        check += " -vfyopt distid:1234567812345678"
    click.echo(f"  自检命令  {check}")
    click.echo("请将此文件提交给 CA；取得证书（PEM）后在配置中设置 hospital_certificate。")
