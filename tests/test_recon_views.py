"""recon.* views against hand-built data whose right answer is known (real PostgreSQL, real mappings)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdcsync.engine.accounting import LATENCY_BOUNDS, TIMELINESS_LIMITS, record_transmission
from cdcsync.mapping.domains import load_code_tables
from cdcsync.recon.codemap import sync_reference
from cdcsync.spec import load_spec
from tests.latency_seed import seed_latency

REPO = Path(__file__).resolve().parents[1]
D = dt.date(2024, 5, 6)
ORG = "H0001"


def ts(day: dt.date, hh: int = 9, mm: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm)


def _insert(conn: psycopg.Connection, table: str, row: dict[str, Any]) -> None:
    cols = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    conn.execute(f"INSERT INTO emr.{table} ({cols}) VALUES ({marks})", list(row.values()))  # type: ignore[arg-type]


def visit(conn: psycopg.Connection, vid: str, pid: str, vtype: str, start: dt.datetime,
          end: dt.datetime | None = None, flag: str = "1") -> None:
    _insert(conn, "visit", {
        "org_code": ORG, "visit_id": vid, "patient_id": pid, "visit_type_code": vtype,
        "inpatient_no": f"ZY{vid}" if vtype == "ZY" else None, "visit_time": start, "visit_end_time": end,
        "dept_code": "0101", "modify_flag": flag, "collect_time": start, "update_time": start,
    })


def diagnosis(conn: psycopg.Connection, did: str, vid: str, pid: str, vtype: str, code: str, when: dt.datetime) -> None:
    _insert(conn, "diagnosis", {
        "org_code": ORG, "diagnosis_id": did, "visit_id": vid, "patient_id": pid, "visit_type_code": vtype,
        "diagnosis_category_code": "1", "diagnosis_code": code, "diagnosis_name": "诊断", "diagnosis_status_code": "QZ",
        "diagnosis_time": when, "modify_flag": "1", "collect_time": when, "update_time": when,
    })


def report_card(conn: psycopg.Connection, card_id: str, card_no: str | None, *, disease: str = "CR0302",
                status: str = "QZ", onset: dt.date = D - dt.timedelta(days=3), report: dt.datetime | None = None,
                name: str = "张三", id_no: str = "110101199003071234", visit_id: str | None = None) -> None:
    when = report or ts(D, 10)
    _insert(conn, "report_card", {
        "org_code": ORG, "card_id": card_id, "card_no": card_no, "card_category_code": "1", "patient_id": "P9",
        "visit_id": visit_id,
        "patient_name": name, "id_type_code": "01", "id_no": id_no, "sex_code": "M", "birth_date": dt.date(1990, 3, 7),
        "patient_belong_code": "1", "current_addr_region_code": "110101", "population_group_code": "1",
        "disease_code": disease, "diagnosis_status_code": status, "onset_date": onset,
        "diagnosis_time": ts(D - dt.timedelta(days=1), 15), "report_doctor": "李医生", "report_time": when,
        "modify_flag": "1", "collect_time": when, "update_time": when,
    })


def nndrs_card(conn: psycopg.Connection, card_no: str, *, disease: str = "20302", case_class: str = "3",
               onset: dt.date = D - dt.timedelta(days=3), report_date: dt.date = D, name: str = "张三",
               id_no: str | None = "110101199003071234", diagnosed: dt.datetime | None = None,
               deleted: dt.datetime | None = None, audit: str | None = None, card_id: str | None = None,
               region: str | None = None, population_group: str | None = None) -> None:
    conn.execute(
        "INSERT INTO recon.nndrs_card (card_id, card_no, patient_name, id_no, sex_code, birth_date, disease_name,"
        " disease_code, case_class_name, case_class_code, onset_date, diagnosis_time, report_date, deleted_time,"
        " audit_status, region_code, population_group, population_group_code, source_file, source_line)"
        " VALUES (%s, %s, %s, %s, '1', '1990-03-07', '乙型肝炎', %s, '确诊病例', %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " 't.csv', 2)",
        (card_id or f"ID-{card_no}", card_no, name, id_no, disease, case_class, onset,
         diagnosed or ts(D - dt.timedelta(days=1), 15), report_date, deleted, audit, region, population_group,
         population_group),
    )


@pytest.fixture
def db(migrated_db: str) -> psycopg.Connection:
    conn = psycopg.connect(migrated_db, autocommit=True)
    sync_reference(conn, load_code_tables(REPO / "mappings", "example"))
    return conn


def build_day(conn: psycopg.Connection) -> None:
    y = D - dt.timedelta(days=1)
    # outpatient 4 + 1 cancelled (local modify flag D -> 3), emergency 2
    for i in range(4):
        visit(conn, f"M{i}", f"PM{i}", "MZ", ts(D, 8 + i))
    visit(conn, "M9", "PM9", "MZ", ts(D, 14), flag="D")
    visit(conn, "J1", "PJ1", "JZ", ts(D, 1))
    visit(conn, "J2", "PJ2", "JZ", ts(D, 23, 59))
    # inpatients
    visit(conn, "I1", "P1", "ZY", ts(D - dt.timedelta(days=2)))  # still in hospital
    diagnosis(conn, "d1", "I1", "P1", "ZY", "A15.000", ts(y, 11))  # 肺结核 乙类, diagnosed the day before
    visit(conn, "I2", "P2", "ZY", ts(D, 7))
    diagnosis(conn, "d2", "I2", "P2", "ZY", "U07.100", ts(D, 9))  # 新冠 乙类, new today
    diagnosis(conn, "d3", "I2", "P2", "ZY", "J10.100", ts(D, 10))  # 流感 丙类, new today
    visit(conn, "I3", "P3", "ZY", ts(D - dt.timedelta(days=5)), ts(y, 10))  # discharged before D
    diagnosis(conn, "d4", "I3", "P3", "ZY", "B05", ts(D - dt.timedelta(days=3)))
    visit(conn, "I4", "P4", "ZY", ts(D, 12))
    diagnosis(conn, "d5", "I4", "P4", "ZY", "A00", ts(D + dt.timedelta(days=1), 8))  # 霍乱, diagnosed the next day
    diagnosis(conn, "d6", "M0", "PM0", "MZ", "A00", ts(D, 9))  # outpatient: not an inpatient
    _insert(conn, "daily_stats", {
        "org_code": ORG, "stat_date": D, "outpatient_count": 5, "emergency_count": 2, "inpatient_count": 3,
        "admission_count": 2, "discharge_count": 0, "modify_flag": "1", "collect_time": ts(D, 23),
        "update_time": ts(D, 23),
    })
    # delivery state
    for dest in ("national", "provincial"):
        conn.execute("INSERT INTO cdcsync.checkpoint (destination, slot_name, last_ack_at, last_event_at)"
                     " VALUES (%s, %s, now(), now())", (dest, f"cdcsync_{dest}"))
    conn.execute("INSERT INTO cdcsync.delivery_stats (destination, table_name, business_date, delivered, quarantined,"
                 " batches) VALUES ('national', 'visit', %s, 6, 1, 2)", (D,))
    # cards: NO1 equal, NO2 onset differs, NO3 case class differs, NO4 only front end, NO5 only NNDRS
    for no in ("NO1", "NO2", "NO3", "NO4"):
        report_card(conn, f"c{no}", no, status="LC" if no == "NO3" else "QZ")
    for no in ("NO1", "NO3"):
        nndrs_card(conn, no)
    nndrs_card(conn, "NO5", name="赵六", id_no="110101198001011238")  # another patient: no identity match
    nndrs_card(conn, "NO2", onset=D - dt.timedelta(days=4))


def one(conn: psycopg.Connection, sql: str, *params: Any) -> dict[str, Any]:
    rows = all_rows(conn, sql, *params)
    assert len(rows) == 1, rows
    return rows[0]


def all_rows(conn: psycopg.Connection, sql: str, *params: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall()


def test_table_daily_counts(db: psycopg.Connection) -> None:
    build_day(db)
    rows = all_rows(db, "SELECT destination, mirror_rows, delivered, quarantined, not_delivered"
                        " FROM recon.table_daily_counts WHERE business_date = %s AND table_name = 'visit'"
                        " ORDER BY destination", D)
    assert rows == [
        {"destination": "national", "mirror_rows": 9, "delivered": 6, "quarantined": 1, "not_delivered": 2},
        {"destination": "provincial", "mirror_rows": 9, "delivered": 0, "quarantined": 0, "not_delivered": 9},
    ]
    diag = one(db, "SELECT mirror_rows FROM recon.table_daily_counts WHERE business_date = %s"
                   " AND table_name = 'diagnosis' AND destination = 'national'", D)
    assert diag["mirror_rows"] == 3  # d2, d3, d6


def test_visit_daily_counts(db: psycopg.Connection) -> None:
    build_day(db)
    row = one(db, "SELECT * FROM recon.visit_daily_counts WHERE stat_date = %s", D)
    assert row == {"org_code": ORG, "stat_date": D, "outpatient_visits": 4, "reported_outpatient": 5,
                   "outpatient_diff": -1, "emergency_visits": 2, "reported_emergency": 2, "emergency_diff": 0}
    before = one(db, "SELECT * FROM recon.visit_daily_counts WHERE stat_date = %s", D - dt.timedelta(days=2))
    assert before["outpatient_visits"] == 0 and before["reported_outpatient"] is None


def test_notifiable_inpatient_daily(db: psycopg.Connection) -> None:
    build_day(db)
    rows = {r["category"]: (r["inpatients"], r["new_diagnoses"], r["new_patients"]) for r in all_rows(
        db, "SELECT * FROM recon.notifiable_inpatient_daily WHERE stat_date = %s", D)}
    assert rows == {"甲类": (0, 0, 0), "乙类": (2, 1, 1), "丙类": (1, 1, 1), "合计": (2, 2, 1)}
    nxt = {r["category"]: (r["inpatients"], r["new_diagnoses"]) for r in all_rows(
        db, "SELECT * FROM recon.notifiable_inpatient_daily WHERE stat_date = %s", D + dt.timedelta(days=1))}
    assert nxt["甲类"] == (1, 1)  # P4's cholera, diagnosed on D+1 while in hospital
    dx = all_rows(db, "SELECT diagnosis_id, disease_code, category FROM recon.notifiable_diagnosis ORDER BY 1")
    assert [(r["diagnosis_id"], r["category"]) for r in dx] == [
        ("d1", "乙类"), ("d2", "乙类"), ("d3", "丙类"), ("d4", "乙类"), ("d5", "甲类")]
    assert dx[1]["disease_code"] == "227"


def test_card_comparison(db: psycopg.Connection) -> None:
    build_day(db)
    s = one(db, "SELECT * FROM recon.card_daily_summary WHERE compare_date = %s", D)
    assert s == {"compare_date": D, "frontend_cards": 4, "nndrs_cards": 4, "matched": 3, "frontend_only": 1,
                 "nndrs_only": 1, "with_differences": 2, "disease_differs": 0, "subtype_differs": 0,
                 "case_class_differs": 1, "onset_date_differs": 1, "diagnosis_date_differs": 0,
                 "death_date_differs": 0, "population_group_differs": 0, "region_differs": 0,
                 "report_org_differs": 0, "identity_differs": 0, "matched_by_card_no": 3, "matched_by_id_no": 0,
                 "matched_by_name": 0, "nndrs_deleted": 0}
    presence = {r["card_no"]: r["presence"] for r in all_rows(
        db, "SELECT card_no, presence FROM recon.card_comparison WHERE compare_date = %s", D)}
    assert presence == {"NO1": "both", "NO2": "both", "NO3": "both", "NO4": "frontend_only", "NO5": "nndrs_only"}
    diffs = all_rows(db, "SELECT card_no, field, frontend_value, nndrs_value FROM recon.card_field_diff"
                         " WHERE compare_date = %s ORDER BY card_no", D)
    assert diffs == [
        {"card_no": "NO2", "field": "onset_date", "frontend_value": "2024-05-03", "nndrs_value": "2024-05-02"},
        {"card_no": "NO3", "field": "case_class", "frontend_value": "2", "nndrs_value": "3"},
    ]


def test_card_identity_difference_hides_values(db: psycopg.Connection) -> None:
    report_card(db, "c1", "NO1", name="王五")
    nndrs_card(db, "NO1", name="王 五", id_no="110101199003071235")
    diffs = all_rows(db, "SELECT field, frontend_value, nndrs_value FROM recon.card_field_diff")
    assert diffs == [{"field": "identity", "frontend_value": "（不显示）", "nndrs_value": "（不显示）"}]


def _pairs(db: psycopg.Connection) -> dict[str, tuple[str, str | None, str | None]]:
    return {r["card_no"]: (r["presence"], r["match_method"], r["nndrs_card_id"]) for r in all_rows(
        db, "SELECT card_no, presence, match_method, nndrs_card_id FROM recon.card_comparison")}


def test_cards_without_a_common_number_match_on_identity_disease_and_date(db: psycopg.Connection) -> None:
    # H1: NNDRS gave its own number; same ID number, same disease, diagnosed one day later -> id_no
    report_card(db, "c1", "H1")
    nndrs_card(db, "N1", diagnosed=ts(D, 9))
    # H2: no ID number on the NNDRS card: name (spaces ignored) + birth date + sex -> name_birth_sex
    report_card(db, "c2", "H2", name="李四", id_no="110101199003071250")
    nndrs_card(db, "N2", name="李 四", id_no=None)
    # H3: same patient but diagnosed 5 days apart: outside the 3-day window -> no pair
    report_card(db, "c3", "H3", name="王五", id_no="110101199003071269")
    nndrs_card(db, "N3", name="王五", id_no="110101199003071269", diagnosed=ts(D - dt.timedelta(days=6), 9))
    assert _pairs(db) == {
        "H1": ("both", "id_no", "ID-N1"), "H2": ("both", "name_birth_sex", "ID-N2"),
        "H3": ("frontend_only", None, None), "N3": ("nndrs_only", None, "ID-N3")}
    # the window is a setting: with 7 days H3 pairs too
    db.execute("SET cdcsync.card_match_window_days = 7")
    assert _pairs(db)["H3"] == ("both", "id_no", "ID-N3")
    db.execute("RESET cdcsync.card_match_window_days")
    # a subtype of the same disease still pairs, and is reported as a subtype difference
    db.execute("UPDATE recon.nndrs_card SET disease_code = '20306' WHERE card_no = 'N1'")
    diffs = all_rows(db, "SELECT card_no, field, frontend_value, nndrs_value FROM recon.card_field_diff"
                         " ORDER BY card_no, field")
    assert diffs == [
        # the pair within the window still reports that the diagnosis dates differ
        {"card_no": "H1", "field": "diagnosis_date", "frontend_value": "2024-05-05", "nndrs_value": "2024-05-06"},
        {"card_no": "H1", "field": "subtype", "frontend_value": "20302", "nndrs_value": "20306"}]
    # (H2: the NNDRS card lacks the ID number the hospital has: a gap, not an identity difference)


def test_deleted_nndrs_cards_are_left_out(db: psycopg.Connection) -> None:
    report_card(db, "c1", "H1")
    # a duplicate deleted in NNDRS (删除时间) and one whose 审核状态 says so: neither pairs nor counts
    nndrs_card(db, "N0", diagnosed=ts(D, 9), deleted=ts(D, 12))
    nndrs_card(db, "N9", name="赵六", id_no="110101198001011238", audit="已删除")
    nndrs_card(db, "N1", diagnosed=ts(D, 10))
    assert _pairs(db) == {"H1": ("both", "id_no", "ID-N1")}
    s = one(db, "SELECT nndrs_cards, nndrs_only, nndrs_deleted FROM recon.card_daily_summary WHERE compare_date = %s",
            D)
    assert s == {"nndrs_cards": 1, "nndrs_only": 0, "nndrs_deleted": 2}


def test_population_group_and_region_are_compared_when_exported(db: psycopg.Connection) -> None:
    report_card(db, "c1", "NO1")
    report_card(db, "c2", "NO2")
    nndrs_card(db, "NO1")  # the export has neither column: nothing to compare
    nndrs_card(db, "NO2", card_id="X2", region="110102000000", population_group="学生(大中小学)")
    fields = {(r["card_no"], r["field"]) for r in all_rows(db, "SELECT card_no, field FROM recon.card_field_diff")}
    assert fields == {("NO2", "region"), ("NO2", "population_group")}


def test_correction_card_replaces_initial_card(db: psycopg.Connection) -> None:
    report_card(db, "c1", "NO1", status="YS", report=ts(D, 8))
    report_card(db, "c2", "NO1", status="QZ", report=ts(D, 16))  # 订正卡: confirmed later that day
    nndrs_card(db, "NO1")
    s = one(db, "SELECT matched, with_differences FROM recon.card_daily_summary WHERE compare_date = %s", D)
    assert s == {"matched": 1, "with_differences": 0}


def test_correction_without_card_number_replaces_initial_card_of_the_visit(db: psycopg.Connection) -> None:
    # nothing written back yet: the 订正卡 of the same visit and disease replaces the first card
    report_card(db, "c1", None, status="YS", report=ts(D, 8), visit_id="V1")
    report_card(db, "c2", None, status="QZ", report=ts(D, 16), visit_id="V1")
    nndrs_card(db, "N1")
    s = one(db, "SELECT frontend_cards, matched, frontend_only, with_differences, matched_by_id_no"
                " FROM recon.card_daily_summary WHERE compare_date = %s", D)
    assert s == {"frontend_cards": 1, "matched": 1, "frontend_only": 0, "with_differences": 0, "matched_by_id_no": 1}


def test_timeliness_daily(db: psycopg.Connection) -> None:
    acked = dt.datetime(2024, 5, 6, 12, 0, tzinfo=dt.UTC)  # 20:00 Beijing
    delays = [10, 20, 30, 40, 50, 60, 100, 200, 1000, 4000]
    rows = [((acked - dt.timedelta(seconds=s)).astimezone(dt.timezone(dt.timedelta(hours=8))).replace(tzinfo=None),
             acked - dt.timedelta(seconds=1)) for s in delays]
    assert seed_latency(db, "national", "visit", D, rows[:6], acked) == 1
    seed_latency(db, "national", "visit", D, rows[6:], acked)  # second batch adds to the same key
    seed_latency(db, "national", "discharge", D, [(ts(D, 1), acked)], acked)  # 24h: 19 h late
    got = {r["timeliness"]: r for r in all_rows(db, "SELECT * FROM recon.timeliness_daily WHERE business_date = %s", D)}
    rt = got["realtime"]
    assert (rt["events"], rt["within_limit"], float(rt["within_share"])) == (10, 8, 0.8)
    assert (rt["p50_from_business_s"], rt["p95_from_business_s"]) == (60, 4000)
    assert (rt["p50_from_commit_s"], rt["p95_from_commit_s"]) == (1, 1)
    assert (got["24h"]["events"], got["24h"]["within_limit"], got["24h"]["timeliness_label"]) == (1, 1, "24小时内")
    # In two parts: the HIS committed 8 of 10 within 5 minutes (9 s … 199 s late; 999 s and 3999 s are
    # not), the front end had each acknowledged 1 s after its commit.
    assert (rt["split_events"], rt["his_within"], float(rt["his_share"])) == (10, 8, 0.8)
    assert float(rt["frontend_share"]) == 1.0 and rt["frontend_avg_s"] == 1.0
    assert rt["his_avg_s"] == sum(d - 1 for d in delays) / 10 and rt["his_p95_s"] == 3999


def test_transmission_state(db: psycopg.Connection) -> None:
    db.execute("INSERT INTO cdcsync.checkpoint (destination, slot_name, last_ack_at) VALUES ('national', 's', now())")
    for ok, retry in ((True, False), (True, False), (False, False), (True, True), (True, False)):
        record_transmission(db, "national", ok=ok, retry=retry, error=None if ok else "HTTP 503")
    row = one(db, "SELECT * FROM recon.transmission_state")
    assert (row["attempts_today"], row["failures_today"], row["retries_today"], row["last_error"]) == (5, 1, 1,
                                                                                                     "HTTP 503")
    assert row["wal_lag_bytes"] > 0 and row["quarantine_held"] == 0


def test_sql_constants_match_python(db: psycopg.Connection) -> None:
    assert tuple(db.execute("SELECT cdcsync.latency_bounds()").fetchone()[0]) == LATENCY_BOUNDS  # type: ignore[index]
    assert dict(db.execute("SELECT timeliness, limit_seconds FROM recon.timeliness_class").fetchall()) == dict(
        TIMELINESS_LIMITS)


def test_every_view_and_column_has_a_chinese_comment(db: psycopg.Connection) -> None:
    missing = db.execute("""
        SELECT c.relname || coalesce('.' || a.attname, '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE n.nspname = 'recon' AND c.relkind IN ('v', 'r')
          AND coalesce(col_description(c.oid, a.attnum), obj_description(c.oid, 'pg_class')) !~ '[一-龥]'
           OR (n.nspname = 'recon' AND c.relkind IN ('v', 'r') AND a.attnum IS NOT NULL
               AND col_description(c.oid, a.attnum) IS NULL)
    """).fetchall()
    assert missing == []
    views = db.execute("SELECT count(*) FROM pg_views WHERE schemaname = 'recon'").fetchone()
    assert views is not None and views[0] >= 12


def test_mirror_view_covers_every_spec_table() -> None:
    # the latest migration that (re)defines the view is the one in force
    defs = [f.read_text(encoding="utf-8") for f in sorted((REPO / "sql").glob("*.sql"))]
    sql = [s for s in defs if re.search(r"VIEW recon\.mirror_daily_rows AS", s)][-1]
    view = re.split(r"VIEW recon\.mirror_daily_rows AS", sql, maxsplit=1)[1].split(";", 1)[0]
    listed = dict(re.findall(r"SELECT '(\w+)'(?:::text AS table_name)?, (\w+)(?:::date)?", view))
    spec = load_spec()
    # Every table: the HIS-written ones and report_card_frontend (writer cdcsync, the workbench's
    # cards), which has its own line (sql/110_recon_workbench_cards.sql).
    assert listed == {t.name: t.business_date_field for t in spec.tables}, (
        "recon.mirror_daily_rows must list every table of the dataset spec with its business date field")
    assert any(t.writer != "his" for t in spec.tables if t.name == "report_card_frontend")


def workbench_card(conn: psycopg.Connection, card_id: str, *, disease: str = "20302", flag: str = "1",
                   version: int = 1, name: str = "张三", id_no: str | None = "110101199003071234",
                   diagnosed: dt.datetime | None = None) -> None:
    """A card as the workbench publishes it (cdcsync/workbench/store.py: national codes)."""
    when = ts(D, 11)
    _insert(conn, "report_card_frontend", {
        "org_code": ORG, "card_id": card_id, "card_version": version,
        "card_category_code": "1" if version == 1 else "2",
        "review_status": "待审核", "patient_id": "P9", "patient_name": name, "id_type_code": "01", "id_no": id_no,
        "sex_code": "1", "birth_date": dt.date(1990, 3, 7), "patient_belong_code": "1",
        "current_addr_region_code": "110101", "population_group_code": "1", "disease_code": disease,
        "diagnosis_status_code": "3", "onset_date": D - dt.timedelta(days=3),
        "diagnosis_time": diagnosed or ts(D - dt.timedelta(days=1), 15), "report_doctor_id": "D1",
        "report_doctor": "李医生", "report_time": when, "modify_flag": flag, "collect_time": when, "update_time": when,
    })


def test_workbench_cards_have_their_own_daily_line(db: psycopg.Connection) -> None:
    report_card(db, "c1", "NO1")
    workbench_card(db, "W1")
    workbench_card(db, "W2", flag="3")  # deleted cards stay rows (a state): they are counted here
    db.execute("INSERT INTO cdcsync.checkpoint (destination, slot_name, last_ack_at) VALUES ('national', 's', now())")
    rows = {r["table_name"]: r["mirror_rows"]
            for r in all_rows(db, "SELECT table_name, mirror_rows FROM recon.table_daily_counts"
                                  " WHERE business_date = %s AND destination = 'national'", D)}
    assert rows == {"report_card": 1, "report_card_frontend": 2}


def test_workbench_cards_are_compared_with_nndrs(db: psycopg.Connection) -> None:
    workbench_card(db, "W1")  # pairs by ID number + disease + diagnosis date
    workbench_card(db, "W2", name="王五", id_no="110101197001011234", disease="20301")  # not reported to NNDRS
    workbench_card(db, "W3", name="赵六", id_no="110101198001011238", flag="3")  # deleted: left out
    report_card(db, "c1", "NO7", name="钱七", id_no="110101196001011230")  # the HIS's own card, same day
    nndrs_card(db, "N1", diagnosed=ts(D, 10))
    nndrs_card(db, "NO7", name="钱七", id_no="110101196001011230")
    nndrs_card(db, "N9", name="赵六", id_no="110101198001011238")
    src = {r["card_id"]: r["card_source"] for r in all_rows(db, "SELECT card_id, card_source FROM recon.frontend_card")}
    assert src == {"W1": "workbench", "W2": "workbench", "c1": "his"}
    pairs = {r["card_no"]: (r["presence"], r["match_method"], r["nndrs_card_id"]) for r in all_rows(
        db, "SELECT card_no, presence, match_method, nndrs_card_id FROM recon.card_comparison")}
    assert pairs == {"wb:H0001:W1": ("both", "id_no", "ID-N1"), "wb:H0001:W2": ("frontend_only", None, None),
                     "NO7": ("both", "card_no", "ID-NO7"), "N9": ("nndrs_only", None, "ID-N9")}
    # national codes compared as they are: only the one-day diagnosis gap differs
    assert all_rows(db, "SELECT card_no, field FROM recon.card_field_diff") == [
        {"card_no": "wb:H0001:W1", "field": "diagnosis_date"}]
    s = one(db, "SELECT frontend_cards, nndrs_cards, matched, frontend_only, nndrs_only FROM recon.card_daily_summary"
                " WHERE compare_date = %s", D)
    assert s == {"frontend_cards": 3, "nndrs_cards": 3, "matched": 2, "frontend_only": 1, "nndrs_only": 1}
