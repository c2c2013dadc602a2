"""The 8882 listener: ``POST /api/v1/config/packages`` (docs/control-plane.md).

Every answer to a package, refusals included, is a JSON reply signed by the front end's key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from cdcsync.config import Settings
from cdcsync.control.package import PACKAGES_PATH
from cdcsync.control.service import ControlService
from cdcsync.validate.reload import RulesHolder

log = logging.getLogger(__name__)


def create_control_app(settings: Settings, *, rules: RulesHolder | None = None,
                       on_applied: Callable[[str], None] | None = None) -> FastAPI:
    service = ControlService(settings, rules, on_applied=on_applied)
    service.reconcile()
    app = FastAPI(title="cdcsync 配置更新", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.control = service
    limit = settings.control.max_package_bytes

    @app.post(PACKAGES_PATH)
    async def packages(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return JSONResponse({"error": "too_large", "message": f"配置包超过 {limit} 字节"}, status_code=413)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return JSONResponse({"error": "too_large", "message": f"配置包超过 {limit} 字节"}, status_code=413)
            chunks.append(chunk)
        source = request.client.host if request.client else ""
        out = await run_in_threadpool(service.handle, b"".join(chunks), source)
        return Response(out.body, status_code=out.http_status, headers=out.headers, media_type="application/json")

    @app.get("/api/v1/config/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
