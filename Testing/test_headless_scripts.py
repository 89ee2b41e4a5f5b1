"""The four headless Slicer scripts (``<M>/Resources/Scripts/<m>_headless.py``) through slicer-core.

Each script's ``main(argv)`` is what ``Slicer --no-main-window --python-script <script> -- argv``
runs; here it runs against the real MRML scene of the harness on real inputs: a phantom made by
the phantom CLI, the ParaspinalSeg outputs feeding ParaspinalRadiomics and LBPRiskModel, and a
trial simulated by the TrialAnalysis CLI. Outputs are checked against the libraries run on the
same files and against the phantom's ground truth.
"""

from __future__ import annotations

import importlib.util
import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ParaspinalLBPCore.structures import MUSCLE_NAMES

pytestmark = pytest.mark.slicer

REPO = Path(__file__).resolve().parents[1]
MUSCLES = list(MUSCLE_NAMES)  # the phantom has every muscle of the vocabulary
EXACT = [
    "n_voxels",
    "csa_cm2",
    "fcsa_cm2",
    "volume_cm3",
    "fat_fraction_pct",
    "goutallier_grade",
    "fat_volume_fraction_pct",
    "lean_csa_cm2",
    "imat_cm2",
    "ff_erode_px",
]


def _script(module: str):
    """Import ``<module>/Resources/Scripts/<module lower>_headless.py`` as a Python module."""
    path = REPO / module / "Resources" / "Scripts" / f"{module.lower()}_headless.py"
    spec = importlib.util.spec_from_file_location(f"{module.lower()}_headless", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], check=True, capture_output=True, text=True, timeout=600)


