"""API keys of the HIS clients of the data API.

A key looks like ``cdk_<key id>_<secret>``: the key id (12 hex digits) is public and finds the row,
the secret (32 random bytes, base64url) is checked against ``HMAC-SM3(salt, secret)``. Keys are
random and long, so a fast salted hash is enough (slow hashes protect guessable passwords), and a
request costs one indexed lookup. A key is shown once, by ``cdcsync api-keys add``, and never logged.

Header: ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``. Missing → 401 ``AUTH_MISSING``;
unknown or wrong → 401 ``AUTH_INVALID``; revoked → 403 ``AUTH_REVOKED``; past its last day →
403 ``AUTH_EXPIRED``. An unknown key id costs the same lookup and the same HMAC (against a dummy
salt) as a known one with a wrong secret, and both compare in constant time: the answer's timing
does not tell whether a key id exists.

Each key has a scope (:class:`KeyScope`): the tables it may write (``*`` = all), the operations
(``upsert``, ``delete``) and the organisation codes of the records (default: the configured
``org_code`` only). Outside it → 403 ``SCOPE_TABLE`` / ``SCOPE_OPERATION`` / ``SCOPE_ORG_CODE``,
naming what was refused but never a submitted value.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psycopg

from cdcsync.api.errors import ApiError
from cdcsync.beijing import TODAY_SQL, beijing_today
from cdcsync.crypto.sm3 import hmac_sm3

KEY_PREFIX = "cdk"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY_RE = re.compile(r"^cdk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_WWW = {"WWW-Authenticate": 'Bearer realm="cdcsync"'}
ALL_TABLES = "*"
OPS: tuple[str, ...] = ("upsert", "delete")
OP_TEXT = {"upsert": "新增/更新", "delete": "删除"}
ORG_CODE_RE = re.compile(r"^[0-9A-Z]{6,22}$")  # the rule of config.org_code
# Looked up and hashed when the key id is unknown, so that path does the same work.
_DUMMY_SALT = secrets.token_bytes(16)
_DUMMY_HASH = bytes(32)
_SELECT = (
    "SELECT name, salt, key_hash, revoked_at, expires_on < " + TODAY_SQL + ","
    " last_used_at < now() - interval '1 minute' OR last_used_at IS NULL,"
    " scope_tables, scope_ops, scope_org_codes, scope_apis, scope_doctors, scope_depts"
    " FROM cdcsync.api_key WHERE key_id = %s"
)
APIS: tuple[str, ...] = ("data", "reminders")
API_TEXT = {"data": "推送EMR数据（data）", "reminders": "监测预警提醒（reminders）"}


class ApiKeyError(ValueError):
    """A key-management request the admin has to correct (shown as one line by the CLI)."""


@dataclass(frozen=True)
class KeyScope:
    """What a key may do. ``org_codes`` None: the configured ``org_code`` only."""

    tables: tuple[str, ...] = (ALL_TABLES,)
    ops: tuple[str, ...] = OPS
    org_codes: tuple[str, ...] | None = None
    apis: tuple[str, ...] = ("data",)  # data: /api/v1/data/*; reminders: /api/v1/reminders, case actions
    doctors: tuple[str, ...] | None = None  # reminders: the doctors it may read and act for (None: any)
    depts: tuple[str, ...] | None = None  # reminders: the departments (None: any)

    def allows_table(self, table: str) -> bool:
        return ALL_TABLES in self.tables or table in self.tables

    def allowed_org_codes(self, own_org_code: str) -> tuple[str, ...]:
        return self.org_codes if self.org_codes is not None else (own_org_code,)

    def describe(self, own_org_code: str | None = None) -> dict[str, str]:
        """The scope in words, for ``api-keys list`` and the 403 messages."""
        own = f"{own_org_code}（本机构，配置项 org_code）" if own_org_code else "本机构（配置项 org_code）"
        return {
            "tables": "全部表（*）" if ALL_TABLES in self.tables else "、".join(self.tables),
            "ops": "、".join(f"{OP_TEXT[o]}（{o}）" for o in self.ops),
            "org_codes": "、".join(self.org_codes) if self.org_codes is not None else own,
            "apis": "、".join(API_TEXT[a] for a in self.apis),
            "doctors": "、".join(self.doctors) if self.doctors is not None else "全部医生",
            "depts": "、".join(self.depts) if self.depts is not None else "全部科室",
        }


@dataclass(frozen=True)
class Client:
    """An authenticated client of the data API."""

    name: str
    scope: KeyScope = field(default_factory=KeyScope)


@dataclass(frozen=True)
class ApiKeyInfo:
    name: str
    key_id: str
    note: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    scope: KeyScope
    expires_on: dt.date | None
    expired: bool

    @property
    def state(self) -> str:
        return "已吊销" if self.revoked_at else "已过期" if self.expired else "在用"


def _hash(salt: bytes, secret: str) -> bytes:
    return hmac_sm3(salt, secret.encode("utf-8"))


def _split(values: Iterable[str]) -> list[str]:
    """``["visit,diagnosis", "lab_report"]`` → ``["visit", "diagnosis", "lab_report"]``, order kept."""
    out: list[str] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def make_scope(tables: Iterable[str], ops: Iterable[str], org_codes: Iterable[str] | None = None,
               known_tables: Sequence[str] | None = None, apis: Iterable[str] = ("data",),
               doctors: Iterable[str] | None = None, depts: Iterable[str] | None = None) -> KeyScope:
    """A validated scope from the admin's words (comma lists allowed); ApiKeyError otherwise."""
    t = _split(tables)
    if not t:
        raise ApiKeyError("请用 --tables 指定允许写入的表（逗号分隔，* 表示全部表）")
    if ALL_TABLES in t and len(t) > 1:
        raise ApiKeyError("--tables 中 * 表示全部表，不能与具体表名同时使用")
    if known_tables is not None and ALL_TABLES not in t:
        unknown = [x for x in t if x not in known_tables]
        if unknown:
            raise ApiKeyError(f"数据集规范中没有表：{'、'.join(unknown)}（可用的表：{'、'.join(known_tables)}）")
    o = _split(ops)
    bad_ops = [x for x in o if x not in OPS]
    if not o or bad_ops:
        unknown_ops = f"，不认识：{'、'.join(bad_ops)}" if bad_ops else ""
        raise ApiKeyError(f"--ops 应为 upsert、delete 之一或两者（逗号分隔）{unknown_ops}")
    orgs: list[str] | None = None
    if org_codes is not None:
        orgs = _split(org_codes)
        bad = [x for x in orgs if not ORG_CODE_RE.match(x)]
        if bad:
            raise ApiKeyError(f"医疗机构代码格式不正确：{'、'.join(bad)}（应为 6–22 位大写字母或数字）")
        if not orgs:
            orgs = None
    a = _split(apis)
    bad_apis = [x for x in a if x not in APIS]
    if not a or bad_apis:
        raise ApiKeyError(f"--apis 应为 data（推送EMR数据）、reminders（监测预警提醒）之一或两者（逗号分隔）"
                          f"{'，不认识：' + '、'.join(bad_apis) if bad_apis else ''}")
    docs = _split(doctors) if doctors is not None else None
    deps = _split(depts) if depts is not None else None
    return KeyScope(tuple(t), tuple(x for x in OPS if x in o), tuple(orgs) if orgs is not None else None,
                    tuple(x for x in APIS if x in a), tuple(docs) if docs else None, tuple(deps) if deps else None)


