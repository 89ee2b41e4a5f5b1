"""ParaspinalRadiomics Apply in the background: ``extractInBackground`` with real subprocesses.

The Widget's Apply runs ``python -m ParaspinalRadiomicsLib extract --progress`` through
``ParaspinalLBPSlicer.jobs`` on the nodes written to a temporary folder. Checked here against the
synchronous ``extract`` on a synthetic case made in code: progress is monotone and reaches the number
of masks, the table equals the synchronous one, the feature-class choice is honoured, temporary files
are removed, a cancelled run leaves an earlier features file and the table node as they were (also
when SIGKILL lands just before the commit, or leaves both new files when it lands between their moves),
and bad parameters fail with the CLI's one-line error.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kill_points import deaf_python, snapshot, wait_for_line, wait_until_ended

from ParaspinalLBPSlicer import jobs

pytestmark = pytest.mark.slicer

POLL = 0.05
RUN_TIMEOUT = 240.0
STRUCTURES = {
    1: "multifidus_left",
    2: "multifidus_right",
    3: "erector_spinae_left",
    4: "erector_spinae_right",
}
LEVEL_LABELS = ("L2", "L3", "L4", "L5")


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
def case():
    """(logic, volume, segmentation, levels) of a 4-muscle synthetic case in the harness scene."""
    import slicer_harness

    slicer = slicer_harness.bootstrap()
    slicer.mrmlScene.Clear(0)
    module = slicer_harness.import_module_file("ParaspinalRadiomics")
    from ParaspinalLBPSlicer import mrml, segmentations
    from ParaspinalSegLib.markups import MarkupPoint

    rng = np.random.default_rng(11)
    shape = (16, 80, 96)
    image = rng.normal(100.0, 12.0, size=shape).astype(np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    for value, (cy, cx) in zip(STRUCTURES, [(40, 30), (40, 66), (20, 24), (20, 72)], strict=True):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 81
        labels[:, disc] = value
        image[:, disc] += 10.0 * value + 25.0 * rng.random((shape[0], int(disc.sum()))).astype(np.float32)
    volume = slicer.util.addVolumeFromArray(image, np.diag([-0.9, -0.9, 4.0, 1.0]), "T1case")
    ref = mrml.volumeToImage(volume)
    import SimpleITK as sitk

    labelImage = sitk.GetImageFromArray(labels)
    labelImage.CopyInformation(ref)
    seg = segmentations.labelsToSegmentation(labelImage, STRUCTURES, None, volume)
    points = [
        MarkupPoint(level, np.array(ref.TransformIndexToPhysicalPoint((0, 0, 2 + 4 * i))))
        for i, level in enumerate(LEVEL_LABELS)
    ]
    levels = mrml.pointsToMarkups(points, name="levels")
    logic = module.ParaspinalRadiomicsLogic()
    yield logic, volume, seg, levels
    slicer.mrmlScene.Clear(0)


def _frame(tableNode) -> pd.DataFrame:
    import slicer

    return (
        slicer.util.dataframeFromTable(tableNode).sort_values(["structure", "level"]).reset_index(drop=True)
    )


def test_background_extraction_equals_synchronous(case) -> None:
    """Same rows and values as ``extract``, the chosen classes only, monotone progress over every mask."""
    logic, volume, seg, levels = case
    classes = ["firstorder", "glcm", "shape"]
    options = dict(
        params="protocol-mri", featureClasses=classes, levelsNode=levels, perLevel=True, caseId="S1"
    )
    sync = logic.extract(volume, seg, **options)

    job = logic.extractInBackground(volume, seg, **options)
    work = job.temporaryFolder
    assert work is not None and (work / "image.nrrd").is_file()
    seen = follow(job)
    assert job.status == jobs.SUCCEEDED, job.errorMessage or job.lines[-5:]
    n_masks = len(STRUCTURES) * (1 + len(LEVEL_LABELS))  # whole volume + each level slab
    done = [s[0] for s in seen]
    assert done == sorted(done) and seen[-1][:2] == (n_masks, n_masks)
    assert not (work / "image.nrrd").exists() and not (work / "labels.nrrd").exists()  # inputs removed

    table = logic.loadFeatures(job)
    assert not work.exists()  # the temporary folder goes once the features are read
    assert table.GetAttribute("ParaspinalLBP.table") == "features"
    assert table.GetAttribute("ParaspinalLBP.settings_hash") == sync.GetAttribute(
        "ParaspinalLBP.settings_hash"
    )
    a, b = _frame(sync), _frame(table)
    assert list(a.columns) == list(b.columns) and len(a) == n_masks
    assert {c.split("_")[1] for c in a.columns if c.startswith("original_")} == set(classes)
    features = [c for c in a.columns if c.startswith("original_")]
    # The job reads the image back from an uncompressed NRRD: same voxels and geometry, same pyradiomics
    # code; only summation order can differ between processes (last bits).
    pd.testing.assert_frame_equal(a[features], b[features], check_exact=False, rtol=1e-12, atol=0)
    pd.testing.assert_frame_equal(a.drop(columns=features), b.drop(columns=features), check_dtype=False)


def test_cancel_keeps_earlier_features_and_table(case, tmp_path: Path) -> None:
    """A run cancelled mid-extraction changes neither an earlier features file nor the table node."""
    import slicer

    logic, volume, seg, levels = case
    out = tmp_path / "features.csv"
    job = logic.extractInBackground(volume, seg, featureClasses=["firstorder"], outputPath=out)
    follow(job)
    assert job.status == jobs.SUCCEEDED, job.errorMessage
    table = logic.loadFeatures(job)
    before_files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    before_table = slicer.util.dataframeFromTable(table)
    assert set(before_files) == {"features.csv", "features.csv.json"}

    job = logic.extractInBackground(volume, seg, levelsNode=levels, perLevel=True, outputPath=out)
    work = job.temporaryFolder or Path(job.command[job.command.index("--image") + 1]).parent
    follow(job, until=lambda j: j.done >= 1)
    assert job.running, "the extraction ended before it could be cancelled"
    job.cancel()
    assert wait_until_ended(job).status == jobs.CANCELLED and job.errorMessage == ""
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before_files
    assert not work.exists()  # temporary inputs removed
    with pytest.raises(RuntimeError, match="has not succeeded"):
        logic.loadFeatures(job, table)
    pd.testing.assert_frame_equal(slicer.util.dataframeFromTable(table), before_table)


def test_bad_parameters_fail_with_the_cli_error_line(case, tmp_path: Path) -> None:
    logic, volume, seg, _levels = case
    missing = tmp_path / "no-such-params.yaml"
    job = logic.extractInBackground(volume, seg, params=missing)
    assert job.wait(timeout=RUN_TIMEOUT).status == jobs.FAILED and job.returncode == 2
    assert job.lastStderrLine.startswith("paraspinal-radiomics extract: error:")
    assert "no-such-params.yaml" in job.lastStderrLine and job.errorMessage.endswith(job.lastStderrLine)
    with pytest.raises(RuntimeError, match="no-such-params"):
        logic.loadFeatures(job)
    job = logic.extractInBackground(volume, seg, featureClasses=["ngtdm"])  # not enabled by protocol-mri
    assert job.wait(timeout=RUN_TIMEOUT).status == jobs.FAILED
    assert "feature classes ['ngtdm'] are not enabled" in job.lastStderrLine


def test_end_callbacks_run_once_after_the_end(tmp_path: Path) -> None:
    import sys

    calls = []
    job = jobs.Job([sys.executable, "-c", "print('PROGRESS 1/1 done')"])
    job.addEndCallback(lambda j: calls.append(("first", j.status)))
    job.addEndCallback(lambda j: 1 / 0)  # a failing clean-up is logged, the next ones still run
    job.addEndCallback(lambda j: calls.append(("second", j.status)))
    assert job.wait(timeout=60).status == jobs.SUCCEEDED
    job.poll()
    assert calls == [("first", jobs.SUCCEEDED), ("second", jobs.SUCCEEDED)]
    job.addEndCallback(lambda j: calls.append(("late", j.status)))  # after the end: called at once
    assert calls[-1] == ("late", jobs.SUCCEEDED)


def test_batch_cli_progress_and_classes(tmp_path: Path) -> None:
    """``batch --progress --classes``: one PROGRESS line per case, only the chosen class in the table."""
    import json
    import subprocess
    import sys

    import SimpleITK as sitk

    rng = np.random.default_rng(3)
    rows = []
    for case in ("A", "B"):
        image = sitk.GetImageFromArray(rng.normal(100, 10, (4, 32, 32)).astype(np.float32))
        labels = np.zeros((4, 32, 32), dtype=np.uint8)
        labels[:, 8:20, 8:20] = 1
        mask = sitk.GetImageFromArray(labels)
        mask.CopyInformation(image)
        sitk.WriteImage(image, str(tmp_path / f"{case}.nrrd"))
        sitk.WriteImage(mask, str(tmp_path / f"{case}_labels.nrrd"))
        (tmp_path / f"{case}.json").write_text(json.dumps({"labels": {"1": "multifidus_left"}}))
        rows.append(
            {
                "case_id": case,
                "image": tmp_path / f"{case}.nrrd",
                "labels": tmp_path / f"{case}_labels.nrrd",
                "label_names": tmp_path / f"{case}.json",
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "features.csv"
    cmd = [
        sys.executable,
        "-m",
        "ParaspinalRadiomicsLib",
        "batch",
        "--manifest",
        str(tmp_path / "manifest.csv"),
    ]
    cmd += ["--params", "protocol-mri", "--classes", "firstorder", "--out", str(out), "--progress"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=True)
    progress = [
        jobs.parseProgress(line) for line in result.stdout.splitlines() if line.startswith("PROGRESS")
    ]
    assert progress == [(1, 2, "A"), (2, 2, "B")] or progress == [(1, 2, "B"), (2, 2, "A")]
    df = pd.read_csv(out)
    assert list(df["case_id"]) == ["A", "B"] and (df["status"] == "ok").all()
    assert {c.split("_")[1] for c in df.columns if c.startswith("original_")} == {"firstorder"}


def test_lib_jobs_can_import_the_shared_core_package(tmp_path: Path) -> None:
    """Inside Slicer only module folders are on sys.path: a Lib job gets the folder of ParaspinalLBPCore."""
    import sys

    module_dir = Path(__file__).resolve().parents[1]
    entries = jobs.libPythonPath([module_dir])
    assert (
        entries[0] == str(module_dir) and (Path(entries[-1]) / "ParaspinalLBPCore" / "__init__.py").is_file()
    )
    code = "import ParaspinalLBPCore; print(ParaspinalLBPCore.__file__)"
    # -S: no site-packages (as a Slicer child process without the venv), so only PYTHONPATH can supply it.
    job = jobs.Job([sys.executable, "-S", "-c", code])
    assert job.wait(timeout=60).status == jobs.FAILED  # the control: not importable without the entry
    job = jobs.Job([sys.executable, "-S", "-c", code], pythonPath=entries)
    assert job.wait(timeout=60).status == jobs.SUCCEEDED, job.lines
    assert Path(job.lines[0]).parent.parent == jobs.SHARED_DIR


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("kill", ["commit", "between"])
def test_sigkill_leaves_the_earlier_pair_or_the_complete_new_one(
    case, tmp_path: Path, monkeypatch, kill
) -> None:
    """features.csv and its provenance features.csv.json are one set. The job's SIGTERM is never handled
    (``kill_points``: as when pyradiomics' C code holds the handler past the grace period), so Cancel
    ends in SIGKILL: just before the commit (both earlier files stay, byte for byte) or between the two
    moves (the job finishes the publication: both new and consistent). No staging debris either way."""
    logic, volume, seg, levels = case
    out = tmp_path / "out" / "features.csv"
    job = logic.extractInBackground(volume, seg, featureClasses=["firstorder"], outputPath=out)
    follow(job)
    assert job.status == jobs.SUCCEEDED, job.errorMessage
    before = snapshot(out.parent)
    assert sorted(before) == ["features.csv", "features.csv.json"]
    if kill == "between":
        python = deaf_python(tmp_path / "bin", dst=out.parent / "features.csv.json")
    else:
        python = deaf_python(tmp_path / "bin", under=out.parent, name="COMMIT")
    monkeypatch.setattr(jobs, "pythonExecutable", lambda: python)
    job = logic.extractInBackground(volume, seg, levelsNode=levels, perLevel=True, outputPath=out)
    wait_for_line(job, "PAUSED before ")
    job.cancel(grace=0.2)
    assert wait_until_ended(job).status == jobs.CANCELLED and job.returncode == -9
    assert job.temporaryFolder is None and not Path(job.command[job.command.index("--image") + 1]).exists()
    after = snapshot(out.parent)
    if kill == "commit":
        assert after == before
        return
    assert sorted(after) == sorted(before) and all(after[name] != before[name] for name in after)
    from ParaspinalRadiomicsLib.tables import read_features

    df = read_features(out)
    provenance = json.loads(after["features.csv.json"])
    assert len(df) == len(STRUCTURES) * (1 + len(LEVEL_LABELS))  # the new, per-level run
    assert set(df["settings_hash"]) == {provenance["settings_hash"]}  # table and provenance match
