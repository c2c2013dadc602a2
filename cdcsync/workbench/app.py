"""The workbench routes on the PC web listener (8884). docs/workbench.md.

Server-rendered Jinja2; the only script is the due-time countdown (static/countdown.js) on the
pages in ``SCRIPT_PAGES``, whose CSP alone adds ``script-src 'self'``. Every request of a page with
patient data needs a session that only a valid SSO ticket starts; every POST carries the session's
CSRF token (403 without it);
every response is ``no-store`` with a strict Content-Security-Policy (set by the web app's
``security_headers`` middleware). Database work runs in the thread pool on a short-lived
autocommit connection per request.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cdcsync.config import Settings
from cdcsync.mapping.domains import CodeTables, load_code_tables
from cdcsync.surveil.cases import Action, Case, CaseError, CaseFilter, CaseStore, Status
from cdcsync.workbench import card as cardmod
from cdcsync.workbench import stats as wbstats
from cdcsync.workbench import store
from cdcsync.workbench.admin import install_admin
from cdcsync.workbench.evidence import describe_evidence
from cdcsync.workbench.sso import TicketError, verify_ticket
from cdcsync.workbench.store import Session
from cdcsync.workbench.web import (
    BEIJING,
    COOKIE,
    EXCLUDE_REASONS,
    HERE,
    Refused,
    Workbench,
    can_see,
    parse_int,
    read_form,
    remaining_text,
)

log = logging.getLogger("cdcsync.workbench")

# Pages that load static/countdown.js (the due time counting down); exact paths.
SCRIPT_PAGES = frozenset({"/popup", "/ph"})


class Housekeeping:
    """Hourly: purge the audit log past its retention and sessions that can never be used again."""

    def __init__(self, wb: Workbench, interval_s: float = 3600.0) -> None:
        self.wb = wb
        self.interval_s = interval_s
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="workbench-housekeeping", daemon=True)

    def run_once(self) -> tuple[int, int]:
        with self.wb.conn() as c:
            return (store.purge_audit(c, self.wb.cfg.audit_retention_days),
                    store.purge_sessions(c, dt.timedelta(seconds=self.wb.cfg.session_max_s)))

    def _loop(self) -> None:
        # First round a minute after start: a listener started and stopped at once does no work.
        while not self.stop_event.wait(min(60.0, self.interval_s)):
            try:
                self.run_once()
            except psycopg.Error as exc:  # the database away for a moment: next round
                log.warning("workbench housekeeping: database error %s", type(exc).__name__)
            if self.stop_event.wait(max(0.0, self.interval_s - 60.0)):
                return

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)  # a daemon thread: never hold the listener's shutdown for long


def install_workbench(app: FastAPI, settings: Settings, *, conninfo: Callable[[], str] | None = None,
                      tables: CodeTables | None = None) -> Workbench:
    wb = Workbench(settings, tables or load_code_tables(settings.mappings_dir, settings.hospital, strict=False),
                   conninfo or settings.database.conninfo)
    app.state.workbench = wb
    housekeeping = Housekeeping(wb)
    housekeeping.start()
    app.state.closers = [*getattr(app.state, "closers", []), housekeeping.stop]
    if wb.cfg.his_callback is not None:
        from cdcsync.workbench.callback import CallbackSender

        sender = CallbackSender(wb.cfg.his_callback, wb.registry, wb.conninfo)
        sender.start()
        app.state.closers = [*getattr(app.state, "closers", []), sender.stop]

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> HTMLResponse:
        return wb.render("message.html", exc.status, title="无法继续", message=exc.message)

    @app.get("/static/wb.css")
    async def css() -> Response:
        return Response((HERE / "static" / "wb.css").read_bytes(), media_type="text/css; charset=utf-8")

    @app.get("/static/countdown.js")
    async def countdown_js() -> Response:
        return Response((HERE / "static" / "countdown.js").read_bytes(),
                        media_type="text/javascript; charset=utf-8")

    # The only pages that may run script (script-src 'self': /static/countdown.js, no inline
    # script); every other page keeps the no-script policy (cdcsync/api/web_app.py).
    app.state.script_pages = SCRIPT_PAGES

    # -- SSO -----------------------------------------------------------------------------------

    @app.get("/sso")
    def sso(ticket: str = "") -> HTMLResponse:
        now = dt.datetime.now(dt.UTC)
        with wb.conn() as c:
            try:
                t = verify_ticket(ticket, wb.registry, now=now, ttl_s=wb.cfg.ticket_ttl_s, skew_s=wb.cfg.clock_skew_s)
                store.use_nonce(c, t, dt.timedelta(seconds=2 * (wb.cfg.ticket_ttl_s + wb.cfg.clock_skew_s)))
            except TicketError as exc:
                store.audit(c, exc.claimed_by or "-", "-", "sso_refused", allowed=False, detail=exc.code)
                raise Refused(403, str(exc)) from None
            except store.ReplayedTicket as exc:
                store.audit(c, t.staff_id, t.role, "sso_refused", his=t.his, allowed=False, detail="replayed")
                raise Refused(403, str(exc)) from None
            token, sess = store.start_session(c, t)
            store.audit(c, t.staff_id, t.role, "sso_login", his=t.his, patient_id=t.patient_id)
        target = "/ph" if sess.role == "public_health" and not sess.patient_id else (
            "/admin" if sess.role == "admin" else "/popup")
        # A page of our own origin moves on (meta refresh, no script): a SameSite=Strict cookie is
        # then sent, which a redirect straight out of the HIS's cross-site navigation would not get.
        resp = wb.render("moving.html", target=target)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=wb.cfg.secure_cookie, path="/")
        return resp

    @app.post("/logout")
    async def logout(request: Request) -> HTMLResponse:
        form = await read_form(request)

        def run() -> None:
            with wb.conn() as c:
                sess = wb.session(c, request)
                wb.check_csrf(sess, form)
                store.end_session(c, request.cookies.get(COOKIE, ""))
                store.audit(c, sess.staff_id, sess.role, "logout", his=sess.his)

        await run_in_threadpool(run)
        resp = wb.render("message.html", title="已退出", message="已退出工作台。")
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # -- popup ---------------------------------------------------------------------------------

    def popup_page(request: Request, case_param: str | None, notice: str | None = None,
                   error: str | None = None, status: int = 200) -> HTMLResponse:
        now = dt.datetime.now(dt.UTC)
        with wb.conn() as c:
            sess = wb.session(c, request)
            cs = CaseStore(c)
            patient_id: str | None
            if case_param:
                focus = wb.visible_case(c, sess, parse_int(case_param, "病例编号"), "view_popup")
                patient_id, org = focus.patient_id, focus.org_code
            else:
                patient_id, org = sess.patient_id, wb.settings.org_code
            cases: list[Case] = []
            if patient_id:
                cases = [k for k in cs.list(CaseFilter(patient_id=patient_id, open_only=True, limit=50))
                         if can_see(sess, k.dept_code, k.doctor_id) and k.org_code == org]
            elif sess.role == "doctor":
                cases = cs.list(CaseFilter(doctor_id=sess.staff_id, open_only=True, limit=50))
            items = []
            for k in sorted(cases, key=lambda x: x.due_at):
                left, overdue = remaining_text(k.due_at, now)
                items.append({"case": k, "left": left, "overdue": overdue,
                              "evidence": describe_evidence(c, cs.evidence(k.case_id))})
            returned = store.list_cards(c, doctor_id=sess.staff_id, statuses=(store.CARD_RETURNED,),
                                        patient_id=patient_id or None, limit=20)
            store.audit(c, sess.staff_id, sess.role, "view_popup", his=sess.his, patient_id=patient_id,
                        detail=f"{len(items)} 个病例")
        return wb.render("popup.html", status, sess=sess, items=items, returned=returned, notice=notice,
                         error=error, reasons=EXCLUDE_REASONS, snooze=wb.cfg.snooze_choices_min,
                         case_param=case_param or "")

    @app.get("/popup")
    def popup(request: Request, case: str | None = None, notice: str | None = None) -> HTMLResponse:
        return popup_page(request, case, notice=notice)

    @app.post("/popup/action")
    async def popup_action(request: Request) -> Response:
        form = await read_form(request)

        def run() -> Response:
            with wb.conn() as c:
                sess = wb.session(c, request)
                wb.check_csrf(sess, form)
                case = wb.visible_case(c, sess, parse_int(form.get("case_id"), "病例编号"), "case_action")
                name = form.get("action", "")
                if name == "exclude":
                    label = form.get("reason", "")
                    text = form.get("reason_text", "").strip()[:200]
                    if label not in EXCLUDE_REASONS:
                        return popup_page(request, form.get("back"), error="请选择排除原因", status=422)
                    if label == "其他" and not text:
                        return popup_page(request, form.get("back"), error="选择“其他”时请写明排除原因", status=422)
                    action = Action("exclude", reason=f"{label}：{text}" if text else label)
                    done = "已排除"
                elif name == "snooze":
                    minutes = parse_int(form.get("minutes"), "提醒间隔")
                    if minutes not in wb.cfg.snooze_choices_min:
                        return popup_page(request, form.get("back"), error="请选择稍后提醒的时间", status=422)
                    action = Action("snooze", until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes))
                    done = f"将在 {minutes} 分钟后再次提醒"
                else:
                    raise Refused(400, "未知的操作")
                try:
                    CaseStore(c).apply_action(case.case_id, action, wb.actor(sess))
                except CaseError as exc:
                    store.audit(c, sess.staff_id, sess.role, name, his=sess.his, allowed=False,
                                case_id=case.case_id, patient_id=case.patient_id, detail=type(exc).__name__)
                    return popup_page(request, form.get("back"), error=str(exc), status=422)
                store.audit(c, sess.staff_id, sess.role, name, his=sess.his, case_id=case.case_id,
                            patient_id=case.patient_id)
            back = form.get("back") or ""
            return RedirectResponse("/popup?" + urlencode({"notice": f"病例 {case.case_id}：{done}",
                                                           **({"case": back} if back else {})}), status_code=303)

        return await run_in_threadpool(run)

    # -- report card ---------------------------------------------------------------------------

    def card_page(sess: Session, case: Case | None, values: dict[str, str], sup_values: dict[str, str],
                  errors: dict[str, str], *, revise: store.CardRow | None = None, status: int = 200) -> HTMLResponse:
        disease = values.get("disease_code") or (case.disease_code if case else "")
        supplement = cardmod.supplement_for(disease)
        fields = [{"f": f, "choices": cardmod.choices(f, wb.tables), "value": values.get(f.name, ""),
                   "error": errors.get(f.name)} for f in cardmod.FIELDS]
        sup_fields = [{"f": f, "choices": list(f.choices), "value": sup_values.get(f.name, ""),
                       "error": errors.get(f"sup_{f.name}")} for f in supplement.fields] if supplement else []
        return wb.render("card.html", status, sess=sess, case=case, fields=fields, supplement=supplement,
                         sup_fields=sup_fields, errors=errors, revise=revise,
                         today=cardmod.beijing_now().date().isoformat())

    @app.get("/card")
    def card_form(request: Request, case: str | None = None, revise: str | None = None) -> HTMLResponse:
        with wb.conn() as c:
            sess = wb.session(c, request)
            if revise:
                old = store.get_card(c, parse_int(revise, "报告卡"))
                if old is None or not can_see(sess, old.dept_code, old.doctor_id):
                    raise Refused(404, "报告卡不存在或无权查看")
                if old.status in (store.CARD_SUPERSEDED, store.CARD_DELETED):
                    raise Refused(409, f"报告卡第 {old.version} 版已{old.status}，请订正最新版本")
                kase = CaseStore(c).get(old.case_id) if old.case_id else None
                store.audit(c, sess.staff_id, sess.role, "view_card_form", his=sess.his, case_id=old.case_id,
                            card_id=old.card_id, patient_id=old.patient_id, detail=f"订正第 {old.version} 版")
                return card_page(sess, kase, {k: str(v) for k, v in old.fields.items()},
                                 {k: str(v) for k, v in (old.supplement or {}).items()}, {}, revise=old)
            kase = wb.visible_case(c, sess, parse_int(case, "病例编号"), "view_card_form")
            if not kase.is_open:
                raise Refused(409, f"病例 {kase.case_id} 已结案（{kase.status}），无需再填报告卡。")
            keys = [(e.table_name, e.row_key) for e in CaseStore(c).evidence(kase.case_id)]
            values = cardmod.prefill(c, wb.tables, org_code=kase.org_code, patient_id=kase.patient_id,
                                     visit_id=kase.visit_id, disease_code=kase.disease_code, evidence_keys=keys)
            store.audit(c, sess.staff_id, sess.role, "view_card_form", his=sess.his, case_id=kase.case_id,
                        patient_id=kase.patient_id)
        return card_page(sess, kase, values, {}, {})

    @app.post("/card")
    async def card_save(request: Request) -> Response:
        form = await read_form(request)

        def run() -> Response:
            with wb.conn() as c:
                sess = wb.session(c, request)
                wb.check_csrf(sess, form)
                if sess.role != "doctor" and sess.role != "public_health":
                    raise Refused(403, "只有医生与防保科可以填写报告卡")
                values = {k: form.get(k, "").strip() for k in cardmod.FIELD_NAMES}
                sup = cardmod.supplement_for(values["disease_code"])
                sup_values = {f.name: form.get(f"sup_{f.name}", "").strip() for f in sup.fields} if sup else {}
                old = store.get_card(c, parse_int(form["revise"], "报告卡")) if form.get("revise") else None
                if old is not None:
                    if not can_see(sess, old.dept_code, old.doctor_id):
                        raise Refused(404, "报告卡不存在或无权查看")
                    if old.status not in (store.CARD_RETURNED, store.CARD_PENDING, store.CARD_APPROVED):
                        raise Refused(409, f"报告卡第 {old.version} 版已{old.status}，请订正最新版本")
                    kase = CaseStore(c).get(old.case_id) if old.case_id else None
                else:
                    kase = wb.visible_case(c, sess, parse_int(form.get("case_id"), "病例编号"), "save_card")
                    if not kase.is_open:
                        raise Refused(409, f"病例 {kase.case_id} 已结案（{kase.status}），无需再填报告卡。")
                errors = cardmod.check_card(values, wb.tables, cardmod.beijing_now())
                if sup:
                    errors |= cardmod.check_supplement(values["disease_code"], values, sup_values)
                    for f in sup.fields:
                        val = sup_values[f.name]
                        if val and f.choices and val not in dict(f.choices):
                            errors[f"sup_{f.name}"] = f"{f.label}：请从列表中选择"
                if errors:
                    store.audit(c, sess.staff_id, sess.role, "save_card", his=sess.his, allowed=False,
                                case_id=kase.case_id if kase else None, patient_id=kase.patient_id if kase else None,
                                detail=f"{len(errors)} 项未通过校验：{','.join(sorted(errors))}")
                    return card_page(sess, kase, values, sup_values, errors, revise=old, status=422)
                disease_name = wb.tables.domain("notifiable_disease").name_of(values["disease_code"]) or ""
                fields = {**values, "report_doctor": sess.staff_name, "report_doctor_id": sess.staff_id,
                          "report_dept_code": sess.dept_code, "report_dept_name": sess.dept_name or "",
                          "report_date": cardmod.beijing_now().date().isoformat()}
                with c.transaction():
                    if old is not None:
                        store.supersede(c, old.card_row_id)
                    new = store.insert_card(
                        c, card_id=old.card_id if old else store.new_card_id(c, wb.settings.org_code),
                        version=old.version + 1 if old else 1, case_id=kase.case_id if kase else None,
                        org_code=kase.org_code if kase else wb.settings.org_code,
                        patient_id=kase.patient_id if kase else (old.patient_id if old else ""),
                        visit_id=kase.visit_id if kase else None, disease_code=values["disease_code"],
                        disease_name=disease_name, dept_code=sess.dept_code, doctor_id=sess.staff_id,
                        doctor_name=sess.staff_name, fields=fields,
                        supplement_kind=sup.kind if sup else None, supplement=sup_values if sup else None)
                    if kase is not None and kase.is_open:
                        CaseStore(c).close_reported(kase.case_id, new.card_id, wb.actor(sess),
                                                    f"工作台填报报告卡 {new.card_id}")
                    store.audit(c, sess.staff_id, sess.role, "save_card" if old is None else "revise_card",
                                his=sess.his, case_id=new.case_id, card_id=new.card_id, patient_id=new.patient_id,
                                detail=f"第 {new.version} 版")
            return RedirectResponse("/popup?" + urlencode({"notice": f"报告卡 {new.card_id}（第 {new.version} 版）"
                                                                     "已保存，等待防保科审核"}), status_code=303)

        return await run_in_threadpool(run)

    # -- 防保科 --------------------------------------------------------------------------------

    def require_ph(sess: Session) -> None:
        if sess.role != "public_health":
            raise Refused(403, "此页面仅供防保科使用。")

    @app.get("/ph")
    def ph_list(request: Request, status: str = "", overdue: str = "", dept: str = "", doctor: str = "",
                disease: str = "", since: str = "", until: str = "") -> HTMLResponse:
        now = dt.datetime.now(dt.UTC)

        def day(v: str) -> dt.date | None:
            try:
                return dt.date.fromisoformat(v) if v else None
            except ValueError:
                return None

        with wb.conn() as c:
            sess = wb.session(c, request)
            require_ph(sess)
            statuses = [s for s in Status if str(s) == status]
            flt = CaseFilter(dept_code=dept or None, doctor_id=doctor or None, disease_code=disease or None,
                             statuses=statuses, overdue_at=now if overdue else None, limit=500,
                             since=dt.datetime.combine(d, dt.time(), BEIJING) if (d := day(since)) else None)
            until_d = day(until)
            cases = [k for k in CaseStore(c).list(flt)
                     if until_d is None or k.created_at.astimezone(BEIJING).date() <= until_d]
            card_statuses = (status,) if status in (store.CARD_PENDING, store.CARD_APPROVED, store.CARD_RETURNED,
                                                     store.CARD_SUPERSEDED, store.CARD_DELETED) else ()
            cards = store.list_cards(c, dept_code=dept or None, doctor_id=doctor or None,
                                     disease_code=disease or None, statuses=card_statuses, since=day(since),
                                     until=until_d)
            diseases = wb.tables.domain("notifiable_disease")
            his_cards = []
            for hc in store.his_cards(c, dept_code=dept or None, doctor_id=doctor or None, since=day(since),
                                      until=until_d):
                national = wb.tables.map("notifiable_disease", hc["disease_code"])
                if disease and national != disease:
                    continue
                hc["disease_name"] = diseases.name_of(national) if national else f"未对照（{hc['disease_code']}）"
                his_cards.append(hc)
            store.audit(c, sess.staff_id, sess.role, "view_list", his=sess.his,
                        detail=f"{len(cases)} 个病例，{len(cards)} 张报告卡，{len(his_cards)} 张院内报告卡")
        rows = [{"case": k, "left": remaining_text(k.due_at, now)} for k in cases]
        return wb.render("ph_list.html", sess=sess, cases=rows, cards=cards, now=now, his_cards=his_cards,
                         f={"status": status, "overdue": overdue, "dept": dept, "doctor": doctor, "disease": disease,
                            "since": since, "until": until},
                         case_statuses=[str(s) for s in Status],
                         card_statuses=[store.CARD_PENDING, store.CARD_APPROVED, store.CARD_RETURNED,
                                        store.CARD_SUPERSEDED, store.CARD_DELETED])

    def card_labels(card: store.CardRow) -> list[tuple[str, str]]:
        out = []
        for f in cardmod.FIELDS:
            raw = str(card.fields.get(f.name, "") or "")
            label = dict(cardmod.choices(f, wb.tables)).get(raw, raw) if f.kind == "select" and raw else raw
            out.append((f.label, label))
        sup = cardmod.supplement_for(card.disease_code)
        if sup and card.supplement:
            for f in sup.fields:
                raw = str(card.supplement.get(f.name, "") or "")
                out.append((f"{sup.title}·{f.label}", dict(f.choices).get(raw, raw)))
        return out

    @app.get("/ph/card/{row_id}")
    def ph_card(request: Request, row_id: int, error: str | None = None) -> HTMLResponse:
        with wb.conn() as c:
            sess = wb.session(c, request)
            card = store.get_card(c, row_id)
            if card is None or not can_see(sess, card.dept_code, card.doctor_id):
                raise Refused(404, "报告卡不存在或无权查看")
            store.audit(c, sess.staff_id, sess.role, "view_card", his=sess.his, case_id=card.case_id,
                        card_id=card.card_id, patient_id=card.patient_id, detail=f"第 {card.version} 版")
        return wb.render("card_view.html", sess=sess, card=card, labels=card_labels(card), error=error)

    @app.post("/ph/card/{row_id}/review")
    async def ph_review(request: Request, row_id: int) -> Response:
        form = await read_form(request)

        def run() -> Response:
            with wb.conn() as c:
                sess = wb.session(c, request)
                wb.check_csrf(sess, form)
                require_ph(sess)
                card = store.get_card(c, row_id)
                if card is None:
                    raise Refused(404, "报告卡不存在")
                decision = form.get("decision", "")
                reason = form.get("reason", "").strip()[:500]
                target = {"approve": (store.CARD_APPROVED, "审核通过"), "return": (store.CARD_RETURNED, "退回"),
                          "delete": (store.CARD_DELETED, "删除")}.get(decision)
                if target is None:
                    raise Refused(400, "未知的审核结果")
                if card.status in (store.CARD_SUPERSEDED, store.CARD_DELETED):
                    raise Refused(409, f"报告卡第 {card.version} 版已{card.status}，不能再审核")
                if decision != "approve" and not reason:
                    return RedirectResponse(f"/ph/card/{row_id}?" + urlencode({"error": "退回或删除须填写原因"}),
                                            status_code=303)
                with c.transaction():
                    new = store.set_card_status(c, row_id, target[0], sess.staff_id, reason or None)
                    store.write_back(c, new, target[1], reason or None)
                    store.audit(c, sess.staff_id, sess.role, f"review_{decision}", his=sess.his, case_id=card.case_id,
                                card_id=card.card_id, patient_id=card.patient_id, detail=f"第 {card.version} 版")
            return RedirectResponse(f"/ph/card/{row_id}", status_code=303)

        return await run_in_threadpool(run)

    install_admin(app, wb)

    # -- workload, timeliness, audit (防保科) ------------------------------------------------------

    def stats_rows(request: Request, kind: str, day: str) -> tuple[Any, list[dict[str, Any]], Session]:
        try:
            d = dt.date.fromisoformat(day) if day else dt.datetime.now(BEIJING).date()
        except ValueError:
            raise Refused(400, "日期格式应为 年-月-日") from None
        p = wbstats.period("month" if kind == "month" else "day", d)
        with wb.conn() as c:
            sess = wb.session(c, request)
            require_ph(sess)
            rows = wbstats.workload(c, p, dt.datetime.now(dt.UTC))
            store.audit(c, sess.staff_id, sess.role, "view_stats", his=sess.his, detail=p.label)
        return p, rows, sess

    @app.get("/ph/stats")
    def ph_stats(request: Request, period: str = "day", date: str = "") -> HTMLResponse:
        p, rows, sess = stats_rows(request, period, date)
        return wb.render("ph_stats.html", sess=sess, p=p, rows=rows, kind=period, date=date)

    @app.get("/ph/stats.csv")
    def ph_stats_csv(request: Request, period: str = "day", date: str = "") -> Response:
        p, rows, _sess = stats_rows(request, period, date)
        name = f"workload-{p.start:%Y%m%d}-{period}.csv"
        return Response(wbstats.to_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/ph/audit")
    def ph_audit(request: Request, actor: str = "", patient: str = "") -> HTMLResponse:
        with wb.conn() as c:
            sess = wb.session(c, request)
            require_ph(sess)
            rows = store.audit_lines(c, actor=actor or None, patient_id=patient or None)
            store.audit(c, sess.staff_id, sess.role, "view_audit", his=sess.his, patient_id=patient or None)
        return wb.render("ph_audit.html", sess=sess, rows=rows, actor=actor, patient=patient)

    return wb
