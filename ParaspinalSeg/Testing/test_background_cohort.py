"""ParaspinalSeg's cohort run and agreement report in the background (``batchInBackground``,
``agreementInBackground``) with real subprocesses, as the Widget's *Run cohort* / *Agreement report*
start them: progress is monotone and reaches its total, the results equal the synchronous library run,
``loadJobResults`` makes the table node, a cancelled run leaves only complete cases and the next run
finishes them (also when SIGKILL lands in the middle of a case swap), and bad input fails with the
CLI's one-line error."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from kill_points import deaf_python, snapshot, wait_for_line, wait_until_ended

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
    assert wait_until_ended(job).status == jobs.CANCELLED and job.errorMessage == ""
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


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("kill", ["second case commit", "between the renames"])
def test_sigkill_during_a_case_swap_keeps_every_case_whole(
    logic, batch: Path, cohort: Path, tmp_path: Path, monkeypatch, kill: str
) -> None:
    """A forced re-run over a finished batch, its SIGTERM never handled (``kill_points``), SIGKILLed with
    case C2 staged but not committed (C1 is new, C2 and the rest exactly as before), or between the two
    renames that swap C1 (when no C1 is in cases/: the cancelled job finishes the swap, C1 is new). The
    summary files are untouched and no staging folder is left in the batch folder or in cases/."""
    out = tmp_path / "out"
    shutil.copytree(batch, out)
    before = snapshot(out)
    if kill == "between the renames":
        python = deaf_python(tmp_path / "bin", dst=out / "cases" / "C1")
    else:
        python = deaf_python(tmp_path / "bin", under=out / "cases", name="COMMIT", nth=2)
    monkeypatch.setattr(jobs, "pythonExecutable", lambda: python)
    job = logic.batchInBackground(cohort, out, force=True)
    wait_for_line(job, "PAUSED before ")
    job.cancel(grace=0.2)
    assert wait_until_ended(job).status == jobs.CANCELLED and job.returncode == -9
    after = snapshot(out)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert changed and all(name.startswith("cases/C1/") for name in changed)  # only C1 was redone
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in (out / "cases").iterdir() if p.name.startswith(".")] == []
    old = json.loads(before["cases/C1/done.json"])
    new = json.loads(after["cases/C1/done.json"])
    assert new["status"] == "ok" and new["finished_at"] >= old["finished_at"] and new != old
    assert {n for n in after if n.startswith("cases/C1/")} == {n for n in before if n.startswith("cases/C1/")}