def _check_expiry(expires_on: dt.date | None) -> None:
    if expires_on is not None and expires_on < beijing_today():
        raise ApiKeyError(f"有效期截止日 {expires_on.isoformat()} 已过")


def create_key(conn: psycopg.Connection, name: str, note: str | None = None, scope: KeyScope | None = None,
               expires_on: dt.date | None = None) -> str:
    """Store a new key for client ``name`` and return it (the only time it exists in clear).

    ``scope`` defaults to all tables and both operations for the configured org_code (what the
    tests and the demo need); ``cdcsync api-keys add`` makes the admin name tables and operations.
    """
    scope = scope or KeyScope()
    _check_expiry(expires_on)
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
            "INSERT INTO cdcsync.api_key (name, key_id, salt, key_hash, note, scope_tables, scope_ops,"
            " scope_org_codes, expires_on, scope_apis, scope_doctors, scope_depts)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (name, key_id, salt, _hash(salt, secret), note, list(scope.tables), list(scope.ops),
             list(scope.org_codes) if scope.org_codes is not None else None, expires_on, list(scope.apis),
             _opt(scope.doctors), _opt(scope.depts)),
        )
    return f"{KEY_PREFIX}_{key_id}_{secret}"


def list_keys(conn: psycopg.Connection, name: str | None = None) -> list[ApiKeyInfo]:
    rows = conn.execute(
        "SELECT name, key_id, note, created_at, revoked_at, last_used_at, scope_tables, scope_ops,"
        " scope_org_codes, expires_on, expires_on < " + TODAY_SQL + ","
        " scope_apis, scope_doctors, scope_depts"
        " FROM cdcsync.api_key WHERE %(name)s::text IS NULL OR name = %(name)s ORDER BY name", {"name": name},
    ).fetchall()
    return [ApiKeyInfo(r[0], r[1], r[2], r[3], r[4], r[5], _scope(r[6], r[7], r[8], r[11], r[12], r[13]), r[9],
                       bool(r[10])) for r in rows]


def _opt(values: tuple[str, ...] | None) -> list[str] | None:
    return list(values) if values is not None else None


def _scope(tables: list[str], ops: list[str], org_codes: list[str] | None, apis: list[str] | None = None,
           doctors: list[str] | None = None, depts: list[str] | None = None) -> KeyScope:
    return KeyScope(tuple(tables), tuple(ops), tuple(org_codes) if org_codes is not None else None,
                    tuple(apis) if apis else ("data",), tuple(doctors) if doctors is not None else None,
                    tuple(depts) if depts is not None else None)


_KEEP: object = object()


