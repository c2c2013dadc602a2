"""`cdcsync gen --live` (business times at the moment of writing) and `gen --nndrs-export` (an NNDRS
export with planted differences the card comparison must find, no more, no less)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.mapping.domains import load_code_tables
from cdcsync.recon.codemap import sync_reference
from cdcsync.synth.live import LIVE_SPAN_S, retime
from cdcsync.synth.load import Group, Update
from cdcsync.synth.nndrs_export import HEADERS, read_planted
from cdcsync.synth.site import BACKFILL_LAG, backfill_day
from cdcsync.validate.compiler import beijing_now

REPO = Path(__file__).resolve().parents[1]
ORG = "12110000400000000X"


def _gen(dsn: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["gen", "--dsn", dsn, "--org-code", ORG, "--hospital", "example", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_retime_keeps_order_squeezes_the_span_and_never_goes_past_now() -> None:
    t = dt.datetime(2026, 12, 2, 8, 0)
    g = Group(t)
    g.add("visit", {"visit_time": t, "birth_date": dt.date(1990, 1, 1), "n": 1})
    g.add("diagnosis", {"diagnosis_time": t + dt.timedelta(hours=2)})
    g.add("report_card", {"report_time": t + dt.timedelta(hours=3), "onset_date": dt.date(2026, 11, 30)})
    g.updates.append(Update("visit", {"visit_id": "V1"}, {"visit_end_time": t + dt.timedelta(hours=1)}))
    now = dt.datetime(2026, 12, 2, 15, 30)
    retime(g, now)
    visit, diag, card = g.rows["visit"][0], g.rows["diagnosis"][0], g.rows["report_card"][0]
    assert card["report_time"] == now
    assert visit["visit_time"] < g.updates[0].values["visit_end_time"] < diag["diagnosis_time"] < now
    assert (now - visit["visit_time"]).total_seconds() <= LIVE_SPAN_S
    assert visit["birth_date"] == dt.date(1990, 1, 1) and card["onset_date"] == dt.date(2026, 11, 30)  # dates stay
    assert g.time == visit["visit_time"]


def test_live_phase_is_timely_and_keeps_the_daily_statistics_right(migrated_db: str) -> None:
    backfilled = beijing_now()
    _gen(migrated_db, "--patients", "30", "--seed", "3")  # yesterday, with its daily_stats row
    started = beijing_now()
    out = _gen(migrated_db, "--patients", "30", "--seed", "3", "--rate", "300", "--duration", "2", "--live")
    assert "已按实时写入的就诊新建" in out  # today's first refresh writes today's statistics row
    again = _gen(migrated_db, "--patients", "30", "--seed", "4", "--rate", "300", "--duration", "2", "--live")
    assert "实时写入结束" in again and "新建" not in again  # the second adds to it
    ended = beijing_now()
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        sync_reference(conn, load_code_tables(REPO / "mappings", "example"))
        live = conn.execute("SELECT count(*), min(visit_time), max(visit_time) FROM emr.visit"
                            " WHERE visit_id LIKE %s", (f"%L{started:%H}%",)).fetchone()
        assert live is not None and live[0] > 0, "live visits carry the live tag"
        # business times lie between the start of the phase (less the squeezed span) and its end
        assert started - dt.timedelta(seconds=LIVE_SPAN_S + 5) <= live[1] and live[2] <= ended
        latest = conn.execute("SELECT max(report_time) FROM emr.report_card").fetchone()
        assert latest is not None and latest[0] <= ended  # nothing in the future
        # the backfilled day happened hours before it was written, whatever the hour of the run
        past = conn.execute(
            "SELECT max(greatest(v.visit_time, v.visit_end_time, c.report_time, l.audit_time, s.measure_time))"
            " FROM emr.visit v LEFT JOIN emr.report_card c USING (visit_id) LEFT JOIN emr.lab_report l USING (visit_id)"
            " LEFT JOIN emr.vital_sign s USING (visit_id) WHERE v.visit_id NOT LIKE %s", ("%L%",)).fetchone()
        assert past is not None and past[0] <= backfilled - BACKFILL_LAG
        assert past[0].date() == backfill_day(backfilled)
        # the HIS statistics row was brought up to date with the live visits, both times
        for day in {started.date(), ended.date()}:
            diff = conn.execute("SELECT outpatient_diff, emergency_diff FROM recon.visit_daily_counts"
                                " WHERE stat_date = %s", (day,)).fetchone()
            assert diff == (0, 0)


def test_nndrs_export_plants_exactly_what_the_comparison_finds(migrated_db: str, tmp_path: Path) -> None:
    export = tmp_path / "nndrs.csv"
    out = _gen(migrated_db, "--patients", "80", "--seed", "11", "--nndrs-export", str(export))
    assert "已写入大疫情网导出" in out
    raw = export.read_bytes()
    lines = raw.decode("gb18030").splitlines()
    assert lines[1].split(",") == list(HEADERS)
    try:
        raw.decode("utf-8")
        raise AssertionError("the export should be GB18030, as NNDRS writes it")
    except UnicodeDecodeError:
        pass
    planted = read_planted(export)
    nndrs = next(c for c in main.commands.values() if c.name == "nndrs")
    result = CliRunner().invoke(nndrs, ["import", str(export), "--dsn", migrated_db, "--mappings-dir",
                                        str(REPO / "mappings"), "--hospital", "example"])
    assert result.exit_code == 0, result.output
    assert "跳过 0" in result.output
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        rows = conn.execute("SELECT card_no, presence, match_method FROM recon.card_comparison"
                            " WHERE compare_date = %s", (dt.date.fromisoformat(planted.date),)).fetchall()
        diffs = conn.execute("SELECT card_no, field FROM recon.card_field_diff WHERE compare_date = %s",
                             (dt.date.fromisoformat(planted.date),)).fetchall()
        deleted = conn.execute("SELECT count(*) FROM recon.card_comparison WHERE nndrs_card_no = ANY(%s)",
                               (planted.deleted,)).fetchone()
    assert sorted(r[0] for r in rows if r[1] == "frontend_only") == planted.frontend_only
    assert sorted(r[0] for r in rows if r[1] == "nndrs_only") == planted.nndrs_only
    assert set(diffs) == set(planted.differences.items())
    assert deleted == (0,) and len(planted.deleted) == 1
    assert {r[2] for r in rows if r[1] == "both"} == {"card_no", "id_no", "name_birth_sex"}
