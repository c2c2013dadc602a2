"""The workbench on 8884 over real HTTP and a real database: SSO tickets (expired, replayed, tampered,
wrong HIS refused), sessions, CSRF, security headers, department isolation, the card form's checks,
saving (case → 已报卡, card row, write-back row), review and return, correction, audit."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cdcsync.db.cluster import LocalCluster
from cdcsync.mapping.domains import load_code_tables
from cdcsync.workbench.card import check_card
from cdcsync.workbench.sso import HisRegistry
from tests.api_helpers import REPO
from tests.cdc_util import wait_for
from tests.wb_helpers import Bench, case_status, open_case, running_bench, seed_patient

HIS_HEPATITIS_B = "CR0302"  # the example hospital's local code of 乙型肝炎
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def login(b: Bench, ticket: str) -> httpx.Client:
    client = httpx.Client(base_url=b.url, timeout=30)
    r = client.get("/sso", params={"ticket": ticket})
    assert r.status_code == 200, r.text
    return client


def csrf_of(page: str) -> str:
    m = CSRF.search(page)
    assert m, "every page of a session carries the CSRF token"
    return m.group(1)


def good_card(**over: str) -> dict[str, str]:
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(tzinfo=None)
    card = {
        "patient_name": "张三", "parent_name": "", "id_type_code": "01", "id_no": "110101198001020016",
        "sex_code": "1", "birth_date": "1980-01-02", "age_value": "", "age_unit": "", "work_unit": "",
        "phone": "13800138000", "patient_belong_code": "1", "current_addr_region_code": "110101",
        "current_addr_detail": "北京市东城区某街1号", "population_group_code": "09", "diagnosis_status_code": "3",
        "case_type_code": "1", "onset_date": (now - dt.timedelta(days=3)).date().isoformat(),
        "diagnosis_time": (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"), "death_date": "",
        "disease_code": "20302", "other_disease_name": "", "remark": "",
        "sup_hbsag_positive_since": "2", "sup_first_symptom_date": "", "sup_alt": "300", "sup_anti_hbc_igm": "1",
        "sup_liver_biopsy": "3", "sup_hbsag_seroconversion": "3",
    }
    card.update(over)
    return card


# -- SSO -----------------------------------------------------------------------------------------


def test_tickets_expired_replayed_tampered_or_from_the_wrong_his_are_refused(pg_cluster: LocalCluster,
                                                                            tmp_path: Path) -> None:
    with running_bench(pg_cluster, tmp_path, "wbsso", ticket_ttl_s=60, clock_skew_s=30) as b:
        def refused(ticket: str, why: str) -> None:
            r = httpx.get(f"{b.url}/sso", params={"ticket": ticket}, timeout=30)
            assert r.status_code == 403, (why, r.status_code)
            assert "set-cookie" not in r.headers, why
            assert "<script" not in r.text

        now = int(time.time())
        refused(b.ticket(iat=now - 60 - 30 - 5), "expired beyond ttl + skew")
        refused(b.ticket(iat=now + 30 + 20), "issued in the future beyond the skew")
        ok = b.ticket(iat=now - 60 - 20)  # within ttl + skew: accepted
        assert httpx.get(f"{b.url}/sso", params={"ticket": ok}, timeout=30).status_code == 200
        refused(ok, "replayed")
        payload, sig = b.ticket().split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["role"] = "public_health"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        refused(f"{forged}.{sig}", "tampered payload")
        refused(b.ticket(his="HIS1", key_of="HIS2"), "signed with another HIS's secret")
        refused(b.ticket(his="NOSUCH", key_of="HIS1"), "unknown HIS")
        refused("garbage", "malformed")
        refused("", "missing")
        b.registry.revoke("HIS2")
        refused(b.ticket(his="HIS2", key_of="HIS1"), "revoked HIS")
        audit = b.rows("SELECT action, allowed, detail FROM cdcsync.wb_audit ORDER BY audit_id")
        assert [a for a in audit if a[0] == "sso_login"] == [("sso_login", True, None)]
        details = [a[2] for a in audit if a[0] == "sso_refused"]
        assert details == ["expired", "not_yet_valid", "replayed", "bad_signature", "bad_signature",
                           "unknown_his", "malformed", "malformed", "unknown_his"]


def test_session_cookie_headers_csrf_and_idle_timeout(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    with running_bench(pg_cluster, tmp_path, "wbsess", session_idle_s=60) as b:
        seed_patient(b.dsn)
        case = open_case(b.dsn)
        assert httpx.get(f"{b.url}/popup", timeout=30).status_code == 401  # no ticket, no session
        r = httpx.get(f"{b.url}/sso", params={"ticket": b.ticket()}, timeout=30)
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert 'http-equiv="refresh"' in r.text and "/popup" in r.text
        client = httpx.Client(base_url=b.url, cookies=r.cookies, timeout=30)
        page = client.get("/popup")
        assert page.status_code == 200 and f'id="case-{case.case_id}"' in page.text
        assert "急性乙型病毒性肝炎" in page.text  # the evidence, read from the mirror
        for path in ("/popup", f"/popup?case={case.case_id}", "/sso?ticket=x", "/static/wb.css",
                     "/static/countdown.js", f"/card?case={case.case_id}", "/nope"):
            h = client.get(path).headers
            assert h["cache-control"] == "no-store", path
            csp = h["content-security-policy"]
            assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
            assert "frame-ancestors 'self'" in csp and "form-action 'self'" in csp
            # only the popup (and the 防保科 list) may run script: our own file, nothing inline
            scripts = re.findall(r"script-src[^;]*", csp)
            assert scripts == (["script-src 'self'"] if path.startswith("/popup") else []), path
        # the one script is the static countdown; the server-rendered text is its no-script fallback
        assert page.text.count("<script") == 1
        assert '<script src="/static/countdown.js" defer></script>' in page.text and "style=" not in page.text
        due = case.due_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert re.search(rf'<strong class="left" data-due="{re.escape(due)}"[^>]*>剩余 \d+ 小时 \d+ 分</strong>',
                         page.text)
        js = client.get("/static/countdown.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "data-due" in js.text and "剩余 " in js.text and "已超时 " in js.text

        form = {"case_id": str(case.case_id), "action": "snooze", "minutes": "30"}
        assert client.post("/popup/action", data=form).status_code == 403  # no CSRF token
        assert client.post("/popup/action", data={**form, "csrf": "wrong"}).status_code == 403
        assert b.rows("SELECT snooze_until FROM cdcsync.surveil_case")[0][0] is None
        r = client.post("/popup/action", data={**form, "csrf": csrf_of(page.text)})
        assert r.status_code == 303
        assert b.rows("SELECT snooze_until FROM cdcsync.surveil_case")[0][0] is not None
        r = client.post("/popup/action", data={**form, "minutes": "600", "csrf": csrf_of(page.text)})
        assert r.status_code == 422  # only the offered (bounded) choices

        with pytest.raises(AssertionError):  # another session's token is not this one's
            other = login(b, b.ticket())
            assert csrf_of(other.get("/popup").text) == csrf_of(page.text)
        # idle timeout: a session unused for longer than session_idle_s is gone
        with __import__("psycopg").connect(b.dsn) as conn:
            conn.execute("UPDATE cdcsync.wb_session SET last_seen_at = now() - interval '61 seconds'")
        assert client.get("/popup").status_code == 401
        # housekeeping forgets sessions that can never be used again (here: idle for two days)
        from cdcsync.workbench.app import Housekeeping

        with __import__("psycopg").connect(b.dsn) as conn:
            conn.execute("UPDATE cdcsync.wb_session SET last_seen_at = now() - interval '2 days'"
                         " WHERE staff_id = 'D001'")
        live = b.rows("SELECT count(*) FROM cdcsync.wb_session")[0][0]
        assert Housekeeping(b.handle.app("web").state.workbench).run_once() == (0, live)
        assert b.rows("SELECT count(*) FROM cdcsync.wb_session") == [(0,)]


def test_a_doctor_cannot_see_another_departments_patients(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    with running_bench(pg_cluster, tmp_path, "wbdept", frame_ancestors=["http://his.example:8080"]) as b:
        seed_patient(b.dsn)
        case = open_case(b.dsn, dept="0301")
        peds = login(b, b.ticket(sub="D900", name="李医生", dept="0401", patient="P1"))
        page = peds.get("/popup")
        assert "frame-ancestors 'self' http://his.example:8080" in page.headers["content-security-policy"]
        assert page.status_code == 200 and f"case-{case.case_id}" not in page.text and "急性乙型" not in page.text
        assert peds.get(f"/popup?case={case.case_id}").status_code == 403
        assert peds.get(f"/card?case={case.case_id}").status_code == 403
        r = peds.post("/popup/action", data={"case_id": str(case.case_id), "action": "exclude", "reason": "其他",
                                             "reason_text": "x", "csrf": csrf_of(page.text)})
        assert r.status_code == 403 and case_status(b.dsn, case.case_id) == "待确认"
        assert peds.get("/ph").status_code == 403  # the 防保科 list is not a doctor's
        ph = login(b, b.ticket(sub="F001", name="王防保", dept="0900", role="public_health", patient="P1"))
        assert f"case-{case.case_id}" in ph.get(f"/popup?case={case.case_id}").text
        listing = ph.get("/ph")
        assert f'data-case="{case.case_id}"' in listing.text
        # the 防保科 list counts down too (its own script-src 'self'), its sub-pages stay script-free
        assert "script-src 'self';" in listing.headers["content-security-policy"]
        assert re.search(r'<span class="left" data-due="[^"]+">剩余 ', listing.text)
        assert "script-src" not in ph.get("/ph/stats").headers["content-security-policy"]
        admin = login(b, b.ticket(sub="A001", name="信息科", dept="0800", role="admin", patient="P1"))
        assert admin.get(f"/popup?case={case.case_id}").status_code == 403
        denied = b.rows("SELECT actor, action FROM cdcsync.wb_audit WHERE NOT allowed ORDER BY audit_id")
        assert ("D900", "view_popup") in denied and ("D900", "view_card_form") in denied
        assert ("A001", "view_popup") in denied


# -- the card ------------------------------------------------------------------------------------


def test_card_checks_are_nndrs_like_and_in_chinese() -> None:
    tables = load_code_tables(strict=False)
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(tzinfo=None)
    base = {k: v for k, v in good_card().items() if not k.startswith("sup_")}
    assert check_card(base, tables, now) == {}
    errs = check_card({**base, "id_no": "110101198001020017"}, tables, now)
    assert errs == {"id_no": "身份证号码校验位错误"}
    errs = check_card({**base, "onset_date": (now + dt.timedelta(days=2)).date().isoformat()}, tables, now)
    assert errs["onset_date"] == "日期不能晚于今天"
    errs = check_card({**base, "onset_date": now.date().isoformat(),
                       "diagnosis_time": (now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")}, tables, now)
    assert errs["onset_date"] == "发病日期不能晚于诊断日期"
    errs = check_card({**base, "diagnosis_status_code": "1"}, tables, now)  # 乙肝 has no 疑似
    assert errs["diagnosis_status_code"].startswith("该病种的病例分类只能是：临床诊断病例、确诊病例")
    errs = check_card({**base, "patient_name": "", "patient_belong_code": "9"}, tables, now)
    assert errs["patient_name"] == "请填写患者姓名" and "不在国家值域中" in errs["patient_belong_code"]
    child = {**base, "id_type_code": "", "id_no": "", "birth_date": (now - dt.timedelta(days=400)).date().isoformat()}
    assert check_card(child, tables, now)["parent_name"] == "14 岁及以下的患者须填写家长姓名"
    assert check_card({**child, "parent_name": "张父"}, tables, now) == {}
    no_birth = {**base, "id_type_code": "", "id_no": "", "birth_date": ""}
    assert check_card(no_birth, tables, now)["birth_date"] == "出生日期不详时须填写年龄"
    assert check_card({**no_birth, "age_value": "8", "age_unit": "月"}, tables, now)["parent_name"]
    assert check_card({**base, "age_value": "30", "age_unit": "岁"}, tables, now)["age_value"].startswith(
        "年龄与出生日期不符")
    assert check_card({**base, "case_type_code": ""}, tables, now) == {"case_type_code": "该病种须填写急性或慢性"}
    assert check_card({**base, "disease_code": "203"}, tables, now)["disease_code"].endswith("请从列表中选择")


def test_card_saved_closes_case_writes_back_and_is_returned_corrected_approved(pg_cluster: LocalCluster,
                                                                              tmp_path: Path) -> None:
    with running_bench(pg_cluster, tmp_path, "wbcard") as b:
        seed_patient(b.dsn)
        case = open_case(b.dsn)
        doc = login(b, b.ticket())
        form_page = doc.get(f"/card?case={case.case_id}")
        assert form_page.status_code == 200
        # prefilled from the mirror, local codes mapped to national ones
        assert 'value="张三"' in form_page.text and 'value="110101198001020016"' in form_page.text
        assert '<option value="1" selected>男性</option>' in form_page.text
        assert '<option value="3" selected>确诊病例</option>' in form_page.text
        assert "乙型肝炎病例附卡" in form_page.text
        csrf = csrf_of(form_page.text)
        bad = {**good_card(id_no="110101198001020017", sup_anti_hbc_igm=""), "case_id": str(case.case_id),
               "csrf": csrf}
        r = doc.post("/card", data=bad)
        assert r.status_code == 422
        assert 'id="error-id_no">身份证号码校验位错误' in r.text
        assert 'id="error-sup_anti_hbc_igm">乙肝附卡：请填写抗-HBc IgM 1:1000 检测结果' in r.text
        assert case_status(b.dsn, case.case_id) == "待确认" and b.rows("SELECT * FROM cdcsync.wb_card") == []
        assert doc.post("/card", data={**good_card(), "case_id": str(case.case_id)}).status_code == 403
        r = doc.post("/card", data={**good_card(), "case_id": str(case.case_id), "csrf": csrf})
        assert r.status_code == 303, r.text
        assert case_status(b.dsn, case.case_id) == "已报卡"
        (row_id, card_id, version, status, sup_kind), = b.rows(
            "SELECT card_row_id, card_id, version, status, supplement_kind FROM cdcsync.wb_card")
        assert (version, status, sup_kind) == (1, "待审核", "hepatitis_b")
        assert b.rows("SELECT card_no FROM cdcsync.surveil_case")[0][0] == card_id
        wb = b.rows("SELECT event, card_id, version, card->'fields'->>'id_no', written_back_at"
                    " FROM writeback.report_card")
        assert wb == [("新报卡", card_id, 1, "110101198001020016", None)]
        # a closed case has no card form any more
        assert doc.get(f"/card?case={case.case_id}").status_code == 409

        ph = login(b, b.ticket(sub="F001", name="王防保", dept="0900", role="public_health", patient=None))
        listing = ph.get("/ph", params={"status": "待审核"})
        assert f'data-card="{card_id}"' in listing.text
        view = ph.get(f"/ph/card/{row_id}")
        assert "乙型肝炎病例附卡·HBsAg 阳性时间" in view.text and "≤6个月" in view.text
        r = ph.post(f"/ph/card/{row_id}/review", data={"decision": "return", "reason": "", "csrf": csrf_of(view.text)})
        assert r.status_code == 303 and "error=" in r.headers["location"]  # a return needs a reason
        r = ph.post(f"/ph/card/{row_id}/review", data={"decision": "return", "reason": "现住址不详，请补充门牌号",
                                                        "csrf": csrf_of(view.text)})
        assert r.status_code == 303
        popup = doc.get("/popup")
        assert "现住址不详，请补充门牌号" in popup.text and f"/card?revise={row_id}" in popup.text
        revise = doc.get(f"/card?revise={row_id}")
        assert 'value="北京市东城区某街1号"' in revise.text
        r = doc.post("/card", data={**good_card(current_addr_detail="北京市东城区某街1号3单元101"),
                                    "revise": str(row_id), "csrf": csrf})
        assert r.status_code == 303, r.text
        versions = b.rows("SELECT version, status FROM cdcsync.wb_card WHERE card_id = %s ORDER BY version", card_id)
        assert versions == [(1, "已订正"), (2, "待审核")]
        assert doc.get(f"/card?revise={row_id}").status_code == 409  # only the latest version is corrected
        (row2,), = b.rows("SELECT card_row_id FROM cdcsync.wb_card WHERE version = 2")
        r = ph.post(f"/ph/card/{row2}/review", data={"decision": "approve", "csrf": csrf_of(view.text)})
        assert r.status_code == 303
        assert "现住址不详" not in doc.get("/popup").text  # nothing returned any more
        events = b.rows("SELECT event, version, card_status, reason FROM writeback.report_card ORDER BY writeback_id")
        assert events == [("新报卡", 1, "待审核", None), ("退回", 1, "已退回", "现住址不详，请补充门牌号"),
                          ("订正", 2, "待审核", None), ("审核通过", 2, "已通过", None)]
        # the audit names actions and ids, never the values typed in
        actions = [a for a, in b.rows("SELECT action FROM cdcsync.wb_audit ORDER BY audit_id")]
        for expected in ("view_card_form", "save_card", "view_list", "view_card", "review_return", "revise_card",
                         "review_approve"):
            assert expected in actions
        dump = json.dumps([list(map(str, r)) for r in b.rows("SELECT * FROM cdcsync.wb_audit")], ensure_ascii=False)
        assert "110101198001020016" not in dump and "张三" not in dump and "门牌号" not in dump
        with pytest.raises(Exception, match="只增不删|不可"):
            b.rows("DELETE FROM cdcsync.wb_card")


def test_exclude_from_the_popup_with_a_reason(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    with running_bench(pg_cluster, tmp_path, "wbexcl") as b:
        seed_patient(b.dsn)
        case = open_case(b.dsn)
        doc = login(b, b.ticket())
        csrf = csrf_of(doc.get("/popup").text)
        form = {"case_id": str(case.case_id), "action": "exclude", "csrf": csrf}
        assert doc.post("/popup/action", data={**form, "reason": "其他"}).status_code == 422
        r = doc.post("/popup/action", data={**form, "reason": "非首诊，已由他院或他科报告", "reason_text": "外院已报"})
        assert r.status_code == 303
        assert b.rows("SELECT status, close_reason FROM cdcsync.surveil_case") == [
            ("已排除", "非首诊，已由他院或他科报告：外院已报")]
        (actor, role), = b.rows("SELECT actor, actor_role FROM cdcsync.surveil_case_history WHERE action = 'exclude'")
        assert (actor, role) == ("D001", "doctor")
        assert "当前没有需要处理的传染病病例" in doc.get("/popup").text


def test_sso_cli_add_list_revoke(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"org_code: 12110000400000000X\nstate_dir: {tmp_path / 'state'}\n", encoding="utf-8")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/work/main/.venv/bin/python", "-m", "cdcsync", "-c", str(cfg), "sso", *args],
                              capture_output=True, text=True, cwd=str(REPO), timeout=60,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})

    out = cli("add-his", "HIS_A")
    assert out.returncode == 0, out.stderr
    key = tmp_path / "state" / "sso" / "HIS_A.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(bytes.fromhex(key.read_text().strip())) == 32
    assert key.read_text().strip() not in out.stdout  # the secret is never printed
    assert cli("add-his", "HIS_A").returncode == 2
    assert cli("add-his", "bad name").returncode == 2
    assert "HIS_A" in cli("list").stdout
    assert cli("revoke", "HIS_A").returncode == 0
    assert HisRegistry(tmp_path / "state" / "sso").secret("HIS_A") is None
    assert "HIS_A" not in cli("list").stdout


def test_the_documented_example_and_reference_signer_verify(tmp_path: Path) -> None:
    from cdcsync.workbench.sso import TicketError, verify_ticket

    doc = (REPO / "docs" / "sso.md").read_text(encoding="utf-8")
    key_hex = re.search(r"key file contains\s+`([0-9a-f]{64})`", doc)
    example = re.search(r"The ticket \(payload `\.` signature\) is:\s+```\s+(\S+)\s+```", doc)
    signer = re.search(r"## Reference signer.*?```python\n(.*?)```", doc, re.S)
    assert key_hex and example and signer
    reg = HisRegistry(tmp_path / "sso")
    reg.add("HIS1")
    reg.path("HIS1").write_text(key_hex.group(1) + "\n")
    at = dt.datetime.fromtimestamp(1764640800, dt.UTC)
    t = verify_ticket(example.group(1), reg, now=at, ttl_s=60, skew_s=30)
    assert (t.his, t.staff_id, t.staff_name, t.dept_code, t.role, t.patient_id) == (
        "HIS1", "D001", "张医生", "0301", "doctor", "P1")
    assert len(signer.group(1).strip().splitlines()) <= 22  # "a 20-line reference signer"
    ns: dict[str, object] = {"__name__": "signer"}
    exec(compile(signer.group(1), "docs/sso.md", "exec"), ns)  # noqa: S102 - our own documentation
    ticket = ns["make_ticket"](key_hex.group(1), "HIS1", "D002", "李医生", "0401", patient="P9")  # type: ignore[operator]
    t = verify_ticket(ticket, reg, now=dt.datetime.now(dt.UTC), ttl_s=60, skew_s=30)
    assert (t.staff_id, t.dept_code, t.patient_id) == ("D002", "0401", "P9")
    with pytest.raises(TicketError, match="已过期"):
        verify_ticket(ticket, reg, now=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=91), ttl_s=60, skew_s=30)


def test_a_saved_card_reaches_both_platforms_through_the_normal_stream(pg_cluster: LocalCluster,
                                                                      tmp_path: Path) -> None:
    from tests.api_helpers import drain
    from tests.cdc_util import read_events

    with running_bench(pg_cluster, tmp_path, "wbstream") as b:
        for dest in ("national", "provincial"):
            drain(b.settings, dest)  # the slots exist before the card is written
        seed_patient(b.dsn)
        case = open_case(b.dsn)
        doc = login(b, b.ticket())
        csrf = csrf_of(doc.get(f"/card?case={case.case_id}").text)
        r = doc.post("/card", data={**good_card(), "case_id": str(case.case_id), "csrf": csrf})
        assert r.status_code == 303, r.text
        (row_id, card_id), = b.rows("SELECT card_row_id, card_id FROM cdcsync.wb_card")
        ph = login(b, b.ticket(sub="F001", name="王防保", dept="0900", role="public_health", patient=None))
        r = ph.post(f"/ph/card/{row_id}/review", data={"decision": "approve", "csrf": csrf})
        assert r.status_code == 403  # the doctor's token is not the 防保科 session's
        view = ph.get(f"/ph/card/{row_id}")
        assert ph.post(f"/ph/card/{row_id}/review", data={"decision": "approve", "csrf": csrf_of(view.text)}
                       ).status_code == 303
        # 删除 is a card state with a reason: the row stays, the platforms get a 撤销 (modify_flag 3)
        assert ph.post(f"/ph/card/{row_id}/review", data={"decision": "delete", "csrf": csrf_of(view.text)}
                       ).status_code == 303  # without a reason: refused (redirect with the error)
        assert b.rows("SELECT status FROM cdcsync.wb_card") == [("已通过",)]
        assert ph.post(f"/ph/card/{row_id}/review", data={"decision": "delete", "reason": "重复报告",
                                                          "csrf": csrf_of(view.text)}).status_code == 303
        assert b.rows("SELECT status, review_reason FROM cdcsync.wb_card") == [("已删除", "重复报告")]
        assert ph.post(f"/ph/card/{row_id}/review", data={"decision": "approve", "csrf": csrf_of(view.text)}
                       ).status_code == 409
        for dest in ("national", "provincial"):
            drain(b.settings, dest)
            events = [e for e in read_events(tmp_path / f"{dest}.jsonl")
                      if e["source"]["table"] == "report_card_frontend"]
            assert [(e["op"], e["after"]["card_id"], e["after"]["review_status"], e["after"]["modify_flag"])
                    for e in events] == [("c", card_id, "待审核", "1"), ("u", card_id, "已通过", "2"),
                                         ("u", card_id, "已删除", "3")], dest
            after = events[0]["after"]
            # national codes pass the pipeline unchanged (no local table for a table cdcsync writes)
            assert (after["sex_code"], after["disease_code"], after["population_group_code"]) == ("1", "20302", "09")
            assert after["supplement"]["anti_hbc_igm"] == "1" and after["card_category_code"] == "1"
        held = b.rows("SELECT count(*) FROM cdcsync.quarantine WHERE table_name = 'report_card_frontend'")
        assert held == [(0,)]


def test_workload_per_department_and_doctor_with_csv_and_audit_page(pg_cluster: LocalCluster,
                                                                   tmp_path: Path) -> None:
    import psycopg

    with running_bench(pg_cluster, tmp_path, "wbstats") as b:
        seed_patient(b.dsn)
        in_time = open_case(b.dsn, "P1")
        late = open_case(b.dsn, "P2", disease="310", disease_name="其它感染性腹泻病")
        excluded = open_case(b.dsn, "P3", doctor="D002", dept="0401")
        overdue = open_case(b.dsn, "P4", doctor="=cmd|x", dept="0401", hours=0.01)
        with psycopg.connect(b.dsn) as conn:
            from cdcsync.surveil.cases import Actor, CaseStore

            store_ = CaseStore(conn)
            store_.close_reported(in_time.case_id, "C1", Actor("D001", "doctor"))
            conn.execute("UPDATE cdcsync.surveil_case SET due_at = now() - interval '1 minute' WHERE case_id = %s",
                         (late.case_id,))
            store_.close_reported(late.case_id, "C2", Actor("D001", "doctor"))
            store_.close_excluded(excluded.case_id, "诊断有误", Actor("D002", "doctor"))
        with psycopg.connect(b.dsn) as conn:  # overdue is judged at request time
            conn.execute("UPDATE cdcsync.surveil_case SET due_at = now() - interval '1 second' WHERE case_id = %s",
                         (overdue.case_id,))
        ph = login(b, b.ticket(sub="F001", name="王防保", dept="0900", role="public_health", patient=None))
        page = ph.get("/ph/stats", params={"period": "month"})
        assert page.status_code == 200
        d001 = re.search(r'data-dept="0301" data-doctor="D001">(.*?)</tr>', page.text, re.S)
        assert d001 and re.findall(r"<td>(\d+)</td>", d001.group(1))[1:] == ["2", "1", "1", "0", "0", "0"]
        assert "50.0%" in d001.group(1)
        csv_resp = ph.get("/ph/stats.csv", params={"period": "day"})
        assert csv_resp.headers["content-type"].startswith("text/csv")
        text = csv_resp.content.decode("utf-8-sig").splitlines()
        assert text[0].startswith("科室,医生工号,医生姓名,应报病例,及时报告,迟报,已排除,超时未报")
        assert "0301,D001,张医生,2,1,1,0,0,0,0,50.0%" in text
        assert "0401,'=cmd|x,张医生,1,0,0,0,1,0,0,0.0%" in text  # no formula injection into Excel
        assert "0401,D002,张医生,1,0,0,1,0,0,0,—" in text
        doctor = login(b, b.ticket())
        assert doctor.get("/ph/stats").status_code == 403 and doctor.get("/ph/audit").status_code == 403
        audit = ph.get("/ph/audit", params={"actor": "F001"})
        assert audit.status_code == 200 and "view_stats" in audit.text and "sso_login" in audit.text


def test_his_callback_posts_write_back_rows_in_order_and_retries_until_taken(pg_cluster: LocalCluster,
                                                                           tmp_path: Path) -> None:
    import base64 as b64

    from cdcsync.crypto.sm3 import hmac_sm3
    from tests.ops_receivers import WebhookReceiver

    hook = WebhookReceiver()
    hook.status = 503  # the HIS is down at first
    try:
        cfg = {"his_callback": {"url": hook.url, "his": "HIS1", "interval_s": 0.2, "max_backoff_s": 1}}
        with running_bench(pg_cluster, tmp_path, "wbhook", **cfg) as b:
            seed_patient(b.dsn)
            case = open_case(b.dsn)
            doc = login(b, b.ticket())
            csrf = csrf_of(doc.get(f"/card?case={case.case_id}").text)
            assert doc.post("/card", data={**good_card(), "case_id": str(case.case_id), "csrf": csrf}
                            ).status_code == 303
            (row_id,), = b.rows("SELECT card_row_id FROM cdcsync.wb_card")
            ph = login(b, b.ticket(sub="F001", name="王防保", dept="0900", role="public_health", patient=None))
            ph.post(f"/ph/card/{row_id}/review", data={"decision": "return", "reason": "请补充",
                                                       "csrf": csrf_of(ph.get(f"/ph/card/{row_id}").text)})

            def pending() -> list[tuple[object, ...]]:
                return b.rows("SELECT writeback_id, callback_attempts, callback_error FROM writeback.report_card"
                              " WHERE written_back_at IS NULL ORDER BY writeback_id")

            wait_for(lambda: pending() and int(pending()[0][1]) >= 2, 30, "two failed callbacks")
            rows = pending()
            assert len(rows) == 2 and int(rows[0][1]) >= 2 and rows[0][2] == "HTTP 503"
            assert int(rows[1][1]) == 0, "a later event never overtakes an earlier one"
            hook.status = 200  # the HIS is back
            wait_for(lambda: pending() == [], 60, "the callbacks to reach the HIS")
            assert pending() == []
            taken = [(h, body) for h, body in hook.received if body]
            events = [json.loads(body)["event"] for _, body in taken]
            assert events[-2:] == ["新报卡", "退回"] and set(events) == {"新报卡", "退回"}
            headers, body = taken[-1]
            key = b.secret("HIS1")
            ts = headers["X-Cdcsync-Timestamp"]
            expected = b64.urlsafe_b64encode(hmac_sm3(key, ts.encode(), b".", body)).rstrip(b"=").decode()
            assert headers["X-Cdcsync-Signature"] == expected and headers["X-Cdcsync-His"] == "HIS1"
            assert json.loads(body)["reason"] == "请补充"
            assert b.rows("SELECT his_note FROM writeback.report_card") == [("回调接口已接收",), ("回调接口已接收",)]
    finally:
        hook.close()


def test_admin_view_revokes_clients_and_the_quarantine_is_listed_masked_and_retried(pg_cluster: LocalCluster,
                                                                                   tmp_path: Path) -> None:
    from urllib.parse import unquote_plus

    import psycopg

    from cdcsync.api.auth import create_key
    from tests.api_helpers import drain, patient

    with running_bench(pg_cluster, tmp_path, "wbadmin") as b:
        with psycopg.connect(b.dsn) as conn:
            create_key(conn, "lis", "检验系统")
        drain(b.settings, "national")
        bad = patient("QBAD", sex_code="ZZ")  # a local sex code with no mapping: quarantined
        with psycopg.connect(b.dsn) as conn:
            conn.execute(f"INSERT INTO emr.patient ({', '.join(bad)}) VALUES ({', '.join(['%s'] * len(bad))})",
                         list(bad.values()))
        drain(b.settings, "national")
        assert b.rows("SELECT count(*) FROM cdcsync.quarantine WHERE status = 'held'") == [(1,)]

        admin = login(b, b.ticket(sub="A001", name="信息科", dept="0800", role="admin", patient=None))
        home = admin.get("/admin")
        assert home.status_code == 200 and 'data-his="HIS2"' in home.text and 'data-key="lis"' in home.text
        csrf = csrf_of(home.text)
        assert admin.post("/admin/revoke", data={"kind": "api_key", "name": "lis"}).status_code == 403
        assert admin.post("/admin/revoke", data={"kind": "api_key", "name": "lis", "csrf": csrf}).status_code == 303
        assert b.rows("SELECT revoked_at IS NOT NULL FROM cdcsync.api_key WHERE name = 'lis'") == [(True,)]
        assert admin.post("/admin/revoke", data={"kind": "sso", "name": "HIS2", "csrf": csrf}).status_code == 303
        assert b.registry.secret("HIS2") is None
        assert httpx.get(f"{b.url}/sso", params={"ticket": b.ticket(his="HIS2", key_of="HIS1")}).status_code == 403

        q = admin.get("/admin/quarantine", params={"table": "patient"})
        assert q.status_code == 200 and "QBAD" in q.text and "没有对照的国家代码" in q.text
        assert "张三" not in q.text and "110101198001020016" not in q.text  # pii masked
        with psycopg.connect(b.dsn) as conn:  # the HIS fixes its data
            conn.execute("UPDATE emr.patient SET sex_code = 'M' WHERE patient_id = 'QBAD'")
        r = admin.post("/admin/quarantine/retry", data={"table": "patient", "csrf": csrf})
        assert r.status_code == 303 and "已重发 1 条" in unquote_plus(r.headers["location"])
        assert b.rows("SELECT count(*) FROM cdcsync.quarantine WHERE status = 'held'") == [(0,)]
        doctor = login(b, b.ticket())
        assert doctor.get("/admin").status_code == 403 and doctor.get("/admin/quarantine").status_code == 403
        ph = login(b, b.ticket(sub="F001", name="王防保", dept="0900", role="public_health", patient=None))
        assert ph.get("/admin/quarantine").status_code == 200 and ph.get("/admin").status_code == 403
        actions = {a for a, in b.rows("SELECT action FROM cdcsync.wb_audit WHERE actor = 'A001'")}
        assert {"view_admin", "revoke_api_key", "revoke_sso", "view_quarantine", "quarantine_retry"} <= actions


def test_the_his_own_cards_appear_in_the_public_health_list(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    import psycopg

    with running_bench(pg_cluster, tmp_path, "wbhiscard") as b:
        now = dt.datetime.now().replace(microsecond=0)
        with psycopg.connect(b.dsn) as conn:
            conn.execute(
                "INSERT INTO emr.report_card (org_code, card_id, card_no, card_category_code, patient_id, patient_name,"
                " sex_code, patient_belong_code, current_addr_region_code, population_group_code, disease_code,"
                " diagnosis_status_code, onset_date, diagnosis_time, report_dept_code, report_doctor_id,"
                " report_doctor, report_time, modify_flag, collect_time, update_time) VALUES (%s, 'HC1', 'N001',"
                " '1', 'P7', '赵六', 'M', '1', '110101', '09', %s, 'QZ', %s, %s, '0301', 'D001', '张医生', %s, 'I',"
                " %s, %s)", (b.settings.org_code, HIS_HEPATITIS_B, now.date(), now, now, now, now))
        ph = login(b, b.ticket(sub="F001", name="王防保", dept="0900", role="public_health", patient=None))
        page = ph.get("/ph", params={"dept": "0301"}).text
        row = re.search(r'data-his-card="HC1">(.*?)</tr>', page, re.S)
        assert row and "乙型肝炎" in row.group(1) and "张医生" in row.group(1) and "赵六" not in page
        assert 'data-his-card="HC1"' not in ph.get("/ph", params={"dept": "0401"}).text
        assert 'data-his-card="HC1"' not in ph.get("/ph", params={"disease": "310"}).text


def test_audit_is_append_only_except_the_retention_purge(migrated_db: str) -> None:
    import psycopg

    from cdcsync.workbench import store

    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for days in (400, 200, 10):
            conn.execute("INSERT INTO cdcsync.wb_audit (at, actor, role, action) VALUES"
                         " (now() - make_interval(days => %s), 'D001', 'doctor', 'view_popup')", (days,))
        for statement in ("UPDATE cdcsync.wb_audit SET actor = 'x'", "DELETE FROM cdcsync.wb_audit",
                          "TRUNCATE cdcsync.wb_audit"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():  # not younger than 180 days
            conn.execute("SET LOCAL cdcsync.audit_purge = 'on'")
            conn.execute("DELETE FROM cdcsync.wb_audit WHERE at > now() - interval '20 days'")
        assert store.purge_audit(conn, 365) == 1
        assert store.purge_audit(conn, 30) == 1  # a retention below 180 days is raised to 180
        left = conn.execute("SELECT (now() - at) < interval '20 days' FROM cdcsync.wb_audit").fetchall()
        assert left == [(True,)]


def test_sm2_signed_tickets(tmp_path: Path) -> None:
    from cdcsync.crypto.keys import public_key_pem
    from cdcsync.crypto.sm2 import SM2PrivateKey
    from cdcsync.workbench.sso import TicketError, b64url, verify_ticket

    his_key, other = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    pem = tmp_path / "his.pem"
    pem.write_bytes(public_key_pem(his_key.public_key))
    reg = HisRegistry(tmp_path / "sso")
    reg.add_sm2("HISSM2", pem)
    reg.add("HISHMAC")
    now = dt.datetime.now(dt.UTC)

    def ticket(signer: SM2PrivateKey, his: str = "HISSM2", **over: object) -> str:
        claims = {"v": 1, "his": his, "alg": "SM2-SM3", "sub": "D001", "name": "张医生", "dept": "0301",
                  "role": "doctor", "iat": int(now.timestamp()), "nonce": "n" * 16, **over}
        payload = b64url(json.dumps(claims, ensure_ascii=False).encode())
        return f"{payload}.{b64url(signer.sign(payload.encode('ascii')))}"

    t = verify_ticket(ticket(his_key), reg, now=now, ttl_s=60, skew_s=30)
    assert (t.his, t.staff_id) == ("HISSM2", "D001")
    for bad, code in ((ticket(other), "bad_signature"), (ticket(his_key, his="HISHMAC"), "unknown_his"),
                      (ticket(his_key, alg="RSA"), "bad_alg")):
        with pytest.raises(TicketError) as err:
            verify_ticket(bad, reg, now=now, ttl_s=60, skew_s=30)
        assert err.value.code == code
    assert [n for n, _ in reg.names()] == ["HISHMAC", "HISSM2"]
    reg.revoke("HISSM2")
    with pytest.raises(TicketError, match="未登记 SM2 公钥或已吊销"):
        verify_ticket(ticket(his_key), reg, now=now, ttl_s=60, skew_s=30)
    with pytest.raises(ValueError, match="不是有效的 SM2 公钥"):
        reg.add_sm2("HISX", tmp_path / "sso" / "HISHMAC.key")


def test_a_workbench_card_keeps_the_rules_from_opening_the_case_again(migrated_db: str) -> None:
    """The rules engine counts the workbench's cards (emr.report_card_frontend) like the HIS's own:
    a diagnosis after the card opens no new case; a revoked (删除) card does not count."""
    from tests.surveil_rows import ORG as RULES_ORG
    from tests.surveil_rows import T0, Mirror

    def frontend_card(m: Mirror, card_id: str, patient: str, disease: str, flag: str = "1") -> None:
        m.insert("report_card_frontend", {
            "org_code": RULES_ORG, "card_id": card_id, "card_version": 1, "card_category_code": "1",
            "review_status": "待审核", "visit_id": "V1", "patient_id": patient, "patient_name": "张三", "sex_code": "1",
            "birth_date": dt.date(1980, 1, 2), "patient_belong_code": "1", "current_addr_region_code": "110101",
            "population_group_code": "09", "disease_code": disease, "diagnosis_status_code": "3",
            "onset_date": dt.date(2026, 11, 18), "diagnosis_time": T0, "report_doctor_id": "D001",
            "report_doctor": "张医生", "report_time": T0, "modify_flag": flag, "collect_time": T0, "update_time": T0})

    m = Mirror(migrated_db)
    m.visit("V1", "P1")
    frontend_card(m, "WB1", "P1", "227")
    m.diagnosis("V1", "P1", "U07.1")
    m.run()
    assert m.cases() == []
    m.visit("V2", "P2")
    frontend_card(m, "WB2", "P2", "227", flag="3")  # deleted by the 防保科: not a report
    m.diagnosis("V2", "P2", "U07.1")
    m.run()
    assert [c.patient_id for c in m.cases()] == ["P2"]
