"""Monitoring (port 8883) for the national platform.

* ``GET /api/v1/status`` (Bearer token from ``api.monitor_token_file``): JSON with version, uptime,
  per destination slot lag (bytes, seconds), last event/ack time, today's counts per table
  (captured = delivered + quarantined, i.e. what the stream settled), mapping and spec versions,
  free disk on the WAL volume (or the state_dir volume when the data directory cannot be read —
  ``disk.source`` says which), the last error per component, and WAL safety (``wal``: the server's
  ``max_slot_wal_keep_size``, pg_wal size and volume, warnings; per destination ``wal_status``,
  ``safe_wal_size``, ``wal_warnings`` and ``stopped_reason`` for a lost slot).
  ``destinations[].platform_refused`` is the poison-batch alert: events the platform refuses for
  good, quarantined under a ``PLT…`` rule and still held (count and the latest one).
* ``GET /metrics``: the same figures in Prometheus text format (same token);
  ``cdcsync_platform_refused_held`` is that alert.
* ``GET /healthz``: 200 while the process serves; 503 when the mirror database is unreachable;
  carries the running version (``upgrade apply`` waits for the new one).

The status dict itself is built by :mod:`cdcsync.ops.status` (the heartbeats and fault detection
read the same one); this module serves it and renders it for Prometheus.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from cdcsync import __version__
from cdcsync.api.errors import ApiError, install_error_handlers
from cdcsync.ops.backup.metrics import backup_families
from cdcsync.ops.status import StatusProvider, status_provider_for
from cdcsync.settings.api import ApiSettings, api_settings

if TYPE_CHECKING:
    from cdcsync.config import Settings

def _ts(value: Any) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


class StatusCollector(Collector):
    """Prometheus view of one status dict (fetched per scrape)."""

    def __init__(self, provider: StatusProvider) -> None:
        self.provider = provider

    def collect(self) -> Iterator[Any]:
        st = self.provider()
        info = InfoMetricFamily("cdcsync", "cdcsync 版本信息")
        info.add_metric([], {"version": str(st.get("version")), "spec_version": str(st.get("spec_version")),
                             "mapping_version": str(st.get("mapping_version") or ""),
                             "org_code": str(st.get("org_code") or "")})
        yield info
        yield GaugeMetricFamily("cdcsync_uptime_seconds", "进程运行时长（秒）", value=float(st["uptime_seconds"]))
        yield GaugeMetricFamily("cdcsync_database_up", "镜像数据库可连接为 1",
                                value=1.0 if st["database"]["reachable"] else 0.0)
        labels = ["destination"]
        g = {
            "active": GaugeMetricFamily("cdcsync_destination_active", "同步运行中（复制槽被读取）为 1",
                                        labels=labels),
            "lag_bytes": GaugeMetricFamily("cdcsync_replication_lag_bytes", "未确认的 WAL 字节数", labels=labels),
            "lag_seconds": GaugeMetricFamily("cdcsync_replication_lag_seconds", "复制延迟（秒）", labels=labels),
            "wal_retained_bytes": GaugeMetricFamily("cdcsync_wal_retained_bytes", "复制槽保留的 WAL 字节数",
                                                    labels=labels),
            "last_event_at": GaugeMetricFamily("cdcsync_last_event_timestamp_seconds", "最近一条已确认事件的提交时间",
                                               labels=labels),
            "last_ack_at": GaugeMetricFamily("cdcsync_last_ack_timestamp_seconds", "最近一次确认时间", labels=labels),
            "quarantined_held": GaugeMetricFamily("cdcsync_quarantine_held", "隔离区待处理记录数", labels=labels),
        }
        keys_since = GaugeMetricFamily("cdcsync_delivered_keys_appended_since_compaction",
                                       "已确认主键记录自上次压缩以来新增的条数（各目的地共用序号）", labels=labels)
        keys_left = GaugeMetricFamily("cdcsync_delivered_keys_entries_after_compaction",
                                      "已确认主键记录最近一次压缩后剩余的条数", labels=labels)
        refused = GaugeMetricFamily("cdcsync_platform_refused_held", "平台拒收（PLT 规则）并已隔离、待处理的记录数",
                                    labels=labels)
        today = GaugeMetricFamily("cdcsync_events_today", "今日（业务日期）事件数：captured/delivered/quarantined",
                                  labels=["destination", "table", "kind"])
        for d in st["destinations"]:
            name = [str(d["destination"])]
            if "slot_exists" not in d:
                continue  # database unreachable: no figures
            g["active"].add_metric(name, 1.0 if d.get("active") else 0.0)
            for key in ("lag_bytes", "lag_seconds", "wal_retained_bytes", "quarantined_held"):
                if d.get(key) is not None:
                    g[key].add_metric(name, float(d[key]))
            if d.get("platform_refused") is not None:
                refused.add_metric(name, float(d["platform_refused"]["held"]))
            keys = d.get("delivered_keys")
            if keys is not None:
                keys_since.add_metric(name, float(keys["appended_since"]))
                if keys["last_compaction"] is not None:
                    keys_left.add_metric(name, float(keys["last_compaction"]["entries_after"]))
            for key in ("last_event_at", "last_ack_at"):
                ts = _ts(d.get(key))
                if ts is not None:
                    g[key].add_metric(name, ts)
            for table, counts in d.get("today", {}).items():
                for kind, n in counts.items():
                    today.add_metric([*name, table, kind], float(n))
        yield from g.values()
        yield refused
        yield keys_since
        yield keys_left
        yield today
        disk = st.get("disk") or {}
        if disk.get("free_bytes") is not None:
            yield _disk_family(disk)
        yield from _wal_families(st)
        yield from backup_families(st.get("backup"))
        sv = st.get("surveil")
        if sv:
            yield GaugeMetricFamily("cdcsync_surveil_cases_open", "未结监测预警病例数（待确认、待确诊、待核查）",
                                    value=float(sv["open"]))
            yield GaugeMetricFamily("cdcsync_surveil_cases_overdue", "已超过报告时限的未结监测预警病例数",
                                    value=float(sv["overdue"]))
            consumer = sv.get("consumer") or {}
            if consumer.get("lag_bytes") is not None:
                yield GaugeMetricFamily("cdcsync_surveil_lag_bytes", "监测预警规则引擎未处理的 WAL 字节数",
                                        value=float(consumer["lag_bytes"]))
        errs = GaugeMetricFamily("cdcsync_component_error", "该组件最近有错误为 1", labels=["component"])
        for comp in st.get("last_errors", {}):
            errs.add_metric([comp], 1.0)
        yield errs


def _disk_family(disk: Mapping[str, Any]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily("cdcsync_disk_free_bytes", "磁盘剩余空间（WAL 所在磁盘或状态目录所在磁盘）",
                            labels=["source", "path"])
    fam.add_metric([str(disk["source"]), str(disk["path"])], float(disk["free_bytes"]))
    return fam


WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")


def _wal_families(st: Mapping[str, Any]) -> Iterator[GaugeMetricFamily]:
    """WAL safety gauges: the server's cap, the pg_wal volume, each slot's status and margin."""
    wal = st.get("wal")
    if not wal:
        return
    keep = wal.get("max_slot_wal_keep_size_mb")
    if keep is not None:
        yield GaugeMetricFamily("cdcsync_max_slot_wal_keep_size_bytes",
                                "max_slot_wal_keep_size（字节，-1 为不限）",
                                value=-1.0 if keep < 0 else float(keep) * 1024 * 1024)
    if wal.get("pg_wal_bytes") is not None:
        yield GaugeMetricFamily("cdcsync_pg_wal_bytes", "pg_wal 目录大小（字节）", value=float(wal["pg_wal_bytes"]))
    vol = wal.get("volume") or {}
    if vol.get("free_bytes") is not None:
        yield GaugeMetricFamily("cdcsync_wal_volume_free_bytes", "pg_wal 所在磁盘剩余空间（字节）",
                                value=float(vol["free_bytes"]))
    status = GaugeMetricFamily("cdcsync_slot_wal_status", "复制槽 wal_status（当前状态为 1）",
                               labels=["destination", "wal_status"])
    safe = GaugeMetricFamily("cdcsync_slot_safe_wal_size_bytes", "复制槽失效前还可写入的 WAL（字节；不限时无值）",
                             labels=["destination"])
    warnings = GaugeMetricFamily("cdcsync_wal_warnings", "WAL 安全告警数（level=warning/error）",
                                 labels=["destination", "level"])
    server_levels = [w["level"] for w in wal.get("warnings") or []]
    for level in ("warning", "error"):
        warnings.add_metric(["", level], float(server_levels.count(level)))
    for d in st.get("destinations") or []:
        name = str(d["destination"])
        if d.get("wal_status") is not None:
            for value in WAL_STATUSES:
                status.add_metric([name, value], 1.0 if d["wal_status"] == value else 0.0)
        if d.get("safe_wal_size") is not None:
            safe.add_metric([name], float(d["safe_wal_size"]))
        levels = [w["level"] for w in d.get("wal_warnings") or []]
        if "slot_exists" in d:
            for level in ("warning", "error"):
                warnings.add_metric([name, level], float(levels.count(level)))
    yield status
    yield safe
    yield warnings


def _token_checker(api: ApiSettings) -> Callable[[Request], None]:
    from cdcsync.secrets import read_secret

    path = api.monitor_token_file
    token = read_secret(path) if path is not None else None
    if path is not None and not token:
        raise ValueError(f"{path}: 监控令牌文件为空")

    def check(request: Request) -> None:
        if token is None:
            raise ApiError(503, "MONITOR_TOKEN_NOT_CONFIGURED",
                           "未配置监控令牌（api.monitor_token_file），状态接口不对外提供")
        auth = request.headers.get("authorization") or ""
        scheme, _, value = auth.partition(" ")
        if not value or scheme.lower() != "bearer":
            raise ApiError(401, "AUTH_MISSING", "缺少监控令牌：请在请求头 Authorization: Bearer <令牌> 中提供",
                           headers={"WWW-Authenticate": 'Bearer realm="cdcsync-monitor"'})
        if not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise ApiError(401, "AUTH_INVALID", "监控令牌错误",
                           headers={"WWW-Authenticate": 'Bearer realm="cdcsync-monitor"'})
        request.state.client_name = "monitor"

    return check


def create_monitor_app(settings: Settings, *, api: ApiSettings | None = None,
                       status_provider: StatusProvider | None = None, started_at: float | None = None,
                       rules: Any = None) -> FastAPI:
    api = api_settings(settings, api)
    provider = status_provider or status_provider_for(settings, started_at=started_at, rules=rules)
    check = _token_checker(api)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(provider))

    app = FastAPI(title="cdcsync 前置软件监控管理", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    install_error_handlers(app, "monitor")

    from starlette.concurrency import run_in_threadpool

    @app.get("/api/v1/status")
    async def status(request: Request) -> JSONResponse:
        check(request)
        return JSONResponse(dict(await run_in_threadpool(provider)))

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        check(request)
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        st = await run_in_threadpool(provider)
        ok = bool(st["database"]["reachable"])
        # The version tells `upgrade apply` that the restarted process is the new release.
        return JSONResponse({"status": "ok" if ok else "degraded", "database": ok, "version": __version__},
                            status_code=200 if ok else 503)

    return app
