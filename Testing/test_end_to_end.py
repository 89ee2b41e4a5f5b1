"""The whole chain on a tiny digital-twin cohort, checking numbers across module boundaries.

simulate (with phantom MRIs, also as DICOM) → segment the DICOM studies from the simulator's seeds
(paraspinal-seg batch: DICOM SEGs, QC page) → measurements → radiomics
batch → model bundle → calculator-ready predictions → trial report → index page. Each step is the
module's own CLI (run by ``ParaspinalLBPDemo.demo``), so this is also what ``make demo`` does.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from LBPRiskModelLib.bundle import load_bundle
from ParaspinalLBPDemo.demo import Demo

N_PARTICIPANTS = 120
N_MRI = 30
MUSCLES = (
    "multifidus_left",
    "multifidus_right",
    "erector_spinae_left",
    "erector_spinae_right",
    "psoas_left",
    "psoas_right",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Demo:
    out = tmp_path_factory.mktemp("e2e")
    demo = Demo(out, n=N_PARTICIPANTS, with_mri=N_MRI, imputations=2, seed=5, quick_model=True)
    demo.run()
    return demo


def test_counts_and_ids_agree_across_modules(run: Demo) -> None:
    participants = pd.read_csv(run.trial / "participants.csv", dtype={"participant_id": str})
    imaging = set(
        participants.loc[participants["has_mri"].astype(str).str.lower() == "true", "participant_id"]
    )
    assert len(participants) == N_PARTICIPANTS and len(imaging) == N_MRI
    meas = pd.read_csv(run.out / "measurements.csv", dtype={"case_id": str})
    feats = pd.read_csv(run.out / "features.csv", dtype={"case_id": str})
    assert set(meas["case_id"]) == imaging
    assert set(feats["case_id"]) == imaging
    # every seeded muscle was segmented and measured in every case, with no silent NaN
    whole = meas[(meas["level"] == "all") & meas["slice"].isna()]
    assert set(whole["structure"]) >= set(MUSCLES)
    assert whole.groupby("case_id")["structure"].nunique().min() >= len(MUSCLES)
    for col in ("csa_cm2", "volume_cm3", "fat_fraction_pct"):
        assert whole[col].notna().all(), f"NaN in measurements column {col}"
    assert (feats["status"] == "ok").all(), feats.loc[
        feats["status"] != "ok", ["case_id", "structure", "reason"]
    ]
    feature_cols = [c for c in feats.columns if c.startswith("original_")]
    assert not feats[feature_cols].isna().any().any()


def test_segmentation_matches_phantom_truth(run: Demo) -> None:
    """Measured CSA/FF of the segmented phantoms agree with the phantom's ground truth."""
    meas = pd.read_csv(run.out / "measurements.csv", dtype={"case_id": str})
    participants = pd.read_csv(run.trial / "participants.csv", dtype={"participant_id": str}).set_index(
        "participant_id"
    )
    dices, csa_err, ff_err = [], [], []
    for case in sorted(meas["case_id"].unique()):
        mri = run.trial / participants.loc[case, "mri_dir"]
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(mri / "labels.nii.gz")))
        seg = sitk.GetArrayFromImage(
            sitk.ReadImage(str(run.out / "segmentation" / "cases" / case / "labels.nii.gz"))
        )
        names = json.loads((run.out / "segmentation" / "cases" / case / "labels.json").read_text())["labels"]
        truth_names = json.loads((mri / "labels.json").read_text())["labels"]
        truth_value = {name: int(v) for v, name in truth_names.items()}
        for value, name in names.items():
            a, b = seg == int(value), truth == truth_value[name]
            dices.append(2 * (a & b).sum() / (a.sum() + b.sum()))
        t = json.loads((mri / "truth.json").read_text())
        rows = meas[(meas["case_id"] == case) & meas["slice"].isna() & (meas["level"] != "all")]
        for r in rows.itertuples():
            ref = t["structures"][r.structure][r.level] if "structures" in t else None
            if ref is None:
                continue
            csa_err.append(abs(r.csa_cm2 - ref["csa_cm2"]) / ref["csa_cm2"])
            ff_err.append(abs(r.fat_fraction_pct - ref["fat_fraction_pct"]))
    assert np.median(dices) > 0.85, f"median Dice {np.median(dices):.3f}"
    if csa_err:
        assert np.median(csa_err) < 0.10, f"median CSA error {np.median(csa_err):.3f}"
        assert np.median(ff_err) < 3.0, f"median FF error {np.median(ff_err):.2f} pp"


