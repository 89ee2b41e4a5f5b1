"""The randomisation pages in real headless Chromium (Debian package, Playwright): an investigator logs in,
randomises a participant (English), an ineligible one is blocked with its reason (Chinese); a monitor is
refused the randomisation page and sees the arm only as a code. No external request, no CSP violation.

Chromium: ``apt-get update && apt-get install -y chromium`` (``make browser``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from randomization_support import PASSWORD, Server, running_server, setup_trial, write_list

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, object, Path, Path, list, list]]:
    if not CHROMIUM.exists():
        msg = "headless Chromium missing: install it with `apt-get update && apt-get install -y chromium`"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("browser")
    db = tmp / "b.db"
    list_path = write_list(tmp, per_stratum=8)
    with running_server(str(db)) as server, sync_playwright() as pw:
        setup_trial(str(db), server.url, list_path)
        chrome = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = chrome.new_context(viewport={"width": 1000, "height": 900}, locale="en-GB")
        page = context.new_page()
        problems: list[str] = []
        foreign: list[str] = []
        # console errors other than the intended refusals (4xx pages) count as problems
        page.on(
            "console",
            lambda m: problems.append(m.text) if m.type == "error" and "status of 4" not in m.text else None,
        )
        page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(server.url) else None)
        try:
            yield server, page, db, list_path, problems, foreign
        finally:
            context.close()
            chrome.close()


def login(page: object, url: str, user: str) -> None:
    page.goto(url + "/login?lang=en")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#whoami")


def test_investigator_logs_in_and_randomises(browser: tuple) -> None:
    server, page, _db, list_path, problems, foreign = browser
    login(page, server.url, "inv-C3-0")
    assert "inv-C3-0" in page.inner_text("#whoami") and "site investigator" in page.inner_text("#whoami")
    page.click("#nav-randomize")
    page.fill("#in-screening_id", "S03001")
    page.select_option("#in-sex", "M")
    page.fill("#in-age", "71")
    page.fill("#in-lbp_duration_months", "8")
    page.fill("#in-odi", "42")
    page.select_option("#in-goutallier_grade", "3")
    page.check("#in-consent")
    page.click("#randomize-submit")
    page.wait_for_selector("#participant-id")
    first = pd.read_csv(list_path).query("stratum == 'C3-M' and sequence_in_stratum == 1")["arm"].item()
    assert page.inner_text("#participant-id") == "P0001"
    assert page.inner_text("#arm") == {"exercise": "exercise + NSAIDs", "control": "NSAIDs (control)"}[first]
    # in Chinese: an ineligible participant is blocked and the failed criteria are listed
    page.goto(server.url + "/randomize?lang=zh")
    page.fill("#in-screening_id", "S03002")
    page.fill("#in-age", "58")
    page.fill("#in-lbp_duration_months", "2")
    page.fill("#in-odi", "42")
    page.select_option("#in-goutallier_grade", "3")
    page.check("#in-consent")
    page.click("#randomize-submit")
    page.wait_for_selector("#refusal")
    assert page.get_attribute("#refusal", "data-code") == "ineligible"
    assert page.inner_text("#failed").splitlines() == ["年龄 ≥ 60 岁", "腰痛持续超过 3 个月"]
    assert "本次拒绝已记录在稽查日志中" in page.inner_text("main")
    page.goto(server.url + "/participants?lang=en")
    assert "P0001" in page.inner_text("#participants")
    page.click("#logout")
    page.wait_for_selector("#login-form")
    assert problems == [] and foreign == []


def test_monitor_refused_randomising_and_sees_codes(browser: tuple) -> None:
    server, page, db, _, problems, foreign = browser
    login(page, server.url, "monitor")
    page.goto(server.url + "/randomize")
    assert page.get_attribute("#refusal", "data-code") == "forbidden_role"
    assert page.inner_text("#refusal") == "Your role may not do this."
    con = sqlite3.connect(db)
    last = con.execute("SELECT actor, action, outcome FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    con.close()
    assert last == ("monitor", "randomize_form", "refused")
    page.goto(server.url + "/participants")
    assert page.inner_text("#participants td.arm") in ("A", "B")
    page.goto(server.url + "/")
    assert set(page.locator("#arms td.arm").all_inner_texts()) <= {"A", "B"}
    # emergency unblinding of that one participant, with a reason: the arm appears, the act is logged
    page.goto(server.url + "/participants/P0001")
    page.fill("#reason", "SAE: suspected GI bleeding, treating physician asks")
    page.click("#unblind-submit")
    page.wait_for_selector("#arm")
    assert page.inner_text("#arm") in ("exercise + NSAIDs", "NSAIDs (control)")
    con = sqlite3.connect(db)
    last = con.execute(
        "SELECT actor, action, target, outcome FROM audit_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    con.close()
    assert last == ("monitor", "unblind", "P0001", "ok")
    assert problems == [] and foreign == []
