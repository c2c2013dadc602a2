"""The backup gate of ``upgrade apply | rollback`` (docs/control-plane.md, "Upgrades"): a release
whose migrations cannot be undone needs a verified backup — for apply one newer than
``control.upgrade_backup_max_age_h``, for rollback one taken before that release was installed.
Real logical backup and verification (cdcsync.ops.backup), real signed manifests, real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import psycopg
import pytest
from cdc_util import prepare_db, settings_for

from cdcsync.config import Settings
from cdcsync.control.apply import backup_gate, rollback
from cdcsync.control.release import sign_manifest
from cdcsync.control.releases import MARKER, Layout
from cdcsync.control.upgrade import UpgradeError
from cdcsync.crypto.sm2 import SM2PrivateKey
from cdcsync.ops.backup.run import take_backup
from cdcsync.ops.backup.verify import verify_backup


def gated_settings(dsn: str, tmp: Path) -> tuple[Settings, Path]:
    settings, cfg = settings_for(dsn, tmp)
    key = tmp / "backup.key"
    key.write_text(os.urandom(16).hex())
    key.chmod(0o600)
    data = settings.model_dump(mode="json")
    data["backup"] = {"dir": str(tmp / "backups"), "key_file": str(key), "verify_sample_rows": 10}
    data["control"] = {**data.get("control", {}), "releases_root": str(tmp / "releases"),
                       "upgrade_backup_max_age_h": 2, "restart_command": ["false"], "health_timeout_s": 1}
    return Settings.model_validate(data), cfg


def installed(layout: Layout, version: str, irreversible: bool, at: dt.datetime) -> None:
    """A release directory as ``build`` leaves it (the marker with its signed manifest)."""
    import orjson

    d = layout.version_dir(version)
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "cdcsync").write_text("#!/bin/sh\nexit 0\n")
    (d / "bin" / "cdcsync").chmod(0o755)
    m = sign_manifest(b"wheel", wheel=f"cdcsync-{version}-py3-none-any.whl", version=version, notes="说明",
                      platform_key=SM2PrivateKey.generate(), irreversible_migrations=irreversible)
    (d / MARKER).write_bytes(orjson.dumps({"manifest": m.as_dict(), "installed_at": at.isoformat()}))


def test_backup_gate_for_apply_and_rollback(migrated_db: str, tmp_path: Path) -> None:
    prepare_db(migrated_db)
    settings, cfg = gated_settings(migrated_db, tmp_path)
    assert "没有 2 小时内完成并通过验证的备份" in (backup_gate(settings) or "")

    layout = Layout(settings.control.releases_root)
    before_backup = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)  # backup times have 1 s resolution
    installed(layout, "9.0.0", False, before_backup)
    installed(layout, "9.1.0", True, before_backup)  # irreversible, installed before any backup
    layout.switch("9.0.0")
    layout.switch("9.1.0")
    with pytest.raises(UpgradeError, match="不可回退.*须有升级前的已验证备份"):
        rollback(settings)

    backup = take_backup(settings, "logical", cfg)
    assert backup_gate(settings) is not None  # taken, not yet verified
    assert verify_backup(settings, backup)["status"] == "ok"
    assert backup_gate(settings) is None  # apply may install an irreversible release now
    # …but going back past 9.1.0 needs a backup from before it was installed.
    assert "升级前" in (backup_gate(settings, before=before_backup) or "")
    with pytest.raises(UpgradeError, match="升级前"):
        rollback(settings)
    assert (layout.current(), layout.previous()) == ("9.1.0", "9.0.0")  # nothing changed

    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute("SELECT action, outcome, current_version, available_version FROM cdcsync.upgrade_event"
                            " ORDER BY id").fetchall()
    assert rows == [("rollback", "refused", "9.1.0", "9.0.0")] * 2