def _key(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(slice=pd.to_numeric(df["slice"], errors="coerce").fillna(-1).astype(int))
    return df.set_index(["structure", "level", "slice"]).sort_index()


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    """Two-level phantom, its segmentation by the Lib's CLI and by the headless script."""
    import slicer_harness

    root = tmp_path_factory.mktemp("headless")
    ph = root / "phantom"
    _cli("ParaspinalSegLib", "phantom", "--out", str(ph), "--seed", "2", "--levels", "L4-L5")
    dixon = ["--water", str(ph / "water.nii.gz"), "--fat", str(ph / "fat.nii.gz")]
    marks = ["--seeds", str(ph / "seeds.mrk.json"), "--levels", str(ph / "levels.mrk.json")]
    _cli("ParaspinalSegLib", "segment", *dixon, *marks, "--case-id", "ph", "--out-dir", str(root / "cli"))
    slicer = slicer_harness.bootstrap()
    slicer.mrmlScene.Clear(0)
    status = _script("ParaspinalSeg").main(
        [*dixon, *marks, "--case-id", "ph", "--out-dir", str(root / "seg")]
    )
    assert status == 0
    return {"root": root, "phantom": ph, "cli": root / "cli", "seg": root / "seg", "dixon": dixon}


def test_paraspinalseg_script_matches_lib(case: dict) -> None:
    """Segment + measure in the scene == the segment CLI on the same files; CSA near the truth."""
    seg_dir = case["seg"]
    assert (seg_dir / "segmentation.seg.nrrd").is_file()
    got = pd.read_csv(seg_dir / "measurements.csv", keep_default_na=False, na_values=[""])
    lib = pd.read_csv(case["cli"] / "measurements.csv", keep_default_na=False, na_values=[""])
    assert list(got.columns) == list(lib.columns)  # C4 column order
    assert set(got["structure"]) == set(MUSCLES)
    assert set(got["level"]) == {"all", "L4", "L5"}
    whole = got[got["slice"].isna()]
    assert len(whole) == len(MUSCLES) * 3 and (whole["case_id"] == "ph").all()
    assert (got["fat_method"] == "dixon").all()
    # Same segmentation and measurement as the Lib: whole-volume and per-slice rows are identical.
    # (Level rows are checked against the phantom's level ranges below: the Lib's segment CLI puts
    # a slice exactly midway between two landmarks into the lower level, the Logic into the upper.)
    for level_free in (lambda d: d[d["level"] == "all"], lambda d: d[d["slice"].notna()]):
        a = level_free(got).set_index(["structure", "slice"]).sort_index()
        b = level_free(lib).set_index(["structure", "slice"]).sort_index()
        assert a.index.equals(b.index)
        for col in EXACT:
            np.testing.assert_allclose(a[col].astype(float), b[col].astype(float), rtol=1e-9, err_msg=col)
    # Level rows: the slices of each level are those of the phantom's labels.json (C1) and add up.
    truth_levels = json.loads((case["phantom"] / "labels.json").read_text())["levels"]
    per_slice = got[got["slice"].notna()]
    for level, (k0, k1) in truth_levels.items():
        assert set(per_slice.loc[per_slice["level"] == level, "slice"].astype(int)) == set(range(k0, k1 + 1))
        sums = per_slice[per_slice["level"] == level].groupby("structure")["n_voxels"].sum()
        rows = whole[whole["level"] == level].set_index("structure")["n_voxels"]
        assert (sums.sort_index() == rows.sort_index()).all(), level
    # Wiring check against the phantom's ground truth (names, sides and levels land on the right
    # muscles; segmentation accuracy itself is tested in ParaspinalSeg/Testing): CSA within a factor
    # 0.5–1.5, FF within 5 points. Measured here: MF/ES ~0.7×, psoas/QL ~0.97× truth CSA.
    truth = json.loads((case["phantom"] / "truth.json").read_text())["structures"]
    rows = whole.set_index(["structure", "level"])
    for name in MUSCLES:
        for level in ("L4", "L5"):
            t, row = truth[name][level], rows.loc[(name, level)]
            assert 0.5 < row["csa_cm2"] / t["csa_cm2"] < 1.5, (name, level, row["csa_cm2"], t["csa_cm2"])
            assert abs(row["fat_fraction_pct"] - t["fat_fraction_pct"]) < 5.0, (name, level)


def test_paraspinalseg_script_measures_saved_segmentation(case: dict, slicer_scene) -> None:
    """Measure-only mode on the saved .seg.nrrd reproduces the table (round trip through the file)."""
    out = case["root"] / "remeasure"
    seg = str(case["seg"] / "segmentation.seg.nrrd")
    levels = ["--levels", str(case["phantom"] / "levels.mrk.json")]
    args = [*case["dixon"], *levels, "--segmentation", seg, "--case-id", "ph", "--out-dir", str(out)]
    assert _script("ParaspinalSeg").main(args) == 0
    a = _key(pd.read_csv(out / "measurements.csv"))
    b = _key(pd.read_csv(case["seg"] / "measurements.csv"))
    assert a.index.equals(b.index)
    for col in [*EXACT, "mean_intensity", "asymmetry_index"]:
        np.testing.assert_allclose(a[col].astype(float), b[col].astype(float), rtol=1e-9, err_msg=col)
    # --erosion-voxels (default 1) reaches the fat fraction only: same areas, and more fat once the rim
    # that touches the surrounding fat is counted again (0 = raw mean over the whole mask).
    raw_out = case["root"] / "remeasure_raw"
    raw_args = [*case["dixon"], *levels, "--segmentation", seg, "--erosion-voxels", "0"]
    assert _script("ParaspinalSeg").main([*raw_args, "--out-dir", str(raw_out)]) == 0
    e = _key(pd.read_csv(raw_out / "measurements.csv"))
    np.testing.assert_allclose(e["csa_cm2"].astype(float), a["csa_cm2"].astype(float), rtol=1e-12)
    whole_rows = e.index.get_level_values("slice") == -1
    assert e.loc[whole_rows, "fat_fraction_pct"].mean() > a.loc[whole_rows, "fat_fraction_pct"].mean() + 0.2
    # bad input: one clear error, exit status 2
    assert _script("ParaspinalSeg").main([*case["dixon"], "--segmentation", "/nonexistent.seg.nrrd",
                                          "--out-dir", str(out)]) == 2  # fmt: skip


def test_paraspinalradiomics_script_matches_lib(case: dict, slicer_scene) -> None:
    """Features from the scene == ParaspinalRadiomicsLib on the CLI's label map of the same case."""
    import SimpleITK as sitk

    from ParaspinalRadiomicsLib import extraction

    out = case["root"] / "features.csv"
    water = str(case["phantom"] / "water.nii.gz")
    args = ["--image", water, "--segmentation", str(case["seg"] / "segmentation.seg.nrrd")]
    args += ["--levels", str(case["phantom"] / "levels.mrk.json"), "--per-level"]
    args += ["--classes", "firstorder", "shape", "--case-id", "ph", "--out", str(out)]
    assert _script("ParaspinalRadiomics").main(args) == 0
    got = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert len(got) == len(MUSCLES) * 3 and (got["status"] == "ok").all()
    assert list(got.columns[:8]) == [
        "case_id", "structure", "level", "n_voxels", "status", "reason", "settings_hash", "pyradiomics_version",
    ]  # fmt: skip
    labels_json = json.loads((case["cli"] / "labels.json").read_text())
    names = {int(k): v for k, v in labels_json["labels"].items()}
    # level slabs as the Logic derives them from the landmarks (== the phantom's own labels.json)
    truth_levels = json.loads((case["phantom"] / "labels.json").read_text())["levels"]
    levels = {k: tuple(v) for k, v in truth_levels.items()}
    preset = extraction.load_params("protocol-mri").params
    enabled = preset["featureClass"]
    rp = extraction.load_params({**preset, "featureClass": {c: enabled[c] for c in ("firstorder", "shape")}})
    lib = extraction.extract_case(
        sitk.ReadImage(water),
        sitk.ReadImage(str(case["cli"] / "labels.nii.gz")),
        names,
        rp,
        levels=levels,
        per_level=True,
        case_id="ph",
    )
    g, ref = (
        got.set_index(["structure", "level"]).sort_index(),
        lib.set_index(["structure", "level"]).sort_index(),
    )
    assert g.index.equals(ref.index)
    assert (g["settings_hash"] == ref["settings_hash"]).all()
    feats = [c for c in ref.columns if c.startswith("original_")]
    assert len(feats) > 20 and set(feats) <= set(g.columns)
    np.testing.assert_array_equal(g["n_voxels"].to_numpy(), ref["n_voxels"].to_numpy())
    for col in feats:
        np.testing.assert_allclose(g[col].astype(float), ref[col].astype(float), rtol=1e-9, err_msg=col)
    # The segment volume seen by pyradiomics matches the measurement table's voxel count.
    meas = pd.read_csv(case["seg"] / "measurements.csv")
    meas = meas[meas["slice"].isna()].set_index(["structure", "level"])
    for key, row in g.iterrows():
        assert row["n_voxels"] == meas.loc[key, "n_voxels"], key


def test_lbpriskmodel_script_predicts_like_bundle(case: dict, slicer_scene, tmp_path: Path) -> None:
    """Prediction from the case's tables == the bundle on the same pivoted record; planted effect."""
    from LBPRiskModelLib import dataset
    from LBPRiskModelLib.bundle import load_bundle
    from LBPRiskModelLib.export import train
    from LBPRiskModelLib.train import load_config

    rng = np.random.default_rng(0)
    n = 160
    ff = rng.uniform(5, 45, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(ff - 25) / 4))).astype(int)
    df = pd.DataFrame(
        {
            "case_id": [f"P{i:03d}" for i in range(n)],
            "fat_fraction_pct__multifidus_left__L4": ff,
            "csa_cm2__multifidus_left__L4": rng.normal(6.0, 1.0, n),
            "age": rng.uniform(60, 85, n),
            "responder": y,
        }
    )
    cfg = load_config(None, quick=True)
    cfg["families"] = ["logistic_regression"]  # one family, few replicates: a small, fast bundle
    cfg["selection"]["n_bootstrap"], cfg["optimism_bootstrap"] = 5, 2
    cfg["auc_bootstrap"], cfg["ci_models"] = 50, 3
    bundle_dir = tmp_path / "bundle"
    train(df, "responder", cfg, bundle_dir, progress=False, figures_on=False)
    bundle = load_bundle(bundle_dir)
    fields = {f.name for f in bundle.schema}
    assert "fat_fraction_pct__multifidus_left__L4" in fields

    meas_csv = case["seg"] / "measurements.csv"
    out = tmp_path / "prediction.json"
    clinical = {"age": 70.0} if "age" in fields else {}
    args = ["--model", str(bundle_dir), "--measurements", str(meas_csv)]
    args += ["--clinical-json", json.dumps(clinical), "--out", str(out)]
    assert _script("LBPRiskModel").main(args) == 0
    pred = json.loads(out.read_text())
    wide = dataset.pivot_measurements(pd.read_csv(meas_csv)).iloc[0]
    record = {k: float(v) for k, v in wide.items() if k in fields} | clinical
    assert pred["record"] == pytest.approx(record, rel=1e-12)
    expected = bundle.predict_one(record)
    assert pred["risk"] == pytest.approx(expected.risk, rel=1e-12)
    assert pred["risk_group"] == expected.risk_group
    assert pred["ci_low"] <= pred["risk"] <= pred["ci_high"]
    assert pred["bundle_hash"] == expected.bundle_hash
    contributions = pd.read_csv(tmp_path / "prediction_contributions.csv")
    assert len(contributions) == len(pred["contributions"]) > 0
    # Planted predictor: the phantom's multifidus FF (~15 %) is below the 25 % midpoint → low risk.
    ff_case = record["fat_fraction_pct__multifidus_left__L4"]
    assert 5 < ff_case < 25 and pred["risk"] < 0.5
    # A clinical field the model does not use is a user error (exit 2), not a crash.
    bad = [*args[:-4], "--clinical-json", '{"shoe_size": 42}', "--out", str(tmp_path / "bad.json")]
    assert _script("LBPRiskModel").main(bad) == 2


