"""``cdcsync upgrade apply | rollback`` end to end (docs/control-plane.md, "Upgrades").

Wheels of this project with patched versions are built in the test (``pip wheel --no-deps`` of a
copy of the repository); 9.2.0 is deliberately broken (its ``cdcsync run`` exits at start).
Offline installs: each release venv sees the dependencies of the test environment through
``control.dependency_site`` (a .pth path entry) and gets its wheel with ``pip --no-index --no-deps``.
The service is a ``cdcsync run`` started from ``<releases_root>/current`` by tests/upgrade_supervisor.py;
the restart command signals it (SIGHUP) instead of systemctl. Under steady load every committed
row must reach the reference platform exactly once across all switches.
Real PostgreSQL, real HTTPS on loopback, real SM2/SM3, real venvs and pip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import site
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import yaml
from click.testing import CliRunner, Result

from cdcsync.cli import main
from cdcsync.crypto.keys import write_keypair
from cdcsync.source.slots import slot_name
from cdcsync.upstream_sim.runner import start_in_process
from tests.cdc_util import wait_for

REPO = Path(__file__).resolve().parents[1]
ORG = "12110000400000000X"
BROKEN = '\nimport sys as _sys\nif _sys.argv[-1:] == ["run"]:  # deliberately broken release (test)\n' \
         '    raise SystemExit("this release cannot run")\n'
# A spec table (``db init`` of each release narrows the publication to the spec's tables): the
# hospital's department dictionary, local codes that map (mappings/local/example).
DEPTS = {"0301": "03.01", "0302": "03.02", "SJNK": "03.03", "XXGNK": "03.04", "SNK": "03.06", "NFMK": "03.07"}


@pytest.fixture(scope="session")
def release_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Wheels 9.0.0, 9.1.0 and the broken 9.2.0, built in parallel from copies of the repository."""
    base = tmp_path_factory.mktemp("wheels")
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.so", "build", "*.egg-info", ".mypy_cache",
                                    ".ruff_cache", ".pytest_cache", "tests", "bench", "docs")
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    for version in ("9.0.0", "9.1.0", "9.2.0"):
        src = base / f"src-{version}"
        shutil.copytree(REPO, src, ignore=ignore)
        pp = src / "pyproject.toml"
        pp.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pp.read_text(encoding="utf-8"),
                             count=1), encoding="utf-8")
        init = src / "cdcsync" / "__init__.py"
        text = re.sub(r'(?m)^__version__ = ".*"$', f'__version__ = "{version}"', init.read_text(encoding="utf-8"))
        init.write_text(text + (BROKEN if version == "9.2.0" else ""), encoding="utf-8")
        procs.append((version, subprocess.Popen(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / version), str(src)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=base)))
    out: dict[str, Path] = {}
    for version, p in procs:
        log, _ = p.communicate(timeout=300)
        assert p.returncode == 0, log.decode(errors="replace")[-2000:]
        out[version] = next((base / version).glob("cdcsync-*.whl"))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Loader:
    """The departments inserted, then one committed bed-count change every 30 ms until stopped;
    ``committed`` is every value each department had, in commit order."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self.stop, self.error = dsn, threading.Event(), None
        self.committed: dict[str, list[int]] = {local: [0] for local in DEPTS}
        self.changes = len(DEPTS)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.cursor().executemany(
                    "INSERT INTO emr.dept (org_code, dept_code, dept_name, bed_count, active_flag, modify_flag,"
                    " collect_time, update_time) VALUES (%s, %s, %s, 0, true, '1', now(), now())",
                    [(ORG, local, f"科室{local}") for local in DEPTS])
                codes, k = list(DEPTS), 0
                while not self.stop.wait(0.03):
                    k += 1
                    local = codes[k % len(codes)]
                    conn.execute("UPDATE emr.dept SET bed_count = %s, update_time = now() WHERE dept_code = %s",
                                 (k, local))
                    self.committed[local].append(k)
                    self.changes += 1
        except BaseException as exc:  # surfaced by the test
            self.error = exc  # type: ignore[assignment]


def received(sim_dir: Path, table: str) -> list[dict[str, Any]]:
    """The platform's events of one table in commit order ((commit LSN, ordinal) from the id)."""
    db = sqlite3.connect(sim_dir / "received.sqlite")
    try:
        rows = [orjson.loads(p) for (p,) in db.execute("SELECT payload FROM events")]
    finally:
        db.close()
    rows = [e for e in rows if e["source"]["table"] == table]
    return sorted(rows, key=lambda e: (int(e["id"].split(":")[-2], 16), int(e["id"].split(":")[-1])))


