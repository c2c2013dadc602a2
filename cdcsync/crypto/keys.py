"""SM2 key files: standard PEM that OpenSSL 3 reads and writes.

  private  "PRIVATE KEY"  PKCS#8 PrivateKeyInfo, algorithm id-ecPublicKey (1.2.840.10045.2.1)
           with parameters sm2 (1.2.156.10197.1.301), inner SEC1 ECPrivateKey with [1] public
           key, byte for byte what `openssl genpkey -algorithm SM2` writes. "EC PRIVATE KEY"
           (SEC1) is also read.
  public   "PUBLIC KEY"   SubjectPublicKeyInfo with the same algorithm identifier.
           A "CERTIFICATE" is also read: its public key is taken (the key is pinned; the
           certificate chain is not validated here, TLS does that for the channel).

Key id (X-Key-Id): lowercase hex SM3 of the DER SubjectPublicKeyInfo. Reproduce with
  openssl pkey -pubin -in k.pub -outform DER | openssl dgst -sm3

Private-key file permissions: like OpenSSH and cdcsync.secrets, a private key that group or
others can access (any of 0o077) is refused with a message naming the file and the chmod fix.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

from cdcsync.crypto import KeyFileError
from cdcsync.crypto.der import (
    OID_EC_PUBLIC_KEY,
    OID_SM2,
    DerError,
    der_items,
    der_parse_int,
    der_parse_oid,
    der_parse_one,
    der_tlv,
    pkcs8_private_key_der,
    spki_der,
)
from cdcsync.crypto.sm2 import SM2PrivateKey, SM2PublicKey
from cdcsync.crypto.sm3 import sm3
from cdcsync.secrets import loose_mode

PrivateKey = SM2PrivateKey
PublicKey = SM2PublicKey

_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


# --------------------------------------------------------------------------- DER / PEM


def public_key_der(pub: SM2PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER."""
    return spki_der(pub.to_bytes())


def private_key_der(key: SM2PrivateKey) -> bytes:
    """PKCS#8 PrivateKeyInfo DER (same layout as OpenSSL 3)."""
    return pkcs8_private_key_der(key.d, key.public_key.to_bytes())


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    head = f"-----BEGIN {label}-----\n".encode()
    tail = f"-----END {label}-----\n".encode()
    return head + b"\n".join(lines) + b"\n" + tail


def public_key_pem(pub: SM2PublicKey) -> bytes:
    return _pem("PUBLIC KEY", public_key_der(pub))


def private_key_pem(key: SM2PrivateKey) -> bytes:
    return _pem("PRIVATE KEY", private_key_der(key))


def key_id(pub: SM2PublicKey) -> str:
    """The key id sent as X-Key-Id: hex SM3 fingerprint of the SubjectPublicKeyInfo."""
    return sm3(public_key_der(pub)).hex()


def _check_alg(alg: bytes) -> None:
    items = der_items(alg)
    oids = [der_parse_oid(c) for t, c in items if t == 0x06]
    if len(items) != 2 or oids not in ([OID_EC_PUBLIC_KEY, OID_SM2], [OID_SM2, OID_SM2]):
        found = ", ".join(oids) or "none"
        raise DerError(f"algorithm is not SM2 (expected id-ecPublicKey with curve {OID_SM2}, found {found})")


def _parse_ec_private(ec: bytes, *, need_params: bool) -> SM2PrivateKey:
    items = der_items(der_parse_one(ec, 0x30))
    if len(items) < 2 or items[0][0] != 0x02 or der_parse_int(items[0][1]) != 1 or items[1][0] != 0x04:
        raise DerError("not an ECPrivateKey structure")
    d_bytes = items[1][1]
    pub: SM2PublicKey | None = None
    has_params = False
    for tag, content in items[2:]:
        if tag == 0xA0:
            if der_parse_oid(der_parse_one(content, 0x06)) != OID_SM2:
                raise DerError(f"EC key is not on the SM2 curve ({OID_SM2})")
            has_params = True
        elif tag == 0xA1:
            bits = der_parse_one(content, 0x03)
            if not bits or bits[0] != 0:
                raise DerError("bad public key BIT STRING")
            pub = SM2PublicKey.from_bytes(bits[1:])
    if need_params and not has_params:
        raise DerError("EC PRIVATE KEY without curve parameters")
    return SM2PrivateKey(int.from_bytes(d_bytes, "big"), pub)


def _parse_spki(der: bytes) -> SM2PublicKey:
    items = der_items(der_parse_one(der, 0x30))
    if len(items) != 2 or items[0][0] != 0x30 or items[1][0] != 0x03:
        raise DerError("not a SubjectPublicKeyInfo")
    _check_alg(items[0][1])
    bits = items[1][1]
    if not bits or bits[0] != 0:
        raise DerError("bad public key BIT STRING")
    return SM2PublicKey.from_bytes(bits[1:])


