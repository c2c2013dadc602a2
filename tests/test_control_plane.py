"""The control plane end to end (docs/control-plane.md): configuration packages signed by the
reference platform, POSTed over HTTPS on loopback to the 8882 listener, real SM2/SM3, real
PostgreSQL; the daemon streaming to the reference platform while a value-domain push switches the
national code it emits, and a rollback switching it back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import yaml
from click.testing import CliRunner

from cdcsync.api.server import ServerHandle, start_servers
from cdcsync.cli import main
from cdcsync.config import Settings, load_settings
from cdcsync.control.kinds import rules_pack_path
from cdcsync.control.package import Package, sign_package
from cdcsync.crypto.keys import load_public_key, write_keypair
from cdcsync.crypto.sm2 import SM2PrivateKey
from cdcsync.crypto.tls import write_self_signed
from cdcsync.engine.status import collect_status
from cdcsync.mapping.domains import default_mappings_dir, load_national
from cdcsync.mapping.layers import MappingLayers
from cdcsync.settings.api import ApiSettings
from cdcsync.surveil.pack import DEFAULT_PACK, load_pack
from cdcsync.upstream_sim.cli import prepare_data_dir
from cdcsync.upstream_sim.push import PushResult, send
from cdcsync.upstream_sim.runner import SimHandle, free_port, start_in_process
from cdcsync.validate.reload import RulesHolder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cdc_util import cli_cmd  # noqa: E402

from tests.cdc_util import wait_for

REPO = Path(__file__).resolve().parents[1]
ORG = "12110000400000000X"
# The successor of national code "1" in the pushed version of domain sex (a test value, not GB/T 2261.1).
NEW_MALE = "10"


def sex_payload(*, version_date: str = "2026-12-01", drop: str | None = None, block: bool = False) -> bytes:
    """Domain sex, new version: code 1 retired in favour of 10 (or ``drop`` removed outright)."""
    shipped = load_national(default_mappings_dir())["sex"]
    gone = ("1",) if drop is None else (drop,)
    codes = [{"code": c.code, "name": c.name} for c in shipped if c.code not in gone]
    replaced = {}
    if drop is None:
        codes.append({"code": NEW_MALE, "name": "男性"})
        replaced = {"1": NEW_MALE}
    dom = {"id": "sex", "name": shipped.name, "standard": shipped.standard, "version_date": version_date,
           "subset": False, "codes": codes, "replaced": replaced}
    return orjson.dumps({"domains": [dom], "block_on_unmapped": block})


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


class Front:
    """Settings of one front end: http destination to a reference platform, 8882 with TLS."""

    def __init__(self, tmp: Path, dsn: str, sim_dir: Path, sim_url: str, sim_ca: Path | None,
                 control_port: int = 0, local_dir: Path | None = None) -> None:
        self.tmp = tmp
        keys = tmp / "keys"
        if (keys / "hospital.key").exists():  # made beforehand, e.g. for the platforms to trust
            self.hk, self.hp = keys / "hospital.key", keys / "hospital.pub"
        else:
            self.hk, self.hp, _ = write_keypair(keys, "hospital")
        self.platform_key, _ = prepare_data_dir(sim_dir, tls=False)
        self.tls = write_self_signed(tmp / "tls8882", ["127.0.0.1"])
        self.data: dict[str, Any] = {
            "org_code": ORG,
            "state_dir": str(tmp / "state"),
            "database": {"dsn": dsn},
            "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5},
            "destinations": [{"name": "national", "kind": "http", "url": sim_url,
                              "ca_bundle": str(sim_ca) if sim_ca else None, "hospital_key": str(self.hk),
                              "platform_public_key": str(sim_dir / "platform.pub"), "batch_max_events": 50,
                              "retry_initial_s": 0.1, "retry_max_s": 1.0, "timeout_s": 10}],
            "api": {**{n: {"host": "127.0.0.1", "port": 0} for n in ("data", "monitor", "web")},
                    "control": {"host": "127.0.0.1", "port": control_port, "tls_cert_file": str(self.tls.cert),
                                "tls_key_file": str(self.tls.key)}},
        }
        if local_dir is not None:
            self.data["local_mappings_dir"] = str(local_dir)
        self.settings = Settings.model_validate(self.data)
        self.cfg = tmp / "config.yaml"
        self.cfg.write_text(yaml.safe_dump(json.loads(json.dumps(self.data))), encoding="utf-8")

    def package(self, kind: str, payload: bytes, version: int, *, pid: str | None = None, org: str = ORG,
                key: SM2PrivateKey | None = None) -> Package:
        return sign_package(payload, platform_key=key or self.platform_key, package_id=pid or f"{kind}-v{version}",
                            kind=kind, version=version, org_code=org)

    def push(self, url: str, body: bytes, *, compressed: bool = False) -> PushResult:
        return send(url, body, ca_bundle=self.tls.ca_cert, hospital_pub=load_public_key(self.hp),
                    compressed=compressed)


def control_only(front: Front) -> ApiSettings:
    api = dict(front.data["api"])
    for n in ("data", "monitor", "web"):
        api[n] = {"enabled": False}
    return ApiSettings.model_validate(api)


@pytest.fixture
def served(migrated_db: str, tmp_path: Path) -> Iterator[tuple[Front, ServerHandle, RulesHolder, str]]:
    front = Front(tmp_path, migrated_db, tmp_path / "sim", "https://127.0.0.1:9", None)
    holder = RulesHolder.for_layers(MappingLayers.from_settings(front.settings))
    handle = start_servers(front.settings, rules=holder, api=control_only(front))
    try:
        yield front, handle, holder, f"https://127.0.0.1:{handle.ports['control']}"
    finally:
        handle.stop()


def snapshot(front: Front, holder: RulesHolder) -> tuple[Any, ...]:
    state = Path(front.settings.state_dir)
    links = tuple(os.path.realpath(p) if p.exists() else None
                  for p in (state / "mappings" / "current", *(state / "control" / k / "current"
                                                               for k in ("upstream", "timeliness", "rules"))))
    with psycopg.connect(front.settings.database.conninfo()) as conn:
        row = conn.execute("SELECT count(*) FROM cdcsync.config_current").fetchone()
    return links, row, holder.version


def test_each_kind_applied_and_bad_packages_refused(served: tuple[Front, ServerHandle, RulesHolder, str]) -> None:
    front, _, holder, url = served
    shipped_before = tree_digest(default_mappings_dir())
    v0 = holder.version
    tables0 = MappingLayers.from_settings(front.settings).load()
    assert tables0.map("sex", "M") == "1" and tables0.national["sex"].layer == "shipped"

    # --- value_domains: applied, the mapping set in force changes at once, reply signed ------
    r = front.push(url, front.package("value_domains", sex_payload(), 1).to_json(), compressed=True)
    assert r.verified and r.http_status == 200, r.reply
    assert r.reply["outcome"] == "acknowledged" and r.reply["state"] == "acknowledged"
    assert r.reply["detail"]["mapping_version"] == holder.version != v0
    tables1 = MappingLayers.from_settings(front.settings).load()
    assert tables1.map("sex", "M") == NEW_MALE and tables1.national["sex"].layer == "pushed"
    assert tables1.national["icd10"].layer == "shipped"

    # --- the other kinds -------------------------------------------------------------------
    upstream = orjson.dumps({"destinations": [{"name": "national", "url": "https://10.1.2.3:8888",
                                               "batch_max_events": 500, "enabled": True}]})
    timeliness = orjson.dumps({"tables": {"diagnosis": "realtime"}, "evaluation": {"good": 96.0}})
    rules = orjson.dumps({"file_name": "default.yaml", "content": DEFAULT_PACK.read_text(encoding="utf-8")})
    for kind, payload in (("upstream", upstream), ("timeliness", timeliness), ("rules", rules)):
        r = front.push(url, front.package(kind, payload, 1).to_json())
        assert r.verified and r.reply["outcome"] == "acknowledged", (kind, r.reply)
        assert (Path(front.settings.state_dir) / "control" / kind / "current").is_dir()
    in_force = collect_status(front.settings)["configuration"]
    assert {k: v["version"] for k, v in in_force.items()} == {"value_domains": 1, "upstream": 1, "timeliness": 1,
                                                               "rules": 1}
    # In force for every later load of the settings (the daemon's next start, status, doctor…).
    eff = load_settings(front.cfg, environ={})
    nat = eff.destination("national")
    assert (nat.url, nat.batch_max_events, eff.ops.evaluation.good) == ("https://10.1.2.3:8888", 500, 96.0)  # type: ignore[union-attr]
    assert front.settings.destination("national").batch_max_events == 50  # type: ignore[union-attr]
    assert rules_pack_path(front.settings) == Path(front.settings.state_dir) / "control/rules/current/pack.yaml"
    assert load_pack(rules_pack_path(front.settings)).name == load_pack(DEFAULT_PACK).name

    # --- refusals: each with its reason, each changing nothing -------------------------------
    before = snapshot(front, holder)
    good = front.package("value_domains", sex_payload(version_date="2026-12-02"), 2)
    tampered = orjson.loads(good.to_json())
    tampered["payload"] = __import__("base64").b64encode(sex_payload(version_date="2026-12-03")).decode()
    other_key = SM2PrivateKey.generate()
    cases = [
        ("bad_signature", 401, orjson.dumps(tampered)),
        ("bad_signature", 401, front.package("value_domains", sex_payload(), 2, key=other_key).to_json()),
        ("replay", 409, front.package("value_domains", sex_payload(), 1).to_json()),  # same package id
        ("old_version", 409, front.package("value_domains", sex_payload(), 1, pid="fresh-id").to_json()),
        ("wrong_org", 403, front.package("value_domains", sex_payload(), 2, org="99999999999999999X").to_json()),
        ("check_failed", 422, front.package("value_domains", sex_payload(drop="2", block=True), 2).to_json()),
        ("invalid_payload", 422, front.package("timeliness", b'{"tables": {"nope": "realtime"}}', 2).to_json()),
        ("invalid_payload", 422, front.package("upstream", orjson.dumps(
            {"destinations": [{"name": "national", "hospital_key": "/tmp/x"}]}), 2).to_json()),
        ("invalid_payload", 422, front.package("rules", orjson.dumps(
            {"file_name": "p.yaml", "content": "format: 1\nname: x\nbogus: 1\n"}), 2).to_json()),
        ("malformed", 400, b"{not json"),
    ]
    for reason, status, body in cases:
        r = front.push(url, body)
        assert r.verified, reason  # refusals are signed too
        assert (r.reply["outcome"], r.reply["reason"], r.http_status) == ("refused", reason, status), r.reply
        assert r.reply["message"]
        assert snapshot(front, holder) == before, reason
    check = next(e for e in history(front) if (e["events"][-1].get("reason") == "check_failed"))
    assert check["events"][-1]["detail"]["dangling_local_entries"] == [
        {"domain": "sex", "local_code": "F", "national_code": "2"}]

    # Not blocking: the same gap is reported and the version applied.
    r = front.push(url, front.package("value_domains", sex_payload(drop="2"), 3).to_json())
    assert r.reply["outcome"] == "acknowledged", r.reply
    assert r.reply["detail"]["dangling_local_entries"][0]["local_code"] == "F"

    # --- history and rollback (CLI) -----------------------------------------------------------
    out = CliRunner().invoke(main, ["-c", str(front.cfg), "config", "history"])
    assert out.exit_code == 0 and "已拒收（replay）" in out.output and "已确认" in out.output, out.output
    out = CliRunner().invoke(main, ["-c", str(front.cfg), "config", "rollback", "value_domains-v1"])
    assert out.exit_code == 2 and "不是 value_domains 当前生效的版本" in out.output, out.output
    out = CliRunner().invoke(main, ["-c", str(front.cfg), "config", "rollback", "value_domains-v3"])
    assert out.exit_code == 0, out.output
    holder.reload_if_changed()
    assert MappingLayers.from_settings(front.settings).load().map("sex", "M") == NEW_MALE  # v1 again
    assert holder.current().mapper.map("sex", "F") == "2"
    out = CliRunner().invoke(main, ["-c", str(front.cfg), "config", "rollback", "value_domains-v1"])
    assert out.exit_code == 0, out.output
    holder.reload_if_changed()
    assert holder.version == v0  # back to the release's own tables, byte for byte the same version
    out = CliRunner().invoke(main, ["-c", str(front.cfg), "config", "rollback", "upstream-v1"])
    assert out.exit_code == 0, out.output
    assert load_settings(front.cfg, environ={}).destination("national").url == "https://127.0.0.1:9"
    states = [e["state"] for e in history(front, "value_domains")[-1]["events"]]  # v1, oldest
    assert states == ["received", "verified", "staged", "checked", "applied", "acknowledged", "reapplied",
                      "rolled_back"]
    # A push never wrote the shipped tables (nor the hospital's local ones, which live there here).
    assert tree_digest(default_mappings_dir()) == shipped_before


def history(front: Front, kind: str | None = None) -> list[dict[str, Any]]:
    from cdcsync.control import store

    with psycopg.connect(front.settings.database.conninfo()) as conn:
        return store.history(conn, 100, kind)


def test_packages_are_append_only(served: tuple[Front, ServerHandle, RulesHolder, str]) -> None:
    front, _, _, url = served
    front.push(url, b"{}")
    with psycopg.connect(front.settings.database.conninfo(), autocommit=True) as conn:
        for stmt in ("UPDATE cdcsync.config_event SET state = 'applied'", "DELETE FROM cdcsync.config_package"):
            with pytest.raises(psycopg.errors.RaiseException, match="只可追加"):
                conn.execute(stmt)


# ----------------------------------------------------------------------------- under load


class StaffLoader:
    """One transaction every 50 ms inserting 5 staff rows with local sex code M. ``last_lsn``: a
    WAL position inside the latest transaction, i.e. after every earlier commit and before its
    own; the checkpoint reaches it exactly when that transaction is acknowledged (other WAL, such as
    heartbeats, may follow the last commit, so ``pg_current_wal_lsn()`` read later may never be)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.stop = threading.Event()
        self.inserted = 0
        self.last_lsn = "0/0"
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self.stop.is_set():
                    with conn.transaction():
                        rows = [(ORG, f"S{self.inserted + i:06d}", f"医生{self.inserted + i}", "M", True, "1")
                                for i in range(5)]
                        conn.cursor().executemany(
                            "INSERT INTO emr.staff (org_code, staff_id, staff_name, sex_code, active_flag,"
                            " modify_flag, collect_time, update_time) VALUES (%s, %s, %s, %s, %s, %s, now(), now())",
                            rows)
                        lsn = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
                    self.inserted += 5
                    self.last_lsn = str(lsn[0])  # type: ignore[index]
                    self.stop.wait(0.05)
        except BaseException as exc:
            self.error = exc