def update_key(conn: psycopg.Connection, name: str, scope: KeyScope,
               expires_on: dt.date | None | object = _KEEP) -> ApiKeyInfo:
    """Replace ``name``'s scope (and its expiry unless ``_KEEP``); ApiKeyError when there is no key."""
    if isinstance(expires_on, dt.date):
        _check_expiry(expires_on)
    with conn.transaction():
        done = conn.execute(
            "UPDATE cdcsync.api_key SET scope_tables = %s, scope_ops = %s, scope_org_codes = %s,"
            " scope_apis = %s, scope_doctors = %s, scope_depts = %s,"
            " expires_on = CASE WHEN %s THEN expires_on ELSE %s::date END WHERE name = %s",
            (list(scope.tables), list(scope.ops), list(scope.org_codes) if scope.org_codes is not None else None,
             list(scope.apis), _opt(scope.doctors), _opt(scope.depts),
             expires_on is _KEEP, None if expires_on is _KEEP else expires_on, name),
        )
        if done.rowcount != 1:
            raise ApiKeyError(f"没有名为 {name!r} 的客户端密钥（用 cdcsync api-keys list 查看）")
    return list_keys(conn, name)[0]


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


def authenticate(conn: psycopg.Connection, key: str) -> Client:
    """The client owning ``key``; ApiError 401/403 otherwise. Commits its own small update.

    Whatever the key, one indexed lookup and one HMAC are done and compared in constant time
    (a malformed or unknown key against a dummy salt and hash), so a wrong key id is not answered
    faster than a wrong secret.
    """
    match = _KEY_RE.match(key)
    key_id, secret = match.groups() if match else ("", key)
    row = conn.execute(_SELECT, (key_id,)).fetchone()
    salt, stored = (bytes(row[1]), bytes(row[2])) if row is not None else (_DUMMY_SALT, _DUMMY_HASH)
    matches = hmac.compare_digest(_hash(salt, secret), stored)
    if row is None or not matches:
        conn.rollback()
        raise ApiError(401, "AUTH_INVALID", "API 密钥无效", headers=_WWW)
    name, _salt, _stored, revoked_at, expired, stale, tables, ops, org_codes, apis, doctors, depts = row
    if revoked_at is not None:
        conn.rollback()
        raise ApiError(403, "AUTH_REVOKED", "该 API 密钥已被吊销，请联系前置机管理员")
    if expired:
        conn.rollback()
        raise ApiError(403, "AUTH_EXPIRED", "该 API 密钥已过有效期，请联系前置机管理员更换或延期")
    if stale:  # at most one write a minute per client, for `api-keys list`
        conn.execute("UPDATE cdcsync.api_key SET last_used_at = now() WHERE key_id = %s", (key_id,))
    conn.commit()
    return Client(str(name), _scope(tables, ops, org_codes, apis, doctors, depts))


def require_api(client: Client, api: str) -> None:
    """403 ``SCOPE_API`` when the key is not for ``api`` (``data`` or ``reminders``)."""
    if api not in client.scope.apis:
        raise ApiError(403, "SCOPE_API",
                       f"该 API 密钥（{client.name}）无权使用{API_TEXT[api]}接口；"
                       f"允许：{client.scope.describe()['apis']}",
                       {"refused": {"api": api}})


def require_scope(client: Client, table: str, op: str) -> None:
    """403 when the key may not do ``op`` on ``table`` (or is not a data key)."""
    require_api(client, "data")
    words = client.scope.describe()
    if op not in client.scope.ops:
        raise ApiError(403, "SCOPE_OPERATION",
                       f"该 API 密钥（{client.name}）无权执行{OP_TEXT[op]}操作（{op}）；允许的操作：{words['ops']}",
                       {"refused": {"operation": op}})
    if not client.scope.allows_table(table):
        raise ApiError(403, "SCOPE_TABLE",
                       f"该 API 密钥（{client.name}）无权写入表 {table}；允许的表：{words['tables']}",
                       {"refused": {"table": table}})


def require_org_codes(client: Client, own_org_code: str, items: Sequence[object], what: str) -> None:
    """403 naming the records (by index) whose ``org_code`` is outside the key's scope.

    Records that are not objects or carry no ``org_code`` are left to validation (400); the
    submitted value itself is never repeated.
    """
    allowed = client.scope.allowed_org_codes(own_org_code)
    refused = [i for i, item in enumerate(items)
               if isinstance(item, dict) and item.get("org_code") is not None and item["org_code"] not in allowed]
    if refused:
        # People count from one; failed_indexes stay zero-based for programs.
        shown = "、".join(str(i + 1) for i in refused[:20]) + (f" 等 {len(refused)} 条" if len(refused) > 20 else "")
        raise ApiError(403, "SCOPE_ORG_CODE",
                       f"第 {shown} 条{what}的医疗机构代码（org_code）不在该 API 密钥（{client.name}）的授权范围内"
                       f"（允许：{'、'.join(allowed)}），整批未写入",
                       {"refused": {"field": "org_code"}, "failed_indexes": refused})
