"""End to end: emr.* rows → two daemons' streams → HTTPS → two reference platforms (national,
provincial), with an injected national outage under steady load, ``kill -9`` of the daemon
during the outage and during the drain, and a provincial platform that rejects one table.

Real PostgreSQL (tests/conftest.py), real HTTPS on loopback with the generated CA, real SM2/SM4.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
import yaml

from cdcsync.config import Settings
from cdcsync.crypto.keys import write_keypair
from cdcsync.engine.status import collect_status
from cdcsync.upstream_sim.runner import SimHandle, start_subprocess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cdc_util import LOOPBACK_API, cli_cmd, fold, table_as_events  # noqa: E402

from tests.cdc_util import wait_for

REPO = Path(__file__).resolve().parents[1]
ORG = "12110000400000000X"

DDL = """
CREATE SCHEMA IF NOT EXISTS emr;
CREATE TABLE emr.u5_case (
    id          bigint PRIMARY KEY,
    patient     text NOT NULL,
    diag_code   varchar(20),
    temperature numeric(4, 1),
    seen_at     timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE emr.u5_case REPLICA IDENTITY FULL;
CREATE TABLE emr.u5_reject (
    id   bigint PRIMARY KEY,
    note text
);
ALTER TABLE emr.u5_reject REPLICA IDENTITY FULL;
ALTER PUBLICATION cdcsync_emr ADD TABLE emr.u5_case, emr.u5_reject;  -- not spec tables: published on purpose
"""

# status only needs the destinations' names; the jsonl kind keeps this free of key files
DESTS_FOR_STATUS = [{"name": n, "kind": "jsonl", "path": "/dev/null"} for n in ("national", "provincial")]


class Daemon:
    def __init__(self, tmp: Path, dsn: str, dests: list[dict[str, Any]]) -> None:
        settings = {
            "org_code": ORG,
            "state_dir": str(tmp / "state"),
            "database": {"dsn": dsn},
            "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5},
        }
        self.log = tmp / "daemon.log"
        full = {**settings, "destinations": dests, "api": LOOPBACK_API}
        yaml_cfg = tmp / "config.yaml"
        yaml_cfg.write_text(yaml.safe_dump(json.loads(json.dumps(full, default=str))), encoding="utf-8")
        self.cmd = cli_cmd(yaml_cfg, "run")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(REPO),
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Loader:
    """Steady load: every 0.1 s one transaction inserting 15 cases (plus updates, deletes and a
    row of the table the provincial platform refuses)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.stop = threading.Event()
        self.changes: dict[str, int] = {"u5_case": 0, "u5_reject": 0}
        self.commits: list[tuple[float, dict[str, int]]] = []  # (time, changes committed so far)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                nxt, k = 1, 0
                while not self.stop.is_set():
                    t0 = time.monotonic()
                    with conn.transaction():
                        ids = list(range(nxt, nxt + 15))
                        conn.cursor().executemany(
                            "INSERT INTO emr.u5_case (id, patient, diag_code, temperature) VALUES (%s, %s, %s, %s)",
                            [(i, f"患者张{i}", "A01.0", 36.5 + (i % 30) / 10) for i in ids])
                        self.changes["u5_case"] += 15
                        if k % 3 == 0:
                            n = conn.execute("UPDATE emr.u5_case SET diag_code = 'J10.1' WHERE id = %s",
                                             (nxt - 7,)).rowcount
                            self.changes["u5_case"] += n
                        if k % 5 == 4:
                            n = conn.execute("DELETE FROM emr.u5_case WHERE id = %s", (nxt - 3,)).rowcount
                            self.changes["u5_case"] += n
                        if k % 4 == 0:
                            conn.execute("INSERT INTO emr.u5_reject (id, note) VALUES (%s, 'x')", (k,))
                            self.changes["u5_reject"] += 1
                    self.commits.append((time.monotonic(), dict(self.changes)))
                    nxt += 15
                    k += 1
                    self.stop.wait(max(0.0, 0.1 - (time.monotonic() - t0)))
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def stored_events(sim: SimHandle) -> list[dict[str, Any]]:
    import sqlite3

    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    try:
        rows = [orjson.loads(p) for (p,) in db.execute("SELECT payload FROM events")]
    finally:
        db.close()
    # Commit order: (commit LSN, ordinal) from the deterministic id.
    return sorted(rows, key=lambda e: (int(e["id"].split(":")[-2], 16), int(e["id"].split(":")[-1])))


def counts(sim: SimHandle) -> dict[str, int]:
    t: dict[str, int] = sim.stats()["tables"]
    return t


def test_two_platforms_outage_kill9_and_rejections(migrated_db: str, tmp_path: Path) -> None:
    dsn = migrated_db
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
    hk, hp, _ = write_keypair(tmp_path / "keys", "hospital")

    outage_start, outage_len = 7.0, 8.0
    national = start_subprocess(
        tmp_path / "national", hospital_pubs=[hp], log_file=tmp_path / "national.log",
        args=["--outage", f"{outage_start}:{outage_len}", "--latency-ms", "100"])
    t_national = time.monotonic()  # the outage window is relative to the platform's start
    provincial = start_subprocess(tmp_path / "provincial", hospital_pubs=[hp], log_file=tmp_path / "provincial.log",
                                  args=["--reject-table", "u5_reject"])

    def dest(name: str, sim: SimHandle, batch: int) -> dict[str, Any]:
        return {"name": name, "kind": "http", "url": sim.url, "ca_bundle": str(sim.ca_bundle),
                "hospital_key": str(hk), "platform_public_key": str(sim.platform_pub),
                "batch_max_events": batch, "retry_initial_s": 0.1, "retry_max_s": 1.0, "timeout_s": 10}

    # Small national batches and 100 ms platform latency: the drain takes seconds, so a kill
    # can land inside it.
    daemon = Daemon(tmp_path, dsn, [dest("national", national, 40), dest("provincial", provincial, 500)])
    loader = Loader(dsn)
    try:
        daemon.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Streaming first, then load: every change is then exactly one event (no snapshot rows).
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.checkpoint WHERE snapshot_done")
                     .fetchone()[0] == 2, 20, "both destinations to start streaming")  # type: ignore[index]
        loader.thread.start()

        # --- the outage: national refuses, provincial stays current --------------------------
        wait_for(lambda: national.stats()["outage"], outage_start + 10, "the national outage to begin")
        time.sleep(1.5)
        committed = loader.commits[-1][1]
        wait_for(lambda: counts(provincial).get("u5_case", 0) >= committed["u5_case"], 3,
                 "provincial to stay current during the national outage")
        assert national.stats()["outage"], "provincial needed the whole outage to catch up"
        national_during = counts(national).get("u5_case", 0)
        assert national_during < committed["u5_case"]

        # --- kill -9 during the outage ----------------------------------------------------
        daemon.kill9()
        daemon.start()

        # --- the drain: national comes back; kill -9 once it is under way -----------------
        end_of_outage = t_national + outage_start + outage_len
        time.sleep(max(0.0, end_of_outage - time.monotonic()))
        wait_for(lambda: counts(national).get("u5_case", 0) > national_during + 40, 15, "the national drain to start")
        behind = loader.commits[-1][1]["u5_case"] - counts(national).get("u5_case", 0)
        assert behind > 100, f"drain almost done ({behind} behind) before the kill"
        daemon.kill9()
        daemon.start()
        time.sleep(1.0)
        loader.stop.set()
        loader.thread.join(10)
        assert loader.error is None, loader.error
        final = dict(loader.changes)

        # --- nothing lost, nothing stored twice -------------------------------------------
        wait_for(lambda: counts(national).get("u5_case", 0) >= final["u5_case"]
                 and counts(national).get("u5_reject", 0) >= final["u5_reject"], 60, "national to drain")
        wait_for(lambda: counts(provincial).get("u5_case", 0) >= final["u5_case"], 30, "provincial to finish")
        with psycopg.connect(dsn) as conn:
            wait_for(lambda: conn.execute(
                "SELECT count(*) FROM cdcsync.quarantine WHERE destination = 'provincial'").fetchone()[0]  # type: ignore[index]
                >= final["u5_reject"], 20, "provincial rejections to reach quarantine")
        time.sleep(1.0)  # anything extra would arrive now
        assert counts(national) == {"u5_case": final["u5_case"], "u5_reject": final["u5_reject"]}
        assert counts(provincial) == {"u5_case": final["u5_case"]}

        want_case = table_as_events(dsn, "u5_case")
        want_reject = table_as_events(dsn, "u5_reject")
        for sim in (national, provincial):
            evs = stored_events(sim)
            assert len({e["id"] for e in evs}) == len(evs)
            assert fold(evs, "u5_case") == want_case, f"{sim.url}: u5_case differs from the mirror"
        assert fold(stored_events(national), "u5_reject") == want_reject

        # --- platform rejections are quarantined with the platform's reason ---------------
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT table_name, rule_id, message, status, raw_row FROM cdcsync.quarantine"
                " WHERE destination = 'provincial'").fetchall()
            national_q = conn.execute(
                "SELECT count(*) FROM cdcsync.quarantine WHERE destination = 'national'").fetchone()
        assert len(rows) == final["u5_reject"]
        assert all(r[0] == "u5_reject" and "平台拒收" in r[2] and "u5_reject" in r[2] and r[3] == "held"
                   for r in rows), rows[:3]
        assert national_q == (0,)

        # --- the outage is visible in status: failed and retried sends today, national only --
        sends = {d["destination"]: d["sends_today"] for d in collect_status(
            Settings.model_validate({"org_code": ORG, "database": {"dsn": dsn}, "destinations": DESTS_FOR_STATUS})
        )["destinations"]}
        assert sends["national"]["failures"] > 0 and sends["national"]["retries"] > 0
        assert "HTTP 503" in sends["national"]["last_error"]
        assert sends["provincial"]["failures"] == 0 and sends["provincial"]["attempts"] > 0
    finally:
        loader.stop.set()
        daemon.stop()
        national.stop()
        provincial.stop()

    log = daemon.log.read_text(encoding="utf-8", errors="replace")
    assert "患者张" not in log, "patient data in the daemon log"
    assert "HTTP 503" in log  # the outage was visible
    assert "患者张" not in (tmp_path / "national.log").read_text(encoding="utf-8")


