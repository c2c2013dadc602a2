"""JSON errors with a stable code and a Chinese message, and the request log.

Clients never see a stack trace: unexpected exceptions become ``500 INTERNAL_ERROR`` and are
logged by exception type only (a database error's text can quote a submitted value, i.e. patient
data). Every request is logged as method, path, status, duration and client name, never with
query or body values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdcsync.engine.health import last_errors, record_error
from cdcsync.textsafe import escape_controls

log = logging.getLogger("cdcsync.api")

__all__ = ["ApiError", "install_error_handlers", "last_errors", "record_error"]


class ApiError(Exception):
    """An error answered to the client as ``{"code", "message", ...extra}``."""

    def __init__(self, status: int, code: str, message: str, extra: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.extra, self.headers)


def error_response(status: int, code: str, message: str, extra: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


# Stable codes for the errors Starlette/FastAPI raise themselves.
_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "请求格式不正确"),
    401: ("AUTH_MISSING", "缺少认证信息"),
    403: ("FORBIDDEN", "无权访问"),
    404: ("NOT_FOUND", "请求的地址不存在"),
    405: ("METHOD_NOT_ALLOWED", "该地址不支持此请求方法"),
    413: ("BODY_TOO_LARGE", "请求体过大"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "请求体应为 JSON（Content-Type: application/json）"),
}


def install_error_handlers(app: FastAPI, component: str = "http") -> None:
    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code, message = _HTTP_CODES.get(exc.status_code, ("HTTP_ERROR", "请求未能处理"))
        return error_response(exc.status_code, code, message, headers=exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        # Only reached for parameters FastAPI validates itself (path/query); bodies are ours.
        assert isinstance(exc, RequestValidationError)
        fields = [".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()]
        return error_response(400, "BAD_REQUEST", "请求参数不正确", {"fields": fields})

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(RequestLogMiddleware, app_name=component, component=component)


def _describe(exc: BaseException) -> str:
    """Exception type plus, for PostgreSQL errors, the SQLSTATE — never the message text."""
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{type(exc).__module__}.{type(exc).__name__}" + (f" sqlstate={sqlstate}" if sqlstate else "")


class RequestLogMiddleware:
    """Logs each HTTP request and turns an unhandled exception into a JSON 500 (no traceback out).

    Pure ASGI (not BaseHTTPMiddleware) so streaming request bodies are left alone.
    """

    def __init__(self, app: ASGIApp, app_name: str = "api", component: str = "http") -> None:
        self.app = app
        self.app_name = app_name
        self.component = component

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False
        path = escape_controls(str(scope.get("path")))  # "/%0aFAKE …" must not start a new log line

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # noqa: BLE001 - last line of defence, see module doc
            log.error("%s %s 处理出错：%s", scope.get("method"), path, _describe(exc))
            record_error(f"api.{self.component}", f"{scope.get('method')} {path}: {_describe(exc)}")
            status = 500
            if not response_started:
                await error_response(500, "INTERNAL_ERROR", "服务器内部错误，请联系前置机管理员查看日志")(
                    scope, receive, send)
        finally:
            state = scope.get("state") or {}
            client = state.get("client_name", "-") if isinstance(state, dict) else "-"
            log.info("%s %s %s %d %.1fms client=%s", self.app_name, scope.get("method"), path,
                     status, (time.perf_counter() - started) * 1000, client)
