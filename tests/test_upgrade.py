"""Version management, first part (docs/control-plane.md, "Upgrades"): the reference platform
publishes a signed release manifest; ``cdcsync upgrade check`` sees the new version with its
notes, ``download`` verifies size, SM3 and signature before the wheel gets its name; a tampered
wheel or manifest is refused. Format 2 signs the release's dependency bundle: downloaded and
verified the same way, re-verified by apply, which refuses any file in the wheelhouse the manifest
does not list. Real HTTPS on loopback, real SM2/SM3, real PostgreSQL."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import yaml
from click.testing import CliRunner

from cdcsync import __version__
from cdcsync.api.web_app import render_status
from cdcsync.cli import main
from cdcsync.config import Settings, load_settings
from cdcsync.control.apply import verified_download
from cdcsync.control.bundle import BundleError, stage
from cdcsync.control.release import Dependency, ManifestError, parse_manifest, sign_manifest, verify_manifest
from cdcsync.control.releases import Layout, build
from cdcsync.control.upgrade import UpdateChecker
from cdcsync.crypto.keys import load_public_key, write_keypair
from cdcsync.crypto.sm2 import SM2PrivateKey
from cdcsync.crypto.sm3 import sm3
from cdcsync.engine.status import collect_status
from cdcsync.ops.status import build_status
from cdcsync.spec import load_spec
from cdcsync.upstream_sim.runner import SimHandle, start_in_process
from tests.cdc_util import wait_for

ORG = "12110000400000000X"


@dataclass(frozen=True)
class Platform:
    """The reference platform and a front end's configuration ``cfg`` (``doc``) pointing at it."""

    sim: SimHandle
    cfg: Path
    doc: dict[str, Any]


@pytest.fixture
def platform(migrated_db: str, tmp_path: Path) -> Iterator[Platform]:
    hk, hp, _ = write_keypair(tmp_path / "keys", "hospital")
    sim = start_in_process(tmp_path / "sim", hospital_pubs=[hp])
    doc = {"org_code": ORG, "state_dir": str(tmp_path / "state"), "database": {"dsn": migrated_db},
           "control": {"releases_root": str(tmp_path / "root")},
           "destinations": [{"name": "national", "kind": "http", "url": sim.url, "ca_bundle": str(sim.ca_bundle),
                             "hospital_key": str(hk), "platform_public_key": str(sim.platform_pub)}]}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(doc), encoding="utf-8")
    try:
        yield Platform(sim, cfg, doc)
    finally:
        sim.stop()


def wheel(tmp: Path, version: str, filler: str = "") -> Path:
    path = tmp / f"cdcsync-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cdcsync/__init__.py", f'__version__ = "{version}"\n{filler}')
    return path


def test_publish_check_download_and_tampering(migrated_db: str, tmp_path: Path, platform: Platform) -> None:
    sim_dir, cfg = platform.sim.data_dir, platform.cfg
    notes = tmp_path / "notes.txt"
    notes.write_text("新增：配置更新（8882）\n修复：若干问题\n", encoding="utf-8")
    run = CliRunner().invoke

    def publish(w: Path, *extra: str) -> None:
        out = run(main, ["upstream-sim", "publish-release", "--data-dir", str(sim_dir), "--notes", str(notes),
                         *extra, str(w)])
        assert out.exit_code == 0, out.output

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
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute("SELECT action, outcome FROM cdcsync.upgrade_event ORDER BY id").fetchall()
    assert rows == [("check", "error"), ("check", "available"), ("download", "downloaded"),
                    ("download", "refused"), ("check", "refused"), ("check", "up_to_date")]
    out = run(main, ["-c", str(cfg), "upgrade", "history"])
    assert out.exit_code == 0 and out.output.count("\n") == 6


