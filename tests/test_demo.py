"""The README's demo tells a true story: a private cluster, the reference platforms, the synthetic
hospital's yesterday backfilled and today's visits streamed live to both, the NNDRS export with
planted differences, and the backfilled day's reconciliation with why each red item is red (checked
in headless Chromium too). Nothing depends on the hour: just after midnight the story is the same."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import yaml

from cdcsync.synth.nndrs_export import read_planted
from cdcsync.synth.site import backfill_day
from cdcsync.validate.compiler import beijing_now

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cdcsync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdcsync", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def _phase(out: str, label: str, dest: str) -> tuple[float, float, int]:
    """(HIS share, front-end share, events) of a phase line the demo prints for the realtime class."""
    line = next(line for line in out.splitlines() if label in line)
    m = re.search(rf"{dest} HIS 推送 ([0-9.]+)%、前置软件上报 ([0-9.]+)%（(\d+) 个事件）", line)
    assert m, line
    return float(m.group(1)) / 100, float(m.group(2)) / 100, int(m.group(3))


def test_demo_tells_a_true_story(tmp_path: Path) -> None:
    base = tmp_path / "demo"
    # 150 visits: every date of two years plants all seven card differences (fewer cards may not)
    done = _cdcsync("demo", "--data-dir", str(base), "--patients", "150", "--live-seconds", "6")
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        out = done.stdout
        assert "完成。可以查看" in out and str(base / "demo.yaml") in out
        assert (base / "status.html").read_text(encoding="utf-8").count("国家平台") >= 1
        _check_delivery(base)
        day = re.search(r"reconcile --date (\d{4}-\d\d-\d\d)", out)
        assert day and day.group(1) == backfill_day(beijing_now()).isoformat()
        assert f"昨天（{day.group(1)}）" in out
        report = _report(base, day.group(1))
        _check_timeliness(out, report)
        _check_cards(base, report)
        _check_closing_summary(out, report)
        if CHROMIUM:
            _check_in_chromium(base / "reconcile.html", report, tmp_path)

        settings = yaml.safe_load((base / "demo.yaml").read_text(encoding="utf-8"))
        with psycopg.connect(settings["database"]["dsn"]) as conn:  # the rules ran over the day: cases
            cases = conn.execute("SELECT count(*) FROM cdcsync.surveil_case").fetchone()[0]  # type: ignore[index]
        assert cases > 0 and f"共 {cases} 例" in out and "cases list" in out

        again = _cdcsync("demo", "--data-dir", str(base), "--patients", "150")
        assert again.returncode == 0, again.stderr[-2000:]
        assert "跳过生成" in again.stdout and "对账结论" in again.stdout
        assert "本次生成病例 0 例" in again.stdout  # nothing opened twice
    finally:
        stopped = _cdcsync("demo", "--stop", "--data-dir", str(base))
        assert stopped.returncode == 0
        assert "已停止" in stopped.stdout


def _check_delivery(base: Path) -> None:
    settings = yaml.safe_load((base / "demo.yaml").read_text(encoding="utf-8"))
    with psycopg.connect(settings["database"]["dsn"]) as conn:
        mirror = sum(
            conn.execute(f"SELECT count(*) FROM emr.{t}").fetchone()[0]  # type: ignore[index]
            for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'emr'").fetchall()
        )
        held = dict(conn.execute("SELECT destination, count(*) FROM cdcsync.quarantine GROUP BY 1").fetchall())
        delivered = dict(conn.execute(
            "SELECT destination, sum(delivered) FROM cdcsync.delivery_stats GROUP BY 1").fetchall())
        timed = dict(conn.execute(
            "SELECT destination, sum(events) FROM recon.timeliness_daily GROUP BY 1").fetchall())
    for name in ("national", "provincial"):
        db = sqlite3.connect(base / "platforms" / name / "received.sqlite")
        received = db.execute("SELECT count(*) FROM events").fetchone()[0]
        db.close()
        assert held.get(name, 0) > 0  # the synthetic day carries deliberately invalid rows
        # Every mirror row reached each platform or sits in its quarantine (the live phase wrote
        # today's daily_stats row: the backfill was yesterday).
        assert received + held[name] == mirror
        assert delivered[name] == received == timed[name]


def _report(base: Path, today: str) -> dict[str, Any]:
    done = _cdcsync("-c", str(base / "demo.yaml"), "reconcile", "--date", today, "--format", "json")
    assert done.returncode == 1, done.stderr[-2000:]  # red, and the demo says why
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _check_timeliness(out: str, report: dict[str, Any]) -> None:
    for dest in ("national", "provincial"):
        back_his, back_front, back_n = _phase(out, "回填部分实时类数据及时率", dest)
        live_his, live_front, live_n = _phase(out, "实时阶段实时类数据及时率", dest)
        assert back_n > 100 and live_n > 100
        assert back_his < 0.1, "backfilled rows reach the mirror hours after their business time"
        assert live_his >= 0.99 and live_front >= 0.99 and back_front >= 0.99  # loopback: the front end is fast
        # The backfilled day's report agrees with the backfill phase (the live visits are today's).
        (rt,) = [t for t in report["timeliness"] if t["destination"] == dest and t["timeliness"] == "realtime"]
        assert rt["split_events"] == back_n
        assert abs(rt["his_share"] - back_his) < 0.01 and rt["frontend_share"] >= 0.99


def _check_cards(base: Path, report: dict[str, Any]) -> None:
    planted = read_planted(base / "nndrs_export.csv")
    cards = report["cards"]
    assert cards["frontend_only"] == planted.frontend_only and len(planted.frontend_only) == 2
    assert cards["nndrs_only"] == planted.nndrs_only and len(planted.nndrs_only) == 2
    found = {(d["card_no"], d["field"]) for d in cards["differences"]}
    assert found == set(planted.differences.items())
    assert sorted(planted.differences.values()) == ["case_class", "onset_date", "subtype"]
    s = cards["summary"]
    assert s["nndrs_deleted"] == 1 and len(planted.deleted) == 1
    assert planted.deleted[0] not in cards["nndrs_only"]
    assert s["frontend_only"] + s["nndrs_only"] + s["with_differences"] == 7
    # every way of pairing was used: the hospital number, the ID number, name + birth date + sex
    assert min(s["matched_by_card_no"], s["matched_by_id_no"], s["matched_by_name"]) > 0
    # one line per problem for the 防保科
    assert sum(1 for a in report["actions"] if a.startswith(("卡片 ", "大疫情网卡片 "))) == 7


def _check_closing_summary(out: str, report: dict[str, Any]) -> None:
    closing = out[out.index("对账结论"):]
    assert f"超出容差 {len(report['alerts'])} 项" in closing.splitlines()[0]
    for alert in report["alerts"]:
        assert f"！{alert}" in closing
    whys = [line for line in closing.splitlines() if "演示中为何为红" in line]
    assert len(whys) >= len(report["alerts"]) and not any("未预期" in w for w in whys)
    assert any("回填的历史" in w for w in whys)
    assert any("故意放入的差异" in w for w in whys)
    assert any("故意生成的不合规记录" in w for w in whys)


def _check_in_chromium(page: Path, report: dict[str, Any], tmp: Path) -> None:
    assert CHROMIUM
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp / 'profile'}"]
    env = {**os.environ, "HOME": str(tmp)}
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, env=env)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout

    def fig(key: str) -> str:
        m = re.search(rf'id="fig-{key}"[^>]*>([^<]*)<', html)
        assert m, key
        return m.group(1)

    assert f"超出容差 {len(report['alerts'])} 项" in html
    assert (fig("card-frontend-only"), fig("card-nndrs-only"), fig("card-differences"), fig("card-nndrs-deleted")) == (
        "2", "2", "3", "1")
    why = re.search(r'id="demo-why">(.*?)</ul>', html, re.S)
    assert why, "the demo's explanation of the red items"
    assert why.group(1).count("<li>") >= len(report["alerts"])
    for text in ("回填的历史", "故意放入的差异", "故意生成的不合规记录"):
        assert text in why.group(1)
    actions = re.search(r'id="actions">(.*?)</ol>', html, re.S)
    assert actions and actions.group(1).count("<li>") == len(report["actions"])
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "demo_reconcile.png"
    shot.unlink(missing_ok=True)
    s = subprocess.run([*base, f"--screenshot={shot}", "--window-size=1000,2400", page.as_uri()],
                       capture_output=True, text=True, timeout=120, env=env)
    assert s.returncode == 0 and shot.stat().st_size > 10_000, s.stderr[-2000:]
