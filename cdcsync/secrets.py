"""Secrets (passwords, tokens, private keys) come from files only readable by their owner.

:func:`loose_mode` is the one permission rule: the SM2 private keys (``crypto/keys.py``), the
trust files (``crypto/x509.py``, with :data:`GROUP_OTHER_WRITE`), ``cdcsync doctor`` and the
backup's secret/public split all ask it, each phrasing its own refusal.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

OWNER_ONLY = stat.S_IRWXG | stat.S_IRWXO  # 0o077: group and others may do nothing
GROUP_OTHER_WRITE = stat.S_IWGRP | stat.S_IWOTH  # 0o022: for files that may be read, never replaced


class SecretFileError(ValueError):
    pass


def loose_mode(path: Path, forbidden: int = OWNER_ONLY) -> int | None:
    """``path``'s ``st_mode`` if group or others hold any of the ``forbidden`` permission bits,
    else None. ``OSError`` (missing, unreadable directory) propagates: callers word it."""
    mode = os.stat(path).st_mode
    return mode if mode & forbidden else None


def check_private(path: Path) -> None:
    """Refuse a secret file that group or others can read: it may already have leaked."""
    try:
        mode = loose_mode(path)
    except FileNotFoundError as exc:
        raise SecretFileError(f"{path}: 密钥/口令文件不存在") from exc
    if mode is not None:
        raise SecretFileError(
            f"{path}: 权限过宽（{stat.filemode(mode)}），密钥/口令文件只允许属主读写，请执行 chmod 600 {path}"
        )


def read_secret(path: Path) -> str:
    check_private(path)
    return path.read_text(encoding="utf-8").strip()
