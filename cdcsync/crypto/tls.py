"""Self-signed TLS material: a throw-away CA that signs one server certificate.

Used by ``cdcsync keys tls-selfsigned`` (the listeners 8881/8883/8884 at a first start, before the
hospital's CA has issued a certificate) and by the reference platform (``upstream_sim``).

A CA plus a leaf rather than one self-signed leaf, because strict X.509 verification (Python
3.13+, OpenSSL 3) refuses a leaf used as its own trust anchor. The CA's private key is never
written: it signs the one server certificate and is gone, so ``ca.pem`` can be handed to every
client as a trust anchor without it ever vouching for anything else.

ECDSA P-256 (``cryptography``): browsers, curl, Java and .NET HIS clients all accept it; the SM2
envelope inside the upstream channel carries the national-crypto guarantees independently.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cdcsync.crypto import KeyFileError
from cdcsync.crypto.keys import _write_atomic

VALID_DAYS = 825  # the longest validity browsers accept for a server certificate


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


def tls_files(directory: Path) -> TlsFiles:
    return TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")


def _name(organization: str, cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _usage(*, sign: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def write_self_signed(directory: Path, hosts: list[str], *, organization: str = "cdcsync",
                      force: bool = False, days: int = VALID_DAYS) -> TlsFiles:
    """Write ``directory/{ca.pem, server.pem, server.key (0600)}`` for ``hosts`` (names or IPs).

    Refuses to overwrite existing files unless ``force``: a replaced certificate breaks every
    client that pinned the old CA.
    """
    if not hosts:
        raise KeyFileError("至少需要一个主机名或 IP 地址（--host）")
    files = tls_files(directory)
    existing = [str(p) for p in (files.ca_cert, files.cert, files.key) if p.exists()]
    if existing and not force:
        raise KeyFileError(f"{', '.join(existing)} 已存在；如确需覆盖请加 --force（已信任旧证书的客户端需重新配置）")
    names = [_general_name(h) for h in hosts]
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(organization, f"{organization} 自签名 CA（{hosts[0]}）"[:64])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(sign=False, cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name(organization, hosts[0][:64])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True, cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomic(files.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()), 0o600)
        _write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write_atomic(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as exc:
        raise KeyFileError(f"{directory}: 无法写入证书文件（{exc.strerror}）") from None
    return files


def default_hosts() -> list[str]:
    return ["localhost", "127.0.0.1", "::1"]


__all__ = ["TlsFiles", "default_hosts", "tls_files", "write_self_signed"]
