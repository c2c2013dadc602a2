"""The README's demo: a private cluster, the reference platforms, a synthetic day streamed to both."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import yaml

REPO = Path(__file__).resolve().parents[1]


def _cdcsync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdcsync", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_demo_runs_to_completion_and_says_where_the_data_is(tmp_path: Path) -> None:
    base = tmp_path / "demo"
    done = _cdcsync("demo", "--data-dir", str(base), "--patients", "60")
    try:
        assert done.returncode == 0, done.stderr[-2000:]
        out = done.stdout
        assert "完成。可以查看" in out
        assert str(base / "demo.yaml") in out
        assert (base / "status.html").read_text(encoding="utf-8").count("国家平台") >= 1

        settings = yaml.safe_load((base / "demo.yaml").read_text(encoding="utf-8"))
        dsn = settings["database"]["dsn"]
        with psycopg.connect(dsn) as conn:
            mirror = sum(
                conn.execute(f"SELECT count(*) FROM emr.{t}").fetchone()[0]  # type: ignore[index]
                for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'emr'").fetchall()
            )
            held = dict(conn.execute("SELECT destination, count(*) FROM cdcsync.quarantine GROUP BY 1").fetchall())
            delivered = dict(conn.execute(
                "SELECT destination, sum(delivered) FROM cdcsync.delivery_stats GROUP BY 1").fetchall())
            timed = dict(conn.execute(
                "SELECT destination, sum(events) FROM recon.timeliness_daily GROUP BY 1").fetchall())
        # Every mirror row reached each platform, or sits in that destination's quarantine.
        for name in ("national", "provincial"):
            db = sqlite3.connect(base / "platforms" / name / "received.sqlite")
            received = db.execute("SELECT count(*) FROM events").fetchone()[0]
            db.close()
            assert held.get(name, 0) > 0  # the synthetic day carries deliberately invalid rows
            assert received + held[name] == mirror
            # The checkpoint measured the delay of every delivered event, for the timeliness view.
            assert delivered[name] == received == timed[name]
        assert "已接收" in out
        with psycopg.connect(dsn) as conn:  # the rules ran over the day: cases to show
            cases = conn.execute("SELECT count(*) FROM cdcsync.surveil_case").fetchone()[0]  # type: ignore[index]
        assert cases > 0 and f"共 {cases} 例" in out and "cases list" in out

        again = _cdcsync("demo", "--data-dir", str(base), "--patients", "60")
        assert again.returncode == 0, again.stderr[-2000:]
        assert "跳过生成" in again.stdout
        assert "本次生成病例 0 例" in again.stdout  # nothing opened twice
    finally:
        stopped = _cdcsync("demo", "--stop", "--data-dir", str(base))
        assert stopped.returncode == 0
        assert "已停止" in stopped.stdout
