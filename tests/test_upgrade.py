"""Version management, first part (docs/control-plane.md, "Upgrades"): the reference platform
publishes a signed release manifest; ``cdcsync upgrade check`` sees the new version with its
notes, ``download`` verifies size, SM3 and signature before the wheel gets its name; a tampered
wheel or manifest is refused. Real HTTPS on loopback, real SM2/SM3, real PostgreSQL."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import psycopg
import yaml
from click.testing import CliRunner

from cdcsync import __version__
from cdcsync.api.web_app import render_status
from cdcsync.cli import main
from cdcsync.config import Settings, load_settings
from cdcsync.control.upgrade import UpdateChecker
from cdcsync.crypto.keys import write_keypair
from cdcsync.engine.status import collect_status
from cdcsync.ops.status import build_status
from cdcsync.spec import load_spec
from cdcsync.upstream_sim.runner import start_in_process
from tests.cdc_util import wait_for

ORG = "12110000400000000X"


def wheel(tmp: Path, version: str, filler: str = "") -> Path:
    path = tmp / f"cdcsync-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cdcsync/__init__.py", f'__version__ = "{version}"\n{filler}')
    return path


def test_publish_check_download_and_tampering(migrated_db: str, tmp_path: Path) -> None:
    hk, hp, _ = write_keypair(tmp_path / "keys", "hospital")
    sim_dir = tmp_path / "sim"
    sim = start_in_process(sim_dir, hospital_pubs=[hp])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "org_code": ORG, "state_dir": str(tmp_path / "state"), "database": {"dsn": migrated_db},
        "destinations": [{"name": "national", "kind": "http", "url": sim.url, "ca_bundle": str(sim.ca_bundle),
                          "hospital_key": str(hk), "platform_public_key": str(sim.platform_pub)}]}), encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("新增：配置更新（8882）\n修复：若干问题\n", encoding="utf-8")
    run = CliRunner().invoke

    def publish(w: Path, *extra: str) -> None:
        out = run(main, ["upstream-sim", "publish-release", "--data-dir", str(sim_dir), "--notes", str(notes),
                         *extra, str(w)])
        assert out.exit_code == 0, out.output

    try:
        out = run(main, ["-c", str(cfg), "upgrade", "check"])
        assert out.exit_code == 2 and "尚未发布版本清单" in out.output, out.output

        publish(wheel(tmp_path, "9.9.0"), "--min-supported", "0.1.0")
        out = run(main, ["-c", str(cfg), "upgrade", "check"])
        assert out.exit_code == 0, out.output
        assert "可用新版本：9.9.0" in out.output and "新增：配置更新（8882）" in out.output
        sw = collect_status(load_settings(cfg, environ={}))["software"]
        assert (sw["current"], sw["available"]) == (__version__, "9.9.0") and "修复" in sw["notes"]
        # 8883 serves it, and the 8884 status page shows 当前版本 / 可用新版本 / 更新说明.
        st = build_status(load_settings(cfg, environ={}))
        assert st["software"]["available"] == "9.9.0"
        page = render_status(st, load_spec())
        assert re.search(r'id="available-version">9\.9\.0', page) and "新增：配置更新（8882）<br>修复" in page

        out = run(main, ["-c", str(cfg), "upgrade", "download"])
        assert out.exit_code == 0, out.output
        got = tmp_path / "state" / "releases" / "9.9.0" / "cdcsync-9.9.0-py3-none-any.whl"
        assert got.read_bytes() == (sim_dir / "releases" / got.name).read_bytes()

        # A wheel changed on the way (same size): refused, nothing left under its name.
        publish(wheel(tmp_path, "9.9.1", filler="# a"))
        served = sim_dir / "releases" / "cdcsync-9.9.1-py3-none-any.whl"
        data = bytearray(served.read_bytes())
        data[-30] ^= 0x01
        served.write_bytes(bytes(data))
        out = run(main, ["-c", str(cfg), "upgrade", "download"])
        assert out.exit_code == 2 and "SM3 摘要与版本清单不符" in out.output, out.output
        assert list((tmp_path / "state" / "releases" / "9.9.1").iterdir()) == []

        # A manifest whose notes were edited after signing: refused.
        mpath = sim_dir / "releases" / "manifest.json"
        doc = json.loads(mpath.read_text(encoding="utf-8"))
        doc["notes"] += "（篡改）"
        mpath.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        out = run(main, ["-c", str(cfg), "upgrade", "check"])
        assert out.exit_code == 2 and "签名验证失败" in out.output, out.output

        publish(wheel(tmp_path, "0.0.9"))
        out = run(main, ["-c", str(cfg), "upgrade", "check"])
        assert out.exit_code == 3 and "已是最新" in out.output, out.output
    finally:
        sim.stop()
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute("SELECT action, outcome FROM cdcsync.upgrade_event ORDER BY id").fetchall()
    assert rows == [("check", "error"), ("check", "available"), ("download", "downloaded"),
                    ("download", "refused"), ("check", "refused"), ("check", "up_to_date")]
    out = run(main, ["-c", str(cfg), "upgrade", "history"])
    assert out.exit_code == 0 and out.output.count("\n") == 6


def test_the_daemon_checker_records_a_check(migrated_db: str, tmp_path: Path) -> None:
    hk, hp, _ = write_keypair(tmp_path / "keys", "hospital")
    sim = start_in_process(tmp_path / "sim", hospital_pubs=[hp])
    settings = Settings.model_validate({
        "org_code": ORG, "state_dir": str(tmp_path / "state"), "database": {"dsn": migrated_db},
        "control": {"update_check_interval_h": 24, "update_check_jitter_s": 0},
        "destinations": [{"name": "national", "kind": "http", "url": sim.url, "ca_bundle": str(sim.ca_bundle),
                          "hospital_key": str(hk), "platform_public_key": str(sim.platform_pub)}]})
    checker = UpdateChecker(settings).start()
    try:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.upgrade_event").fetchone() != (0,),
                     30, "the daemon's update check to be recorded")
            assert conn.execute("SELECT action, outcome FROM cdcsync.upgrade_event").fetchall() == [
                ("check", "error")]  # nothing published: recorded, the daemon goes on
    finally:
        checker.stop()
        sim.stop()