def staff_events(sim: SimHandle) -> list[dict[str, Any]]:
    import sqlite3

    db = sqlite3.connect(sim.data_dir / "received.sqlite")
    try:
        rows = [orjson.loads(p) for (p,) in db.execute("SELECT payload FROM events WHERE table_name = 'staff'")]
    finally:
        db.close()
    return sorted(rows, key=lambda e: (int(e["id"].split(":")[-2], 16), int(e["id"].split(":")[-1])))


def test_value_domain_push_switches_emission_between_transactions(migrated_db: str, tmp_path: Path) -> None:
    hk_dir = tmp_path / "front"
    hk_dir.mkdir()
    # The hospital's local tables outside the release (layer 3): a copy it owns.
    local_root = tmp_path / "site"
    (local_root / "local").mkdir(parents=True)
    shutil.copytree(default_mappings_dir() / "local" / "example", local_root / "local" / "example")
    local_before = tree_digest(local_root)
    sim_dir = tmp_path / "sim"
    prepare_data_dir(sim_dir, tls=True)
    _, hp, _ = write_keypair(hk_dir / "keys", "hospital")
    sim = start_in_process(sim_dir, hospital_pubs=[hp])
    front = Front(hk_dir, migrated_db, sim_dir, sim.url, sim.ca_bundle, control_port=free_port(),
                  local_dir=local_root)
    url = f"https://127.0.0.1:{front.data['api']['control']['port']}"
    log = tmp_path / "daemon.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cli_cmd(front.cfg, "run"), stdout=fh, stderr=subprocess.STDOUT, cwd=str(REPO),
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    loader = StaffLoader(migrated_db)
    try:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.checkpoint WHERE snapshot_done")
                     .fetchone()[0] == 1, 60, "the daemon to start streaming")  # type: ignore[index]
        loader.thread.start()
        wait_for(lambda: len(staff_events(sim)) >= 50, 60, "events before the push")
        r = front.push(url, front.package("value_domains", sex_payload(), 1).to_json())
        assert r.reply["outcome"] == "acknowledged", r.reply
        v2 = r.reply["detail"]["mapping_version"]
        wait_for(lambda: any(e["source"]["mapping_version"] == v2 for e in staff_events(sim)), 60,
                 "events mapped with the pushed version")
        n = len(staff_events(sim))
        wait_for(lambda: len(staff_events(sim)) >= n + 50, 60, "more events after the push")
        out = subprocess.run(cli_cmd(front.cfg, "config", "rollback", r.reply["package_id"]), capture_output=True,
                             text=True, cwd=str(REPO), timeout=60)
        assert out.returncode == 0, out.stderr
        n = len(staff_events(sim))
        wait_for(lambda: [e["source"]["mapping_version"] for e in staff_events(sim)][-1] != v2
                 and len(staff_events(sim)) >= n + 50, 60, "events mapped with the release's tables again")
        loader.stop.set()
        loader.thread.join(10)
        assert loader.error is None, loader.error
        wait_for(lambda: len(staff_events(sim)) >= loader.inserted, 60, "every row delivered")
        duplicates = sim.stats().get("duplicates", 0)
    finally:
        loader.stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        sim.stop()
    events = staff_events(sim)
    assert loader.inserted > 150
    # Nothing lost, nothing twice.
    ids = [e["after"]["staff_id"] for e in events]
    assert sorted(ids) == [f"S{i:06d}" for i in range(loader.inserted)], log.read_text()[-3000:]
    assert duplicates == 0
    # One mapping set per transaction, switching exactly twice: release → pushed → release.
    by_tx: dict[str, set[str]] = {}
    for e in events:
        by_tx.setdefault(e["id"].split(":")[-2], set()).add(e["source"]["mapping_version"])
    assert all(len(v) == 1 for v in by_tx.values())
    seq = [e["source"]["mapping_version"] for e in events]
    runs = [v for i, v in enumerate(seq) if i == 0 or seq[i - 1] != v]
    assert len(runs) == 3 and runs[0] == runs[2] != runs[1] == v2, runs
    for e in events:
        want = NEW_MALE if e["source"]["mapping_version"] == v2 else "1"
        assert (e["after"]["sex_code"], e["after"]["sex_code_local"]) == (want, "M")
    assert tree_digest(local_root) == local_before  # the hospital's tables untouched


