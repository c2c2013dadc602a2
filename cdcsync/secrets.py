"""Secrets (passwords, tokens, private keys) come from files only readable by their owner."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class SecretFileError(ValueError):
    pass


def check_private(path: Path) -> None:
    """Refuse a secret file that group or others can read: it may already have leaked."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        raise SecretFileError(f"{path}: 密钥/口令文件不存在") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(
            f"{path}: 权限过宽（{stat.filemode(mode)}），密钥/口令文件只允许属主读写，请执行 chmod 600 {path}"
        )


def read_secret(path: Path) -> str:
    check_private(path)
    return path.read_text(encoding="utf-8").strip()
