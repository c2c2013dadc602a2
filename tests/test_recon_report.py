"""`cdcsync reconcile`: text/JSON figures, HTML rendered in headless Chromium, plans on a year of data."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from test_recon_views import D, build_day

from cdcsync.mapping.domains import load_code_tables
from cdcsync.recon.cli import COMMANDS
from cdcsync.recon.codemap import sync_reference
from tests.latency_seed import seed_latency

REPO = Path(__file__).resolve().parents[1]
RECONCILE = next(c for c in COMMANDS if c.name == "reconcile")


@pytest.fixture
def demo_day(migrated_db: str) -> str:
    """The hand-built day of test_recon_views plus delivery latencies: one realtime event late."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        sync_reference(conn, load_code_tables(REPO / "mappings", "example"))
        build_day(conn)
        acked = dt.datetime(2024, 5, 6, 12, 0, tzinfo=dt.UTC)
        rows = [(dt.datetime(2024, 5, 6, 19, 59), acked - dt.timedelta(seconds=2))] * 9
        rows.append((dt.datetime(2024, 5, 6, 18, 0), acked - dt.timedelta(seconds=3)))
        seed_latency(conn, "national", "visit", D, rows, acked)
    return migrated_db


def run(dsn: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(RECONCILE, ["--dsn", dsn, "--date", D.isoformat(), "--mappings-dir",
                                            str(REPO / "mappings"), "--hospital", "example", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_json_report_figures_and_exit_code(demo_day: str) -> None:
    code, out = run(demo_day, "--format", "json")
    assert code == 1  # card mismatches and a timeliness share of 90 % exceed the defaults
    r = json.loads(out)
    assert r["date"] == "2024-05-06" and r["ok"] is False
    cards = r["cards"]
    assert cards["frontend_only"] == ["NO4"] and cards["nndrs_only"] == ["NO5"]
    assert [(d["card_no"], d["field"]) for d in cards["differences"]] == [("NO2", "onset_date"), ("NO3", "case_class")]
    assert r["visits"][0]["outpatient_diff"] == -1
    assert r["table_totals"]["national"] == {"mirror_rows": 17, "delivered": 6, "quarantined": 1, "not_delivered": 10}
    (rt,) = r["timeliness"]
    assert (rt["events"], rt["within_limit"], rt["within_share"]) == (10, 9, 0.9)
    inpatients = {row["category"]: row["inpatients"] for row in r["inpatients"]}
    assert inpatients == {"丙类": 1, "乙类": 2, "甲类": 0, "合计": 2}
    assert len(r["alerts"]) == 3  # cards, timeliness, outpatient -1 of 5 = 20 %
    # the late event was committed two hours after its business time: the HIS part is named, not the front end
    (late,) = [a for a in r["alerts"] if "数据及时率" in a]
    assert "HIS 推送及时率 90.0%" in late and "请联系 HIS 厂商" in late and "前置软件上报滞后" not in late
    assert (rt["his_share"], rt["frontend_share"]) == (0.9, 1)
    assert "张三" not in out and "110101199003071234" not in out
    # one line per card problem, saying what the 防保科 does
    actions = r["actions"]
    assert len(actions) == 4, actions
    assert actions[0].startswith("卡片 NO4：前置软件有、大疫情网没有：请在大疫情网按患者查找")
    assert actions[1].startswith("大疫情网卡片 NO5：大疫情网有、前置软件没有")
    assert actions[2] == ("卡片 NO2：发病日期不一致（前置软件 2024-05-03，大疫情网 2024-05-02）——"
                          "请向报告医生核实发病日期，以病历为准在大疫情网订正")
    assert actions[3].startswith("卡片 NO3：病例分类不一致（前置软件 临床诊断病例，大疫情网 确诊病例）——请核实检验结果")


def test_tolerances_are_options(demo_day: str) -> None:
    code, out = run(demo_day, "--max-card-mismatches", "4", "--min-timely-share", "0.9", "--max-visit-diff-pct", "20")
    assert code == 0, out
    assert "结论：正常" in out
    assert "仅大疫情网 1 张：NO5" in out and "NO2 发病日期：前置软件 2024-05-03，大疫情网 2024-05-02" in out


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian package chromium is not installed (.ci/run installs it)")
def test_html_renders_in_headless_chromium(demo_day: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, _ = run(demo_day, "--format", "html", "--out", str(page))
    assert code == 1
    source = page.read_text(encoding="utf-8")
    assert "<script" not in source and "http://" not in source.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in source and source.count("<svg") >= 3
    base = [_chromium() or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}"]
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, env=env)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []

    def fig(key: str) -> str:
        m = re.search(rf'id="fig-{key}"[^>]*>([^<]*)<', dom.stdout)
        assert m, key
        return m.group(1)

    assert re.search(r'id="report-date"[^>]*>2024-05-06<', dom.stdout)
    assert (fig("card-frontend"), fig("card-nndrs"), fig("card-frontend-only"), fig("card-nndrs-only"),
            fig("card-differences")) == ("4", "4", "1", "1", "2")
    assert (fig("outpatient"), fig("emergency"), fig("inpatients"), fig("new-diagnoses")) == ("4", "2", "2", "2")
    assert (fig("national-mirror"), fig("national-delivered"), fig("national-not-delivered")) == ("17", "6", "10")
    assert "超出容差 3 项" in dom.stdout

    shot = tmp_path / "report.png"
    s = subprocess.run([*base, f"--screenshot={shot}", "--window-size=1000,2400", page.as_uri()],
                       capture_output=True, text=True, timeout=120, env=env)
    assert s.returncode == 0 and shot.stat().st_size > 10_000, s.stderr[-2000:]


def test_year_of_data_uses_indexes(migrated_db: str) -> None:
    """~110k visits and ~37k diagnoses over 365 days: a one-day query reads that day through indexes."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        sync_reference(conn, load_code_tables(REPO / "mappings", "example"))
        conn.execute("""
            INSERT INTO emr.visit (org_code, visit_id, patient_id, visit_type_code, inpatient_no, visit_time,
                                   visit_end_time, dept_code, modify_flag, collect_time, update_time)
            SELECT 'H0001', 'V' || i, 'P' || (i % 50000), (ARRAY['MZ','MZ','MZ','JZ','ZY'])[1 + (i / 365) % 5],
                   CASE WHEN (i / 365) % 5 = 4 THEN 'ZY' || i END, t,
                   CASE WHEN (i / 365) % 5 = 4 THEN t + interval '6 days' ELSE t + interval '20 minutes' END,
                   '0101', '1', t, t
            FROM generate_series(1, 109500) AS i,
                 LATERAL (SELECT timestamp '2023-05-07 00:00' + (i % 365) * interval '1 day'
                                 + (i % 997) * interval '1 minute') AS x(t)""")
        conn.execute("""
            INSERT INTO emr.diagnosis (org_code, diagnosis_id, visit_id, patient_id, visit_type_code,
                diagnosis_category_code, diagnosis_code, diagnosis_name, diagnosis_status_code, diagnosis_time,
                modify_flag, collect_time, update_time)
            SELECT 'H0001', 'D' || v.visit_id, v.visit_id, v.patient_id, v.visit_type_code, '1',
                   (ARRAY['J18.900','U07.100','A15.000'])[1 + (hashtext(v.visit_id) & 3) % 3], '诊断', 'QZ',
                   v.visit_time + interval '1 hour', '1', v.visit_time, v.visit_time
            FROM emr.visit v WHERE hashtext(v.visit_id) % 3 = 0""")
        conn.execute("""
            INSERT INTO emr.daily_stats (org_code, stat_date, outpatient_count, emergency_count, inpatient_count,
                admission_count, discharge_count, modify_flag, collect_time, update_time)
            SELECT 'H0001', d::date, 180, 60, 400, 60, 60, '1', d, d
            FROM generate_series(timestamp '2023-05-07', timestamp '2024-05-05', interval '1 day') AS d""")
        conn.execute("INSERT INTO cdcsync.checkpoint (destination, slot_name) VALUES ('national', 's')")
        conn.execute("""
            INSERT INTO cdcsync.delivery_stats (destination, table_name, business_date, delivered, batches)
            SELECT 'national', t, d::date, 100, 1 FROM unnest(ARRAY['visit','diagnosis']) AS t,
                   generate_series(timestamp '2023-05-07', timestamp '2024-05-05', interval '1 day') AS d""")
        conn.execute("ANALYZE")
        day = dt.date(2024, 1, 15)
        for view, column in (("recon.visit_daily_counts", "stat_date"), ("recon.table_daily_counts", "business_date"),
                             ("recon.notifiable_inpatient_daily", "stat_date")):
            plan = "\n".join(r[0] for r in conn.execute(
                f"EXPLAIN SELECT * FROM {view} WHERE {column} = %s", (day,)).fetchall())  # type: ignore[arg-type]
            for big in ("visit", "diagnosis"):
                assert not re.search(rf"Seq Scan on {big}\b", plan), f"{view}\n{plan}"
            if "inpatient" in view:  # stays overlapping the day come from the GiST index
                assert "recon_visit_stay_idx" in plan, plan
        got = conn.execute("SELECT outpatient_visits, reported_outpatient FROM recon.visit_daily_counts"
                           " WHERE stat_date = %s", (day,)).fetchone()
        assert got == (180, 180)
