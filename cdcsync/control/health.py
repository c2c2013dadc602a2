"""Is the restarted service healthy? (``upgrade apply | rollback`` wait for it.)

Healthy means: the monitoring listener (8883) answers ``/healthz`` with 200 and, when it reports
its version (releases from this one on), the expected one; the other enabled listeners accept
connections; and every enabled destination's replication slot is held by a running stream.
It must stay so for ``control.health_settle_s`` so that a release dying right after start counts
as unhealthy.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

import httpx
import psycopg

from cdcsync.config import Settings
from cdcsync.settings.api import ListenerSettings
from cdcsync.source.slots import slot_name


def _local_host(listener: ListenerSettings) -> str:
    # A wildcard bind is reached on loopback.
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listener.host, listener.host)  # noqa: S104


def probe(settings: Settings, version: str) -> str | None:
    """None when healthy, else why not (Chinese, for the history and the admin)."""
    api = settings.api
    mon = api.monitor
    if not mon.enabled:
        return "监控管理端口（api.monitor）未启用，无法确认服务健康"
    host = _local_host(mon)
    scheme = "https" if mon.tls else "http"
    # Loopback, a document without secrets: the listener's own (often self-signed) certificate is not checked.
    verify: ssl.SSLContext | bool = False
    url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{mon.port}/healthz"
    try:
        r = httpx.get(url, timeout=3.0, verify=verify)
    except httpx.HTTPError as exc:
        return f"监控管理端口 {host}:{mon.port} 无响应（{type(exc).__name__}）"
    if r.status_code != 200:
        return f"监控管理端口 /healthz 返回 HTTP {r.status_code}"
    try:
        running = r.json().get("version")
    except ValueError:
        running = None
    if running is not None and running != version:
        return f"运行中的版本为 {running}，应为 {version}"
    for name in ("data", "web", "control"):
        lst: ListenerSettings = getattr(api, name)
        if not lst.enabled:
            continue
        try:
            socket.create_connection((_local_host(lst), lst.port), timeout=3.0).close()
        except OSError as exc:
            return f"{name} 端口 {lst.port} 未开放（{type(exc).__name__}）"
    slots = {slot_name(d.name): d.name for d in settings.enabled_destinations}
    try:
        with psycopg.connect(settings.database.conninfo(), autocommit=True, connect_timeout=5) as conn:
            active = {n for (n,) in conn.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE active AND slot_name = ANY(%s)",
                (list(slots),)).fetchall()}
    except psycopg.Error as exc:
        return f"无法连接镜像数据库（{type(exc).__name__}）"
    idle = [d for s, d in slots.items() if s not in active]
    if idle:
        return f"目的地 {'、'.join(idle)} 的数据流未在运行"
    return None


def wait_healthy(settings: Settings, version: str, *, on_wait: Callable[[str], None] | None = None) -> str | None:
    """None once healthy for ``health_settle_s`` within ``health_timeout_s``; else the last reason."""
    c = settings.control
    deadline = time.monotonic() + c.health_timeout_s
    healthy_since: float | None = None
    while True:
        reason = probe(settings, version)
        now = time.monotonic()
        if reason is None:
            healthy_since = healthy_since or now
            if now - healthy_since >= c.health_settle_s:
                return None
        else:
            healthy_since = None
            if on_wait is not None:
                on_wait(reason)
        if healthy_since is None and now >= deadline:  # a healthy run may finish its settle time
            return reason
        time.sleep(0.5)
