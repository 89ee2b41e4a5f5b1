"""The calculator in real headless Chromium (Debian package, driven by Playwright's sync API):
on a bundle made by the model pipeline (``export.train``): fill the form, submit, read the risk; switch language; an invalid value shows its message; no
external request and no CSP violation; the result page screenshot goes to docs/figures/calculator.png
(written when missing or with ``LBP_UPDATE_FIGURES=1``).

Chromium: ``apt-get update && apt-get install -y chromium`` (provides /usr/bin/chromium).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_webapp_support import Server, running_server, trained_bundle

from LBPRiskModelLib.bundle import load_bundle

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "figures" / "calculator.png"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VALUES = {"age": "70", "odi_baseline": "40", "bmi": "26.5", "mean_ff_pct": "20"}

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser_page() -> Iterator[tuple[Server, object, list[str], list[str]]]:
    if not CHROMIUM.exists():
        msg = "headless Chromium missing: install it with `apt-get update && apt-get install -y chromium`"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with running_server(trained_bundle()) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 900, "height": 900}, locale="en-GB")
        page = context.new_page()
        problems: list[str] = []
        foreign: list[str] = []
        # Console errors (CSP violations, failed loads) — except the intended 422 of a form with errors.
        page.on(
            "console",
            lambda m: problems.append(m.text) if m.type == "error" and "422" not in m.text else None,
        )
        page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(server.url) else None)
        try:
            yield server, page, problems, foreign
        finally:
            context.close()
            browser.close()


def fill(page: object, values: dict[str, str], sex: str = "M") -> None:
    for name, value in values.items():
        page.fill(f"#in-{name}", value)
    page.select_option("#in-sex", sex)


def update_figure() -> bool:
    """Whether to write docs/figures/calculator.png (missing, or LBP_UPDATE_FIGURES=1)."""
    return not SCREENSHOT.exists() or os.environ.get("LBP_UPDATE_FIGURES", "") == "1"


def test_fill_submit_read_risk_and_screenshot(browser_page: tuple, tmp_path: Path) -> None:
    server, page, problems, foreign = browser_page
    page.goto(server.url + "/?lang=en")
    assert page.locator("h1").inner_text() == "Patient values"
    fill(page, VALUES)
    page.click("#submit")
    page.wait_for_selector("#risk-value")
    ref = load_bundle(trained_bundle()).predict_one({**{k: float(v) for k, v in VALUES.items()}, "sex": "M"})
    assert page.inner_text("#risk-value") == f"{100 * ref.risk:.1f} %"
    assert page.inner_text("#risk-group").lower() == ref.risk_group
    assert page.locator("svg.contrib rect").count() == 5
    assert page.inner_text("#bundle-hash") == ref.bundle_hash
    assert page.inner_text("#intended-use").startswith("Estimate, at baseline")
    # The README figure is (re)written when missing or with LBP_UPDATE_FIGURES=1, so that a plain
    # test run does not dirty the working tree (the bundle hash on the page changes every run).
    target = SCREENSHOT if update_figure() else tmp_path / "calculator.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 20_000
    assert problems == [] and foreign == []  # no CSP violation, nothing loaded from elsewhere


def test_switch_language_keeps_result(browser_page: tuple) -> None:
    server, page, problems, foreign = browser_page
    page.goto(server.url + "/?lang=en")
    fill(page, VALUES)
    page.click("#submit")
    risk_en = page.inner_text("#risk-value")
    page.click("#lang-switch")
    page.wait_for_selector("html[lang='zh-CN']")
    assert page.inner_text("#risk-value") == risk_en
    assert "预测风险" in page.inner_text("main") and "免责声明" in page.inner_text("main")
    page.goto(server.url + "/")  # the language is remembered (cookie)
    assert page.inner_text("#submit") == "计算风险"
    page.click("#lang-switch")
    assert page.inner_text("#submit") == "Calculate risk"
    assert problems == [] and foreign == []


def test_invalid_value_shows_message(browser_page: tuple) -> None:
    server, page, problems, foreign = browser_page
    page.goto(server.url + "/?lang=en")
    fill(page, {**VALUES, "odi_baseline": "150", "age": "seventy"})
    page.click("#submit")
    page.wait_for_selector("#err-odi_baseline")
    assert page.inner_text("#err-odi_baseline") == "Not a valid value: must be between 0 and 100."
    assert page.inner_text("#err-age") == "Enter a number (for example 42 or 3.5)."
    assert page.input_value("#in-odi_baseline") == "150"
    assert page.locator("#risk-value").count() == 0
    page.click("#lang-switch")  # the messages follow the language
    page.wait_for_selector("html[lang='zh-CN']")
    assert page.inner_text("#err-odi_baseline") == "数值无效：必须在 0 至 100 之间。"
    assert re.search(r"Oswestry功能障碍指数", page.inner_text("main"))
    page.goto(server.url + "/?lang=en")
    assert problems == [] and foreign == []


def test_phone_layout_print_and_model_card(browser_page: tuple) -> None:
    """At phone width nothing overflows sideways; print hides the controls; the model card opens."""
    server, page, problems, foreign = browser_page
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        page.goto(server.url + "/?lang=en")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        fill(page, VALUES)
        page.click("#submit")
        page.wait_for_selector("#risk-value")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.emulate_media(media="print")
        assert not page.is_visible("#lang-switch") and page.is_visible("#risk-value")
        page.emulate_media(media="screen")
        page.click("main >> text=Model card")
        page.wait_for_selector("article h2")
        assert "logistic_regression" in page.inner_text("article")
    finally:
        page.set_viewport_size({"width": 900, "height": 900})
    assert problems == [] and foreign == []
