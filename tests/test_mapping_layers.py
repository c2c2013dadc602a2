"""Layers of the mapping set (docs/control-plane.md, "Layers"): national domains shipped with a
release, national domains pushed or imported later (newer version date wins), the hospital's own
local tables (never written by a push, an import or an upgrade)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import orjson
import psycopg
import yaml
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.config import Settings
from cdcsync.control.package import sign_package
from cdcsync.control.service import ControlService
from cdcsync.crypto.keys import write_keypair
from cdcsync.crypto.sm2 import SM2PrivateKey
from cdcsync.mapping.domains import default_mappings_dir, dump_domain, load_national
from cdcsync.mapping.layers import MappingLayers
from cdcsync.upstream_sim.cli import prepare_data_dir

ORG = "12110000400000000X"


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def release(root: Path, sex_date: str | None = None) -> Path:
    """A release's shipped national domains (a copy of the repository's), sex re-dated."""
    shutil.copytree(default_mappings_dir() / "national", root / "national")
    if sex_date:
        path = root / "national" / "sex.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc["version_date"] = sex_date
        doc["codes"].append({"code": "8", "name": "新版本新增"})
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return root


def push_sex(settings: Settings, platform_key: SM2PrivateKey, version_date: str) -> None:
    """A value_domains package (sex re-dated, one code added) through the control service."""
    doc = yaml.safe_load(dump_domain(load_national(default_mappings_dir())["sex"]))
    doc["version_date"] = version_date
    doc["codes"].append({"code": "7", "name": "下发新增"})
    pkg = sign_package(orjson.dumps({"domains": [doc]}, default=str), platform_key=platform_key,
                       package_id=f"sex-{version_date}", kind="value_domains", version=1, org_code=ORG)
    out = ControlService(settings).handle(pkg.to_json())
    assert out.reply["outcome"] == "acknowledged", out.reply


def test_three_layers_across_an_upgrade(migrated_db: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(default_mappings_dir() / "local", site / "local")
    site_before = digest(site)
    rel1 = release(tmp_path / "release-1")
    hk, _, _ = write_keypair(tmp_path / "keys", "hospital")
    platform_key, _ = prepare_data_dir(tmp_path / "platform", tls=False)
    dest = {"name": "national", "kind": "http", "url": "https://127.0.0.1:9", "hospital_key": str(hk),
            "platform_public_key": str(tmp_path / "platform" / "platform.pub")}
    data = {"org_code": ORG, "mappings_dir": str(rel1), "local_mappings_dir": str(site),
            "state_dir": str(tmp_path / "state"), "database": {"dsn": migrated_db}, "destinations": [dest]}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    settings = Settings.model_validate(data)

    t = MappingLayers.from_settings(settings).load()
    assert t.national["sex"].layer == "shipped" and t.map("sex", "M") == "1" and "7" not in t.national["sex"]

    # A push (newer than the release): it wins.
    push_sex(settings, platform_key, "2026-12-01")
    t = MappingLayers.from_settings(settings).load()
    assert t.national["sex"].layer == "pushed" and "7" in t.national["sex"]

    # An admin imports the full icd10 table: a new pushed generation, recorded, shipped file untouched.
    rel1_before = digest(rel1)
    csv = tmp_path / "icd10.csv"
    codes = load_national(rel1)["icd10"]
    csv.write_text("code,name\n" + "".join(f"{c.code},{c.name}\n" for c in codes) + "Z99.9,测试导入\n",
                   encoding="utf-8")
    out = CliRunner().invoke(main, ["-c", str(cfg), "codes", "import", "--domain", "icd10", str(csv)])
    assert out.exit_code == 0, out.output
    assert "已记入配置历史" in out.output
    assert digest(rel1) == rel1_before
    t = MappingLayers.from_settings(settings).load()
    assert "Z99.9" in t.national["icd10"] and t.national["icd10"].layer == "pushed"
    assert t.national["sex"].layer == "pushed"  # the earlier push stays in force beside the import
    listing = CliRunner().invoke(main, ["-c", str(cfg), "codes", "list"])
    assert listing.exit_code == 0
    rows = {line.split()[0]: line for line in listing.output.splitlines() if line.strip()}
    assert "下发/导入" in rows["icd10"] and "下发/导入" in rows["sex"] and "随版本发布" in rows["region"]
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("SELECT count(*) FROM cdcsync.config_current").fetchone() == (2,)

    # The upgrade: release 2 ships sex dated after the push, so the release's wins now; the
    # pushed icd10 (same date as shipped) stays; the hospital's tables are what they were.
    rel2 = release(tmp_path / "release-2", sex_date="2027-01-01")
    up = Settings.model_validate({**data, "mappings_dir": str(rel2)})
    t = MappingLayers.from_settings(up).load()
    assert t.national["sex"].layer == "shipped" and "8" in t.national["sex"] and "7" not in t.national["sex"]
    assert "Z99.9" in t.national["icd10"]
    assert t.map("sex", "M") == "1"
    assert digest(site) == site_before

    # Undo the import: icd10 back to the shipped table.
    out = CliRunner().invoke(main, ["-c", str(cfg), "config", "rollback", "2"])
    assert out.exit_code == 0, out.output
    t = MappingLayers.from_settings(settings).load()
    assert "Z99.9" not in t.national["icd10"] and t.national["icd10"].layer == "shipped"
    assert t.national["sex"].layer == "pushed"
