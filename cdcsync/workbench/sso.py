"""Single sign-on tickets from the HIS (docs/sso.md).

A ticket is ``<payload>.<signature>``: ``payload`` is the base64url (no padding) of a UTF-8 JSON
object, ``signature`` the base64url of HMAC-SM3(secret, payload as ASCII), the secret being the
32 bytes whose hex ``cdcsync sso add-his NAME`` wrote to ``<sso_dir>/NAME.key`` (mode 0600). This
module checks the signature, the time window and the fields; single use (the nonce) is the
caller's business because it needs the database (:mod:`cdcsync.workbench.store`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac as std_hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdcsync.crypto.sm3 import hmac_sm3
from cdcsync.secrets import SecretFileError, read_secret

ROLES = ("doctor", "public_health", "admin")
ROLE_LABELS = {"doctor": "医生", "public_health": "防保科", "admin": "管理员"}
HIS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_TICKET_CHARS = 4096
SECRET_SUFFIX = ".key"
SM2_SUFFIX = ".sm2.pem"  # the HIS's SM2 public key (alg SM2-SM3): the front end holds no secret
REVOKED_SUFFIX = ".revoked"
ALGORITHMS = ("HMAC-SM3", "SM2-SM3")


class TicketError(ValueError):
    """A refused ticket: ``code`` for the audit log, the message (Chinese) for the user."""

    def __init__(self, code: str, message: str, claimed_by: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.claimed_by = claimed_by  # the staff id the ticket claims (audit only; unverified)


@dataclass(frozen=True, slots=True)
class Ticket:
    his: str
    staff_id: str
    staff_name: str
    dept_code: str
    dept_name: str | None
    role: str
    patient_id: str | None
    visit_id: str | None
    iat: dt.datetime
    nonce: str


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_ticket(claims: dict[str, Any], secret: bytes) -> str:
    """The reference signer (tests and docs/sso.md use the same steps)."""
    payload = b64url(json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return f"{payload}.{b64url(hmac_sm3(secret, payload.encode('ascii')))}"


# -- the per-HIS secrets -----------------------------------------------------------------------


class HisRegistry:
    """One secret file per HIS in ``directory``; revoking renames it (the history stays on disk)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / f"{name}{SECRET_SUFFIX}"

    def sm2_path(self, name: str) -> Path:
        return self.directory / f"{name}{SM2_SUFFIX}"

    def _check_new(self, name: str) -> None:
        if not HIS_NAME.match(name):
            raise ValueError(f"院内系统名称 {name!r} 无效：只允许字母、数字、下划线、连字符，最长 32 个字符")
        for existing in (self.path(name), self.sm2_path(name)):
            if existing.exists():
                raise ValueError(f"院内系统 {name} 已登记（{existing}）；如需更换请先 cdcsync sso revoke {name}")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def add_sm2(self, name: str, public_key_pem: Path) -> Path:
        """Register a HIS that signs its tickets with SM2: keep a copy of its public key."""
        from cdcsync.crypto import KeyFileError
        from cdcsync.crypto.keys import load_public_key

        self._check_new(name)
        try:
            load_public_key(public_key_pem)
        except (KeyFileError, OSError, ValueError) as exc:
            raise ValueError(f"{public_key_pem}: 不是有效的 SM2 公钥（PEM）：{exc}") from None
        path = self.sm2_path(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(public_key_pem.read_bytes())
        return path

    def public_key(self, name: str) -> Any:
        """The HIS's SM2 public key, or None when unknown or revoked."""
        from cdcsync.crypto import KeyFileError
        from cdcsync.crypto.keys import load_public_key

        path = self.sm2_path(name)
        if not HIS_NAME.match(name) or not path.exists():
            return None
        try:
            return load_public_key(path)
        except (KeyFileError, OSError, ValueError):
            return None

    def add(self, name: str) -> Path:
        self._check_new(name)
        path = self.path(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_bytes(32).hex() + "\n")
        return path

    def names(self) -> list[tuple[str, dt.datetime]]:
        """(name, key date) of every registered HIS, HMAC-SM3 and SM2 alike."""
        if not self.directory.is_dir():
            return []
        out = []
        for suffix in (SECRET_SUFFIX, SM2_SUFFIX):
            for p in self.directory.glob(f"*{suffix}"):
                out.append((p.name[: -len(suffix)], dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC)))
        return sorted(out)

    def revoke(self, name: str) -> Path:
        for path, suffix in ((self.path(name), ""), (self.sm2_path(name), ".sm2")):
            if HIS_NAME.match(name) and path.exists():
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
                target = self.directory / f"{name}{suffix}{REVOKED_SUFFIX}-{stamp}"
                path.rename(target)
                return target
        raise ValueError(f"没有名为 {name} 的院内系统密钥")

    def secret(self, name: str) -> bytes | None:
        """The HIS's key, or None when unknown or revoked. A file others can read is refused."""
        if not HIS_NAME.match(name):
            return None
        path = self.path(name)
        if not path.exists():
            return None
        try:
            return bytes.fromhex(read_secret(path))
        except (SecretFileError, ValueError):
            return None


