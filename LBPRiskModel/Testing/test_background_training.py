"""LBPRiskModel *Train* in the background: ``trainInBackground`` with real subprocesses.

The Widget's Train button runs ``python -m LBPRiskModelLib train --progress`` through
``ParaspinalLBPSlicer.jobs``. On a synthetic modelling table with one planted predictor: progress is
monotone and ends at ``total/total done``; the bundle predicts what the synchronous ``train`` bundle
predicts; a run cancelled mid-training leaves an existing bundle byte-identical with nothing beside it,
and one SIGKILLed during the bundle swap leaves the old or the complete new bundle; bad input fails with
the CLI's one-line error.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kill_points import deaf_python, wait_for_line, wait_until_ended

from ParaspinalLBPSlicer import jobs

pytestmark = pytest.mark.slicer

POLL = 0.05
RUN_TIMEOUT = 300.0
# One family, single-threaded: fast, and the same numbers in the test process and the job.
CONFIG = "families: [logistic_regression]\nn_jobs: 1\noptimism_bootstrap: 8\n"


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
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    """(modelling table CSV, config YAML, table) with a fatty-multifidus effect on response."""
    rng = np.random.default_rng(0)
    n = 160
    ff = rng.uniform(5, 45, n)
    df = pd.DataFrame(
        {
            "case_id": [f"P{i:03d}" for i in range(n)],
            "fat_fraction_pct__multifidus_left__L4": ff,
            "noise__multifidus_left__L4": rng.normal(size=n),
            "age": rng.uniform(60, 85, n),
            "responder": (rng.random(n) < 1 / (1 + np.exp(-(ff - 25) / 4))).astype(int),
        }
    )
    folder = tmp_path_factory.mktemp("training")
    df.to_csv(folder / "table.csv", index=False)
    (folder / "config.yaml").write_text(CONFIG, encoding="utf-8")
    return folder / "table.csv", folder / "config.yaml", df


@pytest.fixture(scope="module")
def logic():
    import slicer_harness

    return slicer_harness.import_module_file("LBPRiskModel").LBPRiskModelLogic()


@pytest.fixture(scope="module")
def sync_bundle(inputs, logic, tmp_path_factory: pytest.TempPathFactory):
    table, config, _ = inputs
    out = tmp_path_factory.mktemp("sync") / "bundle"
    return out, logic.train(out, "responder", data=table, config=config, quick=True, figures=False)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_background_training_equals_synchronous(inputs, logic, sync_bundle, tmp_path: Path) -> None:
    table, config, df = inputs
    _, expected = sync_bundle
    out = tmp_path / "bundle"
    job = logic.trainInBackground(out, "responder", data=table, config=config, quick=True, figures=False)
    seen = follow(job)
    assert job.status == jobs.SUCCEEDED, job.errorMessage or job.lines[-5:]
    total = 3 + 1 + 8 + 3  # CV folds (quick), final fit, optimism replicates, export steps
    done = [s[0] for s in seen]
    assert done == sorted(done) and len(set(done)) >= 5 and {s[1] for s in seen} == {total}
    assert seen[-1] == (total, total, "done")
    assert {"cross-validation", "optimism bootstrap", "bundle"} <= {s[2] for s in seen}
    assert job.outputPath == out and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]

    bundle = logic.loadBundle(job.outputPath)
    assert bundle.family == expected.family == "logistic_regression"
    X = df.drop(columns=["responder"])
    got, want = bundle.predict(X, id_col="case_id"), expected.predict(X, id_col="case_id")
    # Same data, configuration and seed in another process: equal up to BLAS summation order.
    np.testing.assert_allclose(got["risk"], want["risk"], rtol=1e-9, atol=1e-12)
    assert list(got["risk_group"]) == list(want["risk_group"])
    auc = lambda b: b.metrics["families"]["logistic_regression"]["test_auc"]  # noqa: E731
    assert auc(bundle) == pytest.approx(auc(expected), rel=1e-9)


def test_cancel_leaves_an_existing_bundle_as_it_was(inputs, logic, sync_bundle, tmp_path: Path) -> None:
    table, config, _ = inputs
    out = tmp_path / "bundle"
    shutil.copytree(sync_bundle[0], out)
    before = _snapshot(out)
    job = logic.trainInBackground(out, "responder", data=table, config=config, quick=True, figures=False)
    follow(job, until=lambda j: j.stage == "optimism bootstrap")
    assert job.running, "training ended before it could be cancelled"
    job.cancel()
    assert wait_until_ended(job).status == jobs.CANCELLED and job.errorMessage == ""
    assert job.returncode in (-15, 143)  # SIGTERM, or its clean SystemExit(143)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no .bundle-* staging, no .old
    logic.loadBundle(out)  # still verifies


def test_bad_input_fails_with_the_cli_error_line(logic, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-table.csv"
    job = logic.trainInBackground(tmp_path / "bundle", "responder", data=missing)
    assert job.wait(timeout=RUN_TIMEOUT).status == jobs.FAILED and job.returncode == 2
    assert (
        job.lastStderrLine.startswith("lbp-riskmodel train: error:")
        and "no-such-table.csv" in job.lastStderrLine
    )
    assert not (tmp_path / "bundle").exists()
    with pytest.raises(ValueError, match="modelling table, or the trial data folder"):
        logic.trainInBackground(tmp_path / "bundle", "responder")


def test_train_cli_progress_lines_without_slicer(inputs, tmp_path: Path) -> None:
    """The CLI itself (what the job runs): PROGRESS lines on stdout, the usual summary last."""
    import subprocess

    table, config, _ = inputs
    cmd = [sys.executable, "-m", "LBPRiskModelLib", "train", "--data", table, "--outcome", "responder"]
    cmd += ["--config", config, "--quick", "--no-figures", "--out", tmp_path / "b", "--progress"]
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=RUN_TIMEOUT, check=True
    )
    lines = result.stdout.splitlines()
    progress = [jobs.parseProgress(line) for line in lines if line.startswith("PROGRESS ")]
    assert progress and all(p is not None for p in progress) and progress[-1] == (15, 15, "done")
    assert lines[-1].startswith(f"bundle {tmp_path / 'b'} (") and "test AUC" in lines[-1]
    assert "train:" not in result.stderr  # no tqdm bar when --progress


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("kill", ["commit", "between", "between, then load"])
def test_sigkill_during_the_bundle_swap_keeps_the_old_or_the_new_bundle(
    inputs, logic, sync_bundle, tmp_path: Path, monkeypatch, kill: str
) -> None:
    """The swap replaces the whole bundle folder: the old one is renamed aside, the new one in. Training
    whose SIGTERM is never handled (``kill_points``) is SIGKILLed just before the commit (the old bundle
    stays, byte for byte) or between the two renames, when no bundle is at ``--out`` (the cancelled job,
    or the next load, finishes the swap: the complete new bundle, verified). Nothing is left beside it."""
    table, _, df = inputs
    out = tmp_path / "models" / "bundle"
    shutil.copytree(sync_bundle[0], out)
    before = _snapshot(out)
    old_hash = logic.loadBundle(out).bundle_hash
    other = tmp_path / "other.yaml"  # fewer bootstrap replicates: another bundle, the same fitted model
    other.write_text(CONFIG.replace("optimism_bootstrap: 8", "optimism_bootstrap: 4"), encoding="utf-8")
    if kill == "commit":
        python = deaf_python(tmp_path / "bin", under=out.parent, name="COMMIT")
    else:
        python = deaf_python(tmp_path / "bin", dst=out)
    monkeypatch.setattr(jobs, "pythonExecutable", lambda: python)
    job = logic.trainInBackground(out, "responder", data=table, config=other, quick=True, figures=False)
    assert wait_for_line(job, "PAUSED before ").endswith(str(out) if kill != "commit" else "COMMIT")
    if kill == "between, then load":  # as if Slicer itself had crashed: nobody recovers until the load
        job.stagingFolders = []
        os.killpg(job.pid, signal.SIGKILL)
        assert wait_until_ended(job).status == jobs.FAILED and job.returncode == -9
        assert not out.exists()  # the moment at which the earlier swap could lose the bundle
    else:
        job.cancel(grace=0.2)
        assert wait_until_ended(job).status == jobs.CANCELLED and job.returncode == -9
        assert sorted(p.name for p in out.parent.iterdir()) == ["bundle"]  # the job cleaned up
    if kill == "commit":
        assert _snapshot(out) == before and logic.loadBundle(out).bundle_hash == old_hash
        return
    bundle = logic.loadBundle(out)  # verifies every file's hash
    assert bundle.bundle_hash != old_hash and sorted(p.name for p in out.parent.iterdir()) == ["bundle"]
    X = df.drop(columns=["responder"])
    got, want = bundle.predict(X, id_col="case_id"), sync_bundle[1].predict(X, id_col="case_id")
    np.testing.assert_allclose(got["risk"], want["risk"], rtol=1e-9, atol=1e-12)
