"""The SM2 implementation in use (OpenSSL or Python) and why: `cdcsync status`, 8883, the start log."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from cdcsync.api.server import start_servers
from cdcsync.crypto import sm2, sm2_openssl
from tests.api_helpers import local_api, settings_for
from tests.cdc_util import cli_cmd
from tests.cdc_util import settings_for as cdc_settings_for

REPO = Path(__file__).resolve().parents[1]


def _status(cfg: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "CDCSYNC_PURE_PYTHON"}
    return subprocess.run(cli_cmd(cfg, "status", *args), capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**clean, **env})


def test_status_names_the_backend_and_why(migrated_db: str, tmp_path: Path) -> None:
    _, cfg = cdc_settings_for(migrated_db, tmp_path)
    forced = _status(cfg, "--json", CDCSYNC_PURE_PYTHON="1")
    assert forced.returncode == 0, forced.stderr
    info = json.loads(forced.stdout)["sm2_backend"]
    assert info["backend"] == "python" and "CDCSYNC_PURE_PYTHON" in info["reason"]
    text = _status(cfg, CDCSYNC_PURE_PYTHON="1").stdout
    assert "SM2 实现：python" in text and "CDCSYNC_PURE_PYTHON" in text
    if sm2_openssl.BACKEND is None:
        pytest.skip(f"no OpenSSL SM2 here: {sm2_openssl.REASON}")
    auto = json.loads(_status(cfg, "--json").stdout)["sm2_backend"]
    assert auto["backend"] == "openssl" and "自检" in auto["reason"]


def test_monitor_api_shows_the_backend(migrated_db: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken-for-sm2-test\n", encoding="utf-8")
    token.chmod(0o600)
    handle = start_servers(settings_for(migrated_db), api=local_api(("monitor",), monitor_token_file=token))
    try:
        r = httpx.get(f"http://127.0.0.1:{handle.ports['monitor']}/api/v1/status",
                      headers={"Authorization": "Bearer t0ken-for-sm2-test"}, timeout=30)
    finally:
        handle.stop()
    assert r.status_code == 200, r.text
    assert r.json()["sm2_backend"]["backend"] == sm2.backend()
    assert r.json()["sm2_backend"]["reason"]