def test_the_daemon_checker_records_a_check(migrated_db: str, platform: Platform) -> None:
    settings = Settings.model_validate(
        {**platform.doc, "control": {"update_check_interval_h": 24, "update_check_jitter_s": 0}})
    checker = UpdateChecker(settings).start()
    try:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdcsync.upgrade_event").fetchone() != (0,),
                     30, "the daemon's update check to be recorded")
            assert conn.execute("SELECT action, outcome FROM cdcsync.upgrade_event").fetchall() == [
                ("check", "error")]  # nothing published: recorded, the daemon goes on
    finally:
        checker.stop()


# --- the signed dependency bundle (manifest format 2) -------------------------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "release_manifest_format1.json"


def dep_wheel(tmp: Path, name: str, filler: str = "") -> Path:
    """A small wheel that is never installed: only its bytes are signed, fetched and checked."""
    path = tmp / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/__init__.py", f"# {name}\n{filler}")
    return path


def test_a_stored_format1_manifest_still_verifies(tmp_path: Path) -> None:
    """Signed by the release before format 2 existed: same signing string, same signature."""
    stored = json.loads(FIXTURE.read_text(encoding="utf-8"))
    pub_path = tmp_path / "platform.pub"
    pub_path.write_text(stored["platform_public_key_pem"], encoding="ascii")
    pub = load_public_key(pub_path)
    raw = json.dumps(stored["manifest"], ensure_ascii=False).encode()
    m = parse_manifest(raw)
    assert m.dependencies == ()
    assert m.signing_string() == stored["signing_string"].encode()
    verify_manifest(m, pub)
    assert m.as_dict() == stored["manifest"]  # re-written as format 1, without a dependencies key
    # Claiming a dependency list under format 1, or adding one under format 2: refused.
    with pytest.raises(ManifestError, match="format 1 的清单不能含依赖列表"):
        parse_manifest(json.dumps({**stored["manifest"], "dependencies": []}).encode())
    added = {**stored["manifest"], "format": 2,
             "dependencies": [{"file": "evil-1.0-py3-none-any.whl", "size": 10, "sm3": "ab" * 32}]}
    with pytest.raises(ManifestError, match="签名验证失败"):
        verify_manifest(parse_manifest(json.dumps(added).encode()), pub)


def test_dependency_list_validation() -> None:
    key = SM2PrivateKey.generate()
    ok = Dependency("orjson-3.10.0-cp311-cp311-manylinux_2_17_x86_64.whl", 123, "0f" * 32)
    m = sign_manifest(b"wheel", wheel="cdcsync-9.9.0-py3-none-any.whl", version="9.9.0", notes="说明",
                      platform_key=key, dependencies=(ok,))
    doc = m.as_dict()
    assert doc["format"] == 2 and doc["dependencies"] == [ok.as_dict()]
    assert m.signing_string().endswith(f"\ndependency {ok.file} 123 {'0f' * 32}".encode())
    again = parse_manifest(orjson.dumps(doc))
    assert again == m
    verify_manifest(again, key.public_key)

    def bad(entry: object, *more: object) -> str:
        with pytest.raises(ManifestError) as err:
            parse_manifest(orjson.dumps({**doc, "dependencies": [entry, *more]}))
        return str(err.value)

    good = ok.as_dict()
    assert "dependencies[0].file：文件名不得包含路径分隔符" in bad({**good, "file": "../x-1.0-py3-none-any.whl"})
    assert "dependencies[0].file：文件名不得包含路径分隔符" in bad({**good, "file": "a\\b-1.0-py3-none-any.whl"})
    assert "dependencies[0].file：文件名不合法" in bad({**good, "file": "setup.py"})
    assert "dependencies[0].file：文件名不合法" in bad({**good, "file": ".hidden-1.0-py3-none-any.whl"})
    assert "dependencies[1].file：" in bad(good, good) and "重复" in bad(good, good)
    assert "与安装包同名" in bad({**good, "file": "cdcsync-9.9.0-py3-none-any.whl"})
    assert "dependencies[0].size：0 字节不合理" in bad({**good, "size": 0})
    assert "dependencies[0].size：" in bad({**good, "size": 1 << 40})
    assert "dependencies[0].size：类型错误" in bad({**good, "size": True})
    assert "dependencies[0].sm3：不是 64 位小写十六进制" in bad({**good, "sm3": "0F" * 32})
    assert "dependencies[0].sm3：不是 64 位小写十六进制" in bad({**good, "sm3": "0f" * 31})
    assert "dependencies[0]：应为含 file、size、sm3" in bad({"file": ok.file, "size": 1})
    with pytest.raises(ManifestError, match="dependencies：类型错误"):
        parse_manifest(orjson.dumps({**doc, "dependencies": {"file": ok.file}}))
    with pytest.raises(ManifestError, match="format 应为 1 或 2"):
        parse_manifest(orjson.dumps({**doc, "format": 3}))
    with pytest.raises(ManifestError, match="dependencies\\[0\\].file"):  # the publisher checks too
        sign_manifest(b"wheel", wheel="cdcsync-9.9.0-py3-none-any.whl", version="9.9.0", notes="说明",
                      platform_key=key, dependencies=(Dependency("a/b-1.0-py3-none-any.whl", 1, "0f" * 32),))


