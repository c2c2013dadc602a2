"""Prometheus gauges of the backup status (``/metrics`` on 8883)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily


def _ts(value: Any) -> float | None:
    return dt.datetime.fromisoformat(str(value)).timestamp() if value else None


def backup_families(st: Mapping[str, Any] | None) -> Iterator[GaugeMetricFamily]:
    if not st:
        return
    last, verified, alert = st.get("last"), st.get("last_verified"), st.get("alert")
    if last:
        ts = _ts(last.get("finished_at"))
        if ts is not None:
            yield GaugeMetricFamily("cdcsync_backup_last_timestamp_seconds", "最近一次备份的完成时间", value=ts)
        yield GaugeMetricFamily("cdcsync_backup_last_ok", "最近一次备份成功为 1",
                                value=1.0 if last.get("status") == "ok" else 0.0)
        yield GaugeMetricFamily("cdcsync_backup_last_size_bytes", "最近一次备份的大小（字节）",
                                value=float(last.get("size") or 0))
    if verified:
        ts = _ts(verified.get("finished_at"))
        if ts is not None:
            yield GaugeMetricFamily("cdcsync_backup_last_verified_timestamp_seconds",
                                    "最近一次通过校验（含试恢复）的备份的完成时间", value=ts)
    fam = GaugeMetricFamily("cdcsync_backup_alert", "备份告警（缺失、过旧、失败、校验未通过）为 1", labels=["code"])
    fam.add_metric([str(alert["code"]) if alert else ""], 1.0 if alert else 0.0)
    yield fam