def test_trialanalysis_script_report(slicer_scene, tmp_path: Path) -> None:
    """Simulated trial → validation, report and primary table equal to results.json; bad data → 1."""
    data = tmp_path / "trial"
    _cli("TrialAnalysisLib", "simulate", "--n", "80", "--seed", "3", "--out", str(data))
    out = tmp_path / "report"
    mod = _script("TrialAnalysis")
    assert mod.main(["--data", str(data), "--out", str(out), "--imputations", "2"]) == 0
    assert (out / "report.html").stat().st_size > 10_000
    assert pd.read_csv(out / "validation.csv").query("level == 'error'").empty
    primary = pd.read_csv(out / "primary.csv").set_index("analysis")
    assert list(primary.index) == ["primary_mi", "primary_cc", "primary_pp"]
    results = json.loads((out / "results.json").read_text())
    for analysis, row in primary.iterrows():
        ref = results["primary"][analysis]["tables"]["difference"][0]
        for col in ("estimate", "se", "ci_low", "ci_high", "p"):
            assert row[col] == pytest.approx(ref[col], rel=1e-12), (analysis, col)
        assert row["ci_low"] < row["estimate"] < row["ci_high"]
    # Broken export: participants without an arm → validation errors, exit status 1, no report.
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    participants = pd.read_csv(broken / "participants.csv")
    participants.drop(columns=["arm"]).to_csv(broken / "participants.csv", index=False)
    out2 = tmp_path / "report2"
    assert mod.main(["--data", str(broken), "--out", str(out2)]) == 1
    issues = pd.read_csv(out2 / "validation.csv")
    assert (issues["level"] == "error").any() and not (out2 / "report.html").exists()
    assert mod.main(["--data", str(tmp_path / "missing"), "--out", str(out2)]) == 2
    # As Slicer runs it: the script as __main__, arguments after "--" in sys.argv, exit status.
    script = REPO / "TrialAnalysis/Resources/Scripts/trialanalysis_headless.py"
    argv = [str(script), "--", "--data", str(data), "--out", str(tmp_path / "v"), "--validate-only"]
    saved, sys.argv = sys.argv, argv
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved
    assert exit_info.value.code == 0
    assert (tmp_path / "v" / "validation.csv").is_file() and not (tmp_path / "v" / "report.html").exists()


