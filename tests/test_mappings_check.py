"""``cdcsync mappings check`` on the example hospital reports exactly the gaps a test introduces;
hot reload of the mapping files swaps the rules atomically and keeps the old set on a bad file."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.event import Change, Event, Rejection
from cdcsync.mapping.domains import default_mappings_dir
from cdcsync.quarantine.cli import COMMANDS
from cdcsync.spec import load_spec
from cdcsync.synth.hospital import generate, load_codes
from cdcsync.synth.load import load_bulk
from cdcsync.validate.compiler import beijing_now
from cdcsync.validate.reload import MappingWatcher, RulesHolder, read_status
from cdcsync.validate.stage import ValidationStage

ORG = "12110000400000000X"
SPEC = load_spec()

for _cmd in COMMANDS:  # until the lead registers them on main
    main.commands.setdefault(_cmd.name or "", _cmd)


def _copy_mappings(tmp: Path) -> Path:
    root = tmp / "mappings"
    shutil.copytree(default_mappings_dir(), root)
    return root


def _edit(root: Path, domain: str, fn: Any) -> None:
    path = root / "local" / "example" / f"{domain}.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def _check(root: Path, dsn: str | None) -> tuple[int, dict[str, Any]]:
    args = ["mappings", "check", "--json", "--mappings-dir", str(root), "--hospital", "example"]
    args += ["--dsn", dsn] if dsn else ["--no-data"]
    res = CliRunner().invoke(main, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res.exit_code, json.loads(res.output)


def _count(conn: psycopg.Connection[Any], domain: str, code: str) -> dict[tuple[str, str], int]:
    """Rows holding ``code`` in any coded column of ``domain`` (an independent count)."""
    out = {}
    for t in SPEC.tables:
        for f in t.coded_fields:
            if f.domain == domain:
                row = conn.execute(f'SELECT count(*) FROM emr.{t.name} WHERE "{f.name}" = %s', (code,)).fetchone()
                if row and row[0]:
                    out[(t.name, f.name)] = int(row[0])
    return out


def test_mappings_check_reports_exactly_the_introduced_gaps(migrated_db: str, tmp_path: Path) -> None:
    root = _copy_mappings(tmp_path)
    now = beijing_now()
    res = generate(load_codes(root), ORG, now.date() - dt.timedelta(days=2), patients=150, invalid_ratio=0.0,
                   now=now)
    with psycopg.connect(migrated_db) as conn:
        load_bulk(conn, SPEC, res.rows, res.updates)

    code, report = _check(root, migrated_db)
    assert code == 0 and report["ok"], report
    assert len(report["tables_checked"]) == len(SPEC.tables)

    with psycopg.connect(migrated_db, autocommit=True) as conn:
        # 1. a local code the HIS starts using that nobody mapped
        conn.execute("UPDATE emr.visit SET payment_method_code = 'NEWPAY' WHERE visit_id IN"
                     " (SELECT visit_id FROM emr.visit ORDER BY visit_id LIMIT 3)")
        # 2. an entry removed from a local table (its rows become unmapped)
        _edit(root, "sex", lambda d: d["map"].pop("M"))
        sex_m = _count(conn, "sex", "M")
        # 3. a whole local table missing (every code in the data of that domain is unmapped)
        (root / "local" / "example" / "blood_type.yaml").unlink()
        blood = {c: _count(conn, "blood_type", c) for c in ("A", "B", "O", "AB", "BX", "WC", "1", "2", "3", "4")}
        # 4. an entry pointing at a national code that does not exist
        _edit(root, "marital_status", lambda d: d["map"].__setitem__("WH", "77"))
        wh = _count(conn, "marital_status", "WH")
    assert sex_m, "the example data must use local sex code M"

    code, report = _check(root, migrated_db)
    assert code == 1 and not report["ok"]
    got = {(u["domain"], u["table"], u["field"], u["local_code"]): u["rows"] for u in report["unmapped"]}
    expected = {("payment_method", "visit", "payment_method_code", "NEWPAY"): 3}
    expected |= {("sex", t, f, "M"): n for (t, f), n in sex_m.items()}
    expected |= {("blood_type", t, f, c): n for c, counts in blood.items() for (t, f), n in counts.items()}
    expected |= {("marital_status", t, f, "WH"): n for (t, f), n in wh.items()}
    assert got == expected
    assert [m["domain"] for m in report["domains_without_local_table"]] == ["blood_type"]
    assert report["domains_without_local_table"][0]["used_by"] == ["patient.abo_blood_type_code"] or \
        "patient.abo_blood_type_code" in report["domains_without_local_table"][0]["used_by"]
    assert [(i["domain"], i["local_code"], i["national_code"]) for i in report["invalid_mappings"]] == [
        ("marital_status", "WH", "77")]

    # Text output for staff: Chinese, names the gaps, exit 1.
    text = CliRunner().invoke(main, ["mappings", "check", "--mappings-dir", str(root), "--dsn", migrated_db])
    assert text.exit_code == 1
    assert "NEWPAY" in text.output and "blood_type" in text.output and "存在缺漏" in text.output


def test_mappings_check_without_data(tmp_path: Path) -> None:
    root = _copy_mappings(tmp_path)
    assert _check(root, None) == (0, _check(root, None)[1])
    (root / "local" / "example" / "route.yaml").unlink()
    code, report = _check(root, None)
    assert code == 1 and [m["domain"] for m in report["domains_without_local_table"]] == ["route"]


# --- hot reload ----------------------------------------------------------------------------------


def _change(lsn: int, row: dict[str, Any]) -> Change:
    return Change("c", "emr", "patient", None, row, lsn, 1, dt.datetime.now(dt.UTC), 0)


def _patient(sex: str) -> dict[str, Any]:
    t = dt.datetime(2025, 5, 1, 9, 30)
    return {"org_code": ORG, "patient_id": "P1", "name": "测试", "sex_code": sex, "birth_date": dt.date(1980, 1, 2),
            "modify_flag": "1", "collect_time": t, "update_time": t}


def test_hot_reload_swaps_between_transactions_and_keeps_old_set_on_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _copy_mappings(tmp_path)
    holder = RulesHolder.load(root, "example")
    v1 = holder.version
    stage = ValidationStage(holder, ORG, "emr")
    assert isinstance(stage(_change(100, _patient("QQ"))), Rejection)

    _edit(root, "sex", lambda d: d["map"].__setitem__("QQ", "9"))
    assert holder.reload_if_changed()
    assert holder.version != v1 and holder.last_error is None
    # Same transaction (same commit LSN): still the old rules; the next transaction: the new ones.
    assert isinstance(stage(_change(100, _patient("QQ"))), Rejection)
    ev = stage(_change(200, _patient("QQ")))
    assert isinstance(ev, Event) and ev.after is not None
    assert ev.after["sex_code"] == "9" and ev.after["sex_code_local"] == "QQ"
    if hasattr(ev, "mapping_version"):
        assert ev.mapping_version == holder.version
    assert not holder.reload_if_changed()  # nothing changed since

    # A broken file: one clear log line naming the file, the old set stays in force.
    v2 = holder.version
    bad = root / "local" / "example" / "sex.yaml"
    _edit(root, "sex", lambda d: d["map"].__setitem__("ZZ", 9))  # an unquoted number: not a code
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="cdcsync.validate.reload"):
        assert not holder.reload_if_changed()
        time.sleep(0.01)
        bad.write_text(bad.read_text(encoding="utf-8"), encoding="utf-8")  # touched again, same problem
        assert not holder.reload_if_changed()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "sex.yaml" in errors[0].getMessage() and "map.ZZ" in errors[0].getMessage()
    assert holder.version == v2 and holder.status().last_error
    assert isinstance(stage(_change(300, _patient("QQ"))), Event)

    # Fixed: picked up by the watcher thread.
    _edit(root, "sex", lambda d: d["map"].pop("ZZ"))
    state = tmp_path / "state" / "rules.json"
    watcher = MappingWatcher(holder, interval_s=0.05, state_path=state).start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            shown = read_status(state)
            if shown and shown["last_error"] is None and shown["mapping_version"] == holder.version:
                break
            time.sleep(0.05)
    finally:
        watcher.stop()
    assert holder.status().last_error is None
    shown = read_status(state)  # what `cdcsync status` shows
    assert shown is not None and shown["mapping_version"] == holder.version and shown["last_error"] is None