def test_cohort_segmented_from_dicom_with_seg_and_qc(run: Demo) -> None:
    """The batch read each participant's DICOM study (Dixon pair picked from the headers) and wrote a DICOM
    SEG per case that reads back to its label map; the QC page lists every case."""
    from ParaspinalLBPCore import dicom_series as ds
    from ParaspinalSegLib.dicom_seg import read_dicom_seg

    status = pd.read_csv(run.out / "segmentation" / "status.csv", dtype={"case_id": str})
    assert len(status) == N_MRI and (status["status"] == "ok").all()
    page = (run.out / "segmentation" / "qc.html").read_text(encoding="utf-8")
    assert all(f'data-case="{c}"' in page for c in status["case_id"])
    case = run.out / "segmentation" / "cases" / status["case_id"].iloc[0]
    marker = json.loads((case / "done.json").read_text())
    assert marker["inputs"]["dicom"].endswith("/dicom")
    fat = next(s for s in ds.scan_folder(marker["inputs"]["dicom"]) if s.dixon == "fat")
    back, _ = read_dicom_seg(case / "segmentation.dcm", fat)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "labels.nii.gz")))
    assert np.array_equal(sitk.GetArrayFromImage(back), labels)
    assert all(
        (run.out / "segmentation" / "cases" / c / "segmentation.dcm").is_file() for c in status["case_id"]
    )


def test_model_bundle_predicts_the_cohort(run: Demo) -> None:
    bundle = load_bundle(run.out / "model_bundle")
    metrics = json.loads((run.out / "model_bundle" / "metrics.json").read_text())
    assert metrics["selected_model"] in metrics["families"]
    fields = [f.name for f in bundle.schema]
    assert fields, "the bundle has an input schema"
    feats = pd.read_csv(run.out / "features.csv", dtype={"case_id": str})
    assert any("__" in f for f in fields) or len(
        feats
    )  # imaging predictors are named <feature>__<structure>__<level>
    record = {
        f.name: (f.min + f.max) / 2 if f.type == "number" and f.min is not None else None
        for f in bundle.schema
    }
    record = {k: v for k, v in record.items() if v is not None}
    prediction = bundle.predict_one(record)
    assert 0.0 <= prediction.ci_low <= prediction.risk <= prediction.ci_high <= 1.0
    assert (run.out / "model_report.html").stat().st_size > 10_000


def test_trial_report_and_index(run: Demo) -> None:
    results = json.loads((run.out / "trial_report" / "results.json").read_text())
    diff = results["primary"]["primary_mi"]["tables"]["difference"][0]
    assert np.isfinite(diff["estimate"]) and diff["ci_low"] < diff["ci_high"]
    index = (run.out / "index.html").read_text()
    for link in (
        "trial_report/report.html",
        "model_report.html",
        "measurements.csv",
        "features.csv",
        "segmentation/qc.html",
    ):
        assert f'href="{link}"' in index
        assert (run.out / link).exists()
    assert "python -m LBPRiskModelLib serve --model" in index
    assert 'href="randomization/summary.html"' in index  # the cohort went through the randomisation service
    rand = json.loads((run.out / "randomization" / "summary.json").read_text())
    assert rand["randomised"] == rand["arms_equal_to_simulation"] == N_PARTICIPANTS and rand["audit_verified"]


def test_rerun_resumes_without_recomputing(run: Demo) -> None:
    before = {p: p.stat().st_mtime_ns for p in (run.out / "segmentation").glob("cases/*/labels.nii.gz")}
    assert len(before) == N_MRI
    again = Demo(run.out, n=N_PARTICIPANTS, with_mri=N_MRI, imputations=2, seed=5, quick_model=True)
    again.run()
    after = {p: p.stat().st_mtime_ns for p in (run.out / "segmentation").glob("cases/*/labels.nii.gz")}
    assert before == after
    skipped = [name for name, _, status in again.steps if status.startswith("skipped")]
    assert "simulate trial + imaging cohort" in skipped