def test_daemon_to_platform_with_ca_certificates(migrated_db: str, tmp_path: Path) -> None:
    """Issue 14 §3 end to end: a CSR from `cdcsync keys csr`, signed by `openssl x509 -req`,
    is the hospital's only credential at a platform that has a CA and no registered keys; the
    hospital trusts the platform through its CA-issued certificate, which expires in 10 days
    and so shows in status. Every row arrives as in the mirror."""
    import shutil

    import pytest
    from sm2_ca import SM2CA, make_csr

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    dsn = migrated_db
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
    hk, _hp, _ = write_keypair(tmp_path / "keys", "hospital")
    csr = tmp_path / "hospital.csr"
    subprocess.run([sys.executable, "-m", "cdcsync", "keys", "csr", "--key", str(hk), "--org-code", ORG,
                    "--name", "测试医院", "--out", str(csr)], check=True, capture_output=True)
    root = SM2CA(tmp_path / "ca", "Test SM2 Root CA")
    hospital_cert = root.issue(csr, tmp_path / "hospital.pem")
    sim_dir = tmp_path / "national"
    from cdcsync.upstream_sim.cli import prepare_data_dir

    prepare_data_dir(sim_dir)
    platform_cert = root.issue(make_csr(sim_dir / "platform.key", tmp_path / "platform.csr", "PLATFORM-CN"),
                               tmp_path / "platform.pem", days=10, extensions="platform")
    national = start_subprocess(sim_dir, log_file=tmp_path / "national.log", args=["--ca-cert", str(root.cert)])
    dest = {"name": "national", "kind": "http", "url": national.url, "ca_bundle": str(national.ca_bundle),
            "hospital_key": str(hk), "hospital_certificate": str(hospital_cert),
            "platform_certificates": [str(platform_cert)], "platform_ca_file": str(root.cert),
            "retry_initial_s": 0.1, "retry_max_s": 1.0, "timeout_s": 10}
    daemon = Daemon(tmp_path, dsn, [dest])
    try:
        daemon.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.checkpoint WHERE snapshot_done")
                     .fetchone()[0] == 1, 20, "the destination to start streaming")  # type: ignore[index]
            conn.cursor().executemany(
                "INSERT INTO emr.u5_case (id, patient, diag_code, temperature) VALUES (%s, %s, %s, %s)",
                [(i, f"患者{i}", "A01.0", 37.0) for i in range(1, 51)])
            conn.execute("UPDATE emr.u5_case SET diag_code = 'J10.1' WHERE id <= 5")
            conn.execute("DELETE FROM emr.u5_case WHERE id = 50")
        wait_for(lambda: counts(national).get("u5_case", 0) >= 56, 30, "the national platform to receive the rows")
        assert fold(stored_events(national), "u5_case") == table_as_events(dsn, "u5_case")
        assert national.stats()["counters"].get("refused.certificate_missing", 0) == 0
        settings = Settings.model_validate({"org_code": ORG, "database": {"dsn": dsn}, "destinations": [dest]})
        warnings = collect_status(settings)["certificate_warnings"]
        assert [(w["level"], w["file"]) for w in warnings] == [("warning", str(platform_cert))]
        out = subprocess.run(cli_cmd(tmp_path / "config.yaml", "status"), capture_output=True, text=True,
                             cwd=str(REPO), timeout=60)
        assert out.returncode == 0, out.stderr
        assert "警告：平台（national）证书将于" in out.stdout and str(platform_cert) in out.stdout
    finally:
        daemon.stop()
        national.stop()
