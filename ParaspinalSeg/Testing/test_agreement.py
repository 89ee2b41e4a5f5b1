"""``paraspinal-seg agreement``: the shared ICC against Shrout & Fleiss, and the command on the phantom
cohort against a second rater whose left multifidus is one voxel larger everywhere (so Dice, the CSA
bias and the surface distance are known)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalSegLib import agreement as agreement_module
from ParaspinalSegLib.agreement import run_agreement
from ParaspinalSegLib.agreement_report import write_report
from ParaspinalSegLib.bland_altman import bland_altman
from ParaspinalSegLib.cli import main

OK_CASES = ["C1", "C2", "C3", "C4", "C5", "C6"]


# --- the shared ICC ------------------------------------------------------------------------------

# Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges; Table 4 prints ICC(2,1) = 0.29, ICC(3,1) = 0.71.
SF_TABLE2 = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])


def test_the_agreement_icc_reproduces_shrout_fleiss() -> None:
    from ParaspinalSegLib.agreement import (
        icc_from_matrix,  # the shared ICC (ParaspinalLBPCore) the summary calls
    )

    res = icc_from_matrix(SF_TABLE2)
    assert (round(res["ICC(2,1)"], 2), round(res["ICC(3,1)"], 2)) == (0.29, 0.71)
    assert (round(res["MSR"], 2), round(res["MSE"], 2)) == (11.24, 1.02)
    # 95 % CIs as printed by R psych::ICC on the same data
    assert (res["ICC(2,1)_lower"], res["ICC(3,1)_lower"]) == (
        pytest.approx(0.019, abs=5e-4),
        pytest.approx(0.342, abs=5e-4),
    )


# --- the command on the phantom cohort -----------------------------------------------------------


@pytest.fixture(scope="module")
def dilated_rater(batch: Path) -> Path:
    """Rater B: rater A's labels with the left multifidus grown by one voxel in-plane (4-neighbour, over its
    neighbours too), laid out by hand (<case>/labels.nii.gz + labels.json), no batch marker."""
    out = batch.parent / "rater_b"
    for case_id in OK_CASES:
        src = batch / "cases" / case_id
        (out / case_id).mkdir(parents=True)
        shutil.copy(src / "labels.json", out / case_id / "labels.json")
        img = sitk.ReadImage(str(src / "labels.nii.gz"))
        arr = sitk.GetArrayFromImage(img)
        arr[ndi.binary_dilation(arr == 1, np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool))] = 1
        b = sitk.GetImageFromArray(arr)
        b.CopyInformation(img)
        sitk.WriteImage(b, str(out / case_id / "labels.nii.gz"))
    return out


def test_known_dilation_gives_known_dice_bias_and_distance(batch: Path, dilated_rater: Path) -> None:
    result = run_agreement(batch, dilated_rater)
    assert "fat_fraction_pct" in result.measures  # images found through rater A's batch markers
    cases = result.cases.set_index(["case_id", "structure", "level"])
    for case_id in OK_CASES:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(batch / "cases" / case_id / "labels.nii.gz"))) == 1
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(dilated_rater / case_id / "labels.nii.gz"))) == 1
        row = cases.loc[(case_id, "multifidus_left", "all")]
        assert row["dice"] == pytest.approx(2 * a.sum() / (a.sum() + b.sum()), rel=1e-12)  # A inside B
        # B's outline is one 2 mm voxel outside A's: 2 mm, a little more at concave corners
        assert 2.0 <= row["assd_mm"] <= 2.5
        untouched = cases.loc[(case_id, "psoas_left", "all")]
        assert untouched["dice"] == 1.0 and untouched["assd_mm"] == 0.0
    summary = result.summary.set_index(["structure", "level"])
    mf = summary.loc[("multifidus_left", "L4")]
    assert mf["csa_cm2_ba_bias"] < 0 and mf["csa_cm2_ba_bias_hi"] < 0  # B larger everywhere: A − B < 0
    es = summary.loc[("psoas_left", "L4")]
    assert es["csa_cm2_ba_bias"] == 0.0 and es["csa_cm2_ba_sd"] == 0.0
    assert es["csa_cm2_icc21"] == pytest.approx(1.0, abs=1e-12)
    assert es["fat_fraction_pct_ba_bias"] == 0.0 and es["dice_mean"] == 1.0
    pair = result.cases[(result.cases["structure"] == "multifidus_left") & (result.cases["level"] == "L4")]
    shared = agreement_module.icc_from_matrix(pair[["csa_cm2_a", "csa_cm2_b"]].to_numpy(float))
    assert mf["csa_cm2_icc21"] == pytest.approx(shared["ICC(2,1)"], rel=1e-12)
    assert mf["csa_cm2_icc31_lo"] == pytest.approx(shared["ICC(3,1)_lower"], rel=1e-12)
    ba = bland_altman(pair["csa_cm2_a"], pair["csa_cm2_b"])
    assert mf["csa_cm2_ba_loa_upper_hi"] == pytest.approx(ba["loa_upper_hi"], rel=1e-12)


def test_cli_report_and_intra_rater_repeat(batch: Path, dilated_rater: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert (
        main(["agreement", "--a", str(batch), "--b", str(dilated_rater), "--out", str(out), "--progress"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [x for x in lines if x.startswith("PROGRESS")][-1] == "PROGRESS 7/7 done"
    names = sorted(p.name for p in (out / "figures").iterdir())
    summary = pd.read_csv(out / "agreement.csv")
    measures = [m for m in agreement_module.MEASURES if f"{m}_icc21" in summary.columns]
    assert {"csa_cm2", "fat_fraction_pct"} <= set(measures)  # and whatever else the measurement table has
    assert "overlap.png" in names and len(names) == 1 + 8 * len(
        measures
    )  # one Bland-Altman figure per muscle
    assert all(f"ba_{m}_multifidus_left.png" in names for m in measures)
    assert len(summary) == 8 * 3 and set(summary["level"]) == {"all", "L4", "L5"}
    page = (out / "report.html").read_text(encoding="utf-8")
    assert (
        "Shrout PE, Fleiss JL" in page and "Carkeet" in page and "ba_fat_fraction_pct_psoas_right.png" in page
    )
    # the same segmentations twice (an intra-rater repeat without change): perfect agreement
    same = run_agreement(batch, batch)
    assert (same.cases["dice"] == 1.0).all() and (same.cases["assd_mm"] == 0.0).all()
    assert np.allclose(same.summary["csa_cm2_icc21"], 1.0) and (same.summary["csa_cm2_ba_sd"] == 0).all()
    write_report(same, out, "a", "a")  # an earlier report is replaced as a whole
    assert json.dumps(sorted(p.name for p in out.parent.iterdir())) == json.dumps(["report"])


def test_manifest_gives_images_and_levels_to_hand_laid_folders(
    batch: Path, cohort: Path, dilated_rater: Path
) -> None:
    without = run_agreement(dilated_rater, dilated_rater)
    assert "fat_fraction_pct" not in without.measures and any("no images" in n for n in without.notes)
    with_manifest = run_agreement(dilated_rater, dilated_rater, manifest=cohort)
    assert "fat_fraction_pct" in with_manifest.measures
    ref = run_agreement(batch, dilated_rater).cases.set_index(["case_id", "structure", "level"])
    mine = with_manifest.cases.set_index(["case_id", "structure", "level"])
    np.testing.assert_allclose(
        mine["fat_fraction_pct_a"], ref.loc[mine.index, "fat_fraction_pct_b"], rtol=1e-12
    )


def test_errors_name_the_folder_and_case(batch: Path, dilated_rater: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--b: folder not found"):
        run_agreement(batch, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"--b .*empty: no case folder with a labels.nii.gz"):
        run_agreement(batch, tmp_path / "empty")
    one = tmp_path / "one"
    shutil.copytree(dilated_rater / "C1", one / "C1")
    with pytest.raises(ValueError, match="1 case\\(s\\) in common; agreement needs at least 2"):
        run_agreement(batch, one)
    shifted = tmp_path / "shifted"
    shutil.copytree(dilated_rater, shifted)
    img = sitk.ReadImage(str(shifted / "C2" / "labels.nii.gz"))
    img.SetOrigin([o + 5.0 for o in img.GetOrigin()])
    sitk.WriteImage(img, str(shifted / "C2" / "labels.nii.gz"))
    with pytest.raises(ValueError, match=r"case C2: the label maps of .* are not on one voxel grid: origin"):
        run_agreement(batch, shifted)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="not an agreement report"):
        write_report(run_agreement(batch, batch), tmp_path / "busy", "a", "b")
