"""The workbench in a real browser: Debian's Chromium driven by Playwright (nothing downloaded: the
system browser is launched by path; `playwright install` is never run). SSO → popup → a card with a
mistake → the error next to the field → fixed → saved → the case closes, the card and its write-back
row exist → the 防保科 returns it → the doctor sees the return, corrects → the 防保科 approves.

Screenshots of the popup and the card form are kept under $CDCSYNC_TEST_ARTIFACTS (or the test's
tmp dir); the path is printed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from cdcsync.db.cluster import LocalCluster
from tests.wb_helpers import case_status, open_case, running_bench, seed_patient

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed")


def _artifacts(tmp_path: Path) -> Path:
    root = Path(os.environ.get("CDCSYNC_TEST_ARTIFACTS") or tmp_path / "artifacts") / "workbench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_sso_popup_card_review_return_correct_in_chromium(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    shots = _artifacts(tmp_path)
    with running_bench(pg_cluster, tmp_path, "wbbrowser") as b:
        seed_patient(b.dsn)
        # due 2 h + 10 s from now: the countdown turns the server's "剩余 2 小时 0 分" into
        # "剩余 1 小时 59 分" within seconds (in time for the card, so the timeliness stays 100%)
        case = open_case(b.dsn, hours=2 + 10 / 3600)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
            try:
                _walk(b, case.case_id, browser, shots)
            finally:
                browser.close()
    print(f"workbench screenshots: {shots}")


def _csp_watch(page: Any) -> list[str]:
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda err: violations.append(f"script error: {err}"))  # the countdown must not fail
    return violations


def _walk(b: Any, case_id: int, browser: Any, shots: Path) -> None:
    doctor = browser.new_context(viewport={"width": 800, "height": 600}, locale="zh-CN")
    page = doctor.new_page()
    violations = _csp_watch(page)
    # SSO: the ticket page moves on to the popup by itself (meta refresh; the only script in the
    # workbench is the popup's countdown file)
    page.goto(f"{b.url}/sso?ticket={b.ticket()}")
    page.wait_for_url("**/popup")
    section = page.locator(f"#case-{case_id}")
    assert section.is_visible()
    assert "乙型肝炎" in section.inner_text() and "急性乙型病毒性肝炎" in section.inner_text()
    left = section.locator(".left")
    assert left.get_attribute("data-due")
    first = left.inner_text()
    assert first.startswith("剩余 ")
    # the due time counts down in the page (static/countdown.js): wait until the text changes
    # (at most one minute boundary away), no fixed sleep
    page.wait_for_function(
        "([sel, before]) => { const e = document.querySelector(sel); return e && e.textContent !== before; }",
        arg=[f"#case-{case_id} .left", first], timeout=75_000)
    now_text = left.inner_text()
    assert now_text != first and re.fullmatch(r"剩余 (\d+ 小时 )?\d+ 分", now_text), now_text
    # fits an 800×600 window: nothing wider than the viewport
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    page.screenshot(path=str(shots / "popup.png"), full_page=True)

    # keyboard: the first action of the case is reachable with Tab and opens the card with Enter
    page.locator(f"#case-{case_id} a.primary").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/card?case={case_id}")
    assert page.input_value("#patient_name") == "张三"  # prefilled from the mirror
    page.select_option("#patient_belong_code", "1")
    page.fill("#current_addr_region_code", "110101")
    page.select_option("#population_group_code", "09")
    page.select_option("#case_type_code", "1")
    page.select_option("#sup_hbsag_positive_since", "2")
    page.select_option("#sup_anti_hbc_igm", "1")
    page.fill("#id_no", "110101198001020017")  # the mistake: wrong check digit
    page.click("#save-card")
    page.wait_for_selector("#error-id_no")
    assert page.inner_text("#error-id_no") == "身份证号码校验位错误"
    assert page.locator("#field-id_no").get_attribute("class") == "field invalid"
    page.screenshot(path=str(shots / "card_form_error.png"), full_page=True)
    assert case_status(b.dsn, case_id) == "待确认"

    page.fill("#id_no", "110101198001020016")
    page.press("#id_no", "Enter")  # submit from the keyboard
    page.wait_for_url("**/popup?notice=*")
    assert "已保存，等待防保科审核" in page.inner_text("#notice")
    assert page.locator(f"#case-{case_id}").count() == 0
    assert case_status(b.dsn, case_id) == "已报卡"
    (row_id, card_id), = b.rows("SELECT card_row_id, card_id FROM cdcsync.wb_card")
    assert b.rows("SELECT event, card_id FROM writeback.report_card") == [("新报卡", card_id)]

    # the 防保科 reviews in its own browser session and returns the card
    ph = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    ph_page = ph.new_page()
    ph_violations = _csp_watch(ph_page)
    ph_ticket = b.ticket(sub="F001", name="王防保", dept="0900", role="public_health", patient=None)
    ph_page.goto(f"{b.url}/sso?ticket={ph_ticket}")
    ph_page.wait_for_url("**/ph")
    ph_page.click(f'tr[data-card="{card_id}"] a')
    ph_page.wait_for_url(f"**/ph/card/{row_id}")
    ph_page.fill("#reason", "现住址不详，请补充门牌号")
    ph_page.click("button[value=return]")
    ph_page.wait_for_selector("#card-status")
    assert ph_page.inner_text("#card-status") == "已退回"

    # the doctor sees the return in the popup and corrects the card
    page.goto(f"{b.url}/popup")
    returned = page.locator(f"#returned-{row_id}")
    assert "现住址不详，请补充门牌号" in returned.inner_text()
    page.screenshot(path=str(shots / "popup_returned.png"), full_page=True)
    returned.locator("a").click()
    page.wait_for_url(f"**/card?revise={row_id}")
    page.fill("#current_addr_detail", "北京市东城区某街1号3单元101")
    page.screenshot(path=str(shots / "card_form_revise.png"), full_page=True)
    page.click("#save-card")
    page.wait_for_url("**/popup?notice=*")
    assert "第 2 版" in page.inner_text("#notice")

    (row2,), = b.rows("SELECT card_row_id FROM cdcsync.wb_card WHERE version = 2")
    ph_page.goto(f"{b.url}/ph/card/{row2}")
    ph_page.click("button[value=approve]")
    ph_page.wait_for_selector("#card-status")
    assert ph_page.inner_text("#card-status") == "已通过"
    assert b.rows("SELECT event, version FROM writeback.report_card ORDER BY writeback_id") == [
        ("新报卡", 1), ("退回", 1), ("订正", 2), ("审核通过", 2)]
    ph_page.goto(f"{b.url}/ph")
    assert ph_page.locator(f'tr[data-card="{card_id}"][data-version="2"] .status').inner_text() == "已通过"
    ph_page.screenshot(path=str(shots / "ph_list.png"), full_page=True)
    ph_page.goto(f"{b.url}/ph/stats?period=month")
    assert ph_page.locator('tr[data-dept="0301"][data-doctor="D001"] .rate').inner_text() == "100.0%"
    ph_page.screenshot(path=str(shots / "ph_stats.png"), full_page=True)

    # a case due in a few seconds: the countdown passes zero by itself, says 已超时 and marks the box
    late = open_case(b.dsn, disease="20301", disease_name="甲型肝炎", diag_id="DG2", hours=4 / 3600)
    page.goto(f"{b.url}/popup?case={late.case_id}")
    page.wait_for_selector(f"#case-{late.case_id}.overdue .left", timeout=30_000)
    assert page.inner_text(f"#case-{late.case_id} .left") == "已超时 0 分"
    assert violations == [] and ph_violations == [], "no page may break its own Content-Security-Policy"
    for name in ("popup.png", "card_form_error.png", "popup_returned.png", "card_form_revise.png", "ph_list.png",
                 "ph_stats.png"):
        assert (shots / name).stat().st_size > 5000
