"""The admin view (role ``admin``) and the quarantine in the browser (``admin`` and ``public_health``).

Listing and revoking SSO clients and API keys; creating them stays on the CLI (a secret is shown
once, on the machine). The quarantine list shows table, rule, age, the Chinese reason and the row
with every pii field masked (``cdcsync.quarantine.store.masked_row``); retry re-reads the current
row and re-validates it with the mappings in force, exactly as ``cdcsync quarantine retry``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cdcsync.workbench import store
from cdcsync.workbench.web import Refused, Workbench, read_form


def install_admin(app: FastAPI, wb: Workbench) -> None:
    def require(sess: store.Session, *roles: str) -> None:
        if sess.role not in roles:
            raise Refused(403, "此页面仅供信息科（管理员）或防保科使用。")

    @app.get("/admin")
    def admin_home(request: Request, notice: str | None = None) -> HTMLResponse:
        from cdcsync.api.auth import list_keys
        from cdcsync.quarantine.store import Filters, counts

        with wb.conn() as c:
            sess = wb.session(c, request)
            require(sess, "admin")
            keys = list_keys(c)
            held = sorted(counts(c, Filters()).items())
            version = _versions(c)
            store.audit(c, sess.staff_id, sess.role, "view_admin", his=sess.his)
        return wb.render("admin.html", sess=sess, his=wb.registry.names(), keys=keys, held=held, notice=notice,
                         version=version)

    @app.post("/admin/upgrade")
    async def admin_upgrade(request: Request) -> Response:
        form = await read_form(request)

        def run() -> Response:
            from cdcsync.control.launch import start_apply
            from cdcsync.control.upgrade import UpgradeError

            with wb.conn() as c:
                sess = wb.session(c, request)
                wb.check_csrf(sess, form)
                if sess.role != "admin":
                    store.audit(c, sess.staff_id, sess.role, "upgrade_apply", his=sess.his, allowed=False)
                require(sess, "admin")
                version = form.get("version") or None
                actor = f"workbench:{sess.staff_id}"
                try:
                    started = start_apply(wb.settings, version, actor)
                except UpgradeError as exc:
                    store.audit(c, sess.staff_id, sess.role, "upgrade_apply", his=sess.his, allowed=False,
                                detail=str(exc))
                    raise Refused(400, str(exc)) from None
                store.audit(c, sess.staff_id, sess.role, "upgrade_apply", his=sess.his,
                            detail=f"版本 {version or '已下载的最新版本'}，进程 {started.pid}")
            done = (f"已开始升级到 {version or '已下载的最新版本'}：服务将重启，进度见下方升级记录"
                    f"（日志 {started.log}）")
            return RedirectResponse("/admin?" + _q({"notice": done}), status_code=303)

        return await run_in_threadpool(run)

    @app.post("/admin/revoke")
    async def admin_revoke(request: Request) -> Response:
        form = await read_form(request)

        def run() -> Response:
            from cdcsync.api.auth import revoke_key

            with wb.conn() as c:
                sess = wb.session(c, request)
                wb.check_csrf(sess, form)
                require(sess, "admin")
                kind, name = form.get("kind", ""), form.get("name", "")
                if kind == "sso":
                    try:
                        wb.registry.revoke(name)
                    except ValueError as exc:
                        raise Refused(404, str(exc)) from None
                    done = f"已吊销院内系统 {name} 的单点登录密钥"
                elif kind == "api_key":
                    if not revoke_key(c, name):
                        raise Refused(404, f"没有名为 {name} 的在用 API 密钥")
                    done = f"已吊销 API 密钥 {name}"
                else:
                    raise Refused(400, "未知的吊销对象")
                store.audit(c, sess.staff_id, sess.role, f"revoke_{kind}", his=sess.his, detail=name)
            return RedirectResponse("/admin?" + _q({"notice": done}), status_code=303)

        return await run_in_threadpool(run)

    @app.get("/admin/quarantine")
    def quarantine_list(request: Request, table: str = "", rule: str = "", older_than_h: str = "",
                        notice: str | None = None) -> HTMLResponse:
        from cdcsync.quarantine.store import Filters, list_entries, masked_row

        now = dt.datetime.now(dt.UTC)
        with wb.conn() as c:
            sess = wb.session(c, request)
            require(sess, "admin", "public_health")
            entries = list_entries(c, Filters(table=table or None, rule=rule or None), limit=500)
            if older_than_h.isdigit():
                entries = [e for e in entries if now - e.first_seen >= dt.timedelta(hours=int(older_than_h))]
            spec = wb.spec()
            rows = [{"e": e, "age": _age(now - e.first_seen),
                     "row": masked_row(spec, e.table_name, e.raw_row) if e.table_name in spec.table_names else None}
                    for e in entries[:200]]
            store.audit(c, sess.staff_id, sess.role, "view_quarantine", his=sess.his,
                        detail=f"{len(entries)} 条（表 {table or '全部'}，规则 {rule or '全部'}）")
        return wb.render("quarantine.html", sess=sess, rows=rows, total=len(entries), table=table, rule=rule,
                         older_than_h=older_than_h, notice=notice)

    @app.post("/admin/quarantine/retry")
    async def quarantine_retry(request: Request) -> Response:
        form = await read_form(request)

        def run() -> Response:
            from cdcsync.quarantine.store import Filters, retry
            from cdcsync.sink import SinkError, build_sink
            from cdcsync.validate.reload import RulesHolder
            from cdcsync.validate.stage import transform_for

            settings = wb.settings
            with wb.conn() as c:
                sess = wb.session(c, request)
                wb.check_csrf(sess, form)
                require(sess, "admin", "public_health")
                stage = transform_for(settings, RulesHolder.load(settings.mappings_dir, settings.hospital))
                sinks = {d.name: build_sink(d) for d in settings.enabled_destinations}
                try:
                    result = retry(c, stage, sinks, Filters(table=form.get("table") or None,
                                                            rule=form.get("rule") or None))
                except SinkError:
                    raise Refused(503, "上报平台暂时无法接收；未能投递的条目保持待处理，请稍后重试") from None
                finally:
                    for s in sinks.values():
                        s.close()
                store.audit(c, sess.staff_id, sess.role, "quarantine_retry", his=sess.his,
                            detail=f"重发 {len(result.released)}，仍未通过 {len(result.still_held)}")
            notice = (f"重试 {result.total} 条：已重发 {len(result.released)} 条，"
                      f"仍未通过 {len(result.still_held)} 条，记录已不存在而放弃 {len(result.discarded)} 条")
            return RedirectResponse("/admin/quarantine?" + _q({"table": form.get("table", ""),
                                                               "rule": form.get("rule", ""), "notice": notice}),
                                    status_code=303)

        return await run_in_threadpool(run)


def _versions(c: Any) -> dict[str, Any]:
    """当前版本 / 可用新版本 / 更新说明 and the recent upgrade steps (cdcsync.upgrade_event)."""
    from cdcsync.control.upgrade import latest_check

    check = latest_check(c) or {}
    steps = c.execute("SELECT action, outcome, current_version, available_version, message, actor, at"
                      " FROM cdcsync.upgrade_event WHERE action IN ('apply', 'rollback', 'download')"
                      " ORDER BY id DESC LIMIT 20").fetchall() if check else []
    return {"current": check.get("current"), "available": check.get("available"), "notes": check.get("notes"),
            "checked_at": check.get("checked_at"), "steps": steps}


def _q(params: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode({k: v for k, v in params.items() if v})


def _age(delta: dt.timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours >= 24:
        return f"{hours // 24} 天 {hours % 24} 小时"
    return f"{hours} 小时 {int(delta.total_seconds() // 60) % 60} 分"