def start_daemon(front: Front, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(cli_cmd(front.cfg, "run"), stdout=fh, stderr=subprocess.STDOUT, cwd=str(REPO),
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))


def platform_at_two_addresses(dsn: str, tmp_path: Path) -> tuple[SimHandle, SimHandle, Front]:
    """One national platform (same keys, same TLS certificate) reachable at two addresses, and a
    front end configured for the first."""
    a_dir, b_dir, fdir = tmp_path / "a", tmp_path / "b", tmp_path / "front"
    fdir.mkdir()
    prepare_data_dir(a_dir, tls=True)
    b_dir.mkdir()
    for f in ("platform.key", "platform.pub"):
        shutil.copy2(a_dir / f, b_dir / f)
    shutil.copytree(a_dir / "tls", b_dir / "tls")
    _, hp, _ = write_keypair(fdir / "keys", "hospital")
    sim_a = start_in_process(a_dir, hospital_pubs=[hp])
    sim_b = start_in_process(b_dir, hospital_pubs=[hp])
    return sim_a, sim_b, Front(fdir, dsn, a_dir, sim_a.url, sim_a.ca_bundle, control_port=free_port())


def test_upstream_push_moves_a_destination_while_streaming(migrated_db: str, tmp_path: Path) -> None:
    """The national platform moves to a new address (same keys): the running daemon's pipeline
    restarts gracefully and streams on to the new address; a rollback moves it back. Every row is
    delivered, to one platform or the other."""
    sim_a, sim_b, front = platform_at_two_addresses(migrated_db, tmp_path)
    url = f"https://127.0.0.1:{front.data['api']['control']['port']}"
    log = tmp_path / "daemon.log"
    proc = start_daemon(front, log)
    loader = StaffLoader(migrated_db)
    try:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.checkpoint WHERE snapshot_done")
                     .fetchone()[0] == 1, 60, "the daemon to start streaming")  # type: ignore[index]
        loader.thread.start()
        wait_for(lambda: len(staff_events(sim_a)) >= 50, 60, "events at the first address")
        body = orjson.dumps({"destinations": [{"name": "national", "url": sim_b.url}]})
        r = front.push(url, front.package("upstream", body, 1).to_json())
        assert r.reply["outcome"] == "acknowledged", r.reply
        wait_for(lambda: len(staff_events(sim_b)) >= 50, 60, "events at the new address")
        at_a = len(staff_events(sim_a))
        out = subprocess.run(cli_cmd(front.cfg, "config", "rollback", r.reply["package_id"]), capture_output=True,
                             text=True, cwd=str(REPO), timeout=60)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: len(staff_events(sim_a)) >= at_a + 50, 60, "events at the first address again")
        loader.stop.set()
        loader.thread.join(10)
        assert loader.error is None, loader.error
        # distinct ids: a row both platforms hold (a harmless replay) must not count twice
        wait_for(lambda: len({e["id"] for e in staff_events(sim_a) + staff_events(sim_b)}) >= loader.inserted,
                 60, "every row delivered")
    finally:
        loader.stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        sim_a.stop()
        sim_b.stop()
    events = staff_events(sim_a) + staff_events(sim_b)
    by_id = {e["id"]: e["after"]["staff_id"] for e in events}
    # Nothing lost. A row both platforms hold is a replay of the same event (same deterministic
    # id: acknowledged at the old address after the last checkpoint), which the national
    # platform's deduplication by id absorbs; no row arrives under two ids.
    assert sorted(by_id.values()) == [f"S{i:06d}" for i in range(loader.inserted)], log.read_text()[-3000:]
    text = log.read_text()
    assert text.count("destinations reconfigured by the national platform: national") == 2


