"""Reminders API on 8881 for the HIS's own popups (API keys with the ``reminders`` use).

* ``GET /api/v1/reminders?doctor_id=&dept_code=&status=&since=&before_id=&limit=``: newest first,
  paged by ``before_id``; without ``status`` only what must be acted on (open, not snoozed).
* ``GET /api/v1/reminders/stream``: Server-Sent Events with the same filters; each event is a case
  change (opened, evidence, acked, closed …) with the reminder as it now stands. The event id is a
  commit-ordered cursor (:mod:`cdcsync.surveil.feed`): reconnecting with ``Last-Event-ID`` misses
  nothing.
* ``POST /api/v1/cases/{case_id}/actions``: ``ack`` / ``snooze`` (``until``, bounded) / ``exclude``
  (``reason``) / ``reported`` (``card_no``), by ``doctor_id`` (checked against the key's doctors and
  departments), recorded in the case history.

Who may see what: a key's ``scope_doctors`` / ``scope_depts`` (sql/122_api_key_reminders.sql) bound
the doctors and departments it reads and acts for; outside them → 403.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from cdcsync.api.auth import Client, require_api
from cdcsync.api.data_deps import Authenticated, UsesDataApi, api_connection
from cdcsync.api.errors import ApiError
from cdcsync.surveil.cases import Action, Actor, CaseError, CaseStore, Status
from cdcsync.surveil.feed import (
    BEIJING,
    ReminderScope,
    feed_head,
    list_reminders,
    parse_cursor,
    read_feed,
    reminder,
)

PREFIX = "/api/v1"
MAX_LIMIT = 200
POLL_S = 0.5  # how often a stream looks for new history rows
KEEPALIVE_S = 15.0  # an SSE comment line keeps proxies from closing an idle stream
_CODE_STATUS = {"invalid": 422, "not_found": 404, "conflict": 409}
_ROLES = ("doctor", "public_health")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _text(value: Any, name: str, max_len: int = 64) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_len or any(ord(ch) < 32 for ch in value):
        raise ApiError(400, "BAD_REQUEST", f"参数 {name} 应为不超过 {max_len} 个字符的文本", {"field": name})
    return value.strip()


def _statuses(value: str | None) -> tuple[Status, ...]:
    if not value:
        return ()
    out = []
    for part in value.split(","):
        try:
            out.append(Status(part.strip()))
        except ValueError:
            raise ApiError(400, "BAD_REQUEST", f"status 应为 {'、'.join(s.value for s in Status)} 之一（可逗号分隔）",
                           {"field": "status"}) from None
    return tuple(out)


def _since(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "BAD_REQUEST", "since 应为日期或日期时间（如 2026-12-01 或 2026-12-01T08:00:00+08:00）",
                       {"field": "since"}) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=BEIJING)


def _int(value: str | None, name: str, default: int | None, lo: int, hi: int) -> int | None:
    if value is None or value == "":
        return default
    if not value.isdigit() or not lo <= int(value) <= hi:
        raise ApiError(400, "BAD_REQUEST", f"{name} 应为 {lo}–{hi} 之间的整数", {"field": name})
    return int(value)


def check_doctor(client: Client, doctor_id: str) -> None:
    allowed = client.scope.doctors
    if allowed is not None and doctor_id not in allowed:
        raise ApiError(403, "SCOPE_DOCTOR", f"该 API 密钥（{client.name}）无权代表医生 {doctor_id} 查看或处理提醒",
                       {"refused": {"field": "doctor_id"}})


def check_dept(client: Client, dept_code: str | None) -> None:
    allowed = client.scope.depts
    if allowed is not None and dept_code not in allowed:
        raise ApiError(403, "SCOPE_DEPT",
                       f"该 API 密钥（{client.name}）无权查看或处理科室 {dept_code or '（未知）'} 的提醒",
                       {"refused": {"field": "dept_code"}})


def scope_of(client: Client, request: Request) -> ReminderScope:
    """The request's filters, checked against the key: 400 without doctor and department, 403 outside."""
    require_api(client, "reminders")
    q = request.query_params
    doctor_id = _text(q.get("doctor_id"), "doctor_id")
    dept_code = _text(q.get("dept_code"), "dept_code")
    if doctor_id is None and dept_code is None:
        raise ApiError(400, "BAD_REQUEST", "请指定 doctor_id（医生工号）或 dept_code（科室代码）",
                       {"field": "doctor_id"})
    if doctor_id is not None:
        check_doctor(client, doctor_id)
    elif client.scope.doctors is not None:
        raise ApiError(403, "SCOPE_DOCTOR", f"该 API 密钥（{client.name}）只能按医生工号查看提醒，请指定 doctor_id",
                       {"refused": {"field": "dept_code"}})
    if dept_code is not None:
        check_dept(client, dept_code)
    return ReminderScope(doctor_id=doctor_id, dept_code=dept_code, depts_allowed=client.scope.depts,
                         doctors_allowed=client.scope.doctors, statuses=_statuses(q.get("status")),
                         since=_since(q.get("since")))


def _sse(event_id: str, event: str, data: dict[str, Any]) -> bytes:
    return b"id: " + event_id.encode() + b"\nevent: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


router = APIRouter(prefix=PREFIX, tags=["监测预警提醒（reminders）"])


@router.get("/reminders", summary="待处理提醒列表",
            description="按医生或科室列出需要处理的监测预警提醒，最新的在前；before_id 翻页。")