def _spki_from_certificate(der: bytes) -> bytes:
    cert = der_items(der_parse_one(der, 0x30))
    if not cert or cert[0][0] != 0x30:
        raise DerError("not an X.509 certificate")
    tbs = der_items(cert[0][1])
    idx = 6 if tbs and tbs[0][0] == 0xA0 else 5  # optional [0] version shifts the fields
    if len(tbs) <= idx or tbs[idx][0] != 0x30:
        raise DerError("certificate without subjectPublicKeyInfo")
    return der_tlv(0x30, tbs[idx][1])


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    out = []
    for m in _PEM_RE.finditer(data):
        label = m.group(1).decode()
        body = m.group(2)
        if b":" in body:  # RFC 1421 headers, e.g. legacy "Proc-Type: 4,ENCRYPTED"
            raise DerError(f"encrypted legacy PEM ({label}) is not supported")
        try:
            out.append((label, base64.b64decode(b"".join(body.split()), validate=True)))
        except ValueError:
            raise DerError(f"bad base64 in PEM block {label}") from None
    return out


def parse_pem(data: bytes) -> SM2PrivateKey | SM2PublicKey:
    """The first SM2 key found in PEM text (private key, public key or certificate)."""
    blocks = _pem_blocks(data)
    if not blocks:
        raise DerError("no PEM block found (expected -----BEGIN PRIVATE KEY----- or PUBLIC KEY)")
    for label, der in blocks:
        if label == "PRIVATE KEY":
            items = der_items(der_parse_one(der, 0x30))
            if len(items) < 3 or items[0][0] != 0x02 or items[1][0] != 0x30 or items[2][0] != 0x04:
                raise DerError("not a PKCS#8 PrivateKeyInfo")
            _check_alg(items[1][1])
            return _parse_ec_private(items[2][1], need_params=False)
        if label in ("EC PRIVATE KEY", "SM2 PRIVATE KEY"):  # OpenSSL 3.0 `ec` writes the latter
            return _parse_ec_private(der, need_params=True)
        if label == "PUBLIC KEY":
            return _parse_spki(der)
        if label == "CERTIFICATE":
            return _parse_spki(_spki_from_certificate(der))
        if label == "ENCRYPTED PRIVATE KEY":
            raise DerError("password-protected private keys are not supported")
    raise DerError("no key in PEM (blocks: " + ", ".join(label for label, _ in blocks) + ")")


# --------------------------------------------------------------------------- files


def _read(path: Path, what: str) -> SM2PrivateKey | SM2PublicKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: 找不到{what}文件") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: 无法读取{what}文件（{exc.strerror}）") from None
    try:
        return parse_pem(data)
    except (DerError, ValueError) as exc:
        # The message comes from the parser and never contains key bytes.
        raise KeyFileError(f"{path}: 不是可用的 SM2 {what}（期望 PEM 格式，曲线 SM2 {OID_SM2}）：{exc}") from None


def check_private_key_permissions(path: Path) -> None:
    """Refuse a private key that group or others may access (the rule of cdcsync.secrets)."""
    try:
        mode = loose_mode(path)
    except OSError:
        return  # reported by the read that follows
    if mode is not None:
        raise KeyFileError(
            f"{path}: 私钥文件权限 {stat.S_IMODE(mode):04o} 过宽（属组或其他用户可访问），"
            f"拒绝使用；请执行 chmod 600 {path}"
        )


def load_private_key(path: str | os.PathLike[str]) -> SM2PrivateKey:
    p = Path(path)
    key = _read(p, "私钥")
    if not isinstance(key, SM2PrivateKey):
        raise KeyFileError(f"{p}: 这是公钥/证书，不是私钥（期望 -----BEGIN PRIVATE KEY-----）")
    check_private_key_permissions(p)
    return key


def load_public_key(path: str | os.PathLike[str]) -> SM2PublicKey:
    """A public key from a PUBLIC KEY or CERTIFICATE PEM file (a private key file is refused,
    so a platform's private key is never configured where its public key belongs)."""
    p = Path(path)
    key = _read(p, "公钥")
    if isinstance(key, SM2PrivateKey):
        raise KeyFileError(f"{p}: 这是私钥，此处需要公钥（-----BEGIN PUBLIC KEY-----）")
    return key


def load_any_key(path: str | os.PathLike[str]) -> SM2PrivateKey | SM2PublicKey:
    p = Path(path)
    key = _read(p, "密钥")
    if isinstance(key, SM2PrivateKey):
        check_private_key_permissions(p)
    return key


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not loosen or tighten what we promise
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_keypair(
    out_dir: str | os.PathLike[str], name: str = "hospital", *, force: bool = False
) -> tuple[Path, Path, SM2PrivateKey]:
    """Generate a key pair: `<out>/<name>.key` (PKCS#8, 0600) and `<out>/<name>.pub` (0644)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise KeyFileError(f"密钥名称 {name!r} 无效：只能包含字母、数字、点、下划线和连字符")
    out = Path(out_dir)
    key_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    if not force:
        existing = [str(p) for p in (key_path, pub_path) if p.exists()]
        if existing:
            raise KeyFileError(f"{', '.join(existing)} 已存在；如确需覆盖请加 --force（旧密钥将无法恢复）")
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = SM2PrivateKey.generate()
        _write_atomic(key_path, private_key_pem(key), 0o600)
        _write_atomic(pub_path, public_key_pem(key.public_key), 0o644)
    except OSError as exc:
        raise KeyFileError(f"{out}: 无法写入密钥文件（{exc.strerror}）") from None
    return key_path, pub_path, key
