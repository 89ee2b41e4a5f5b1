"""ParaspinalSeg's cohort run and agreement report in the background (``batchInBackground``,
``agreementInBackground``) with real subprocesses, as the Widget's *Run cohort* / *Agreement report*
start them: progress is monotone and reaches its total, the results equal the synchronous library run,
``loadJobResults`` makes the table node, a cancelled run leaves only complete cases and the next run
finishes them, and bad input fails with the CLI's one-line error."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from ParaspinalLBPSlicer import jobs

pytestmark = pytest.mark.slicer

POLL = 0.05
RUN_TIMEOUT = 300.0


def follow(job: jobs.Job, until=None, timeout: float = RUN_TIMEOUT) -> list[tuple[int, int, str]]:
    """Poll like the Widget's timer; each distinct (done, total, stage) seen. Stops early at ``until(job)``."""
    seen: list[tuple[int, int, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        update = job.poll()
        state = (update.done, update.total, update.stage)
        if update.total and (not seen or seen[-1] != state):
            seen.append(state)
        if update.status != jobs.RUNNING or (until is not None and until(job)):
            return seen
        time.sleep(POLL)
    job.cancel(grace=0.5)
    pytest.fail(f"{job.command} still running after {timeout} s; output: {job.lines[-5:]}")


@pytest.fixture(scope="module")
def logic():
    import slicer_harness

    slicer_harness.bootstrap()
    return slicer_harness.import_module_file("ParaspinalSeg").ParaspinalSegLogic()


def test_batch_in_background_equals_the_library_run(
    logic, batch: Path, cohort: Path, tmp_path: Path, slicer_scene
) -> None:
    job = logic.batchInBackground(cohort, tmp_path / "out")
    seen = follow(job)
    assert job.status == jobs.SUCCEEDED, job.errorMessage or job.lines[-5:]
    done = [s[0] for s in seen]
    assert done == sorted(done) and {s[1] for s in seen} == {8} and seen[-1] == (8, 8, "done")
    assert any(stage == "C7 failed" for _, _, stage in seen)
    page, table = logic.loadJobResults(job)
    assert page == tmp_path / "out" / "qc.html" and page.is_file()
    df = slicer_scene.util.dataframeFromTable(table)
    ref = pd.read_csv(batch / "measurements.csv")
    assert len(df) == len(ref) and list(dict.fromkeys(df["case_id"])) == list(dict.fromkeys(ref["case_id"]))
    pd.testing.assert_series_equal(
        df["csa_cm2"].astype(float), ref["csa_cm2"].astype(float), check_names=False, rtol=1e-9
    )
    assert table.GetAttribute("ParaspinalLBP.report") == str(page)


def test_cancelled_batch_keeps_complete_cases_and_resumes(logic, cohort: Path, tmp_path: Path) -> None:
    shutil.copytree(cohort.parent / "phantoms", tmp_path / "phantoms")
    manifest = shutil.copy(cohort, tmp_path / "cases.csv")
    out = tmp_path / "out"
    job = logic.batchInBackground(manifest, out)
    follow(job, until=lambda j: j.done >= 2)
    assert job.running, "the cohort run ended before it could be cancelled"
    job.cancel()
    assert job.wait(timeout=15).status == jobs.CANCELLED and job.errorMessage == ""
    visible = [p for p in (out / "cases").iterdir() if not p.name.startswith(".")]
    assert len(visible) >= 2 and all((p / "done.json").is_file() for p in visible)
    with pytest.raises(FileNotFoundError, match="did not finish"):
        logic.loadJobResults(job)
    again = logic.batchInBackground(manifest, out)
    follow(again)
    assert again.status == jobs.SUCCEEDED, again.errorMessage
    status = pd.read_csv(out / "status.csv", keep_default_na=False).set_index("case_id")
    assert set(status.loc[[p.name for p in visible], "run"]) == {"unchanged"}  # not redone
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]


def test_agreement_in_background(logic, batch: Path, tmp_path: Path, slicer_scene) -> None:
    job = logic.agreementInBackground(batch, batch, tmp_path / "report")
    seen = follow(job)
    assert job.status == jobs.SUCCEEDED, job.errorMessage or job.lines[-5:]
    assert seen[-1] == (7, 7, "done") and [s[0] for s in seen] == sorted(s[0] for s in seen)
    page, table = logic.loadJobResults(job)
    assert page.name == "report.html" and page.is_file()
    df = slicer_scene.util.dataframeFromTable(table)
    assert len(df) == 8 * 3 and (df["dice_mean"].astype(float) == 1.0).all()  # the same folder twice


def test_bad_input_fails_with_the_cli_line(logic, tmp_path: Path) -> None:
    bad = tmp_path / "cases.csv"
    bad.write_text("case_id,image\nA,x.nii.gz\n", encoding="utf-8")
    job = logic.batchInBackground(bad, tmp_path / "out")
    assert job.wait(timeout=RUN_TIMEOUT).status == jobs.FAILED and job.returncode == 2
    assert job.lastStderrLine == f"paraspinal-seg batch: error: manifest {bad}: column 'seeds' is missing"
    assert "Cohort run failed" in job.errorMessage
    job = logic.agreementInBackground(tmp_path / "nope", tmp_path, tmp_path / "r")
    assert job.wait(timeout=RUN_TIMEOUT).status == jobs.FAILED
    assert job.lastStderrLine.startswith("paraspinal-seg agreement: error: --a: folder not found")
