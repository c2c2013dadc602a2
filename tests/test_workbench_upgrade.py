"""The "升级" button of the 8884 admin view: shows 当前版本 / 可用新版本, starts the same
``cdcsync upgrade apply`` detached (its own session, log under the state dir), records who asked in
the workbench audit and in every upgrade step, and is refused without CSRF or for other roles."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote_plus

import pytest
import yaml

from cdcsync import __version__
from cdcsync.db.cluster import LocalCluster
from tests.api_helpers import ORG
from tests.cdc_util import wait_for
from tests.test_workbench import csrf_of, login
from tests.wb_helpers import running_bench


def test_admin_upgrade_button_runs_apply_detached_and_records_the_refusal(
        pg_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_bench(pg_cluster, tmp_path, "wbupg") as b:
        # The config file the service was started with: the detached apply reads the same one.
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "org_code": ORG, "database": {"dsn": b.dsn}, "state_dir": str(b.settings.state_dir),
            "control": {"releases_root": str(tmp_path / "releases")},
            "destinations": [{"name": "national", "kind": "jsonl", "path": str(tmp_path / "national.jsonl")}]},
            allow_unicode=True), encoding="utf-8")
        monkeypatch.setenv("CDCSYNC_CONFIG", str(config))

        admin = login(b, b.ticket(sub="A001", name="信息科", dept="0800", role="admin", patient=None))
        home = admin.get("/admin")
        assert home.status_code == 200
        assert "当前版本" in home.text and f'id="current-version">{__version__}<' in home.text
        assert "可用新版本" in home.text and 'action="/admin/upgrade"' in home.text
        csrf = csrf_of(home.text)

        assert admin.post("/admin/upgrade", data={}).status_code == 403  # no CSRF token
        assert admin.post("/admin/upgrade", data={"csrf": csrf, "version": "--help"}).status_code == 400
        doctor = login(b, b.ticket())
        assert doctor.post("/admin/upgrade", data={"csrf": csrf_of(doctor.get("/popup").text)}).status_code == 403
        ph = login(b, b.ticket(sub="F001", name="王防保", dept="0900", role="public_health", patient=None))
        assert ph.post("/admin/upgrade",
                       data={"csrf": csrf_of(ph.get("/admin/quarantine").text)}).status_code == 403
        assert b.rows("SELECT count(*) FROM cdcsync.upgrade_event WHERE action = 'apply'") == [(0,)]

        r = admin.post("/admin/upgrade", data={"csrf": csrf})
        assert r.status_code == 303 and "已开始升级" in unquote_plus(r.headers["location"])
        # The detached `cdcsync upgrade apply` ran on its own and refused: nothing was downloaded.
        refused = wait_for(lambda: b.rows(
            "SELECT actor, message FROM cdcsync.upgrade_event WHERE action = 'apply' AND outcome = 'refused'"),
            60, "the detached apply to record its refusal")
        assert refused == [("workbench:A001", "没有已下载的版本：请先执行 cdcsync upgrade download")]
        assert b.rows("SELECT outcome, actor FROM cdcsync.upgrade_event WHERE action = 'apply' ORDER BY id") == [
            ("started", "workbench:A001"), ("refused", "workbench:A001")]
        logs = list((Path(b.settings.state_dir) / "releases").glob("apply-*.log"))
        assert len(logs) == 1
        wait_for(lambda: "没有已下载的版本" in logs[0].read_text(encoding="utf-8"), 30, "the apply log")

        page = admin.get("/admin").text  # progress and result from the upgrade history
        assert "没有已下载的版本" in page and "workbench:A001" in page and "started" in page
        audit = b.rows("SELECT actor, role, allowed FROM cdcsync.wb_audit WHERE action = 'upgrade_apply'")
        assert ("A001", "admin", True) in audit
        assert ("D001", "doctor", False) in audit and ("F001", "public_health", False) in audit
