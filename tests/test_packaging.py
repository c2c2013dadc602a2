"""A wheel installed outside the checkout (as on a hospital server) finds its migrations and
value domains under <prefix>/share/cdcsync and can initialise a database."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]


def _run(*cmd: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def test_installed_wheel_initialises_a_database(fresh_db: str, tmp_path: Path) -> None:
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist",
         REPO, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("cdcsync-*.whl"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    # Dependencies come from the test environment (a path entry, so its editable-install hook does not run).
    (next((venv / "lib").glob("python3*")) / "site-packages" / "deps.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n")
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", wheel,
         cwd=tmp_path)
    cdcsync = venv / "bin" / "cdcsync"

    where = _run(venv / "bin" / "python", "-c", "import cdcsync; print(cdcsync.__file__)", cwd=tmp_path).stdout
    assert str(venv) in where  # the installed copy, not the checkout
    if shutil.which("cc"):  # the stream decoder's C extension is built into the wheel
        parser = _run(venv / "bin" / "python", "-c", "from cdcsync.source import _pgtuple; print(_pgtuple.__file__)",
                      cwd=tmp_path).stdout
        assert str(venv) in parser and parser.strip().endswith(".so")

    out = _run(cdcsync, "db", "init", "--dsn", fresh_db, cwd=tmp_path).stdout
    assert "002_emr_mirror.sql" in out
    with psycopg.connect(fresh_db) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'emr'").fetchone()
    assert tables is not None and tables[0] == 19

    codes = _run(cdcsync, "codes", "list", cwd=tmp_path).stdout
    assert "GB/T 2261.1" in codes

    # The synthetic hospital's catalogue (cdcsync/synth/catalog.yaml, package data) ships in the wheel.
    gen = _run(cdcsync, "gen", "--dsn", fresh_db, "--patients", "20", "--date", "2026-10-01", cwd=tmp_path).stdout
    assert "emr.visit" in gen
    with psycopg.connect(fresh_db) as conn:
        visits = conn.execute("SELECT count(*) FROM emr.visit").fetchone()
    assert visits is not None and visits[0] >= 20
