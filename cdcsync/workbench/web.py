"""What the workbench's pages share: the Workbench (settings, code tables, connections, templates,
sessions), refusals rendered as Chinese pages, form parsing, who may see what."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import psycopg
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from cdcsync.beijing import BEIJING
from cdcsync.config import Settings
from cdcsync.mapping.domains import CodeTables
from cdcsync.spec import Spec, load_spec
from cdcsync.surveil.cases import Actor, Case, CaseError, CaseStore
from cdcsync.workbench import store
from cdcsync.workbench.sso import ROLE_LABELS, HisRegistry
from cdcsync.workbench.store import Session

HERE = Path(__file__).parent
COOKIE = "cdcsync_wb"
MAX_FORM_BYTES = 64 * 1024
EXCLUDE_REASONS = ("诊断有误，已排除传染病", "非首诊，已由他院或他科报告", "同一病程已报告过", "诊断录入错误", "其他")


class Refused(Exception):
    """An HTTP refusal rendered as a Chinese page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["bj"] = lambda t: t.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if t else "—"
    # data-due for static/countdown.js: whole seconds, UTC, "Z" (what even ES5's Date.parse reads)
    env.filters["due_iso"] = lambda t: t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else ""
    return env


def remaining_text(due: dt.datetime, now: dt.datetime) -> tuple[str, bool]:
    """("剩余 1 小时 5 分" | "已超时 20 分", overdue)."""
    secs = int((due - now).total_seconds())
    minutes = abs(secs) // 60
    text = f"{minutes // 60} 小时 {minutes % 60} 分" if minutes >= 60 else f"{minutes} 分"
    return (f"已超时 {text}", True) if secs < 0 else (f"剩余 {text}", False)


def can_see(sess: Session, dept_code: str | None, doctor_id: str | None) -> bool:
    """A doctor sees the cases and cards of their department (and their own); the 防保科 all."""
    if sess.sees_all:
        return True
    if sess.role != "doctor":
        return False  # admin: no patient data
    return dept_code == sess.dept_code or doctor_id == sess.staff_id


class Workbench:
    def __init__(self, settings: Settings, tables: CodeTables, conninfo: Callable[[], str]) -> None:
        self.settings = settings
        self.cfg = settings.workbench
        self.tables = tables
        self.conninfo = conninfo
        self.registry = HisRegistry(self.cfg.secrets_dir(settings.state_dir))
        self.env = _env()
        self._spec: Spec | None = None

    def spec(self) -> Spec:
        if self._spec is None:
            self._spec = load_spec()
        return self._spec

    @contextmanager
    def conn(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10,
                             application_name="cdcsync-workbench") as c:
            yield c

    def render(self, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(role_labels=ROLE_LABELS, **ctx)
        return HTMLResponse(html, status_code=status)

    # -- sessions ------------------------------------------------------------------------------

    def session(self, c: psycopg.Connection[Any], request: Request) -> Session:
        token = request.cookies.get(COOKIE, "")
        sess = store.load_session(c, token, dt.timedelta(seconds=self.cfg.session_idle_s),
                                  dt.timedelta(seconds=self.cfg.session_max_s)) if token else None
        if sess is None:
            raise Refused(401, "未登录或登录已超时：请从院内系统（HIS）重新打开本页面。")
        return sess

    @staticmethod
    def check_csrf(sess: Session, form: dict[str, str]) -> None:
        if not hmac.compare_digest(form.get("csrf", ""), sess.csrf):
            raise Refused(403, "表单已失效（防伪令牌不符）：请刷新页面后重试。")

    def actor(self, sess: Session) -> Actor:
        return Actor(sess.staff_id, sess.role)

    def visible_case(self, c: psycopg.Connection[Any], sess: Session, case_id: int, action: str) -> Case:
        cs = CaseStore(c)
        try:
            case = cs.get(case_id)
        except CaseError:
            raise Refused(404, f"病例 {case_id} 不存在") from None
        if not can_see(sess, case.dept_code, case.doctor_id):
            store.audit(c, sess.staff_id, sess.role, action, his=sess.his, allowed=False, case_id=case_id,
                        patient_id=case.patient_id, detail="非本科室病例")
            raise Refused(403, "无权查看其他科室的病例。")
        return case


async def read_form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Refused(413, "提交的内容过大")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "提交的表单无法解析") from None
    return {k: v[0] for k, v in parsed.items()}


def parse_int(value: str | None, what: str) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise Refused(400, f"{what}应为数字") from None