def running_version(port: int) -> str | None:
    try:
        return str(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json().get("version"))
    except httpx.HTTPError:
        return None


@pytest.fixture
def service(tmp_path: Path) -> Iterator[dict[str, Any]]:
    ctx: dict[str, Any] = {}
    yield ctx
    proc: subprocess.Popen[bytes] | None = ctx.get("proc")
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_apply_switch_broken_release_rolled_back_tampered_refused(
        migrated_db: str, tmp_path: Path, release_wheels: dict[str, Path], service: dict[str, Any]) -> None:
    hk, hp, _ = write_keypair(tmp_path / "keys", "hospital")
    sim_dir = tmp_path / "sim"
    sim = start_in_process(sim_dir, hospital_pubs=[hp])
    root = tmp_path / "releases"
    ports = {name: free_port() for name in ("data", "monitor", "web")}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "org_code": ORG, "state_dir": str(tmp_path / "state"), "database": {"dsn": migrated_db},
        "mappings_dir": str(REPO / "mappings"),
        "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5},
        "api": {n: {"host": "127.0.0.1", "port": p} for n, p in ports.items()},
        "control": {"releases_root": str(root), "dependency_site": site.getsitepackages()[0],
                    "health_timeout_s": 15, "health_settle_s": 2,
                    "restart_command": ["kill", "-HUP", "{pid}"]},
        "destinations": [{"name": "national", "kind": "http", "url": sim.url, "ca_bundle": str(sim.ca_bundle),
                          "hospital_key": str(hk), "platform_public_key": str(sim.platform_pub),
                          "retry_initial_s": 0.1, "retry_max_s": 1.0}]}), encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("新增：自动升级与回退\n", encoding="utf-8")
    log = tmp_path / "service.log"
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "upgrade_supervisor.py"), str(root), str(cfg),
                             str(log)], env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    service["proc"] = proc
    # The restart command signals this supervisor (systemctl restart cdcsync in production).
    doc = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    doc["control"]["restart_command"] = ["kill", "-HUP", str(proc.pid)]
    cfg.write_text(yaml.safe_dump(doc), encoding="utf-8")

    def cli(*args: str) -> Result:
        return CliRunner().invoke(main, ["-c", str(cfg), "upgrade", *args])

    def publish(version: str, *extra: str) -> None:
        out = CliRunner().invoke(main, ["upstream-sim", "publish-release", "--data-dir", str(sim_dir), "--notes",
                                        str(notes), *extra, str(release_wheels[version])])
        assert out.exit_code == 0, out.output
        out = cli("download")
        assert out.exit_code == 0, out.output

    loader = Loader(migrated_db)
    try:
        # --- first release onto an empty releases root (bootstrap: nothing to roll back to) ----
        publish("9.0.0")
        out = cli("apply")
        assert out.exit_code == 0, out.output
        assert os.readlink(root / "current") == "9.0.0" and running_version(ports["monitor"]) == "9.0.0"
        loader.thread.start()

        # --- check sees 9.1.0; a wheel changed on disk after download is refused before install ---
        publish("9.1.0", "--dependency", str(release_wheels["9.0.0"]))  # a signed bundle, staged for pip
        out = cli("check")
        assert out.exit_code == 0 and "可用新版本：9.1.0" in out.output and "自动升级" in out.output, out.output
        wheel = next((tmp_path / "state" / "releases" / "9.1.0").glob("*.whl"))
        good = wheel.read_bytes()
        wheel.write_bytes(good[:-40] + bytes(b ^ 1 for b in good[-40:]))
        out = cli("apply")
        assert out.exit_code == 2 and "已拒绝安装" in out.output, out.output
        assert not (root / "9.1.0").exists() and os.readlink(root / "current") == "9.0.0"
        wheel.write_bytes(good)

        # --- apply 9.1.0: switched, the supervised service runs it and is healthy ---------------
        out = cli("apply")
        assert out.exit_code == 0, out.output
        assert "已升级到 9.1.0" in out.output
        assert (os.readlink(root / "current"), os.readlink(root / "previous")) == ("9.1.0", "9.0.0")
        assert running_version(ports["monitor"]) == "9.1.0"

        # --- a broken release: unhealthy within the limit, linked back, 9.1.0 keeps streaming ----
        publish("9.2.0")
        out = cli("apply")
        assert out.exit_code == 1, out.output
        assert "自动回退到 9.1.0" in out.output and "9.1.0 运行正常" in out.output, out.output
        assert (os.readlink(root / "current"), os.readlink(root / "previous")) == ("9.1.0", "9.0.0")
        assert running_version(ports["monitor"]) == "9.1.0"

        # --- rollback by hand: back to 9.0.0 ---------------------------------------------------------
        out = cli("rollback")
        assert out.exit_code == 0, out.output
        assert (os.readlink(root / "current"), os.readlink(root / "previous")) == ("9.0.0", "9.1.0")
        assert running_version(ports["monitor"]) == "9.0.0"

        # --- irreversible migrations without a verified backup: refused, nothing installed ------------
        # (refused before anything is unpacked: any wheel will do)
        publish("9.0.0", "--version", "9.3.0", "--irreversible")
        out = cli("apply")
        assert out.exit_code == 2 and "不可回退" in out.output and "备份" in out.output, out.output
        assert not (root / "9.3.0").exists()

        # --- nothing lost, nothing twice ------------------------------------------------------------
        loader.stop.set()
        loader.thread.join(10)
        assert loader.error is None, loader.error
        assert loader.changes > 100
        wait_for(lambda: sim.stats()["tables"].get("dept", 0) >= loader.changes, 60, "the platform to catch up")
        # anything sent twice would have gone out before the daemon confirmed past the last change
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            (end,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()  # type: ignore[misc]
            wait_for(lambda: conn.execute(
                "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                (end, slot_name("national"))).fetchone() == (True,), 60, "the daemon to confirm past the last change")
        events = received(sim_dir, "dept")
        assert len(events) == loader.changes == len({e["id"] for e in events})
        got: dict[str, list[int]] = {}
        for e in events:
            got.setdefault(e["after"]["dept_code"], []).append(e["after"]["bed_count"])
        assert got == loader.committed
    finally:
        loader.stop.set()
        sim.stop()

    with psycopg.connect(migrated_db) as conn:
        steps = conn.execute("SELECT action, outcome, available_version FROM cdcsync.upgrade_event"
                             " WHERE action IN ('apply', 'rollback') ORDER BY id").fetchall()
    assert steps == [
        *[("apply", s, "9.0.0") for s in ("installed", "migrated", "switched", "restarted", "applied")],
        ("apply", "refused", "9.1.0"),
        *[("apply", s, "9.1.0") for s in ("installed", "migrated", "switched", "restarted", "applied")],
        *[("apply", s, "9.2.0") for s in ("installed", "migrated", "switched", "restarted", "unhealthy")],
        ("apply", "rolled_back", "9.1.0"),
        ("rollback", "rolled_back", "9.0.0"),
        ("apply", "refused", "9.3.0")], steps
    assert "患者" not in log.read_text(encoding="utf-8", errors="replace")
    assert json.loads((root / "9.1.0" / "release.json").read_text(encoding="utf-8"))["manifest"]["version"] == "9.1.0"