# -- verification ------------------------------------------------------------------------------


def _text(claims: dict[str, Any], key: str, *, required: bool, max_len: int = 64) -> str | None:
    value = claims.get(key)
    if value is None or value == "":
        if required:
            raise TicketError("bad_field", f"单点登录票据缺少字段 {key}")
        return None
    if not isinstance(value, str) or len(value) > max_len or any(ord(c) < 32 for c in value):
        raise TicketError("bad_field", f"单点登录票据字段 {key} 应为不超过 {max_len} 个字符的文本")
    return value


def verify_ticket(ticket: str, registry: HisRegistry, *, now: dt.datetime, ttl_s: int, skew_s: int) -> Ticket:
    """The ticket's claims when its signature, time window and fields are right; TicketError else."""
    if not ticket or len(ticket) > MAX_TICKET_CHARS or ticket.count(".") != 1:
        raise TicketError("malformed", "单点登录票据格式错误")
    payload, sig = ticket.split(".")
    try:
        claims = json.loads(_unb64url(payload).decode("utf-8"))
        signature = _unb64url(sig)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TicketError("malformed", "单点登录票据格式错误") from None
    if not isinstance(claims, dict):
        raise TicketError("malformed", "单点登录票据格式错误")
    claimed = claims.get("sub") if isinstance(claims.get("sub"), str) else None
    his = claims.get("his")
    if not isinstance(his, str) or not HIS_NAME.match(his):
        raise TicketError("unknown_his", "单点登录票据未注明有效的院内系统（his）", claimed)
    alg = claims.get("alg", "HMAC-SM3")
    if alg not in ALGORITHMS:
        raise TicketError("bad_alg", f"不支持的签名算法（支持 {'、'.join(ALGORITHMS)}）", claimed)
    if alg == "SM2-SM3":
        from cdcsync.crypto import SignatureError

        pub = registry.public_key(his)
        if pub is None:
            raise TicketError("unknown_his", f"院内系统 {his} 未登记 SM2 公钥或已吊销", claimed)
        try:
            pub.verify(signature, payload.encode("ascii"))
        except SignatureError:
            raise TicketError("bad_signature", "单点登录票据签名错误", claimed) from None
    else:
        key = registry.secret(his)
        if key is None:
            raise TicketError("unknown_his", f"院内系统 {his} 未登记或密钥已吊销", claimed)
        expected = hmac_sm3(key, payload.encode("ascii"))
        if not std_hmac.compare_digest(expected, signature):
            raise TicketError("bad_signature", "单点登录票据签名错误", claimed)
    # Only a signed ticket is read further: the fields are the HIS's word from here on.
    if claims.get("v", 1) != 1:
        raise TicketError("bad_field", "单点登录票据版本（v）应为 1", claimed)
    iat_raw = claims.get("iat")
    if not isinstance(iat_raw, int) or isinstance(iat_raw, bool):
        raise TicketError("bad_field", "单点登录票据签发时间 iat 应为整数秒（Unix 时间）", claimed)
    iat = dt.datetime.fromtimestamp(iat_raw, dt.UTC)
    if iat > now + dt.timedelta(seconds=skew_s):
        raise TicketError("not_yet_valid", "单点登录票据的签发时间晚于前置机时间，请核对院内系统与前置机的时钟",
                          claimed)
    if now > iat + dt.timedelta(seconds=ttl_s + skew_s):
        raise TicketError("expired", "单点登录票据已过期，请从院内系统重新打开", claimed)
    role = claims.get("role")
    if role not in ROLES:
        raise TicketError("bad_field", f"单点登录票据角色 role 应为 {'、'.join(ROLES)} 之一", claimed)
    nonce = _text(claims, "nonce", required=True)
    assert nonce is not None
    if len(nonce) < 16:
        raise TicketError("bad_field", "单点登录票据随机数 nonce 至少 16 个字符", claimed)
    return Ticket(
        his=his,
        staff_id=_text(claims, "sub", required=True) or "",
        staff_name=_text(claims, "name", required=True, max_len=50) or "",
        dept_code=_text(claims, "dept", required=True) or "",
        dept_name=_text(claims, "dept_name", required=False, max_len=100),
        role=str(role),
        patient_id=_text(claims, "patient", required=False),
        visit_id=_text(claims, "visit", required=False),
        iat=iat,
        nonce=nonce,
    )
