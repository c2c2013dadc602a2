"""API keys of the HIS clients of the data API.

A key looks like ``cdk_<key id>_<secret>``: the key id (12 hex digits) is public and finds the row,
the secret (32 random bytes, base64url) is checked against ``HMAC-SM3(salt, secret)``. Keys are
random and long, so a fast salted hash is enough (slow hashes protect guessable passwords), and a
request costs one indexed lookup. A key is shown once, by ``cdcsync api-keys add``, and never logged.

Header: ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``. Missing → 401 ``AUTH_MISSING``;
unknown or wrong → 401 ``AUTH_INVALID``; revoked → 403 ``AUTH_REVOKED``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
from dataclasses import dataclass

import psycopg

from cdcsync.api.errors import ApiError
from cdcsync.crypto.sm3 import hmac_sm3

KEY_PREFIX = "cdk"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY_RE = re.compile(r"^cdk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_WWW = {"WWW-Authenticate": 'Bearer realm="cdcsync"'}


class ApiKeyError(ValueError):
    """A key-management request the admin has to correct (shown as one line by the CLI)."""


@dataclass(frozen=True)
class ApiKeyInfo:
    name: str
    key_id: str
    note: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


def _hash(salt: bytes, secret: str) -> bytes:
    return hmac_sm3(salt, secret.encode("ascii"))


def create_key(conn: psycopg.Connection, name: str, note: str | None = None) -> str:
    """Store a new key for client ``name`` and return it (the only time it exists in clear)."""
    if not NAME_RE.match(name):
        raise ApiKeyError(f"客户端名称 {name!r} 不合法：只允许字母、数字、_ . -，以字母或数字开头，最长 64 个字符")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    with conn.transaction():
        exists = conn.execute("SELECT revoked_at FROM cdcsync.api_key WHERE name = %s", (name,)).fetchone()
        if exists is not None:
            state = "已吊销" if exists[0] is not None else "在用"
            raise ApiKeyError(f"客户端 {name!r} 已有密钥（{state}）；请换一个名称，或先吊销后以新名称创建")
        conn.execute(
            "INSERT INTO cdcsync.api_key (name, key_id, salt, key_hash, note) VALUES (%s, %s, %s, %s, %s)",
            (name, key_id, salt, _hash(salt, secret), note),
        )
    return f"{KEY_PREFIX}_{key_id}_{secret}"


def list_keys(conn: psycopg.Connection) -> list[ApiKeyInfo]:
    rows = conn.execute(
        "SELECT name, key_id, note, created_at, revoked_at, last_used_at FROM cdcsync.api_key ORDER BY name"
    ).fetchall()
    return [ApiKeyInfo(*row) for row in rows]


def revoke_key(conn: psycopg.Connection, name: str) -> bool:
    """Revoke ``name``'s key; False when it was already revoked. ApiKeyError when there is none."""
    with conn.transaction():
        row = conn.execute("SELECT revoked_at FROM cdcsync.api_key WHERE name = %s FOR UPDATE", (name,)).fetchone()
        if row is None:
            raise ApiKeyError(f"没有名为 {name!r} 的客户端密钥（用 cdcsync api-keys list 查看）")
        if row[0] is not None:
            return False
        conn.execute("UPDATE cdcsync.api_key SET revoked_at = now() WHERE name = %s", (name,))
    return True


def presented_key(authorization: str | None, x_api_key: str | None) -> str:
    """The key a request carries, or 401 AUTH_MISSING."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise ApiError(401, "AUTH_INVALID", "认证头格式不正确，应为 Authorization: Bearer <密钥>", headers=_WWW)
    raise ApiError(401, "AUTH_MISSING", "缺少 API 密钥：请在请求头 Authorization: Bearer <密钥> 或 X-Api-Key 中提供",
                   headers=_WWW)


def authenticate(conn: psycopg.Connection, key: str) -> str:
    """The client name owning ``key``; ApiError 401/403 otherwise. Commits its own small update."""
    match = _KEY_RE.match(key)
    invalid = ApiError(401, "AUTH_INVALID", "API 密钥无效", headers=_WWW)
    if not match:
        raise invalid
    key_id, secret = match.groups()
    row = conn.execute(
        "SELECT name, salt, key_hash, revoked_at, last_used_at < now() - interval '1 minute'"
        " OR last_used_at IS NULL FROM cdcsync.api_key WHERE key_id = %s", (key_id,),
    ).fetchone()
    if row is None:
        conn.rollback()
        raise invalid
    name, salt, key_hash, revoked_at, stale = row
    if not hmac.compare_digest(_hash(bytes(salt), secret), bytes(key_hash)):
        conn.rollback()
        raise invalid
    if revoked_at is not None:
        conn.rollback()
        raise ApiError(403, "AUTH_REVOKED", "该 API 密钥已被吊销，请联系前置机管理员")
    if stale:  # at most one write a minute per client, for `api-keys list`
        conn.execute("UPDATE cdcsync.api_key SET last_used_at = now() WHERE key_id = %s", (key_id,))
    conn.commit()
    return str(name)
