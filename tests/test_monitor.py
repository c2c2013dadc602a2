"""Monitoring (8883) over real HTTP: token, and JSON and /metrics agree with ``cdcsync status --json``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdcsync import __version__
from cdcsync.api.server import start_servers
from cdcsync.db.cluster import LocalCluster
from tests.api_helpers import Scenario, build_scenario, drain_national, drop_database, local_api, status_json


@pytest.fixture(scope="module")
def scenario(pg_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    sc = build_scenario(pg_cluster, tmp_path_factory.mktemp("mon"), "mon")
    try:
        drain_national(sc)
        yield sc
    finally:
        drop_database(pg_cluster, sc.dsn)


@pytest.fixture(scope="module")
def monitor(scenario: Scenario) -> Iterator[str]:
    handle = start_servers(scenario.settings, api=local_api(("monitor",), monitor_token_file=scenario.token_file))
    try:
        yield f"http://127.0.0.1:{handle.ports['monitor']}"
    finally:
        handle.stop()


def _metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_status_requires_the_token(monitor: str, scenario: Scenario) -> None:
    for path in ("/api/v1/status", "/metrics"):
        assert httpx.get(monitor + path).status_code == 401
        assert httpx.get(monitor + path, headers={"Authorization": "Bearer wrong"}).json()["code"] == "AUTH_INVALID"
        assert httpx.get(monitor + path, headers={"Authorization": f"Bearer {scenario.token}"}).status_code == 200
    assert httpx.get(monitor + "/healthz").json() == {"status": "ok", "database": True, "version": __version__}


def test_status_without_configured_token_is_not_served(scenario: Scenario) -> None:
    handle = start_servers(scenario.settings, api=local_api(("monitor",)))
    try:
        r = httpx.get(f"http://127.0.0.1:{handle.ports['monitor']}/api/v1/status")
        assert r.status_code == 503 and r.json()["code"] == "MONITOR_TOKEN_NOT_CONFIGURED"
    finally:
        handle.stop()


def test_json_and_metrics_agree_with_status_json(monitor: str, scenario: Scenario) -> None:
    hdr = {"Authorization": f"Bearer {scenario.token}"}
    time.sleep(2.1)  # let the monitor's 2-second status cache (filled by the previous test) expire
    before = status_json(scenario)
    st: dict[str, Any] = httpx.get(monitor + "/api/v1/status", headers=hdr).json()
    metrics = _metrics(httpx.get(monitor + "/metrics", headers=hdr).text)  # same cached figures (2 s)
    after = status_json(scenario)

    assert st["version"] and st["spec_version"] == "1.0" and st["mapping_version"]
    assert st["uptime_seconds"] >= 0 and st["database"] == {"reachable": True}
    assert st["disk"]["free_bytes"] > 0 and st["disk"]["source"] in ("wal_volume", "state_dir")
    cli = {d["destination"]: d for d in before["destinations"]}
    cli_after = {d["destination"]: d for d in after["destinations"]}
    got = {d["destination"]: d for d in st["destinations"]}
    assert set(got) == {"national", "provincial"}

    nat = got["national"]
    for key in ("slot", "slot_exists", "active", "events_today", "quarantined_today", "quarantined_held",
                "last_event_at", "last_ack_at", "checkpoint_lsn", "confirmed_flush_lsn"):
        assert nat[key] == cli["national"][key] == cli_after["national"][key], key
    # WAL moves on between the three reads; the monitor's figure lies between the CLI's two
    assert cli["national"]["lag_bytes"] <= nat["lag_bytes"] <= cli_after["national"]["lag_bytes"]
    assert nat["events_today"] == {"patient": 3} and nat["quarantined_held"] == 1
    assert nat["today"] == {"patient": {"captured": 4, "delivered": 3, "quarantined": 1}}
    assert got["provincial"]["slot_exists"] is False and cli["provincial"]["slot_exists"] is False
    # The delivered-keys log: compacted when the snapshot completed, one entry per held key then.
    keys = nat["delivered_keys"]
    assert keys == cli["national"]["delivered_keys"] == cli_after["national"]["delivered_keys"]
    assert keys["appended_since"] == 0 and keys["last_compaction"] is not None
    assert (keys["last_compaction"]["entries_before"], keys["last_compaction"]["entries_after"]) == (3, 3)

    lbl = (("destination", "national"),)
    assert metrics[("cdcsync_replication_lag_bytes", lbl)] == nat["lag_bytes"]
    assert metrics[("cdcsync_replication_lag_seconds", lbl)] == pytest.approx(nat["lag_seconds"])
    assert metrics[("cdcsync_quarantine_held", lbl)] == 1
    assert metrics[("cdcsync_delivered_keys_entries_after_compaction", lbl)] == 3
    assert metrics[("cdcsync_delivered_keys_appended_since_compaction", lbl)] == 0
    assert metrics[("cdcsync_destination_active", lbl)] == 0
    for kind, n in nat["today"]["patient"].items():
        key = ("cdcsync_events_today", (("destination", "national"), ("kind", kind), ("table", "patient")))
        assert metrics[key] == n
    ack = metrics[("cdcsync_last_ack_timestamp_seconds", lbl)]
    import datetime as dt

    assert ack == pytest.approx(dt.datetime.fromisoformat(cli["national"]["last_ack_at"]).timestamp())
    info = next(k for k in metrics if k[0] == "cdcsync_info")
    assert ("spec_version", "1.0") in info[1] and ("mapping_version", st["mapping_version"]) in info[1]
    assert metrics[("cdcsync_database_up", ())] == 1
