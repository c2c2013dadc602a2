"""``cdcsync upstream-sim``: run the reference platform (messages for hospital staff, in Chinese)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import click

from cdcsync.crypto import CryptoError
from cdcsync.crypto.keys import key_id, load_private_key, write_keypair
from cdcsync.crypto.sm2 import SM2PrivateKey
from cdcsync.net import is_loopback
from cdcsync.upstream_sim.app import Faults, SimState, TrustedKeys, create_app
from cdcsync.upstream_sim.certs import HospitalCertPolicy
from cdcsync.upstream_sim.store import CountingStore, SqliteStore, Store
from cdcsync.upstream_sim.tls import TlsFiles, ensure_self_signed

log = logging.getLogger("cdcsync.upstream_sim")


@dataclass(frozen=True)
class DataDir:
    """What the platform keeps in ``--data-dir``."""

    root: Path

    @property
    def platform_key(self) -> Path:
        return self.root / "platform.key"

    @property
    def platform_pub(self) -> Path:
        return self.root / "platform.pub"

    @property
    def trusted(self) -> Path:
        return self.root / "trusted"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def received(self) -> Path:
        return self.root / "received.sqlite"

    @property
    def hospitals(self) -> Path:
        return self.root / "hospitals.sqlite"

    @property
    def ca_bundle(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def releases(self) -> Path:
        return self.root / "releases"


def prepare_data_dir(
    root: Path, *, tls: bool = True, platform_key: Path | None = None
) -> tuple[SM2PrivateKey, TlsFiles | None]:
    """Create the directory, the platform key pair and TLS material when absent (idempotent)."""
    dd = DataDir(root)
    root.mkdir(parents=True, exist_ok=True)
    dd.trusted.mkdir(exist_ok=True)
    if platform_key is None:
        platform_key = dd.platform_key
        if not platform_key.exists():
            write_keypair(root, "platform")
    key = load_private_key(platform_key)
    return key, (ensure_self_signed(dd.tls) if tls else None)


def parse_listen(value: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", value)
    if not m or not 0 <= int(m.group(2)) <= 65535:
        raise click.BadParameter(f"应为 主机:端口（例如 127.0.0.1:8888），实际为 {value!r}", param_hint="--listen")
    return m.group(1), int(m.group(2))




def _parse_outage(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)", value)
    if not m:
        raise click.BadParameter(f"应为 开始秒数:持续秒数（例如 30:60），实际为 {value!r}", param_hint="--outage")
    return float(m.group(1)), float(m.group(2))


def _parse_fields(values: tuple[str, ...]) -> frozenset[tuple[str, str]]:
    out = set()
    for v in values:
        m = re.fullmatch(r"([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)", v)
        if not m:
            raise click.BadParameter(f"应为 表名.字段名（例如 diagnosis.icd10_code），实际为 {v!r}",
                                     param_hint="--reject-field")
        out.add((m.group(1), m.group(2)))
    return frozenset(out)


def _parse_rows(values: tuple[str, ...]) -> frozenset[tuple[str, str, str]]:
    out = set()
    for v in values:
        m = re.fullmatch(r"([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)=(.*)", v, re.S)
        if not m:
            raise click.BadParameter(f"应为 表名.字段名=值（例如 diagnosis.record_id=D0042），实际为 {v!r}",
                                     param_hint="--refuse-row")
        out.add((m.group(1), m.group(2), m.group(3)))
    return frozenset(out)


def _parse_announce(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not re.fullmatch(r"[a-z_]{1,40}", key):
            raise click.BadParameter(f"应为 键=值（例如 software=0.9.0），实际为 {v!r}", param_hint="--announce")
        out[key] = value
    return out


@click.group("upstream-sim", invoke_without_command=True)
@click.option("--listen", default="127.0.0.1:8888", show_default=True, help="监听地址 主机:端口")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="数据目录：平台密钥、TLS 证书、trusted/ 医院公钥、received.sqlite")
@click.option("--insecure-http", is_flag=True, help="使用明文 HTTP（仅限本机回环地址，用于本地调试）")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="TLS 证书（PEM）；不指定则在数据目录 tls/ 下自动生成自签名证书")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="TLS 私钥（PEM）")
@click.option("--platform-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="平台 SM2 私钥；不指定则使用（必要时生成）数据目录下的 platform.key")
@click.option("--hospital-pub", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="信任的医院 SM2 公钥（可多次指定）；数据目录 trusted/*.pub 也会被信任")
@click.option("--ca-cert", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="签发医院证书的 CA 证书（PEM，可多次指定）；指定后每个请求须携带有效的医院证书（X-Certificate）")
@click.option("--allow-bare-keys", is_flag=True,
              help="与 --ca-cert 同用：未携带证书、但公钥已登记（trusted/）的医院仍可上报（过渡期）")
@click.option("--store", type=click.Choice(["sqlite", "none"]), default="sqlite", show_default=True,
              help="sqlite：保存到 received.sqlite；none：只计数（性能测试用）")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="按此比例随机返回 503（故障注入）")
@click.option("--latency-ms", type=click.IntRange(0, 600_000), default=0, show_default=True,
              help="每个请求额外延迟的毫秒数")
@click.option("--outage", metavar="START:SECONDS", help="进程启动后第 START 秒起停机 SECONDS 秒（返回 503）")
@click.option("--reject-table", multiple=True, metavar="TABLE", help="拒收该表的全部事件（可多次指定）")
@click.option("--reject-field", multiple=True, metavar="TABLE.FIELD",
              help="拒收该表中该字段非空的事件（可多次指定）")
@click.option("--refuse-event-id", multiple=True, metavar="ID",
              help="含有该事件的整批始终以 --refuse-status 拒收（可多次指定；演练“毒批次”）")
@click.option("--refuse-row", multiple=True, metavar="TABLE.FIELD=VALUE",
              help="含有该表该字段等于该值（按文本比较）的事件的整批始终拒收（可多次指定）")
@click.option("--refuse-status", type=click.Choice(["400", "413", "422"]), default="422", show_default=True,
              help="整批拒收时返回的 HTTP 状态码")
@click.option("--tamper-replies", type=click.IntRange(0), default=0,
              help="篡改接下来 N 个应答的内容（签名随之失效），用于演练医院端的应答验签")
@click.option("--window-s", type=click.FloatRange(1), default=300.0, show_default=True,
              help="请求时间戳允许的偏差（秒）")
@click.option("--announce", multiple=True, metavar="KEY=VALUE",
              help="在心跳应答中公布的最新版本，如 software=0.9.0、mapping_version=2026.11（可多次指定）")
@click.pass_context
def upstream_sim_command(
    ctx: click.Context, listen: str, data_dir: Path | None, insecure_http: bool, tls_cert: Path | None,
    tls_key: Path | None,
    platform_key: Path | None, hospital_pub: tuple[Path, ...], ca_cert: tuple[Path, ...], allow_bare_keys: bool,
    store: str, fail_rate: float, latency_ms: int,
    outage: str | None, reject_table: tuple[str, ...], reject_field: tuple[str, ...], refuse_event_id: tuple[str, ...],
    refuse_row: tuple[str, ...], refuse_status: str, tamper_replies: int, window_s: float,
    announce: tuple[str, ...] = (),
) -> None:
    """参考平台（国家/省级平台模拟）：验签、解密、去重、存储并签名应答；push-config 下发配置包。"""
    import uvicorn

    if ctx.invoked_subcommand is not None:
        return
    if data_dir is None:
        raise click.UsageError("缺少 --data-dir（平台数据目录）")

    host, port = parse_listen(listen)
    if insecure_http and not is_loopback(host):
        raise click.BadParameter("明文 HTTP 只允许监听本机回环地址（127.0.0.1、::1、localhost）", param_hint="--listen")
    if (tls_cert is None) != (tls_key is None):
        raise click.BadParameter("--tls-cert 与 --tls-key 须同时指定", param_hint="--tls-cert")
    if allow_bare_keys and not ca_cert:
        raise click.BadParameter("--allow-bare-keys 只能与 --ca-cert 同时使用", param_hint="--allow-bare-keys")
    faults = Faults(fail_rate=fail_rate, latency_ms=latency_ms, outage=_parse_outage(outage),
                    reject_tables=frozenset(reject_table), reject_fields=_parse_fields(reject_field),
                    tamper_replies=tamper_replies, refuse_event_ids=frozenset(refuse_event_id),
                    refuse_rows=_parse_rows(refuse_row), refuse_status=int(refuse_status))
    try:
        key, tls = prepare_data_dir(data_dir, tls=not insecure_http and tls_cert is None, platform_key=platform_key)
        trusted = TrustedKeys(hospital_pub, DataDir(data_dir).trusted)
        certs = HospitalCertPolicy.from_files(ca_cert, allow_bare_keys=allow_bare_keys) if ca_cert else None
    except CryptoError as exc:
        raise click.ClickException(str(exc)) from None
    st: Store = SqliteStore(DataDir(data_dir).received) if store == "sqlite" else CountingStore()
    state = SimState(platform_key=key, trusted=trusted, store=st, faults=faults, window_s=window_s, certs=certs,
                     hospitals_path=DataDir(data_dir).hospitals, announced=_parse_announce(announce),
                     releases_dir=DataDir(data_dir).releases)
    certfile = keyfile = None
    if not insecure_http:
        certfile, keyfile = (tls_cert, tls_key) if tls_cert else (tls.cert, tls.key) if tls else (None, None)
    scheme = "http" if insecure_http else "https"
    shown = f"[{host}]" if ":" in host else host
    pub_file = DataDir(data_dir).platform_pub if platform_key is None else "（外部指定）"
    click.echo(f"参考平台启动：{scheme}://{shown}:{port}  平台公钥 {pub_file}"
               f"  密钥标识 {key_id(key.public_key)[:16]}…  已信任医院公钥 {len(trusted)} 个", err=True)
    if certs is not None:
        click.echo(f"医院证书：须由 {len(certs.ca_certs)} 个 CA 证书之一签发"
                   + ("（过渡期：已登记公钥无证书亦可）" if allow_bare_keys else ""), err=True)
    if tls is not None:
        click.echo(f"TLS CA 证书（医院端 ca_bundle）：{tls.ca_cert}", err=True)
    try:
        uvicorn.run(create_app(state), host=host, port=port, ssl_certfile=certfile and str(certfile),
                    ssl_keyfile=keyfile and str(keyfile), access_log=False, log_level="warning",
                    timeout_graceful_shutdown=5)
    finally:
        st.close()


@upstream_sim_command.command("push-config")
@click.option("--to", "to_url", required=True, help="前置机配置更新地址，如 https://前置机:8882")
@click.option("--kind", required=True, type=click.Choice(["value_domains", "upstream", "timeliness", "rules"]))
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="平台数据目录（用其中的 platform.key 签名）")
@click.option("--org", "org_code", required=True, help="目标医疗机构代码")
@click.option("--version", "version", required=True, type=click.IntRange(1), help="该类别配置的版本号（须递增）")
@click.option("--package-id", help="配置包标识（默认随机生成）")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="前置机 TLS 证书的 CA（PEM）")
@click.option("--hospital-pub", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="医院 SM2 公钥：用于验证前置机的签名应答")
@click.option("--gzip", "compressed", is_flag=True, help="gzip 压缩请求体")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def push_config_command(to_url: str, kind: str, data_dir: Path, org_code: str, version: int, package_id: str | None,
                        ca_bundle: Path | None, hospital_pub: Path | None, compressed: bool, file: Path) -> None:
    """签名并下发一个配置包；输出前置机的签名应答（已生效退出码 0，否则 1）。"""
    import json
    import sys

    from cdcsync.crypto.keys import load_public_key
    from cdcsync.upstream_sim.push import build_package, payload_from_file, send

    try:
        key, _ = prepare_data_dir(data_dir, tls=False)
        payload = payload_from_file(kind, file)
        pkg = build_package(payload, platform_key=key, kind=kind, version=version, org_code=org_code,
                            package_id=package_id)
        pub = load_public_key(hospital_pub) if hospital_pub else None
        result = send(to_url, pkg.to_json(), ca_bundle=ca_bundle, hospital_pub=pub, compressed=compressed)
    except (CryptoError, ValueError, OSError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    click.echo(json.dumps({"http_status": result.http_status, "signature_verified": result.verified,
                           **result.reply}, ensure_ascii=False, indent=1))
    sys.exit(0 if result.reply.get("outcome") == "acknowledged" else 1)


@upstream_sim_command.command("publish-release")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="平台数据目录（用其中的 platform.key 签名；发布到 releases/）")
@click.option("--notes", "notes_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="更新说明（UTF-8 文本文件）")
@click.option("--version", "version", help="版本号（默认取自 wheel 文件名）")
@click.option("--min-supported", default="0.0.0", show_default=True, help="可直接升级到此版本的最低版本")
@click.option("--irreversible", is_flag=True, help="此版本含不可回退的数据库迁移")
@click.option("--dependency", "dependencies", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="依赖包（.whl，可重复）：连同大小与 SM3 摘要签入版本清单（format 2），一并提供下载")
@click.argument("wheel", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def publish_release_command(data_dir: Path, notes_file: Path, version: str | None, min_supported: str,
                            irreversible: bool, dependencies: tuple[Path, ...], wheel: Path) -> None:
    """发布新版本：签名版本清单（版本、大小、SM3 摘要、更新说明、依赖包），运行中的参考平台随即提供下载。"""
    from cdcsync.control.release import ManifestError
    from cdcsync.upstream_sim.releases import publish_release

    try:
        key, _ = prepare_data_dir(data_dir, tls=False)
        m = publish_release(DataDir(data_dir).releases, wheel, notes=notes_file.read_text(encoding="utf-8"),
                            platform_key=key, version=version, min_supported_version=min_supported,
                            irreversible_migrations=irreversible, dependencies=dependencies)
    except (CryptoError, ManifestError, OSError, IndexError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    deps = f"，依赖包 {len(m.dependencies)} 个" if m.dependencies else ""
    click.echo(f"已发布 {m.version}：{m.wheel}（{m.size} 字节，SM3 {m.sm3[:16]}…）{deps}")
