"""Shared bits of the API tests: a real uvicorn server on loopback, keys, valid sample records."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from cdcsync.api.auth import create_key, revoke_key
from cdcsync.api.server import ServerHandle, start_servers
from cdcsync.config import Settings
from cdcsync.db.cluster import LocalCluster
from cdcsync.db.migrate import apply_migrations
from cdcsync.settings.api import ApiSettings, DataListenerSettings, ListenerSettings

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"  # screenshots kept for a look after the run
ORG = "12110000400000000X"
_counter = itertools.count()


@dataclass
class Api:
    dsn: str
    url: str
    good_key: str
    revoked_key: str
    handle: ServerHandle
    settings: Settings

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(sql, params or None).fetchall()


def local_api(only: tuple[str, ...] = ("data", "monitor", "web"), **kw: Any) -> ApiSettings:
    """Every listener on 127.0.0.1 and a free port; those not in ``only`` disabled."""
    lst: dict[str, Any] = {n: ListenerSettings(host="127.0.0.1", port=0, enabled=n in only) for n in ("monitor", "web")}
    lst["data"] = DataListenerSettings(host="127.0.0.1", port=0, enabled="data" in only)
    return ApiSettings(**lst, **kw)


def new_database(cluster: LocalCluster, prefix: str) -> str:
    dsn = cluster.create_database(f"{prefix}{os.getpid()}_{next(_counter)}")
    apply_migrations(dsn, REPO / "sql")
    return dsn


def settings_for(dsn: str, state_dir: Path | None = None, **extra: Any) -> Settings:
    data: dict[str, Any] = {"org_code": ORG, "database": {"dsn": dsn}, **extra}
    if state_dir is not None:
        data["state_dir"] = state_dir
    return Settings.model_validate(data)


@contextmanager
def running_api(dsn: str, api: ApiSettings, **kw: Any) -> Iterator[Api]:
    settings = settings_for(dsn)
    with psycopg.connect(dsn) as conn:
        good = create_key(conn, "his", "测试HIS")
        revoked = create_key(conn, "old_his")
        revoke_key(conn, "old_his")
    handle = start_servers(settings, api=api, **kw)
    try:
        yield Api(dsn, f"http://127.0.0.1:{handle.ports['data']}", good, revoked, handle, settings)
    finally:
        handle.stop()


def patient(pid: str, **over: Any) -> dict[str, Any]:
    """A patient record that passes every check, with LOCAL codes as the example HIS has them."""
    rec: dict[str, Any] = {
        "org_code": ORG,
        "patient_id": pid,
        "name": "张三",
        "sex_code": "M",  # local code, maps to 1
        "birth_date": "1980-01-02",
        "id_type_code": "SFZ",
        "id_no": "110101198001020016",
        "phone": "13800138000",
        "current_addr_detail": "北京市东城区某街1号",
        "register_time": "2024-05-06 08:30:00",
        "modify_flag": "I",
        "collect_time": "2024-05-06T08:30:00",
        "update_time": "2024-05-06T08:30:00",
    }
    rec.update(over)
    return rec


def today_str() -> str:
    return dt.date.today().isoformat()


def now_beijing() -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)).replace(tzinfo=None).isoformat(timespec="seconds")


@dataclass
class Scenario:
    dsn: str
    settings: Settings
    config: Path
    token: str
    token_file: Path


def build_scenario(cluster: LocalCluster, tmp: Path, prefix: str) -> Scenario:
    """Two platforms: ``national`` streamed (validation stage, so an unmapped code is quarantined),
    ``provincial`` configured but never started. Today's rows: 3 good patients, 1 bad one."""
    import yaml

    dsn = new_database(cluster, prefix)
    token = "monitor-token-" + prefix
    token_file = tmp / "monitor.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    data: dict[str, Any] = {
        "org_code": ORG, "state_dir": str(tmp / "state"), "database": {"dsn": dsn},
        "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5},
        "destinations": [{"name": "national", "kind": "jsonl", "path": str(tmp / "national.jsonl")},
                         {"name": "provincial", "kind": "jsonl", "path": str(tmp / "provincial.jsonl")}],
    }
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    settings = Settings.model_validate(data)
    now = now_beijing()
    recs = [patient(f"M{i}", update_time=now, collect_time=now) for i in range(3)]
    recs.append(patient("MBAD", sex_code="ZZ", update_time=now, collect_time=now))
    cols = list(recs[0])
    with psycopg.connect(dsn) as conn:
        for r in recs:
            conn.execute(f"INSERT INTO emr.patient ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                         [r[c] for c in cols])
    return Scenario(dsn, settings, config, token, token_file)


def national_pipeline(sc: Scenario) -> Any:
    """The national destination's pipeline with the real validation stage."""
    from cdcsync.engine.daemon import build_pipeline
    from cdcsync.validate.reload import RulesHolder

    return build_pipeline(sc.settings, sc.settings.destination("national"), RulesHolder.load())


def drain_national(sc: Scenario, timeout: float = 60) -> None:
    """Run the national pipeline until it has settled everything committed so far."""
    drain(sc.settings, "national", timeout)


def drain(settings: Settings, destination: str, timeout: float = 60) -> None:
    """Run one destination's pipeline (real validation stage) until it has settled everything
    committed so far: up to a logical message written now, as ``cdcsync.engine.daemon.drain`` does."""
    import threading

    from cdcsync.engine.daemon import build_pipeline
    from cdcsync.engine.pipeline import HEARTBEAT_PREFIX, run_pipeline_forever
    from cdcsync.validate.reload import RulesHolder

    with psycopg.connect(settings.database.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_logical_emit_message(false, %s, 'drain')", (HEARTBEAT_PREFIX,)).fetchone()
    hi, lo = str(row[0]).split("/") if row else ("0", "0")
    target = int(hi, 16) << 32 | int(lo, 16)
    pipe = build_pipeline(settings, settings.destination(destination), RulesHolder.load())
    pipe.catch_up = lambda _p, pos: pos >= target
    t = threading.Thread(target=run_pipeline_forever, args=(pipe,), daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pipe.stop.set()
        t.join(30)
        raise TimeoutError(f"{destination} pipeline did not catch up")


def status_json(sc: Scenario) -> dict[str, Any]:
    """``cdcsync -c config status --json``, the real command in a subprocess."""
    import json
    import subprocess

    from tests.cdc_util import cli_cmd

    out = subprocess.run(cli_cmd(sc.config, "status", "--json"), capture_output=True, text=True, check=True,
                         cwd=str(REPO), timeout=60)
    return dict(json.loads(out.stdout))


def drop_database(cluster: LocalCluster, dsn: str) -> None:
    """Drop a database made by new_database with its replication slots (slot names are
    cluster-wide: a left-over ``cdcsync_national`` would block the next test's stream)."""
    import contextlib

    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s",
                                    (name,)).fetchall():
            conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                         " WHERE slot_name = %s AND active_pid IS NOT NULL", (slot,))
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``url`` (``--dump-dom``, ``--screenshot=FILE``), own profile in ``tmp``."""
    assert CHROMIUM
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp}", "--window-size=1200,1000", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)