def test_signed_dependencies_downloaded_verified_and_refused(migrated_db: str, tmp_path: Path,
                                                              platform: Platform) -> None:
    sim_dir, cfg = platform.sim.data_dir, platform.cfg
    settings = load_settings(cfg, environ={})
    notes = tmp_path / "notes.txt"
    notes.write_text("新增：依赖包签名\n", encoding="utf-8")
    run = CliRunner().invoke
    src = tmp_path / "src"
    src.mkdir()
    deps = [dep_wheel(src, "alpha", "# a"), dep_wheel(src, "beta", "# b" * 50)]
    served = sim_dir / "releases"
    here = tmp_path / "state" / "releases" / "9.9.0"
    house = here / "wheelhouse"

    def cli(*args: str) -> tuple[int, str]:
        out = run(main, ["-c", str(cfg), "upgrade", *args])
        return out.exit_code, out.output

    out = run(main, ["upstream-sim", "publish-release", "--data-dir", str(sim_dir), "--notes", str(notes),
                     *(a for d in deps for a in ("--dependency", str(d))), str(wheel(src, "9.9.0"))])
    assert out.exit_code == 0 and "依赖包 2 个" in out.output, out.output

    # A dependency changed on the platform's side (same size): refused, nothing left under its name.
    good_alpha = (served / deps[0].name).read_bytes()
    (served / deps[0].name).write_bytes(good_alpha[:-5] + bytes(b ^ 1 for b in good_alpha[-5:]))
    code, text = cli("download")
    assert code == 2 and f"{deps[0].name} 的 SM3 摘要与版本清单不符" in text, text
    assert not (house / deps[0].name).exists() and not (here / "manifest.json").exists()
    # One served longer than signed: the stream is cut at the signed size.
    (served / deps[0].name).write_bytes(good_alpha + b"\0" * 4096)
    code, text = cli("download")
    assert code == 2 and f"{deps[0].name} 超过版本清单中的大小" in text, text
    (served / deps[0].name).write_bytes(good_alpha)

    # Fetched from the platform over loopback HTTPS, each verified, beside the signed manifest.
    code, text = cli("download")
    assert code == 0, text
    assert sorted(p.name for p in house.iterdir()) == sorted(d.name for d in deps)
    for d in deps:
        assert (house / d.name).read_bytes() == d.read_bytes()
    stored = json.loads((here / "manifest.json").read_text(encoding="utf-8"))
    assert stored["format"] == 2 and [d["file"] for d in stored["dependencies"]] == [d.name for d in deps]
    m, got = verified_download(settings, "9.9.0")
    assert got == here / "cdcsync-9.9.0-py3-none-any.whl" and len(m.dependencies) == 2

    # pip is given a private copy holding exactly the verified files (a stray wheel beside the
    # release wheel is not among them).
    (here / "stray-1.0-py3-none-any.whl").write_bytes(b"stray")
    staged = stage(m, here, tmp_path / "stage")
    assert sorted(p.name for p in staged.parent.iterdir()) == sorted([got.name, *(d.name for d in deps)])
    assert all((staged.parent / p.name).read_bytes() == p.read_bytes() for p in [got, *deps])

    def refused(expect: str) -> None:
        code, text = cli("apply")
        assert code == 2 and expect in text, text
        assert not (tmp_path / "root" / "9.9.0").exists()

    beta = house / deps[1].name
    good_beta = beta.read_bytes()
    beta.write_bytes(good_beta[:-3] + bytes(b ^ 1 for b in good_beta[-3:]))  # bytes changed
    refused(f"依赖包 {deps[1].name} 的 SM3 摘要与版本清单不符")
    beta.write_bytes(good_beta + b"\n")  # size changed
    refused(f"依赖包 {deps[1].name} 大小 {len(good_beta) + 1} 字节与版本清单（{len(good_beta)} 字节）不符")
    beta.unlink()
    refused(f"依赖包 {beta} 不存在")
    beta.write_bytes(good_beta)
    (house / "evil-6.6-py3-none-any.whl").write_bytes(b"PK unsigned")  # dropped in
    refused("evil-6.6-py3-none-any.whl 不在国家平台签名的版本清单中")
    # build re-verifies too (the file may change after apply's check): nothing is built.
    with pytest.raises(BundleError, match="evil-6.6-py3-none-any.whl 不在国家平台签名的版本清单中"):
        build(settings, Layout(tmp_path / "root"), m, got)
    assert not (tmp_path / "root" / "9.9.0").exists()
    # download says so at once, and does not delete what someone put there.
    code, text = cli("download")
    assert code == 2 and "evil-6.6-py3-none-any.whl 不在国家平台签名的版本清单中" in text, text
    (house / "evil-6.6-py3-none-any.whl").unlink()

    # The stored dependency list altered after signing (a dependency swapped for another file).
    mpath = here / "manifest.json"
    doc = json.loads(mpath.read_text(encoding="utf-8"))
    evil = dep_wheel(tmp_path, "evil")
    doc["dependencies"][1] = {"file": evil.name, "size": evil.stat().st_size,
                              "sm3": sm3(evil.read_bytes()).hex()}
    mpath.write_text(json.dumps(doc), encoding="utf-8")
    (house / evil.name).write_bytes(evil.read_bytes())
    beta.unlink()
    refused("签名验证失败")
    # …and one altered on the platform's side: refused at check.
    sdoc = json.loads((served / "manifest.json").read_text(encoding="utf-8"))
    sdoc["dependencies"].pop()
    (served / "manifest.json").write_text(json.dumps(sdoc), encoding="utf-8")
    code, text = cli("check")
    assert code == 2 and "签名验证失败" in text, text

    # Format 1 (no signed list): <V>/wheelhouse/ is not used at all.
    out = run(main, ["upstream-sim", "publish-release", "--data-dir", str(sim_dir), "--notes", str(notes),
                     str(wheel(src, "9.9.1"))])
    assert out.exit_code == 0, out.output
    code, text = cli("download")
    assert code == 0, text
    v1 = tmp_path / "state" / "releases" / "9.9.1"
    assert json.loads((v1 / "manifest.json").read_text(encoding="utf-8"))["format"] == 1
    (v1 / "wheelhouse").mkdir()
    (v1 / "wheelhouse" / "evil-6.6-py3-none-any.whl").write_bytes(b"PK unsigned")
    m1, w1 = verified_download(settings, "9.9.1")
    staged = stage(m1, v1, tmp_path / "stage1")
    assert [p.name for p in staged.parent.iterdir()] == [w1.name]
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute("SELECT action, outcome FROM cdcsync.upgrade_event ORDER BY id").fetchall()
    assert rows == [("download", "refused"), ("download", "refused"), ("download", "downloaded"),
                    *[("apply", "refused")] * 4, ("download", "refused"), ("apply", "refused"),
                    ("check", "refused"), ("download", "downloaded")], rows
