"""The state machine of a configuration package (docs/control-plane.md):

received → verified → staged → checked → applied → acknowledged, or refused at the step that
failed (reason code + Chinese message). Every step is a row in cdcsync.config_event; applying
switches the kind's generation link inside the database transaction that records it, then the
mapping hot reload swaps the daemon's validators (the stream picks them up at its next
transaction boundary). One package is processed at a time (a PostgreSQL advisory lock, shared
with ``cdcsync config rollback``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
import psycopg

from cdcsync.config import ConfigError, Settings
from cdcsync.control import store
from cdcsync.control.kinds import STAGERS, CheckResult, Staged, check_value_domains, generations_for
from cdcsync.control.package import (
    Package,
    PackageError,
    created_time,
    decompress,
    now_utc,
    parse_package,
    sign_reply,
    verify_signature,
)
from cdcsync.crypto import CryptoError, SignatureError
from cdcsync.crypto.keys import load_private_key
from cdcsync.crypto.sm2 import SM2PrivateKey
from cdcsync.crypto.sm3 import sm3
from cdcsync.sink.certs import PlatformKeys
from cdcsync.sink.http_settings import HttpDestination
from cdcsync.spec import load_spec
from cdcsync.validate.reload import RulesHolder

log = logging.getLogger(__name__)
LOCK_KEY = 0x43444353_434F4E46  # "CDCSCONF": one package (or rollback) at a time, across processes
LOCK_KEY = LOCK_KEY - (1 << 64) if LOCK_KEY >= (1 << 63) else LOCK_KEY


def control_destination(settings: Settings) -> HttpDestination:
    """The upstream destination whose platform key verifies packages and whose key signs replies."""
    https = [d for d in settings.destinations if isinstance(d, HttpDestination)]
    name = settings.control.destination
    if name is not None:
        for d in https:
            if d.name == name:
                return d
        raise ConfigError(f"control.destination：没有名为 {name!r} 的上级平台（kind: http）目的地")
    for d in https:
        if d.name == "national":
            return d
    if not https:
        raise ConfigError("配置更新（8882）需要一个上级平台目的地（kind: http）：用其平台公钥验证配置包签名")
    return https[0]


@dataclass
class Outcome:
    http_status: int
    body: bytes
    headers: dict[str, str]
    reply: dict[str, Any] = field(default_factory=dict)


class ControlService:
    def __init__(self, settings: Settings, rules: RulesHolder | None = None,
                 on_applied: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.rules = rules
        self.on_applied = on_applied  # the daemon: restart a pipeline whose destination changed
        dest = control_destination(settings)
        self.platform_keys = PlatformKeys(dest)
        self.reply_key: SM2PrivateKey = load_private_key(dest.hospital_key)
        self._lock = threading.Lock()

    def reconcile(self) -> None:
        """Point each kind's link at the generation the database says is in force: a crash
        between the switch and the commit of an apply must not leave an unrecorded version."""
        from cdcsync.control.package import KINDS

        try:
            conn = self._connect()
        except psycopg.Error as exc:  # not up yet (boot order): the links stay as they are
            log.warning("generation links not checked, database unavailable: %s",
                        (str(exc).strip().splitlines() or [type(exc).__name__])[0])
            return
        with conn:
            for kind in KINDS:
                stack = store.applied_stack(conn, kind)
                want = stack[-1].generation if stack else None
                gens = generations_for(self.settings, kind)
                if gens.current() != (want or None):
                    log.warning("%s: generation link %s differs from the database (%s); switching back",
                                kind, gens.current(), want)
                    gens.switch(want or None)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.settings.database.conninfo(), autocommit=True, connect_timeout=10)

    # ------------------------------------------------------------------ the flow

    def handle(self, body: bytes, source: str = "") -> Outcome:
        """Process one request; always a signed outcome (503 when the database is unreachable:
        nothing was recorded or changed, the platform retries)."""
        try:
            return self._handle(body, source)
        except psycopg.Error as exc:
            log.error("configuration package not processed, database unavailable: %s",
                      (str(exc).strip().splitlines() or [type(exc).__name__])[0])
            reply = {"format": 1, "org_code": self.settings.org_code, "package_id": "", "state": "received",
                     "outcome": "refused", "reason": "unavailable", "record": None,
                     "message": "前置机数据库暂不可用，配置包未处理，请稍后重试", "detail": {}}
            return self._signed(503, reply, "", sm3(body))

    def _handle(self, body: bytes, source: str) -> Outcome:
        request_sm3 = sm3(body)
        pkg: Package | None = None
        with self._lock, self._connect() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            try:
                try:
                    raw = decompress(body, self.settings.control.max_package_bytes)
                    pkg = parse_package(raw)
                except PackageError as exc:
                    ref = store.record_package(conn, None, request_sm3, source)
                    return self._refuse(conn, ref, None, exc, request_sm3)
                ref = store.record_package(conn, pkg, request_sm3, source, created_time(pkg))
                try:
                    return self._process(conn, ref, pkg, request_sm3)
                except PackageError as exc:
                    return self._refuse(conn, ref, pkg, exc, request_sm3)
                except Exception as exc:  # never leave a package without a final state
                    log.exception("configuration package %s failed", pkg.package_id)
                    err = PackageError("internal_error", f"处理配置包时出错：{type(exc).__name__}: {exc}",
                                       http_status=500)
                    return self._refuse(conn, ref, pkg, err, request_sm3)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

    def _verify(self, conn: psycopg.Connection[Any], pkg: Package) -> None:
        try:
            verify_signature(pkg, self.platform_keys.reply_key(pkg.signer_key_id))
        except CryptoError as exc:
            raise PackageError("bad_signature", f"签名验证失败：{exc}", http_status=401) from None
        if pkg.org_code != self.settings.org_code:
            raise PackageError("wrong_org", f"配置包面向医疗机构 {pkg.org_code}，本机为 {self.settings.org_code}",
                               http_status=403)
        skew = timedelta(seconds=self.settings.control.max_clock_skew_s)
        if created_time(pkg) > now_utc() + skew:
            raise PackageError("future_package", f"配置包生成时间 {pkg.created_at} 晚于本机时间过多", http_status=409)
        if store.was_verified(conn, pkg.package_id):
            raise PackageError("replay", f"配置包 {pkg.package_id} 已接收过（重放），不再处理", http_status=409)
        highest = store.highest_applied_version(conn, pkg.kind)
        if pkg.version <= highest:
            raise PackageError("old_version", f"{pkg.kind} 版本 {pkg.version} 不高于已生效过的版本 {highest}",
                               http_status=409, detail={"highest_applied_version": highest})

    def _process(self, conn: psycopg.Connection[Any], ref: int, pkg: Package, request_sm3: bytes) -> Outcome:
        self._verify(conn, pkg)
        store.add_event(conn, ref, pkg.kind, "verified", message="签名、机构代码、版本号均通过验证")
        payload = pkg.payload_json()
        staged: Staged = STAGERS[pkg.kind](self.settings, pkg, payload)
        store.add_event(conn, ref, pkg.kind, "staged", message=f"已暂存为 {staged.generation}",
                        detail={"generation": staged.generation, **staged.summary})
        check = self._check(conn, pkg, staged)
        if check.blocking:
            raise PackageError("check_failed", check.message, state="staged", http_status=422, detail=check.detail)
        store.add_event(conn, ref, pkg.kind, "checked", message=check.message, detail=check.detail)
        gens = generations_for(self.settings, pkg.kind)
        with conn.transaction():
            ev = store.add_event(conn, ref, pkg.kind, "applied", message=f"{pkg.kind} 版本 {pkg.version} 已生效",
                                 detail={"generation": staged.generation})
            store.record_current(conn, pkg.kind, ref, staged.generation, "apply", ev)
            gens.switch(staged.generation)  # last: a failure before it rolls the rows back
        detail = self._after_switch(pkg.kind)
        if self.on_applied is not None:
            try:
                self.on_applied(pkg.kind)
            except Exception:  # the package is applied; a listener's failure is logged, not the platform's
                log.exception("listener of applied %s package failed", pkg.kind)
        store.add_event(conn, ref, pkg.kind, "acknowledged", message="已生效并确认", detail=detail)
        reply = self._reply(pkg, "acknowledged", None, "配置包已生效", {**check.detail, **detail}, ref)
        return self._signed(200, reply, pkg.package_id, request_sm3)

    def _check(self, conn: psycopg.Connection[Any], pkg: Package, staged: Staged) -> CheckResult:
        if pkg.kind != "value_domains":
            return CheckResult(False, staged.summary, "检查通过")
        spec = self.rules.spec if self.rules is not None else load_spec()
        return check_value_domains(self.settings, staged, spec, conn)

    def _after_switch(self, kind: str) -> dict[str, Any]:
        """Make the switch take effect in this process now (the watcher would within seconds)."""
        if kind != "value_domains" or self.rules is None:
            return {}
        self.rules.reload_if_changed()
        st = self.rules.status()
        if st.last_error:
            log.error("mapping set not reloaded after a configuration package: %s", st.last_error)
        return {"mapping_version": st.mapping_version, "spec_version": st.spec_version}

    # ------------------------------------------------------------------ replies

    def _reply(self, pkg: Package | None, state: str, reason: str | None, message: str, detail: dict[str, Any],
               ref: int) -> dict[str, Any]:
        return {
            "format": 1, "org_code": self.settings.org_code, "package_id": pkg.package_id if pkg else "",
            "kind": pkg.kind if pkg else None, "version": pkg.version if pkg else None, "record": ref,
            "state": state, "outcome": "acknowledged" if reason is None else "refused", "reason": reason,
            "message": message, "detail": detail,
        }

    def _signed(self, status: int, reply: dict[str, Any], package_id: str, request_sm3: bytes) -> Outcome:
        body = orjson.dumps(reply, default=str)
        headers = sign_reply(body, key=self.reply_key, org_code=self.settings.org_code, package_id=package_id,
                             request_sm3=request_sm3)
        return Outcome(status, body, headers, reply)

    def _refuse(self, conn: psycopg.Connection[Any], ref: int, pkg: Package | None, exc: PackageError,
                request_sm3: bytes) -> Outcome:
        store.add_event(conn, ref, pkg.kind if pkg else None, "refused", reason=exc.reason, message=str(exc),
                        detail={"at_state": exc.state, **exc.detail})
        log.warning("configuration package %s refused (%s)", pkg.package_id if pkg else "?", exc.reason)
        reply = self._reply(pkg, exc.state, exc.reason, str(exc), exc.detail, ref)
        return self._signed(exc.http_status, reply, pkg.package_id if pkg else "", request_sm3)


def rollback(settings: Settings, ident: str, actor: str) -> dict[str, Any]:
    """Return ``ident``'s kind to the version applied before it (it must be the one in force).
    Recorded as events; the generation link is switched in the same transaction."""
    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            row = store.find_package(conn, ident)
            if row is None:
                raise PackageError("not_found", f"没有配置包 {ident}（可用 cdcsync config history 查看）")
            kind = row["kind"]
            stack = store.applied_stack(conn, kind)
            if not stack or stack[-1].package_ref != row["id"]:
                now = stack[-1].package_ref if stack else None
                shown = f"记录 {now}" if now else "随软件发布的版本"
                raise PackageError("not_in_force",
                                   f"配置包 {ident} 不是 {kind} 当前生效的版本（当前生效：{shown}），只能回退当前版本")
            target = stack[-2] if len(stack) > 1 else None
            gens = generations_for(settings, kind)
            with conn.transaction():
                msg = (f"由 {actor} 回退，恢复到记录 {target.package_ref}" if target
                       else f"由 {actor} 回退，恢复到随软件发布的版本")
                ev = store.add_event(conn, row["id"], kind, "rolled_back", reason="rollback", message=msg, actor=actor)
                store.record_current(conn, kind, row["id"], target.generation if target else "", "rollback", ev)
                if target is not None and target.package_ref is not None:
                    store.add_event(conn, target.package_ref, kind, "reapplied",
                                    message=f"因回退记录 {row['id']} 重新生效", actor=actor)
                gens.switch(target.generation if target else None)
            return {"kind": kind, "rolled_back": row["id"], "now_in_force": target.package_ref if target else None}
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


__all__ = ["ControlService", "Outcome", "PackageError", "SignatureError", "control_destination", "rollback"]
