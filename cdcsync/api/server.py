"""Run the enabled HTTP listeners with uvicorn, each in its own thread beside the streams.

``start_servers(settings, ...)`` binds every enabled listener first (a port already taken is a
clear one-line error naming the config key, "如已被占用，可更换"), then serves; the returned
handle's ``stop()`` shuts them down gracefully. Used by ``cdcsync run`` and alone by ``cdcsync serve``.

Before anything is bound, the TLS files of each listener are loaded (a missing file, a key that
others can read, a certificate that does not match its key: one line naming the config key), and
8881/8883 on a non-loopback address without TLS are refused unless ``allow_plain_http`` is set
(see :func:`cdcsync.settings.api.plain_http_findings`); with it, a warning is logged at each start.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI

from cdcsync.api import ApiStartError
from cdcsync.crypto import KeyFileError
from cdcsync.crypto.keys import check_private_key_permissions
from cdcsync.settings.api import ApiSettings, ListenerSettings, api_settings, plain_http_findings

if TYPE_CHECKING:
    from cdcsync.config import Settings

log = logging.getLogger("cdcsync.api")

LISTENERS: tuple[str, ...] = ("data", "control", "monitor", "web")
_PURPOSE = {"data": "数据操作API", "control": "配置更新", "monitor": "监控管理", "web": "PC端web服务"}


@dataclass
class _Running:
    name: str
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket
    app: FastAPI


@dataclass
class ServerHandle:
    running: list[_Running] = field(default_factory=list)

    @property
    def ports(self) -> dict[str, int]:
        return {r.name: int(r.sock.getsockname()[1]) for r in self.running}

    def app(self, name: str) -> FastAPI:
        for r in self.running:
            if r.name == name:
                return r.app
        raise KeyError(name)

    def alive(self) -> bool:
        return all(r.thread.is_alive() for r in self.running)

    def stop(self, timeout: float = 10.0) -> None:
        for r in self.running:
            r.server.should_exit = True
        deadline = time.monotonic() + timeout
        for r in self.running:
            r.thread.join(max(0.1, deadline - time.monotonic()))
            if r.thread.is_alive():
                r.server.force_exit = True
                r.thread.join(2.0)
            r.sock.close()
            pool = getattr(r.app.state, "pool", None)
            if pool is not None:
                pool.close()
            for close in getattr(r.app.state, "closers", []):  # background work of an app (HIS callback)
                close()
        self.running.clear()


def _bind(name: str, cfg: ListenerSettings) -> socket.socket:
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "端口已被占用" if exc.errno in (98, 48) else (exc.strerror or str(exc))
        raise ApiStartError(
            f"{_PURPOSE[name]}无法监听 {cfg.host}:{cfg.port}：{why}；可在配置 api.{name}.port 中更换端口"
            f"（或以 api.{name}.enabled: false 关闭）"
        ) from None
    sock.set_inheritable(True)
    return sock


def server_ssl_context(name: str, cfg: ListenerSettings) -> ssl.SSLContext | None:
    """The TLS context of a listener (None without TLS): TLS 1.2 or later, client certificates
    required when ``tls_client_ca_file`` is set. ApiStartError naming the config key otherwise."""
    if cfg.tls_cert_file is None or cfg.tls_key_file is None:
        return None
    where = f"{_PURPOSE[name]}的 TLS 配置（api.{name}）"
    try:
        check_private_key_permissions(cfg.tls_key_file)
    except KeyFileError as exc:
        raise ApiStartError(f"{where}：{exc}") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for key, path in (("tls_cert_file", cfg.tls_cert_file), ("tls_key_file", cfg.tls_key_file),
                      ("tls_client_ca_file", cfg.tls_client_ca_file)):
        if path is not None and not path.is_file():
            raise ApiStartError(f"{where}：{key} 指定的文件 {path} 不存在")
    try:
        ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ApiStartError(f"{where}：无法加载证书 {cfg.tls_cert_file} 与私钥 {cfg.tls_key_file}"
                            f"（应为 PEM 格式、未加密且相互匹配）：{getattr(exc, 'reason', None) or exc}") from None
    if cfg.tls_client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(cfg.tls_client_ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ApiStartError(f"{where}：无法加载客户端 CA 证书 {cfg.tls_client_ca_file}（应为 PEM 格式）："
                                f"{getattr(exc, 'reason', None) or exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _uvicorn_tls(cfg: ListenerSettings) -> dict[str, Any]:
    """uvicorn's own TLS options for what :func:`server_ssl_context` checked beforehand."""
    if not cfg.tls:
        return {}
    opts: dict[str, Any] = {"ssl_certfile": str(cfg.tls_cert_file), "ssl_keyfile": str(cfg.tls_key_file)}
    if cfg.tls_client_ca_file is not None:
        opts |= {"ssl_ca_certs": str(cfg.tls_client_ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return opts


def build_apps(settings: Settings, api: ApiSettings | None = None, **deps: Any) -> dict[str, FastAPI]:
    """The apps of the enabled listeners. ``deps``: rules (RulesHolder), status_provider, started_at,
    on_config_applied."""
    api = api_settings(settings, api)
    apps: dict[str, FastAPI] = {}
    rules = deps.get("rules")
    if rules is None and (api.data.enabled or api.monitor.enabled or api.web.enabled or api.control.enabled):
        from cdcsync.mapping.layers import MappingLayers
        from cdcsync.validate.reload import RulesHolder

        rules = RulesHolder.for_layers(MappingLayers.from_settings(settings))
    provider = deps.get("status_provider")
    if provider is None and (api.monitor.enabled or api.web.enabled):
        from cdcsync.ops.status import status_provider_for

        provider = status_provider_for(settings, started_at=deps.get("started_at"), rules=rules)
    if api.data.enabled:
        from cdcsync.api.data_app import create_data_app

        apps["data"] = create_data_app(settings, rules=rules, api=api)
    if api.control.enabled:
        from cdcsync.control.app import create_control_app

        apps["control"] = create_control_app(settings, rules=rules, on_applied=deps.get("on_config_applied"))
    if api.monitor.enabled:
        from cdcsync.api.monitor_app import create_monitor_app

        apps["monitor"] = create_monitor_app(settings, api=api, status_provider=provider, rules=rules)
    if api.web.enabled:
        from cdcsync.api.web_app import create_web_app

        apps["web"] = create_web_app(settings, api=api, status_provider=provider, rules=rules)
    return apps


def start_servers(settings: Settings, *, rules: Any = None,
                  status_provider: Callable[[], Mapping[str, Any]] | None = None, started_at: float | None = None,
                  apps: Mapping[str, FastAPI] | None = None, api: ApiSettings | None = None,
                  startup_timeout: float = 15.0,
                  on_config_applied: Callable[[str], None] | None = None) -> ServerHandle:
    """Start the enabled listeners; raises ApiStartError (after stopping any started) on failure.

    ``rules``: the daemon's RulesHolder, so the API checks with the validators in force;
    ``status_provider``: returns the status dict (default: read from the database);
    ``started_at``: epoch seconds the process started (uptime); ``on_config_applied``: called with
    the kind of each configuration package applied on 8882 (the daemon reconfigures its pipelines).
    """
    api = api_settings(settings, api)
    if apps is None:
        apps = build_apps(settings, api, rules=rules, status_provider=status_provider, started_at=started_at,
                          on_config_applied=on_config_applied)
    refusals, warnings = plain_http_findings(api, only=apps)
    if refusals:
        raise ApiStartError("；".join(refusals))
    for name in apps:
        server_ssl_context(name, getattr(api, name))
    for warning in warnings:
        log.warning("%s", warning)
    handle = ServerHandle()
    socks: dict[str, socket.socket] = {}
    try:
        for name in apps:
            socks[name] = _bind(name, getattr(api, name))
    except ApiStartError:
        for s in socks.values():
            s.close()
        raise
    for name, app in apps.items():
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5, server_header=False,
                                **_uvicorn_tls(getattr(api, name)))
        server = uvicorn.Server(config)
        sock = socks[name]
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"api-{name}", daemon=True)
        handle.running.append(_Running(name, server, thread, sock, app))
        thread.start()
    deadline = time.monotonic() + startup_timeout
    while not all(r.server.started for r in handle.running):
        if not handle.alive() or time.monotonic() > deadline:
            handle.stop()
            raise ApiStartError("HTTP 服务启动失败，请查看日志")
        time.sleep(0.02)
    for r in handle.running:
        host, port = r.sock.getsockname()[:2]
        log.info("%s listening on %s://%s:%d", _PURPOSE[r.name], "https" if r.server.config.ssl else "http",
                 host, port)
    return handle