def test_upstream_sim_push_config_command(served: tuple[Front, ServerHandle, RulesHolder, str],
                                          tmp_path: Path) -> None:
    front, _, _, url = served
    timeliness = tmp_path / "timeliness.json"
    timeliness.write_text(json.dumps({"evaluation": {"fair": 85.0}}), encoding="utf-8")
    base = ["upstream-sim", "push-config", "--to", url, "--data-dir", str(tmp_path / "sim"), "--org", ORG,
            "--ca-bundle", str(front.tls.ca_cert), "--hospital-pub", str(front.hp)]

    def push(kind: str, version: int, file: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        out = CliRunner().invoke(main, [*base, "--kind", kind, "--version", str(version), *extra, str(file)])
        return out.exit_code, json.loads(out.output)

    code, reply = push("timeliness", 1, timeliness, "--gzip")
    assert code == 0 and reply["signature_verified"] and reply["outcome"] == "acknowledged", reply
    code, reply = push("rules", 1, DEFAULT_PACK)  # a YAML pack is wrapped as {file_name, content}
    assert code == 0 and reply["outcome"] == "acknowledged", reply
    code, reply = push("timeliness", 1, timeliness)
    assert code == 1 and (reply["reason"], reply["http_status"]) == ("old_version", 409), reply
    assert load_settings(front.cfg, environ={}).ops.evaluation.fair == 85.0


def test_a_link_the_database_does_not_know_is_switched_back(served: tuple[Front, ServerHandle, RulesHolder, str]
                                                            ) -> None:
    """A crash after the link switch but before the commit of an apply: at the next start the
    database's version is in force again."""
    from cdcsync.control.generations import Generations
    from cdcsync.control.service import ControlService
    from cdcsync.mapping.layers import pushed_root

    front, _, _, url = served
    r = front.push(url, front.package("value_domains", sex_payload(), 1).to_json())
    assert r.reply["outcome"] == "acknowledged"
    gens = Generations(pushed_root(front.settings.state_dir))
    applied = gens.current()
    name, path = gens.create("never-committed")
    shutil.copytree(gens.path(applied) / "national", path / "national")  # type: ignore[arg-type]
    gens.switch(name)
    ControlService(front.settings).reconcile()
    assert gens.current() == applied


def test_value_domain_push_with_two_platforms_switches_at_the_same_transaction(migrated_db: str,
                                                                               tmp_path: Path) -> None:
    """The daemon streams to the national and a provincial reference platform (each its own keys
    and TLS) while a value_domains package is pushed: each platform holds every row exactly once,
    and the national code switches at the same source transaction on both."""
    fdir, nat_dir, prov_dir = tmp_path / "front", tmp_path / "national", tmp_path / "provincial"
    fdir.mkdir()
    prepare_data_dir(nat_dir, tls=True)
    prepare_data_dir(prov_dir, tls=True)
    _, hp, _ = write_keypair(fdir / "keys", "hospital")
    nat = start_in_process(nat_dir, hospital_pubs=[hp])
    prov = start_in_process(prov_dir, hospital_pubs=[hp])
    front = Front(fdir, migrated_db, nat_dir, nat.url, nat.ca_bundle, control_port=free_port())
    front.data["destinations"].append({**front.data["destinations"][0], "name": "provincial", "url": prov.url,
                                       "ca_bundle": str(prov.ca_bundle),
                                       "platform_public_key": str(prov_dir / "platform.pub")})
    front.cfg.write_text(yaml.safe_dump(json.loads(json.dumps(front.data))), encoding="utf-8")
    url = f"https://127.0.0.1:{front.data['api']['control']['port']}"
    log = tmp_path / "daemon.log"
    proc = start_daemon(front, log)
    loader = StaffLoader(migrated_db)
    sims = (nat, prov)
    try:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.checkpoint WHERE snapshot_done")
                     .fetchone()[0] == 2, 60, "both destinations to start streaming")  # type: ignore[index]
        loader.thread.start()
        wait_for(lambda: all(len(staff_events(s)) >= 50 for s in sims), 60, "events before the push")
        r = front.push(url, front.package("value_domains", sex_payload(), 1).to_json())
        assert r.reply["outcome"] == "acknowledged", r.reply
        v2 = r.reply["detail"]["mapping_version"]
        n = min(len(staff_events(s)) for s in sims)
        wait_for(lambda: all(sum(e["source"]["mapping_version"] == v2 for e in staff_events(s)) >= 50
                             and len(staff_events(s)) >= n + 50 for s in sims), 60,
                 "events mapped with the pushed version on both platforms")
        loader.stop.set()
        loader.thread.join(10)
        assert loader.error is None, loader.error
        wait_for(lambda: all(len(staff_events(s)) >= loader.inserted for s in sims), 60, "every row delivered")
        duplicates = [s.stats().get("duplicates", 0) for s in sims]
    finally:
        loader.stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        nat.stop()
        prov.stop()
    assert loader.inserted > 100
    assert duplicates == [0, 0]
    switched_at: list[str] = []
    for sim in sims:
        events = staff_events(sim)
        # Every row exactly once on each platform.
        ids = [e["after"]["staff_id"] for e in events]
        assert sorted(ids) == [f"S{i:06d}" for i in range(loader.inserted)], (sim.url, log.read_text()[-3000:])
        by_tx: dict[str, set[str]] = {}
        for e in events:
            by_tx.setdefault(e["id"].split(":")[-2], set()).add(e["source"]["mapping_version"])
            want = NEW_MALE if e["source"]["mapping_version"] == v2 else "1"
            assert (e["after"]["sex_code"], e["after"]["sex_code_local"]) == (want, "M")
        assert all(len(v) == 1 for v in by_tx.values())  # one mapping set per transaction
        seq = [e["source"]["mapping_version"] for e in events]
        runs = [v for i, v in enumerate(seq) if i == 0 or seq[i - 1] != v]
        assert len(runs) == 2 and runs[1] == v2 != runs[0], runs  # switched exactly once
        switched_at.append(next(e["id"].split(":")[-2] for e in events if e["source"]["mapping_version"] == v2))
    assert switched_at[0] == switched_at[1], switched_at  # the same source transaction on both


