"""The QC contact sheet in real headless Chromium (Debian package, Playwright): flagged cases come
first, every thumbnail loads, flagged values are highlighted, the screenshot is not blank, and a
reviewer's choices downloaded from the page are a decisions file the next batch run respects
(the accepted case moves to the Accepted section). The documentation's screenshot of the page is made by
``Testing/tools/make_qc_figure.py``, not by this test.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_fixtures import FLAGGED
from PIL import Image

from ParaspinalSegLib.batch import run_batch
from ParaspinalSegLib.decisions import read_decisions

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        msg = "headless Chromium missing: install it with `apt-get update && apt-get install -y chromium`"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _sections(page) -> list[tuple[str, str]]:
    found = page.eval_on_selector_all("section.case", "els => els.map(e => [e.dataset.case, e.className])")
    return [tuple(x) for x in found]


def test_contact_sheet_review_and_decisions(browser, batch: Path, cohort: Path, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((batch / "qc.html").as_uri())
    page.wait_for_load_state("load")
    sections = _sections(page)
    assert sections[0] == ("C7", "case flagged")  # the failed case first
    assert {c for c, _ in sections[:4]} == set(FLAGGED) and all(k == "case flagged" for _, k in sections[:4])
    assert sections[4:] == [("C1", "case clean"), ("C2", "case clean"), ("C3", "case clean")]
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
    assert len(images) == 12 and all(done and width == 320 for done, width in images)  # 6 cases x L4, L5
    warn = page.eval_on_selector_all(
        "#case-C4 td.warn", "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    assert len(warn) == 16 and set(warn) == {"rgb(255, 205, 210)"}  # 4 muscles x 2 sides x 2 levels
    # C5: FF of the left multifidus at L4 and L5 (2nd value column, the planted fatty muscle); its CSA cells
    # are highlighted for whatever asymmetry flags the batch recorded (they depend on how much of the fatty
    # muscle the segmenter keeps): both sides' cells per flagged muscle x level
    assert page.locator("#case-C5 tr td:nth-of-type(2).warn").count() == 2
    flags = pd.read_csv(batch / "qc_flags.csv", keep_default_na=False)
    n_asym = int(((flags["case_id"] == "C5") & (flags["kind"] == "asymmetry")).sum())
    assert page.locator("#case-C5 tr td:nth-of-type(1).warn").count() == 2 * n_asym

    shot = tmp_path / "qc.png"
    page.screenshot(path=str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.std() > 30  # text, thumbnails and highlights, not a blank page
    reddish = (pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert reddish.sum() > 500  # the flag messages are drawn in red

    page.check("input[name='d-C4'][value='accept']")
    page.fill("#case-C4 input.note", "true asymmetry, seen on the images")
    page.check("input[name='d-C6'][value='redo']")
    page.click("#download")
    assert page.inner_text("#message") == "Enter the reviewer name first."
    page.fill("#reviewer", "Dr Reviewer")
    with page.expect_download() as download:
        page.click("#download")
    saved = batch / "qc_decisions.csv"
    download.value.save_as(saved)
    decisions = read_decisions(saved)
    assert set(decisions) == {"C4", "C6"}
    assert (decisions["C4"]["decision"], decisions["C4"]["reviewer"]) == ("accept", "Dr Reviewer")
    assert decisions["C4"]["note"] == "true asymmetry, seen on the images"
    assert decisions["C6"]["decision"] == "redo"
    assert abs(decisions["C4"]["timestamp"] - datetime.now(UTC)) < timedelta(minutes=5)

    result = run_batch(cohort, batch, show_progress=False)
    runs = result.status.set_index("case_id")["run"]
    assert runs["C4"] == "accepted" and runs["C6"] == "redo requested" and result.n_run == 1
    page.goto((batch / "qc.html").as_uri())
    sections = _sections(page)
    assert sections[-1] == ("C4", "case accepted")
    assert page.inner_text("#case-C4 .badge.accept").startswith("accept · Dr Reviewer")
    assert errors == []
    context.close()
