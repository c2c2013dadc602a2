"""status.html (8884) in headless Chromium shows the running state and lag ``cdcsync status --json`` reports."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from cdcsync.api.server import start_servers
from cdcsync.api.web_app import format_lag
from cdcsync.db.cluster import LocalCluster
from cdcsync.engine.pipeline import run_pipeline_forever
from tests.api_helpers import (
    ARTIFACTS,
    CHROMIUM,
    Scenario,
    build_scenario,
    chromium,
    drain_national,
    drop_database,
    local_api,
    national_pipeline,
    status_json,
)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed")
def test_status_page_in_headlesschromium(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    sc = build_scenario(pg_cluster, tmp_path, "web")
    try:
        _check_page(sc, tmp_path)
    finally:
        drop_database(pg_cluster, sc.dsn)


def _check_page(sc: Scenario, tmp_path: Path) -> None:
    drain_national(sc)
    pipe = national_pipeline(sc)
    runner = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    runner.start()
    handle = start_servers(sc.settings, api=local_api(("web",)))
    try:
        deadline = time.monotonic() + 30
        while True:
            st = status_json(sc)
            nat = next(d for d in st["destinations"] if d["destination"] == "national")
            if nat["active"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert nat["active"], "the national stream should be running"
        url = f"http://127.0.0.1:{handle.ports['web']}/status.html"
        assert "no-store" in httpx.get(url).headers["cache-control"]
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status.png"
        shot.unlink(missing_ok=True)
        dom = chromium(url, tmp_path / "chrome", "--dump-dom").stdout
        chromium(url, tmp_path / "chrome2", f"--screenshot={shot}")
        after = status_json(sc)
    finally:
        handle.stop()
        pipe.stop.set()
        runner.join(30)

    assert shot.exists() and shot.stat().st_size > 5000
    assert '<meta http-equiv="refresh" content="30">' in dom
    assert "<script" not in dom and "http://" not in dom.split("<body>")[1].replace(url, "")
    # national streams, provincial never started: the banner says so, each row has its state
    assert re.search(r'id="overall-state"[^>]*>部分运行<', dom)
    nat_row = re.search(r'<tr data-destination="national">(.*?)</tr>', dom, re.S)
    prov_row = re.search(r'<tr data-destination="provincial">(.*?)</tr>', dom, re.S)
    assert nat_row and "运行中" in nat_row.group(1)
    assert prov_row and "未开始同步" in prov_row.group(1)
    lag = re.search(r'class="lag" data-seconds="([0-9.]+)">([^<]*)<', nat_row.group(1))
    assert lag, nat_row.group(1)
    shown = float(lag.group(1))
    lags = sorted(d["lag_seconds"] for s in (st, after) for d in s["destinations"] if d["destination"] == "national")
    # PostgreSQL's flush_lag is live: between the two reads it can reach one status interval
    # (a heartbeat written and confirmed at the next standby status update).
    slack = sc.settings.stream.status_interval_s + 1.0
    assert lags[0] - 1.0 <= shown <= lags[-1] + slack, (shown, lags)
    assert lag.group(2) == format_lag(shown)
    # today's volume per data category: the 3 delivered patients are 实时, 1 quarantined and held
    assert re.search(r'<tr data-class="realtime">.*?<td class="num">3</td><td class="num attention">1</td>', dom, re.S)
    assert "共 1 条记录" in dom and "尚未配置备份" in dom
    # today's timeliness in two parts (HIS push / front-end upload), or says there is none yet
    assert 'id="timeliness-today"' in dom and ("HIS 推送及时率" in dom or "今日尚无已确认的数据" in dom)
    for secret in ("张三", "110101198001020016", "13800138000"):
        assert secret not in dom