def test_ops_loop_follows_upstream_and_timeliness_pushes_without_restart(migrated_db: str, tmp_path: Path) -> None:
    """The ops loop (heartbeats, faults, evaluation) follows an ``upstream`` push: after the national
    platform moves to a new address the heartbeats go there, not to the old one, from the same
    daemon process; a rollback brings them back. A ``timeliness`` push changes the weights the
    running evaluation uses; its rollback changes them back."""
    sim_a, sim_b, front = platform_at_two_addresses(migrated_db, tmp_path)
    front.data["ops"] = {"heartbeat": {"interval_s": 0.3}, "evaluation": {"refresh_s": 1}}
    front.cfg.write_text(yaml.safe_dump(json.loads(json.dumps(front.data))), encoding="utf-8")
    url = f"https://127.0.0.1:{front.data['api']['control']['port']}"

    def beats(sim: SimHandle) -> int:
        return int(sim.stats()["counters"].get("heartbeats", 0))

    def backup_weight() -> float | None:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            row = conn.execute("SELECT details FROM cdcsync.evaluation_daily WHERE destination = 'national'"
                               " ORDER BY computed_at DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return next(c["weight"] for d in row[0]["dimensions"] for c in d["components"] if c["name"] == "backup")

    log = tmp_path / "daemon.log"
    proc = start_daemon(front, log)
    try:
        wait_for(lambda: beats(sim_a) >= 3, 60, "heartbeats at the first address")
        assert beats(sim_b) == 0
        body = orjson.dumps({"destinations": [{"name": "national", "url": sim_b.url}]})
        r = front.push(url, front.package("upstream", body, 1).to_json())
        assert r.reply["outcome"] == "acknowledged", r.reply
        wait_for(lambda: beats(sim_b) >= 3, 30, "heartbeats at the new address")
        at_a = beats(sim_a)
        b_then = beats(sim_b)
        wait_for(lambda: beats(sim_b) >= b_then + 5, 30, "more heartbeats at the new address")
        assert beats(sim_a) <= at_a + 1, "the old address still gets heartbeats"  # one may have been in flight
        out = subprocess.run(cli_cmd(front.cfg, "config", "rollback", r.reply["package_id"]), capture_output=True,
                             text=True, cwd=str(REPO), timeout=60)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: beats(sim_a) >= at_a + 3, 30, "heartbeats at the first address again")
        at_b = beats(sim_b)
        a_then = beats(sim_a)
        wait_for(lambda: beats(sim_a) >= a_then + 5, 30, "more heartbeats at the first address")
        assert beats(sim_b) <= at_b + 1

        # A timeliness push: the running evaluation uses its weights from the next refresh.
        assert backup_weight() == 0.2  # the configured default
        body = orjson.dumps({"evaluation": {"w_backup": 0.05}})
        r = front.push(url, front.package("timeliness", body, 1).to_json())
        assert r.reply["outcome"] == "acknowledged", r.reply
        wait_for(lambda: backup_weight() == 0.05, 30, "the evaluation with the pushed weight")
        out = subprocess.run(cli_cmd(front.cfg, "config", "rollback", r.reply["package_id"]), capture_output=True,
                             text=True, cwd=str(REPO), timeout=60)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: backup_weight() == 0.2, 30, "the evaluation with the configured weight again")
        assert proc.poll() is None, "the daemon was not restarted"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        sim_a.stop()
        sim_b.stop()
    assert log.read_text().count("ops: heartbeats follow the new destinations: national") == 2
    assert log.read_text().count("destinations reconfigured by the national platform") == 2  # not for timeliness