async def reminders(request: Request, api: UsesDataApi, client: Authenticated) -> JSONResponse:
    with api.limiter.slot(client.name):
        scope = scope_of(client, request)
        q = request.query_params
        limit = _int(q.get("limit"), "limit", 50, 1, MAX_LIMIT) or 50
        before = _int(q.get("before_id"), "before_id", None, 1, 2**62)

        def run() -> list[dict[str, Any]]:
            with api_connection(api.pool) as conn:
                items = list_reminders(conn, scope, before_id=before, limit=limit, now=_now())
                conn.commit()
                return items

        items = await run_in_threadpool(run)
    nxt = items[-1]["case_id"] if len(items) == limit else None
    return JSONResponse({"items": items, "count": len(items), "next_before_id": nxt})


@router.get("/reminders/stream", summary="提醒推送（SSE）",
            description="Server-Sent Events：病例的每次变化（生成、追加证据、已阅、暂缓、结案）推送一条；"
                        "断线重连时携带 Last-Event-ID 可续传，不丢失。")
async def stream(request: Request, api: UsesDataApi, client: Authenticated) -> StreamingResponse:
    scope = scope_of(client, request)
    given = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    start = parse_cursor(given)
    if given and start is None:
        raise ApiError(400, "BAD_REQUEST", "Last-Event-ID 格式不正确（应为服务器给出的事件编号）",
                       {"field": "Last-Event-ID"})
    if start is None:
        def head() -> str:
            with api_connection(api.pool) as conn:
                return feed_head(conn)

        start = parse_cursor(await run_in_threadpool(head))
    assert start is not None

    async def events() -> AsyncIterator[bytes]:
        cursor: tuple[int, int] = start
        yield b"retry: 3000\n\n"
        last_sent = time.monotonic()
        while not await request.is_disconnected():
            def poll(after: tuple[int, int] = cursor) -> tuple[list[Any], tuple[int, int]]:
                with api_connection(api.pool) as conn:
                    return read_feed(conn, scope, after, limit=500, now=_now())

            try:
                items, cursor = await run_in_threadpool(poll)
            except ApiError:  # database busy or down: try again, the cursor has not moved
                items = []
            for item in items:
                yield _sse(item.cursor, "case", item.data)
                last_sent = time.monotonic()
            if items:
                continue  # more may be waiting
            if time.monotonic() - last_sent >= KEEPALIVE_S:
                yield b": keepalive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/cases/{case_id}/actions", summary="处理提醒",
             description="ack 已阅；snooze 暂缓（until，最长 8 小时且不超过报告时限）；exclude 排除（reason 必填）；"
                         "reported 已报卡（card_no 必填）。doctor_id 为操作医生工号，记入病例处理记录。")
async def act(case_id: int, request: Request, api: UsesDataApi, client: Authenticated) -> JSONResponse:
    with api.limiter.slot(client.name):
        require_api(client, "reminders")
        body = await _body(request)
        doctor_id = _text(body.get("doctor_id"), "doctor_id")
        if doctor_id is None:
            raise ApiError(400, "BAD_REQUEST", "请在 doctor_id 中给出操作医生的工号", {"field": "doctor_id"})
        check_doctor(client, doctor_id)
        role = body.get("role", "doctor")
        if role not in _ROLES:
            raise ApiError(400, "BAD_REQUEST", "role 应为 doctor（医生）或 public_health（防保科）",
                           {"field": "role"})
        action = _action(body)

        def run() -> dict[str, Any]:
            with api_connection(api.pool) as conn:
                store = CaseStore(conn)
                try:
                    case = store.get(case_id)
                    check_dept(client, case.dept_code)
                    new = store.apply_action(case_id, action, Actor(doctor_id, role))
                    conn.commit()
                except CaseError as exc:
                    conn.rollback()
                    raise ApiError(_CODE_STATUS.get(exc.code, 422), f"CASE_{exc.code.upper()}", str(exc)) from None
                return reminder(new, _now(), None)

        data = await run_in_threadpool(run)
    return JSONResponse({"case": data})


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 16_384:
        raise ApiError(413, "BODY_TOO_LARGE", "请求体过大")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "INVALID_JSON", "请求体不是合法的 JSON（UTF-8）") from None
    if not isinstance(body, dict):
        raise ApiError(400, "BAD_REQUEST", "请求体应为 JSON 对象")
    unknown = sorted(set(body) - {"action", "doctor_id", "role", "until", "reason", "card_no"})
    if unknown:
        raise ApiError(400, "BAD_REQUEST", f"请求体中有未知字段：{'、'.join(unknown)[:200]}")
    return body


def _action(body: dict[str, Any]) -> Action:
    name = body.get("action")
    if name not in Action.NAMES:
        raise ApiError(400, "BAD_REQUEST",
                       "action 应为 ack（已阅）、snooze（暂缓）、exclude（排除）、reported（已报卡）之一",
                       {"field": "action"})
    until = None
    if body.get("until") is not None:
        if not isinstance(body["until"], str):
            raise ApiError(400, "BAD_REQUEST", "until 应为带时区的日期时间文本", {"field": "until"})
        try:
            until = dt.datetime.fromisoformat(body["until"])
        except ValueError:
            raise ApiError(400, "BAD_REQUEST", "until 应为带时区的日期时间（如 2026-12-01T10:00:00+08:00）",
                           {"field": "until"}) from None
    reason = _text(body.get("reason"), "reason", 500)
    card_no = _text(body.get("card_no"), "card_no", 64)
    return Action(str(name), until=until, reason=reason, card_no=card_no)
