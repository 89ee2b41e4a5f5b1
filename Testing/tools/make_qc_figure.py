"""Regenerate ``docs/figures/qc_contact_sheet.png``: the QC contact sheet of the test cohort in headless Chromium.

Renders the small phantom cohort with planted QC problems (``ParaspinalSeg/Testing/cohort_fixtures.py``:
asymmetry, a fatty multifidus, a muscle cut by the field of view, a missing image), runs
``paraspinal-seg batch`` on it and screenshots the top of ``qc.html`` at 1400 x 1000 pixels. The cohort is
built in a folder with a readable name (default ``<temp>/paraspinal-cohort``), because the failed case's
message shows its path::

    .venv/bin/python Testing/tools/make_qc_figure.py [--work /tmp/paraspinal-cohort] [--out docs/figures/...]

Needs ``/usr/bin/chromium`` (``make browser``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "ParaspinalSeg"), str(REPO / "ParaspinalSeg" / "Testing")]
from cohort_fixtures import make_cohort  # noqa: E402

from ParaspinalSegLib.batch import run_batch  # noqa: E402

FIGURE = REPO / "docs" / "figures" / "qc_contact_sheet.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
MARKER = ".qc-figure-work"  # a work folder this tool made (and may empty again)


def prepare(work: Path) -> Path:
    """An empty work folder: a new one, or one this tool made before (emptied); anything else is refused."""
    if work.exists():
        if not (work / MARKER).is_file():
            raise SystemExit(f"{work} exists and was not made by this tool: choose another --work folder")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / MARKER).write_text("made by Testing/tools/make_qc_figure.py\n", encoding="utf-8")
    return work


def screenshot(page_path: Path, out: Path, width: int = 1400, height: int = 1000) -> Path:
    """Open ``page_path`` in headless Chromium and save the visible top of the page as PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Build the cohort, run the batch, write the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "paraspinal-cohort",
                        help="folder for the cohort and its batch run (its path shows in the figure)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=FIGURE, help="PNG to write")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        parser.error(f"{CHROMIUM} missing: install it with `make browser` (apt-get install chromium)")
    work = prepare(args.work)
    result = run_batch(make_cohort(work), work / "batch", show_progress=False)
    print(f"batch: {result.n_cases} cases, {result.n_failed} failed")
    print(f"wrote {screenshot(result.qc_page, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
