"""``cdcsync rules replay`` (dry-run, then --apply), ``cdcsync cases list|show|history``, the
``recon.pending_cases`` view and the open/overdue counts on 8883 (JSON, /metrics) and 8884."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml
from click.testing import CliRunner, Result

from cdcsync.api.server import start_servers
from cdcsync.cli import main
from cdcsync.config import Settings
from cdcsync.surveil.cases import Action, Actor, CaseStore, Evidence, Kind, Signal, Status
from tests.api_helpers import local_api
from tests.cdc_util import prepare_db
from tests.surveil_rows import ORG, Mirror


def cli(cfg: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["-c", str(cfg), *args], catch_exceptions=False)
    return result


def config(dsn: str, tmp: Path, **extra: Any) -> Path:
    data = {"org_code": ORG, "state_dir": str(tmp / "state"), "database": {"dsn": dsn}, **extra}
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    return cfg


def test_replay_dry_run_then_apply_and_the_cases_commands(fresh_db: str, tmp_path: Path) -> None:
    prepare_db(fresh_db)
    cfg = config(fresh_db, tmp_path)
    m = Mirror(fresh_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "A15.000")  # 肺结核 → 待确认
    m.visit("V2", "P2", dept="0305")
    m.diagnosis("V2", "P2", "A00.9", doctor=None)  # 霍乱 → 待确认, 2 h; the visit's doctor and dept
    m.visit("V3", "P3")
    m.diagnosis("V3", "P3", "J18.900")  # not notifiable

    dry = cli(cfg, "rules", "replay", "--since", "2026-11-01", "--json")
    assert dry.exit_code == 0, dry.output
    out = json.loads(dry.output)
    assert not out["applied"] and sorted(c["patient_id"] for c in out["opened"]) == ["P1", "P2"]
    assert m.cases() == []  # dry-run wrote nothing
    text = cli(cfg, "rules", "replay", "--since", "2026-11-01")
    assert "演练" in text.output and "将生成 2 例" in text.output
    assert json.loads(cli(cfg, "rules", "replay", "--since", "2026-12-01", "--json").output)["opened"] == []

    applied = cli(cfg, "rules", "replay", "--since", "2026-11-01", "--apply")
    assert applied.exit_code == 0 and "已生成 2 例" in applied.output
    cases = {c.patient_id: c for c in m.cases()}
    assert set(cases) == {"P1", "P2"}
    again = json.loads(cli(cfg, "rules", "replay", "--since", "2026-11-01", "--apply", "--json").output)
    assert again["opened"] == [] and len(m.cases()) == 2  # replaying again opens nothing twice

    # a card arriving later: a replay over the card's period closes the case
    m.card("V1", "P1", "21302")
    closing = json.loads(cli(cfg, "rules", "replay", "--since", "2026-11-01", "--json").output)
    assert [(c["patient_id"], c["from_status"], c["status"]) for c in closing["closed"]] == [("P1", "待确认", "已报卡")]

    listed = json.loads(cli(cfg, "cases", "list", "--json").output)
    assert sorted(c["patient_id"] for c in listed["cases"]) == ["P1", "P2"] and listed["open"] == 2
    assert [c["patient_id"] for c in json.loads(cli(cfg, "cases", "list", "--dept", "0305", "--json").output)
            ["cases"]] == ["P2"]
    assert json.loads(cli(cfg, "cases", "list", "--overdue", "--json").output)["cases"] == []
    assert json.loads(cli(cfg, "cases", "list", "--kind", "death", "--json").output)["cases"] == []
    human = cli(cfg, "cases", "list").output
    assert "肺结核" in human and "霍乱" in human and "共 2 条" in human
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        CaseStore(conn).apply_action(cases["P2"].case_id, Action("exclude", reason="复核非霍乱"), Actor("D9", "doctor"))
    shown = cli(cfg, "cases", "show", str(cases["P2"].case_id))
    assert "已排除" in shown.output and "复核非霍乱" in shown.output and "diagnosis" in shown.output
    detail = json.loads(cli(cfg, "cases", "show", str(cases["P2"].case_id), "--json").output)
    assert [h["action"] for h in detail["history"]] == ["open", "exclude"]
    hist = json.loads(cli(cfg, "cases", "history", "--json").output)["history"]
    assert [h["action"] for h in hist if h["case_id"] == cases["P2"].case_id] == ["open", "exclude"]
    missing = cli(cfg, "cases", "show", "999999")
    assert missing.exit_code == 2 and "不存在" in missing.output
    statuses = json.loads(cli(cfg, "cases", "list", "--status", "已排除", "--json").output)["cases"]
    assert statuses[0]["patient_id"] == "P2"

    # the DBA view: per day, kind, status, department
    with psycopg.connect(fresh_db) as conn:
        view = conn.execute("SELECT kind, status, dept_code, opened, closed_in_time, still_open, overdue"
                            " FROM recon.pending_cases ORDER BY status").fetchall()
        comment = conn.execute("SELECT obj_description('recon.pending_cases'::regclass)").fetchone()
    assert ("notifiable_diagnosis", "已排除", "0305", 1, 1, 0, 0) in view
    assert sum(r[3] for r in view) == 2
    assert comment is not None and "监测预警病例每日统计" in comment[0]


def test_counts_on_the_status_page_json_and_metrics(fresh_db: str, tmp_path: Path) -> None:
    prepare_db(fresh_db)
    m = Mirror(fresh_db)
    m.visit("V1", "P1")
    m.diagnosis("V1", "P1", "A15.000")
    m.visit("V2", "P2")
    m.diagnosis("V2", "P2", "A00.9")
    m.run()
    with psycopg.connect(fresh_db, autocommit=True) as conn:  # one of them past its due time
        conn.execute("ALTER TABLE cdcsync.surveil_case DISABLE TRIGGER surveil_case_identity")
        conn.execute("UPDATE cdcsync.surveil_case SET due_at = now() - interval '1 hour' WHERE patient_id = 'P2'")
        conn.execute("ALTER TABLE cdcsync.surveil_case ENABLE TRIGGER surveil_case_identity")
    token = tmp_path / "token"
    token.write_text("t0ken-for-tests-0123456789abcdef", encoding="utf-8")
    token.chmod(0o600)
    settings = Settings.model_validate({"org_code": ORG, "state_dir": str(tmp_path / "state"),
                                        "database": {"dsn": fresh_db}})
    handle = start_servers(settings, api=local_api(("monitor", "web"), monitor_token_file=token))
    try:
        hdr = {"Authorization": "Bearer t0ken-for-tests-0123456789abcdef"}
        mon = f"http://127.0.0.1:{handle.ports['monitor']}"
        st = httpx.get(f"{mon}/api/v1/status", headers=hdr, timeout=20).json()
        assert st["surveil"]["open"] == 2 and st["surveil"]["overdue"] == 1
        metrics = httpx.get(f"{mon}/metrics", headers=hdr, timeout=20).text
        assert "cdcsync_surveil_cases_open 2.0" in metrics and "cdcsync_surveil_cases_overdue 1.0" in metrics
        page = httpx.get(f"http://127.0.0.1:{handle.ports['web']}/status.html", timeout=20).text
        assert 'data-open="2"' in page and "其中 1 例已超过报告时限" in page
        assert "P1" not in page and "P2" not in page  # counts only, no patient data
    finally:
        handle.stop()


def test_status_shows_open_and_overdue_case_counts(fresh_db: str, tmp_path: Path) -> None:
    prepare_db(fresh_db)
    cfg = config(fresh_db, tmp_path)
    m = Mirror(fresh_db)
    for p in ("P1", "P2", "P3"):
        m.visit(f"V{p}", p)
        m.diagnosis(f"V{p}", p, "A15.000")  # signalled now: due in 24 h
    m.run()
    late = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)  # a signal two days old: overdue
    with psycopg.connect(fresh_db) as conn:
        store = CaseStore(conn)
        first = m.cases()[0]
        store.apply_action(first.case_id, Action("exclude", reason="复核排除"), Actor("D002", "doctor"))
        store.open_or_add(Signal(Kind.NOTIFIABLE_DIAGNOSIS, Status.TO_CONFIRM, "213", "肺结核", "乙", ORG, "P4", "VP4",
                                 "D002", "李医生", "0302", late, 24.0,
                                 Evidence("x:1:0", "diagnosis", {"diagnosis_id": "VP4D1"}, "diagnosis.notifiable"),
                                 "诊断 A15.0 属于乙类传染病 肺结核", "test"))
        conn.commit()
    text = cli(cfg, "status")
    assert text.exit_code == 0, text.output
    assert "监测预警病例：未结 3 例，其中超过报告时限 1 例" in text.output
    assert "P1" not in text.output and "P4" not in text.output  # counts only
    st = json.loads(cli(cfg, "status", "--json").output)
    assert (st["surveil"]["open"], st["surveil"]["overdue"]) == (3, 1)