def test_user_error_is_one_line_exit_2(case: dict, slicer_scene, tmp_path: Path, capsys) -> None:
    """Bad input (a file Slicer cannot read, a missing file) → exit status 2 and one line naming the option."""
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    seg = str(case["seg"] / "segmentation.seg.nrrd")
    mod = _script("ParaspinalRadiomics")
    capsys.readouterr()
    assert mod.main(["--image", str(broken), "--segmentation", seg, "--out", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"paraspinalradiomics_headless: error: --image: Slicer could not load {broken}")
    assert err.count("\n") == 1 and "Traceback" not in err
    missing = tmp_path / "missing.nii.gz"
    assert mod.main(["--image", str(missing), "--segmentation", seg, "--out", str(tmp_path / "f.csv")]) == 2
    assert (
        capsys.readouterr().err
        == f"paraspinalradiomics_headless: error: --image: file not found: {missing}\n"
    )
    assert not (tmp_path / "f.csv").exists()


def test_bug_shows_its_traceback_and_exits_1(capsys) -> None:
    """Any exception that is not a ParaspinalLBPCore UserError is a bug: it keeps its traceback (a KeyError
    or OSError from code is not turned into a one-line 'bad input'), and the script exits with status 1."""
    from ParaspinalLBPCore.errors import MissingKeyError
    from ParaspinalLBPSlicer import headless

    def buggy(args: list[str]) -> Path:
        return {"measurements": Path("m.csv")}["segmentation"]  # a bug: KeyError, not a UserError

    def bad_input(args: list[str]) -> Path:
        raise MissingKeyError("--measurements: m.csv has no case_id column")

    def parse(argv: list[str]) -> list[str]:
        return argv

    with pytest.raises(KeyError, match="segmentation"):
        headless.runScript("prog", parse, buggy, [])
    capsys.readouterr()
    # As Slicer runs a script: the traceback on stderr, exit status 1 (not 2, and Slicer does not hang).
    with pytest.raises(SystemExit) as exit_info:
        headless.runAsScript(lambda: headless.runScript("prog", parse, buggy, []))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and err.rstrip().endswith(
        "KeyError: 'segmentation'"
    )
    assert "prog: error" not in err
    # The same script with a user error: one line, exit status 2.
    with pytest.raises(SystemExit) as exit_info:
        headless.runAsScript(lambda: headless.runScript("prog", parse, bad_input, []))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "prog: error: --measurements: m.csv has no case_id column\n"
