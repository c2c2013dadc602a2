"""The platforms' view of the hospital (issue 18 §4): signed heartbeats, online/offline on the
reference platform across a clean stop, a restart and ``kill -9``; fault reports (a destination
stopped by a platform outage) with their resolution; alerts by mail (a local SMTP sink) and by
webhook (HMAC-SM3), de-duplicated, with a resolved notice; the trial-run label.

Real PostgreSQL, the daemon as a subprocess, the reference platform in this process over HTTPS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

from cdcsync import __version__
from cdcsync.crypto.keys import write_keypair
from cdcsync.ops.alerts import H_SIGNATURE, H_TIMESTAMP, webhook_signature
from cdcsync.upstream_sim.runner import SimHandle, start_in_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cdc_util import LOOPBACK_API, REPO, cli_cmd, wait_for  # noqa: E402
from ops_receivers import SmtpSink, WebhookReceiver  # noqa: E402

ORG = "12110000400000000X"
DDL = """
CREATE TABLE emr.hb_case (id bigint PRIMARY KEY, note text);
ALTER TABLE emr.hb_case REPLICA IDENTITY FULL;
ALTER PUBLICATION cdcsync_emr ADD TABLE emr.hb_case;  -- not a spec table: published on purpose
"""


def _dest(name: str, sim: SimHandle, key: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "http", "url": sim.url, "ca_bundle": str(sim.ca_bundle), "hospital_key": str(key),
            "platform_public_key": str(sim.platform_pub), "retry_initial_s": 0.1, "retry_max_s": 0.5,
            "timeout_s": 5, **extra}


def _write_config(tmp: Path, dsn: str, dests: list[dict[str, Any]], ops: dict[str, Any]) -> Path:
    cfg = {"org_code": ORG, "state_dir": str(tmp / "state"), "database": {"dsn": dsn},
           "stream": {"status_interval_s": 1, "linger_ms": 50}, "destinations": dests, "api": LOOPBACK_API,
           "ops": ops}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str)), allow_unicode=True), encoding="utf-8")
    return path


class Daemon:
    def __init__(self, cfg: Path, log: Path) -> None:
        self.cfg, self.log = cfg, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(cli_cmd(self.cfg, "run"), stdout=fh, stderr=subprocess.STDOUT, cwd=str(REPO),
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _hospital(sim: SimHandle) -> dict[str, Any] | None:
    rows = sim.hospitals()
    return rows[0] if rows else None


def test_platform_marks_hospital_offline_and_online(migrated_db: str, tmp_path: Path) -> None:
    key, pub, _ = write_keypair(tmp_path / "keys", "hospital")
    sim = start_in_process(tmp_path / "national", hospital_pubs=[pub], announced={"software": "9.9.9"})
    cfg = _write_config(tmp_path, migrated_db, [_dest("national", sim, key)],
                        {"heartbeat": {"interval_s": 0.3}})
    daemon = Daemon(cfg, tmp_path / "daemon.log")
    try:
        daemon.start()
        h = wait_for(lambda: (x := _hospital(sim)) and x["online"] and x, 30, "the hospital to come online")
        assert h["org_code"] == ORG and h["hospital"] == "example"
        assert h["software"]["cdcsync"] == __version__
        assert [s["destination"] for s in h["streams"]] == ["national"]
        first_run = h["run_id"]
        # The platform's announcement came back in the signed reply and was kept for the evaluation.
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT announced->>'software' FROM cdcsync.platform_notice"
                                          " WHERE destination = 'national'").fetchone(), 10, "the announcement")

        daemon.signal(signal.SIGTERM)  # a clean stop: the last heartbeat says so, offline at once
        h = wait_for(lambda: (x := _hospital(sim)) and not x["online"] and x, 5, "the hospital to go offline")
        assert h["offline_reason"] == "stopped" and h["offline_since"]

        daemon.start()
        h = wait_for(lambda: (x := _hospital(sim)) and x["online"] and x, 30, "the hospital to come back online")
        assert h["run_id"] != first_run and h["offline_since"] is None

        daemon.signal(signal.SIGKILL)  # no goodbye: offline once the heartbeats stop coming
        h = wait_for(lambda: (x := _hospital(sim)) and not x["online"] and x, 10, "offline after kill -9")
        assert h["offline_reason"] == "no_heartbeat"
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            runs = conn.execute("SELECT stopped_at IS NOT NULL FROM cdcsync.daemon_run ORDER BY started_at").fetchall()
        assert [r[0] for r in runs] == [True, False]  # the first stopped cleanly, the second was killed
    finally:
        daemon.stop()
        sim.stop()


def test_fault_reports_and_alerts(migrated_db: str, tmp_path: Path) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute(DDL)
    key, pub, _ = write_keypair(tmp_path / "keys", "hospital")
    national = start_in_process(tmp_path / "national", hospital_pubs=[pub])
    provincial = start_in_process(tmp_path / "provincial", hospital_pubs=[pub])
    smtp, hook = SmtpSink(), WebhookReceiver()
    secret = tmp_path / "hook.secret"
    secret.write_text("s3cret-hook-key\n", encoding="utf-8")
    secret.chmod(0o600)
    ops = {"heartbeat": {"interval_s": 0.3}, "faults": {"destination_stopped_after_s": 1.0},
           "alerts": {"retry_s": 0.5,
                      "smtp": [{"host": "127.0.0.1", "port": smtp.port, "sender": "cdcsync@hospital.example",
                                "recipients": ["it@hospital.example", "fbk@hospital.example"]}],
                      "webhooks": [{"url": hook.url, "secret_file": str(secret)}]}}
    cfg = _write_config(tmp_path, migrated_db, [_dest("national", national, key),
                                                _dest("provincial", provincial, key, environment="test")], ops)
    daemon = Daemon(cfg, tmp_path / "daemon.log")
    assert national.state is not None
    try:
        daemon.start()
        h = wait_for(lambda: (x := _hospital(provincial)) and x["online"] and x, 30, "the hospital online")
        # Trial run: the platforms see which destination is the test network.
        envs = {s["destination"]: s["environment"] for s in h["streams"]}
        assert envs == {"national": "production", "provincial": "test"}
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.checkpoint WHERE snapshot_done")
                     .fetchone()[0] == 2, 30, "both destinations streaming")  # type: ignore[index]

            # The national platform goes down while rows keep coming.
            st = national.state
            st.faults.outage = (time.monotonic() - st.started, 3600.0)
            for i in range(1, 6):
                conn.execute("INSERT INTO emr.hb_case VALUES (%s, 'x')", (i,))

            def open_fault() -> dict[str, Any] | None:
                h = _hospital(provincial)
                found = [f for f in (h or {}).get("open_faults", []) if f["code"] == "DEST_STOPPED"]
                return found[0] if found else None

            fault = wait_for(open_fault, 30, "the provincial platform to hear of the stopped national destination")
            assert fault["subject"] == "national" and fault["resolution"]
            assert wait_for(lambda: not _hospital(national)["online"], 10, "national to lose the heartbeat")  # type: ignore[index]

            mail = wait_for(lambda: [m for m in smtp.messages if fault["fault_id"] in m["X-Cdcsync-Fault"]], 15,
                            "the alert mail")[0]
            assert mail["X-Cdcsync-Fault"].endswith(" open")
            assert "上报目的地停止" in str(mail["Subject"]) and "it@hospital.example" in mail["To"]
            body = mail.get_content()
            assert "处理建议" in body and "national" in body
            def hooked(event: str) -> list[dict[str, Any]]:
                return [e for e in hook.events() if e["event"] == event and e["fault"]["fault_id"] == fault["fault_id"]]

            opened = wait_for(lambda: hooked("fault.opened"), 15, "the webhook")
            assert opened[0]["org_code"] == ORG and opened[0]["fault"]["code"] == "DEST_STOPPED"
            for headers, raw in hook.received:  # every webhook is signed with the shared key
                assert headers[H_SIGNATURE] == webhook_signature(b"s3cret-hook-key", headers[H_TIMESTAMP], raw)

            # The platform comes back: everything is delivered, the fault resolved, people told.
            st.faults.outage = None
            wait_for(lambda: len(national.received_ids()) >= 5, 30, "national to receive the rows")

            def resolved_on(sim: SimHandle) -> bool:
                with sim.client() as c:
                    rows = c.get(f"/api/v1/sim/hospitals/{ORG}/faults").json()["faults"]
                return any(r["fault_id"] == fault["fault_id"] and r["resolved_at"] for r in rows)

            wait_for(lambda: resolved_on(provincial), 30, "the fault resolved on the provincial platform")
            wait_for(lambda: resolved_on(national), 30, "the national platform to learn the fault history")
            wait_for(lambda: [m for m in smtp.messages if m["X-Cdcsync-Fault"] == f"{fault['fault_id']} resolved"],
                     15, "the resolved mail")
            wait_for(lambda: hooked("fault.resolved"), 15, "the resolved webhook")
            # De-duplicated: more ticks pass, still one alert of each kind per channel.
            beats = provincial.stats()["counters"]["heartbeats"]
            wait_for(lambda: provincial.stats()["counters"]["heartbeats"] >= beats + 5, 15, "five more heartbeats")
            tags = [m["X-Cdcsync-Fault"] for m in smtp.messages if fault["fault_id"] in m["X-Cdcsync-Fault"]]
            assert sorted(tags) == sorted([f"{fault['fault_id']} open", f"{fault['fault_id']} resolved"])
            assert [e["event"] for e in hook.events() if e["fault"]["fault_id"] == fault["fault_id"]] == [
                "fault.opened", "fault.resolved"]
            row = conn.execute("SELECT resolved_at IS NOT NULL, array_length(alerts_sent, 1) FROM cdcsync.fault"
                               " WHERE fault_id = %s", (fault["fault_id"],)).fetchone()
            assert row == (True, 4)
    finally:
        daemon.stop()
        national.stop()
        provincial.stop()
        smtp.close()
        hook.close()


def test_status_page_labels_the_trial_destination() -> None:
    from cdcsync.api.web_app import render_status
    from cdcsync.spec import load_spec

    st = {"destinations": [{"destination": "national", "enabled": True, "active": True},
                           {"destination": "trial", "enabled": True, "active": True, "environment": "test"}]}
    html = render_status(st, load_spec())
    row = html.split('data-destination="trial"', 1)[1].split("</tr>", 1)[0]
    assert "试运行·大疫情测试网" in row
    assert "试运行" not in html.split('data-destination="national"', 1)[1].split("</tr>", 1)[0]