def test_upstream_push_rotates_the_platform_key(migrated_db: str, tmp_path: Path) -> None:
    """The national platform rotates its signing key (the reference platform restarts at the same
    address with a new key): the daemon cannot verify its replies until an ``upstream`` package
    brings the new public key; then delivery resumes, every row delivered once. A package carrying
    a private key is refused and changes nothing; a rollback returns to the configured key."""
    a_dir, old_dir, new_dir, fdir = tmp_path / "a", tmp_path / "old", tmp_path / "new", tmp_path / "front"
    fdir.mkdir()
    prepare_data_dir(a_dir, tls=True)
    old_dir.mkdir()
    for f in ("platform.key", "platform.pub"):
        shutil.copy2(a_dir / f, old_dir / f)
    hk, hp, _ = write_keypair(fdir / "keys", "hospital")
    _, new_pub, _ = write_keypair(new_dir, "platform")
    sim = start_in_process(a_dir, hospital_pubs=[hp])
    port = int(sim.url.rsplit(":", 1)[1])
    front = Front(fdir, migrated_db, old_dir, sim.url, sim.ca_bundle, control_port=free_port())
    url = f"https://127.0.0.1:{front.data['api']['control']['port']}"
    log = tmp_path / "daemon.log"
    proc = start_daemon(front, log)
    loader = StaffLoader(migrated_db)
    try:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.checkpoint WHERE snapshot_done")
                     .fetchone()[0] == 1, 60, "the daemon to start streaming")  # type: ignore[index]
        loader.thread.start()
        wait_for(lambda: len(staff_events(sim)) >= 50, 60, "events before the rotation")
        sim.stop()
        for f in ("platform.key", "platform.pub"):
            shutil.copy2(new_dir / f, a_dir / f)
        sim = start_in_process(a_dir, hospital_pubs=[hp], port=port)
        after = loader.inserted
        wait_for(lambda: loader.inserted >= after + 20, 30, "rows written after the rotation")
        loader.stop.set()
        loader.thread.join(10)
        assert loader.error is None, loader.error
        end = loader.last_lsn

        def acked() -> bool:
            with psycopg.connect(migrated_db, autocommit=True) as c:
                return bool(c.execute("SELECT acked_lsn >= %s::pg_lsn FROM cdcsync.checkpoint"
                                      " WHERE destination = 'national'", (end,)).fetchone()[0])  # type: ignore[index]

        # Refused: the hospital's private key as "the platform's key", and a hospital_key field.
        for v, dest in ((1, {"platform_public_key_pem": hk.read_text()}),
                        (2, {"platform_public_key_pem": hp.read_text()}),
                        (3, {"hospital_key": str(hk)})):
            body = orjson.dumps({"destinations": [{"name": "national", **dest}]})
            r = front.push(url, front.package("upstream", body, v, pid=f"bad-{v}").to_json())
            refusal = (r.reply["outcome"], r.reply["reason"], r.http_status)
            assert refusal == ("refused", "invalid_payload", 422), r.reply
            assert ("私钥", "医院的公钥", "hospital_key")[v - 1] in r.reply["message"], r.reply
        assert not (Path(front.settings.state_dir) / "control" / "upstream" / "current").exists()
        assert not acked(), "replies signed by the new key were accepted before it was pushed"

        body = orjson.dumps({"destinations": [{"name": "national", "platform_public_key_pem": new_pub.read_text()}]})
        r = front.push(url, front.package("upstream", body, 5, pid="rotate").to_json())
        assert r.reply["outcome"] == "acknowledged", r.reply
        pushed = load_settings(front.cfg).destinations[0]
        assert pushed.platform_public_key is not None
        assert pushed.platform_public_key.read_bytes() == new_pub.read_bytes()
        assert pushed.platform_public_key.stat().st_mode & 0o777 == 0o644
        try:
            wait_for(acked, 90, "the rows after the rotation acknowledged under the new key")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the daemon's log ends:\n{log.read_text()[-6000:]}") from None

        out = subprocess.run(cli_cmd(front.cfg, "config", "rollback", "rotate"), capture_output=True,
                             text=True, cwd=str(REPO), timeout=60)
        assert out.returncode == 0, out.stderr
        assert load_settings(front.cfg).destinations[0].platform_public_key == old_dir / "platform.pub"
        wait_for(lambda: log.read_text().count("destinations reconfigured by the national platform: national") == 2,
                 30, "the pipeline restarted with the configured key")
    finally:
        loader.stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        sim.stop()
    by_id = {e["id"]: e["after"]["staff_id"] for e in staff_events(sim)}
    assert sorted(by_id.values()) == [f"S{i:06d}" for i in range(loader.inserted)], log.read_text()[-3000:]


