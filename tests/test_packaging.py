"""A wheel installed outside the checkout (as on a hospital server) finds its migrations and
value domains under <prefix>/share/cdcsync and can initialise a database."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

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
    assert tables is not None and tables[0] == 20

    codes = _run(cdcsync, "codes", "list", cwd=tmp_path).stdout
    assert "GB/T 2261.1" in codes

    # The synthetic hospital's catalogue (cdcsync/synth/catalog.yaml, package data) ships in the wheel.
    gen = _run(cdcsync, "gen", "--dsn", fresh_db, "--patients", "20", "--date", "2026-10-01", cwd=tmp_path).stdout
    assert "emr.visit" in gen
    with psycopg.connect(fresh_db) as conn:
        visits = conn.execute("SELECT count(*) FROM emr.visit").fetchone()
    assert visits is not None and visits[0] >= 20

# ----------------------------------------------------------------------------- dependencies

SIM_PARTS = ("upstream_sim", "synth", "demo.py")  # the `sim` extra's commands
# Distribution name -> import name, where they differ.
IMPORT_NAME = {"psycopg[binary]": "psycopg", "pyyaml": "yaml", "swagger-ui-bundle": "swagger_ui_bundle",
               "prometheus-client": "prometheus_client", "python-stdnum": "stdnum"}


# Imported directly but part of a declared dependency's API (FastAPI is built on Starlette and pins it).
PART_OF = {"starlette": "fastapi"}


def _deps(names: list[str]) -> set[str]:
    import re

    out = set()
    for spec in names:
        dist = re.split(r"[<>=!~;\s]", spec, maxsplit=1)[0].lower()
        if dist.startswith("cdcsync"):
            continue
        out.add(IMPORT_NAME.get(dist, dist.replace("-", "_")))
    return out


def _imports() -> dict[str, set[str]]:
    """Third-party top-level modules imported by cdcsync's runtime code and by its sim code."""
    import ast

    found: dict[str, set[str]] = {"runtime": set(), "sim": set()}
    for path in (REPO / "cdcsync").rglob("*.py"):
        rel = path.relative_to(REPO / "cdcsync").as_posix()
        kind = "sim" if rel.startswith(SIM_PARTS) else "runtime"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "cdcsync":
                    found[kind].add(top)
    return found


def test_runtime_dependencies_are_what_runtime_imports() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = _deps(project["dependencies"])
    sim = _deps(project["optional-dependencies"]["sim"])
    used = _imports()
    assert runtime >= set(PART_OF.values())
    used = {kind: mods - PART_OF.keys() for kind, mods in used.items()}
    assert not runtime - used["runtime"], f"declared but not imported by the daemon's code: {runtime - used['runtime']}"
    assert not used["runtime"] - runtime, f"imported at run time but not a dependency: {used['runtime'] - runtime}"
    assert not used["sim"] - runtime - sim, f"simulators import undeclared packages: {used['sim'] - runtime - sim}"
    assert "cdcsync[sim]" in project["optional-dependencies"]["test"]


@pytest.mark.parametrize("args", [["upstream-sim", "--listen", "127.0.0.1:0"], ["demo"], ["gen", "--dsn", "x"]])
def test_commands_of_a_missing_extra_name_it(args: list[str], tmp_path: Path) -> None:
    # As on a server installed without [sim]: the packages of the extra cannot be imported.
    code = ("import sys\nsys.modules.update(msgspec=None, stdnum=None)\nfrom cdcsync.cli import main\n"
            f"main({args!r}, prog_name='cdcsync')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install 'cdcsync[sim]'" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    ok = subprocess.run([sys.executable, "-c", code.replace(repr(args), "['--help']")], cwd=tmp_path,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "upstream-sim" in ok.stdout, ok.stderr
