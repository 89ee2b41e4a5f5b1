"""``paraspinal-seg batch`` on a small phantom cohort with planted problems (cohort_fixtures.py):
outputs equal the single-case ``segment`` CLI, the planted problems and nothing else are flagged,
resume skips unchanged cases and re-runs changed ones, a run killed mid-case leaves no half case,
reviewer decisions freeze (accept) or force (redo) cases, --jobs 2 gives the serial results, and bad
manifests / decision files fail with messages naming the line and column."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from cohort_fixtures import FLAGGED

from ParaspinalSegLib.batch import BatchSettings, read_manifest, read_marker, record_decision, run_batch
from ParaspinalSegLib.cli import main
from ParaspinalSegLib.decisions import append_decision, read_decisions
from ParaspinalSegLib.markups import read_points, write_points
from ParaspinalSegLib.qc import case_facts
from ParaspinalSegLib.qc_page import QCThresholds

OK_CASES = ["C1", "C2", "C3", "C4", "C5", "C6"]


def _copy_cohort(cohort: Path, dest: Path) -> Path:
    shutil.copytree(cohort.parent / "phantoms", dest / "phantoms")
    shutil.copy(cohort, dest / "cases.csv")
    return dest / "cases.csv"


def test_outputs_equal_the_segment_cli(batch: Path, cohort: Path, tmp_path: Path) -> None:
    status = pd.read_csv(batch / "status.csv", keep_default_na=False)
    assert list(status["case_id"]) == [*OK_CASES, "C7"]
    assert list(status["status"]) == ["ok"] * 6 + ["failed"]
    reason = status.set_index("case_id").at["C7", "reason"]
    assert reason.startswith("manifest line 8: water image: file not found:") and "C7/water.nii.gz" in reason
    assert not (batch / "cases" / "C7" / "labels.nii.gz").exists()  # a failed case has only its marker
    table = pd.read_csv(batch / "measurements.csv")
    assert list(dict.fromkeys(table["case_id"])) == OK_CASES
    for case_id in OK_CASES:
        part = pd.read_csv(batch / "cases" / case_id / "measurements.csv")
        pd.testing.assert_frame_equal(
            table[table["case_id"] == case_id].reset_index(drop=True), part, check_exact=False, rtol=1e-12
        )
    ph = cohort.parent / "phantoms" / "C2"
    args = ["segment", "--water", ph / "water.nii.gz", "--fat", ph / "fat.nii.gz", "--seeds", ph / "seeds.mrk.json",
            "--levels", ph / "levels.mrk.json", "--case-id", "C2", "--out-dir", tmp_path]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    cli = pd.read_csv(tmp_path / "measurements.csv")
    pd.testing.assert_frame_equal(cli, pd.read_csv(batch / "cases" / "C2" / "measurements.csv"), rtol=1e-12)
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(batch / "cases" / "C2" / "labels.nii.gz")))
    assert np.array_equal(a, b) and a.max() == 8
    assert sorted(p.name for p in (batch / "cases" / "C2" / "qc").iterdir()) == ["L4.png", "L5.png"]


def test_planted_problems_and_nothing_else_are_flagged(batch: Path) -> None:
    flags = pd.read_csv(batch / "qc_flags.csv", keep_default_na=False)
    assert set(flags["case_id"]) == set(FLAGGED)
    kinds = flags.groupby("case_id")["kind"].apply(set)
    for case_id, kind in FLAGGED.items():
        assert kind in kinds[case_id], (case_id, kinds[case_id])
    asym = flags[(flags["case_id"] == "C4") & (flags["kind"] == "asymmetry")]
    assert set(zip(asym["structure"], asym["level"], strict=True)) == {
        (m, lv)
        for m in ("multifidus", "erector_spinae", "psoas", "quadratus_lumborum")
        for lv in ("L4", "L5")
    }
    assert all(0.35 < float(v) < 0.6 for v in asym["value"])  # planted 40 % (QL is small on a 2 mm grid)
    ff = flags[(flags["case_id"] == "C5") & (flags["kind"] == "ff_outlier")]
    assert set(zip(ff["structure"], ff["level"], strict=True)) == {
        ("multifidus_left", "L4"),
        ("multifidus_left", "L5"),
    }
    assert all(float(z) > 10 for z in ff["value"])
    border = flags[(flags["case_id"] == "C6") & (flags["kind"] == "border")]
    assert "erector_spinae_right" in set(border["structure"])
    assert not (flags["structure"].str.endswith("_left") & (flags["kind"] == "border")).any()


def test_thresholds_change_the_flags(batch: Path) -> None:
    from ParaspinalSegLib.qc_page import cohort_flags, read_facts

    table = pd.read_csv(batch / "measurements.csv")
    status = pd.read_csv(batch / "status.csv", keep_default_na=False)
    facts = read_facts(batch / "cases", OK_CASES)
    loose = cohort_flags(
        table, facts, status, QCThresholds(asymmetry=2.0, ff_robust_z=100, border_voxels=1000)
    )
    assert set(loose["kind"]) == {"failed"}
    few = cohort_flags(table, facts, status, QCThresholds(ff_min_cases=7))  # 6 finished cases
    assert "ff_outlier" not in set(few["kind"])
    with pytest.raises(ValueError, match="asymmetry"):
        QCThresholds(asymmetry=-1)


def test_case_facts_known_answers() -> None:
    """Border voxels and seeds outside their label on a hand-made label map."""
    from ParaspinalSegLib.markups import MarkupPoint

    arr = np.zeros((3, 20, 30), np.uint8)
    arr[:, 5:10, 0:6] = 3  # erector left touches column 0: 3 slices x 5 rows
    arr[:, 5:10, 12:18] = 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.0, 4.0))
    names = {1: "multifidus_left", 3: "erector_spinae_left"}
    seeds = [
        MarkupPoint("multifidus_left", np.array([14.0, 7.0, 4.0]), "L4"),  # inside (i=14, j=7, k=1)
        MarkupPoint("erector_spinae_left", np.array([14.0, 7.0, 4.0]), "L4"),  # in the multifidus
        MarkupPoint("multifidus_left", np.array([25.0, 15.0, 8.0]), "L5"),  # background
        MarkupPoint("psoas_left", np.array([25.0, 15.0, 8.0]), "L5"),  # not segmented: ignored
    ]
    facts = case_facts(img, names, {"L4": (0, 1), "L5": (2, 2)}, seeds)
    assert facts["border_voxels"] == {"erector_spinae_left": 15}
    assert [(s["structure"], s["level"], s["found"]) for s in facts["seeds_outside"]] == [
        ("erector_spinae_left", "L4", "multifidus_left"),
        ("multifidus_left", "L5", "background"),
    ]


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_resume_skips_unchanged_and_reruns_changed_inputs(cohort: Path, tmp_path: Path) -> None:
    manifest = _copy_cohort(cohort, tmp_path)
    out = tmp_path / "out"
    run_batch(manifest, out, BatchSettings(qc_images=False), show_progress=False)
    before = _mtimes(out / "cases")
    again = run_batch(manifest, out, BatchSettings(qc_images=False), show_progress=False)
    assert again.n_run == 0 and _mtimes(out / "cases") == before
    assert set(again.status["run"]) == {"unchanged"}
    seeds = tmp_path / "phantoms" / "C3" / "seeds.mrk.json"
    points = read_points(seeds)
    write_points(seeds, [(p.label, p.position_lps + np.array([2.0, 0, 0]), p.description) for p in points])
    third = run_batch(manifest, out, BatchSettings(qc_images=False), show_progress=False)
    assert third.n_run == 1 and third.status.set_index("case_id").at["C3", "run"] == "inputs changed"
    after = _mtimes(out / "cases")
    assert {k for k in after if after[k] != before.get(k)} == {k for k in after if k.startswith("C3/")}
    retry = run_batch(manifest, out, BatchSettings(qc_images=False), retry_failed=True, show_progress=False)
    assert retry.n_run == 1 and retry.n_failed == 1  # C7 tried again, still no water image
    other = run_batch(manifest, out, BatchSettings(qc_images=False, erode_px=0), show_progress=False)
    assert other.n_run == 7  # settings are part of the hash


def test_killed_run_leaves_no_half_case_and_resumes(cohort: Path, tmp_path: Path) -> None:
    manifest = _copy_cohort(cohort, tmp_path)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "ParaspinalSegLib",
        "batch",
        "--manifest",
        manifest,
        "--out-dir",
        out,
        "--progress",
    ]
    proc = subprocess.Popen(
        [str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # kill while the second case is being written
            partial = list((out / "cases").glob(".C2.plbp-*.staging/new")) if (out / "cases").is_dir() else []
            if partial and any(partial[0].iterdir()):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the batch never started writing case C2")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    names = {p.name for p in (out / "cases").iterdir()}
    assert "C2" not in names and any(n.startswith(".C2.plbp-") and f"-{proc.pid}-" in n for n in names)
    for name in names - {n for n in names if n.startswith(".")}:
        assert (out / "cases" / name / "done.json").is_file()  # every visible case is complete
    assert not (out / "measurements.csv").exists()
    result = run_batch(manifest, out, show_progress=False)
    assert {p.name for p in (out / "cases").iterdir()} == {*OK_CASES, "C7"}  # staging folders removed
    assert result.status.set_index("case_id").loc["C2", "status"] == "ok"


def test_decisions_accept_freezes_and_redo_forces_once(cohort: Path, tmp_path: Path) -> None:
    manifest = _copy_cohort(cohort, tmp_path)
    out = tmp_path / "out"
    settings = BatchSettings(qc_images=False)
    run_batch(manifest, out, settings, show_progress=False)
    decisions = out / "qc_decisions.csv"
    record_decision(out, "C4", "accept", "Dr A", "true asymmetry")
    record_decision(out, "C1", "redo", "Dr A", "check the seeds")  # about C1's run 1, whatever the clock says
    assert read_decisions(decisions)["C1"]["run"] == 1
    seeds = tmp_path / "phantoms" / "C4" / "seeds.mrk.json"
    write_points(
        seeds, [(p.label, p.position_lps + np.array([1.0, 0, 0]), p.description) for p in read_points(seeds)]
    )
    before = _mtimes(out / "cases" / "C4")
    second = run_batch(manifest, out, settings, show_progress=False)
    st = second.status.set_index("case_id")
    assert second.n_run == 1 and st.at["C1", "run"] == "redo requested"
    assert st.at["C4", "run"] == "accepted" and bool(st.at["C4", "inputs_changed"])
    assert (st.at["C4", "decision"], st.at["C4", "reviewer"], st.at["C4", "note"]) == (
        "accept",
        "Dr A",
        "true asymmetry",
    )
    assert _mtimes(out / "cases" / "C4") == before
    third = run_batch(manifest, out, settings, show_progress=False)
    assert third.n_run == 0  # the redo was about run 1; C1 is at run 2
    assert third.status.set_index("case_id").at["C1", "run_number"] == 2
    # A hand-written row without a run number: ordered by its timestamp against the run's end.
    append_decision(decisions, "C4", "redo", "Dr B", "", timestamp="2999-01-01T00:00:00Z")
    fourth = run_batch(manifest, out, settings, show_progress=False)
    assert fourth.status.set_index("case_id").at["C4", "run"] == "redo requested"


def test_redo_at_the_same_instant_as_the_run_end_is_honoured_once(cohort: Path, tmp_path: Path) -> None:
    """Run numbers, not clocks, order a case's runs and the decisions about them: a redo stamped at exactly
    the instant its run finished (same second, same microsecond) forces one re-run, and a redo about an
    earlier run never forces another, even stamped in the future."""
    manifest = _copy_cohort(cohort, tmp_path)
    out = tmp_path / "out"
    settings = BatchSettings(qc_images=False)
    run_batch(manifest, out, settings, show_progress=False)
    decisions = out / "qc_decisions.csv"
    first = read_marker(out / "cases" / "C1")
    assert first["run_number"] == 1
    append_decision(decisions, "C1", "redo", "Dr A", timestamp=first["finished_at"], run=1)
    second = run_batch(manifest, out, settings, show_progress=False)
    assert second.n_run == 1 and second.status.set_index("case_id").at["C1", "run"] == "redo requested"
    assert read_marker(out / "cases" / "C1")["run_number"] == 2
    append_decision(decisions, "C1", "redo", "Dr A", timestamp="2999-01-01T00:00:00Z", run=1)
    assert run_batch(manifest, out, settings, show_progress=False).n_run == 0
    # Without a run number the same-instant redo is not newer than the run: the hand-written fallback.
    again = read_marker(out / "cases" / "C2")
    append_decision(decisions, "C2", "redo", "Dr A", timestamp=again["finished_at"])
    assert run_batch(manifest, out, settings, show_progress=False).n_run == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("case_id,decision,reviewer,timestamp,note\nC1,maybe,A,2026-01-01T00:00:00Z,\n", r"line 2, column decision: 'maybe'"),
        ("case_id,decision,reviewer,timestamp,note\nC1,accept,A,yesterday,\n", r"line 2, column timestamp: 'yesterday'"),
        ("case_id,decision,reviewer\nC1,accept,A\n", r"column\(s\) timestamp missing"),
        ("case_id,decision,reviewer,timestamp\n,accept,A,2026-01-01\n", r"line 2, column case_id: empty"),
        ("case_id,decision,reviewer,timestamp,note,run\nC1,redo,A,2026-01-01,,0\n", r"line 2, column run: '0'"),
    ],
)  # fmt: skip
def test_bad_decisions_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "qc_decisions.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_decisions(path)


def test_latest_decision_wins_and_naive_time_is_utc(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "case_id,decision,reviewer,timestamp,note\nC1,redo,A,2026-03-01T12:00:00,\n"
        "C1,accept,B,2026-03-01T11:00:00Z,earlier\nC1,accept,C,2026-03-01T13:30:00+01:00,same instant\n",
        encoding="utf-8",
    )
    d = read_decisions(path)["C1"]
    assert (d["decision"], d["reviewer"]) == (
        "accept",
        "C",
    )  # 13:30+01:00 = 12:30Z, after the naive 12:00 (UTC)


def test_jobs_2_gives_the_serial_results(batch: Path, cohort: Path, tmp_path: Path) -> None:
    result = run_batch(cohort, tmp_path / "par", jobs=2, show_progress=False)
    assert result.n_run == 7 and result.n_failed == 1
    serial = pd.read_csv(batch / "measurements.csv")
    parallel = pd.read_csv(tmp_path / "par" / "measurements.csv")
    pd.testing.assert_frame_equal(parallel, serial, check_exact=False, rtol=1e-9)


MANIFEST_ERRORS = [
    ("case_id,water,fat,seed\nA,w,f,s\n", r"unknown column\(s\) 'seed'"),
    ("case_id,water,fat\nA,w,f\n", r"column 'seeds' is missing"),
    ("case_id,seeds\nA,s\n", r"needs an image source"),
    ("case_id,water,fat,seeds\nA,w,,s\n", r"line 2, column fat: empty for case 'A'"),
    ("case_id,image,seeds\nA,i,s\nA,i,s\n", r"line 3, column case_id: 'A' already used on line 2"),
    ("case_id,image,seeds\na/b,i,s\n", r"line 2, column case_id: 'a/b' is not a usable folder name"),
    ("case_id,image,seeds\nA,,s\n", r"line 2: case 'A' has no image"),
    (
        "case_id,image,water,fat,seeds\nA,i,w,f,s\n",
        r"line 2: case 'A' has image and water; give one image source",
    ),
    ("case_id,image,dicom,seeds\nA,i,d,s\n", r"line 2: case 'A' has image and dicom"),
    (
        "case_id,water,fat,series,seeds\nA,w,f,7,s\n",
        r"line 2, column series: does not apply to a case given by water",
    ),
    (
        "case_id,image,fat_series,seeds\nA,i,7,s\n",
        r"line 2, column fat_series: does not apply to a case given by image",
    ),
    ("case_id,image,seeds\nA,i,\n", r"line 2, column seeds: empty"),
    ("case_id,image,seeds\n", r"no cases"),
]


@pytest.mark.parametrize(("text", "message"), MANIFEST_ERRORS)
def test_bad_manifest_names_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cases.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_manifest(path)


def test_cli_progress_lines_and_errors(cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = tmp_path / "two.csv"
    pd.read_csv(cohort).iloc[[0, 6]].to_csv(manifest, index=False)
    os.symlink(cohort.parent / "phantoms", tmp_path / "phantoms")
    assert main(["batch", "--manifest", str(manifest), "--out-dir", str(tmp_path / "o"), "--progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if line.startswith("PROGRESS ")]
    assert progress == [
        "PROGRESS 0/3 cases",
        "PROGRESS 1/3 C1 ok",
        "PROGRESS 2/3 C7 failed",
        "PROGRESS 3/3 done",
    ]
    assert "2 cases: 2 run (1 failed)" in lines[-1]
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,image\nA,x\n", encoding="utf-8")
    assert main(["batch", "--manifest", str(bad), "--out-dir", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"paraspinal-seg batch: error: manifest {bad}: column 'seeds' is missing"
    status = json.loads((tmp_path / "o" / "cases" / "C1" / "done.json").read_text())
    assert status["status"] == "ok" and len(status["hash"]) == 64


def test_dicom_sources_equal_nifti_and_write_dicom_seg(tmp_path: Path) -> None:
    """A DICOM study folder (pair picked from the headers) and water/fat series folders give the numbers of
    the same stored pixels as NIfTI; --dicom-seg writes a SEG that reads back to the labels; a NIfTI case
    cannot have one (its reason says why)."""
    from dicom_cases import small_phantom, write_study

    from ParaspinalLBPCore import dicom_series as ds
    from ParaspinalSegLib.dicom_seg import read_dicom_seg

    phantom = small_phantom(seed=3)
    write_study(phantom, tmp_path / "study", names=("water", "fat", "t1w"))
    write_points(tmp_path / "seeds.mrk.json", phantom.seeds)
    write_points(tmp_path / "levels.mrk.json", phantom.landmarks)
    common = {"seeds": "seeds.mrk.json", "levels": "levels.mrk.json"}
    pd.DataFrame(
        [
            {"case_id": "D1", "dicom": "study", **common},
            {"case_id": "D2", "water": "study/07_water", "fat": "study/06_fat", **common},
            {"case_id": "N1", "water": "study_nifti/water.nii.gz", "fat": "study_nifti/fat.nii.gz", **common},
        ]
    ).to_csv(tmp_path / "cases.csv", index=False)
    result = run_batch(
        tmp_path / "cases.csv", tmp_path / "out", BatchSettings(dicom_seg=True), show_progress=False
    )
    status = result.status.set_index("case_id")
    assert list(status["status"]) == ["ok", "ok", "failed"]
    assert status.at["N1", "reason"].startswith("manifest line 4: --dicom-seg needs the source DICOM series")
    nifti = run_batch(tmp_path / "cases.csv", tmp_path / "out_nifti", show_progress=False)
    assert nifti.n_failed == 0
    reference = pd.read_csv(tmp_path / "out_nifti" / "cases" / "N1" / "measurements.csv")
    fat = next(s for s in ds.scan_folder(tmp_path / "study") if s.dixon == "fat")
    for case_id in ("D1", "D2"):
        folder = tmp_path / "out" / "cases" / case_id
        table = pd.read_csv(folder / "measurements.csv")
        assert len(table) == len(reference) and table["csa_cm2"].notna().sum() > 10
        for col in ("n_voxels", "csa_cm2", "fat_fraction_pct", "asymmetry_index"):
            np.testing.assert_allclose(
                table[col], reference[col], rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=col
            )
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labels.nii.gz")))
        back, names = read_dicom_seg(folder / "segmentation.dcm", fat)
        assert np.array_equal(sitk.GetArrayFromImage(back), labels) and len(names) == 8
