"""The least-privilege group roles of ``sql/200_roles.sql`` and what ``cdcsync db init`` says about them.

Three NOLOGIN group roles; the DBA grants them to the login accounts (README, "Install"):
``cdcsync_his`` for the HIS vendor writing ``emr.*``, ``cdcsync_api`` for the data API (8881, see
``api.database``), ``cdcsync_daemon`` for ``cdcsync run``. Role attributes are not inherited in
PostgreSQL, so the daemon's login role needs ``REPLICATION`` itself: the report names members of
``cdcsync_daemon`` that lack it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

ROLES: dict[str, str] = {
    "cdcsync_his": "院内系统写镜像库（emr.* 增删改查）",
    "cdcsync_api": "数据操作API（emr.* 增删改查，读 API 密钥）",
    "cdcsync_daemon": "同步服务（逻辑复制，读 emr.*，读写 cdcsync.*、recon.*）",
}


@dataclass
class RoleStatus:
    name: str
    status: str  # "created" | "present" | "missing"
    members: list[str] = field(default_factory=list)  # login roles holding it
    without_replication: list[str] = field(default_factory=list)  # cdcsync_daemon members lacking REPLICATION

    def line(self) -> str:
        purpose = ROLES.get(self.name, "")
        if self.status == "missing":
            return (f"角色 {self.name}（{purpose}）：不存在——当前数据库用户无 CREATEROLE 权限，"
                    "请由数据库管理员（超级用户）执行一次 cdcsync db init")
        state = "已创建" if self.status == "created" else "已存在"
        who = "、".join(self.members) if self.members else "尚未授予任何登录账号"
        text = f"角色 {self.name}（{purpose}）：{state}，已授权本库；成员：{who}"
        if self.without_replication:
            text += (f"；警告：{'、'.join(self.without_replication)} 没有 REPLICATION 属性，无法逻辑复制"
                     f"（ALTER ROLE … REPLICATION）")
        return text


def existing_roles(conn: psycopg.Connection[Any]) -> set[str]:
    return {str(r) for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),))}


def apply_role_grants(conn: psycopg.Connection[Any], existed: set[str] | None = None) -> list[RoleStatus]:
    """Create missing roles (if allowed), grant in this database; [] before 200_roles.sql exists.

    ``existed``: the roles there before this ``db init`` (the migration itself may have just
    created them), so the report says "created" for those it made."""
    if conn.execute("SELECT to_regprocedure('cdcsync.apply_role_grants()')").fetchone() in (None, (None,)):
        return []
    rows = conn.execute("SELECT role_name, status FROM cdcsync.apply_role_grants()").fetchall()
    apply_feature_grants(conn)
    out = []
    for name, status in rows:
        if existed is not None and status == "present" and name not in existed:
            status = "created"
        role = RoleStatus(str(name), str(status))
        if status != "missing":
            members = conn.execute(
                "SELECT m.rolname, m.rolreplication OR m.rolsuper FROM pg_auth_members a"
                " JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member"
                " WHERE g.rolname = %s ORDER BY m.rolname", (name,)).fetchall()
            role.members = [str(m) for m, _ in members]
            if name == "cdcsync_daemon":
                role.without_replication = [str(m) for m, repl in members if not repl]
        out.append(role)
    return out


def apply_feature_grants(conn: psycopg.Connection[Any]) -> None:
    """Run every ``cdcsync.apply_<feature>_grants()`` a later migration defines (e.g.
    ``sql/210_surveil_grants.sql``), after the broad grants of ``apply_role_grants()``, so that
    narrower rules (no DELETE on append-only tables) hold after each ``db init``."""
    names = [str(n) for (n,) in conn.execute(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'cdcsync' AND p.proname LIKE 'apply\\_%\\_grants'"
        " AND p.proname <> 'apply_role_grants' AND p.pronargs = 0 ORDER BY p.proname").fetchall()]
    for name in names:
        conn.execute(sql.SQL("SELECT {}()").format(sql.Identifier("cdcsync", name)))