def test_timeliness_push_sets_a_tables_class_in_the_evaluation(served: tuple[Front, ServerHandle, RulesHolder, str]
                                                                ) -> None:
    """A ``timeliness`` package giving one table a longer class: that table's acknowledged events
    count against the pushed limit from the next evaluation (recomputed from its recorded
    histogram); the other table keeps the spec's class; a rollback restores the spec's figure."""
    from cdcsync.engine.accounting import DelayHistogram
    from cdcsync.ops.evaluate import evaluate_day
    from cdcsync.spec import load_spec

    front, _, _, url = served
    realtime = [t.name for t in load_spec().tables if t.timeliness == "realtime"][:2]
    assert len(realtime) == 2
    day = dt.date(2026, 11, 30)
    acked = dt.datetime(2026, 11, 30, 12, 0, 0)
    with psycopg.connect(front.settings.database.dsn, autocommit=True) as conn:
        for table, delay_s in zip(realtime, (1000, 100), strict=True):  # 1000 s: late for realtime, in time for 2 h
            h = DelayHistogram("realtime")
            h.add_many([acked - dt.timedelta(seconds=delay_s)] * 10, acked, 1.0)
            conn.execute("INSERT INTO cdcsync.delivery_latency (destination, table_name, business_date, timeliness,"
                         " events, within_limit, business_hist, commit_hist) VALUES ('national', %s, %s, 'realtime',"
                         " %s, %s, %s, %s)", (table, day, h.events, h.within, h.business_hist, h.commit_hist))

        def events_detail() -> str:
            ev = evaluate_day(conn, load_settings(front.cfg), day, now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))[0]
            dim = next(d for d in ev.dimensions if d.name == "timeliness")
            return next(c.detail for c in dim.components if c.name == "events")

        assert events_detail() == "时限内 10 / 20"
        body = orjson.dumps({"tables": {realtime[0]: "2h"}})
        r = front.push(url, front.package("timeliness", body, 1).to_json())
        assert r.reply["outcome"] == "acknowledged", r.reply
        assert events_detail() == "时限内 20 / 20"
        body = orjson.dumps({"tables": {realtime[1]: "daily", realtime[0]: "realtime"}})
        r = front.push(url, front.package("timeliness", body, 2).to_json())
        assert r.reply["outcome"] == "acknowledged", r.reply
        assert events_detail() == "时限内 10 / 20"  # the first back to realtime; the second, in time, stays so
        out = CliRunner().invoke(main, ["-c", str(front.cfg), "config", "rollback", "timeliness-v2"])
        assert out.exit_code == 0, out.output
        assert events_detail() == "时限内 20 / 20"
        out = CliRunner().invoke(main, ["-c", str(front.cfg), "config", "rollback", "timeliness-v1"])
        assert out.exit_code == 0, out.output
        assert events_detail() == "时限内 10 / 20"
