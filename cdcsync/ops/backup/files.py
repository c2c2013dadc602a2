"""The archive of what is not in the database: the configuration file, local code tables and
value domains, rule packs and other ``backup.extra_paths``, certificates and keys.

A file only its owner may read (mode 0600: private keys, tokens, password files) is a secret:
secrets go into a separate tar encrypted with SM4-GCM under ``backup.key_file``, or are left out
(``backup.include_secrets: false``; a secret with no key file configured is refused rather than
written in clear). Paths are kept absolute inside the archives (without the leading ``/``) so a
restore can show where each file came from; a restore extracts under a directory of your choice.
"""

from __future__ import annotations

import io
import os
import secrets
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdcsync.crypto import sm4
from cdcsync.ops.backup.catalog import BackupError
from cdcsync.secrets import loose_mode

if TYPE_CHECKING:
    from cdcsync.config import Settings

FILES = "files.tar.gz"
SECRETS = "secrets.tar.sm4"
MAGIC = b"CDCSYNC-BACKUP-SECRETS-1\n"


def read_backup_key(path: Path) -> bytes:
    """The 16-byte SM4 key: 32 hex digits in a file only its owner may read."""
    from cdcsync.secrets import read_secret

    text = read_secret(path)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != sm4.KEY_SIZE:
        raise BackupError(f"{path}: 备份密钥应为 32 位十六进制数字（16 字节 SM4 密钥）")
    return key


def write_backup_key(path: Path) -> None:
    if path.exists():
        raise BackupError(f"{path}: 文件已存在，不会覆盖（旧备份需要原密钥才能解密）")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secrets.token_bytes(sm4.KEY_SIZE).hex() + "\n")


def encrypt_secrets(key: bytes, backup_id: str, data: bytes) -> bytes:
    nonce = secrets.token_bytes(sm4.NONCE_SIZE)
    return MAGIC + nonce + sm4.encrypt_gcm(key, nonce, data, aad=MAGIC + backup_id.encode())


def decrypt_secrets(key: bytes, backup_id: str, blob: bytes) -> bytes:
    if not blob.startswith(MAGIC):
        raise BackupError(f"{SECRETS}: 不是 cdcsync 备份的加密文件")
    body = blob[len(MAGIC):]
    nonce, ct = body[:sm4.NONCE_SIZE], body[sm4.NONCE_SIZE:]
    return sm4.decrypt_gcm(key, nonce, ct, aad=MAGIC + backup_id.encode())


def configured_paths(settings: Settings, config_path: Path | None) -> list[Path]:
    """Every file or directory the configuration names, plus ``backup.extra_paths``."""
    paths: list[Path | None] = [config_path, settings.mappings_dir, settings.database.password_file]
    for dest in settings.destinations:
        for attr in ("hospital_key", "hospital_certificate", "platform_public_key", "platform_ca_file",
                     "ca_bundle"):
            paths.append(getattr(dest, attr, None))
        paths.extend(getattr(dest, "platform_certificates", []) or [])
    api = settings.api
    paths += [api.monitor_token_file, api.database.password_file if api.database else None]
    for listener in (api.data, api.monitor, api.web):
        paths += [listener.tls_cert_file, listener.tls_key_file, listener.tls_client_ca_file]
    paths += list(settings.backup.extra_paths)
    seen: dict[Path, None] = {}
    for p in paths:
        if p is not None:
            seen.setdefault(Path(os.path.abspath(p)), None)
    return list(seen)


def _walk(paths: Iterable[Path]) -> Iterable[Path]:
    for p in paths:
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    yield Path(root) / f
        elif p.is_file():
            yield p


def is_secret(path: Path) -> bool:
    return loose_mode(path) is None


def archive_files(settings: Settings, config_path: Path | None, out: Path, backup_id: str) -> dict[str, Any]:
    """Write ``files.tar.gz`` (and ``secrets.tar.sm4``); return what was archived and left out."""
    public: list[Path] = []
    private: list[Path] = []
    missing = [str(p) for p in configured_paths(settings, config_path) if not p.exists()]
    for f in _walk(configured_paths(settings, config_path)):
        (private if is_secret(f) else public).append(f)
    with tarfile.open(out / FILES, "w:gz", compresslevel=6) as tar:
        for f in public:
            tar.add(f, arcname=str(f).lstrip("/"), recursive=False)
    cfg = settings.backup
    result: dict[str, Any] = {"files": [str(f) for f in public], "secrets": [str(f) for f in private],
                              "missing": missing, "secrets_mode": "none"}
    if not private:
        return result
    if not cfg.include_secrets:
        result["secrets_mode"] = "excluded"
        return result
    if cfg.key_file is None:
        raise BackupError("有私钥/口令文件需要备份，但未配置 backup.key_file（SM4 备份密钥）：请执行 cdcsync backup "
                          "keygen 生成并在配置中指定，或设置 backup.include_secrets: false 不备份私钥")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in private:
            tar.add(f, arcname=str(f).lstrip("/"), recursive=False)
    (out / SECRETS).write_bytes(encrypt_secrets(read_backup_key(cfg.key_file), backup_id, buf.getvalue()))
    os.chmod(out / SECRETS, 0o600)
    result["secrets_mode"] = "encrypted"
    return result


def extract_files(backup_path: Path, backup_id: str, target: Path, key_file: Path | None) -> list[str]:
    """Extract the archive (and the decrypted secrets, with the key) under ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    with tarfile.open(backup_path / FILES, "r:gz") as tar:
        tar.extractall(target, filter="data")
        names += tar.getnames()
    enc = backup_path / SECRETS
    if enc.exists():
        if key_file is None:
            raise BackupError("该备份含加密的私钥/口令文件：请用 --key-file 指定备份密钥（backup.key_file）")
        data = decrypt_secrets(read_backup_key(key_file), backup_id, enc.read_bytes())
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(target, filter="data")
            for m in tar.getmembers():
                os.chmod(target / m.name, 0o600)
                names.append(m.name)
    return names
