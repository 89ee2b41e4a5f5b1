"""measure_labels(): CSA, FF (Dixon, noise floor, erosion, linear model), fCSA, Goutallier, asymmetry on known arrays."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ParaspinalSegLib import fat as fatmod
from ParaspinalSegLib.measure import GOUTALLIER_FF_THRESHOLDS, goutallier_grade, measure_labels


def image(a: np.ndarray, spacing=(0.5, 0.5, 3.0)) -> sitk.Image:
    im = sitk.GetImageFromArray(a)
    im.SetSpacing(spacing)
    return im


@pytest.fixture
def case():
    """Two squares per slice: left 20×20 (FF 20 %), right 10×20 (FF 10 %); fat around; 3 slices."""
    lab = np.zeros((3, 60, 80), np.uint8)
    lab[:, 20:40, 10:30] = 1  # multifidus_left
    lab[:, 20:40, 50:60] = 2  # multifidus_right
    ff = np.full(lab.shape, 0.95, np.float32)
    ff[lab == 1] = 0.2
    ff[lab == 2] = 0.1
    ff[:, :5, :] = 0.5  # "air" rows: will be below the noise floor
    s = np.full(lab.shape, 1000.0, np.float32)
    s[:, :5, :] = 1.0
    water, fat = (1 - ff) * s, ff * s
    return lab, water, fat


NAMES = {1: "multifidus_left", 2: "multifidus_right"}


def test_dixon_csa_ff_fcsa_grade_asymmetry(case) -> None:
    lab, water, fat = case
    t = measure_labels(
        image(lab), NAMES, water=image(water), fat=image(fat), levels={"L4": (0, 2)}, case_id="c"
    )
    whole = t[(t.level == "L4") & t.slice.isna()].set_index("structure")
    assert whole.loc["multifidus_left", "csa_cm2"] == pytest.approx(400 * 0.25 / 100)
    assert whole.loc["multifidus_right", "csa_cm2"] == pytest.approx(200 * 0.25 / 100)
    assert whole.loc["multifidus_left", "volume_cm3"] == pytest.approx(3 * 400 * 0.75 / 1000)
    assert whole.loc["multifidus_left", "fat_fraction_pct"] == pytest.approx(20.0, abs=1e-4)
    assert whole.loc["multifidus_right", "fat_fraction_pct"] == pytest.approx(10.0, abs=1e-4)
    assert whole.loc["multifidus_left", "fcsa_cm2"] == pytest.approx(1.0 * 0.8)
    assert whole.loc["multifidus_left", "goutallier_grade"] == 1  # 10 ≤ 20 < 25
    assert whole.loc["multifidus_right", "goutallier_grade"] == 1  # the boundary belongs to the upper grade
    # |L − R| / mean = |1.0 − 0.5| / 0.75, on both rows
    assert whole.asymmetry_index.tolist() == pytest.approx([2 / 3, 2 / 3])
    assert set(t.fat_method) == {"dixon"}
    per_slice = t[t.slice.notna()]
    assert len(per_slice) == 6 and set(per_slice.level) == {"L4"}


def test_goutallier_mapping_is_configurable() -> None:
    assert [goutallier_grade(x) for x in (0, 9.9, 10, 30, 45, 70)] == [0, 0, 1, 2, 3, 4]
    assert GOUTALLIER_FF_THRESHOLDS == (10.0, 25.0, 40.0, 60.0)
    kjaer_like = (10.0, 50.0, 101.0, 102.0)
    assert goutallier_grade(60, kjaer_like) == 2
    assert np.isnan(goutallier_grade(np.nan))
    with pytest.raises(ValueError, match="4 increasing"):
        goutallier_grade(5, (30.0, 10.0, 40.0, 60.0))


def test_erosion_removes_partial_volume_rim(case) -> None:
    lab, water, fat = case
    ff = fat / (water + fat)
    ff[(lab == 1) & ~fatmod.erode_inplane(lab == 1)] = 0.6  # fatty outline, as partial volume gives
    s = water + fat
    t0 = measure_labels(image(lab), NAMES, water=image((1 - ff) * s), fat=image(ff * s), per_slice=False)
    t1 = measure_labels(
        image(lab), NAMES, water=image((1 - ff) * s), fat=image(ff * s), per_slice=False, erode_px=1
    )
    a0 = t0.set_index("structure").loc["multifidus_left", "fat_fraction_pct"]
    a1 = t1.set_index("structure").loc["multifidus_left", "fat_fraction_pct"]
    assert a0 == pytest.approx(100 * (324 * 0.2 + 76 * 0.6) / 400, abs=1e-3)
    assert a1 == pytest.approx(20.0, abs=1e-4)
    # erosion never changes the area
    assert t0.csa_cm2.tolist() == t1.csa_cm2.tolist()


def test_noise_floor_leaves_out_air(case) -> None:
    lab, water, fat = case
    lab2 = lab.copy()
    lab2[:, 0:5, 10:30] = 1  # the label reaches into air (F + W ≈ 1): those voxels carry no FF
    ff = fatmod.dixon_ff(water, fat)
    assert np.isnan(ff[:, :5]).all() and np.isfinite(ff[:, 5:]).all()
    t = measure_labels(image(lab2), NAMES, water=image(water), fat=image(fat), per_slice=False)
    assert t.set_index("structure").loc["multifidus_left", "fat_fraction_pct"] == pytest.approx(
        20.0, abs=1e-4
    )


def test_linear_model_recovers_ff_and_needs_fat(case) -> None:
    lab, water, fat = case
    ff = fat / (water + fat)
    lean, fat_sig = 300.0, 1200.0
    t1 = lean * (1 - ff) + fat_sig * ff  # linear signal model
    t1[:, :5] = 0.0
    # add lean voxels so the histogram mode inside the muscles is the lean level
    lab3 = lab.copy()
    lab3[:, 42:58, 10:40] = 1
    t1[:, 42:58, 10:40] = lean
    # auto: t1_local cannot fit a bias field without subcutaneous fat here, so it falls back to t1_linear
    t = measure_labels(image(lab3), NAMES, image=image(t1.astype(np.float32)), per_slice=False).set_index(
        "structure"
    )
    assert set(t.fat_method) == {"t1_linear"}
    # left: 400 voxels at the 20 % level and 480 at the lean level (the mode): mean 20·400/880 %
    assert t.loc["multifidus_left", "fat_fraction_pct"] == pytest.approx(20 * 400 / 880, abs=1.0)
    assert t.loc["multifidus_right", "fat_fraction_pct"] == pytest.approx(10.0, abs=1.5)
    flat = np.full(lab.shape, 300.0, np.float32)
    with pytest.raises(ValueError, match="no bright"):
        measure_labels(image(lab), NAMES, image=image(flat), fat_method="t1_linear")
    auto = measure_labels(image(lab), NAMES, image=image(flat), per_slice=False)
    assert set(auto.fat_method) == {"none"} and auto.fat_fraction_pct.isna().all()


def test_measure_errors_name_the_input(case) -> None:
    lab, water, fat = case
    with pytest.raises(ValueError, match="only one"):
        measure_labels(image(lab), NAMES, water=image(water))
    with pytest.raises(ValueError, match="level L9"):
        measure_labels(image(lab), NAMES, levels={"L9": (0, 7)})
    other = image(water, spacing=(1.0, 1.0, 3.0))
    with pytest.raises(ValueError, match="not on the same voxel grid"):
        measure_labels(image(lab), NAMES, water=other, fat=image(fat))


def test_signal_fat_fraction_inverts_the_mixture() -> None:
    """v adipose in lean muscle: S = lean·(1 − v) + fat·v; Dixon reports F/(F+W) = fat·v/S, not v."""
    lean, fat_sig = 400.0, 1000.0
    v = np.linspace(0.0, 1.0, 21)
    s = lean * (1 - v) + fat_sig * v
    np.testing.assert_allclose(fatmod.signal_fat_fraction(s, lean, fat_sig), fat_sig * v / s, atol=1e-6)
    # noise below the lean level reads 0, never negative
    assert fatmod.signal_fat_fraction(np.array([350.0]), lean, fat_sig)[0] == 0.0
    # a T1w-like contrast (muscle near the noise) is capped at the Dixon contrast k = 3: v = 0.5 -> 0.75
    got = fatmod.signal_fat_fraction(np.array([10 + 0.5 * 990]), 10.0, 1000.0)[0]
    assert got == pytest.approx(1.5 / 2.0, abs=1e-6)
    with pytest.raises(ValueError, match="not above"):
        fatmod.signal_fat_fraction(s, 500.0, 400.0)


def bias_case(gain: float = 0.3, seed: int = 0):
    """Body with subcutaneous fat (1000) around a deep and a superficial muscle (lean 400, 30 % of voxels
    30 % adipose) and a lean muscle; coil gain 1 + gain·y (posterior brighter); Gaussian noise σ 4."""
    rng = np.random.default_rng(seed)
    nk, nj, ni = 4, 140, 180
    jj, ii = np.mgrid[0:nj, 0:ni]
    body = ((jj - 70) / 62.0) ** 2 + ((ii - 90) / 85.0) ** 2 <= 1
    inner = ((jj - 70) / 50.0) ** 2 + ((ii - 90) / 73.0) ** 2 <= 1
    lean, fat_sig = 400.0, 1000.0
    lab = np.zeros((nk, nj, ni), np.uint8)
    lab[:, 55:75, 80:100] = 1  # deep (multifidus_left)
    lab[:, 90:112, 40:80] = 3  # superficial (erector_spinae_left)
    lab[:, 40:52, 120:150] = 5  # lean (psoas_left)
    s = np.where(body, fat_sig, 0.0)[None].repeat(nk, 0)
    s[:, inner] = 350.0
    m = lab > 0
    adipose = np.where((rng.random(lab.shape) < 0.3) & np.isin(lab, (1, 3)), 0.3, 0.0)
    s[m] = lean * (1 - adipose[m]) + fat_sig * adipose[m]
    ff_true = fat_sig * adipose / np.maximum(s, 1.0)
    gain_field = 1 + gain * np.linspace(-1, 1, nj)[None, :, None]
    img = s * gain_field + rng.normal(0, 4, s.shape)
    img[:, ~body] = np.abs(rng.normal(0, 4, (nk, int((~body).sum()))))
    return img.astype(np.float32), lab, ff_true


def test_t1_local_corrects_coil_bias_where_t1_linear_does_not() -> None:
    img, lab, ff_true = bias_case()
    names = {1: "multifidus_left", 3: "erector_spinae_left", 5: "psoas_left"}
    spacing = (1.0, 1.0, 4.0)
    truth = {n: 100 * ff_true[lab == v].mean() for v, n in names.items()}  # 14.8, 15.2, 0
    local = measure_labels(
        image(lab, spacing), names, image=image(img, spacing), per_slice=False, fat_method="t1_local"
    )
    plain = measure_labels(
        image(lab, spacing), names, image=image(img, spacing), per_slice=False, fat_method="t1_linear"
    )
    local, plain = local.set_index("structure"), plain.set_index("structure")
    assert set(local.fat_method) == {"t1_local"}
    # measured: t1_local 15.6 / 15.9 / 1.0 vs truth 14.8 / 15.2 / 0; t1_linear 4.7 / 9.2 / 0
    for n, t in truth.items():
        assert abs(local.loc[n, "fat_fraction_pct"] - t) < 1.5, (n, local.loc[n, "fat_fraction_pct"], t)
    assert truth["multifidus_left"] - plain.loc["multifidus_left", "fat_fraction_pct"] > 8.0
    # no coil bias: t1_local still right (the field fit returns ~1)
    img0, lab0, ff0 = bias_case(gain=0.0, seed=1)
    flat = measure_labels(
        image(lab0, spacing), names, image=image(img0, spacing), per_slice=False, fat_method="t1_local"
    )
    flat = flat.set_index("structure")
    for v, n in names.items():
        assert abs(flat.loc[n, "fat_fraction_pct"] - 100 * ff0[lab0 == v].mean()) < 1.5


def test_t1_local_bias_field_range() -> None:
    img, lab, _ = bias_case()
    with pytest.raises(ValueError, match="no bright"):
        fatmod.local_linear_ff(np.full(img.shape, 300.0, np.float32), lab, [1, 3, 5])
    ffmap, refs = fatmod.local_linear_ff(img, lab, [1, 3, 5])
    lo, hi = refs["bias_gain_range"]
    # true gain over the muscles' band: 1 ± 0.3 around the body centre → ratio hi/lo ≈ 1.3/0.75
    assert 1.4 < hi / lo < 2.0, refs["bias_gain_range"]
    assert np.isnan(ffmap[lab == 0]).all() and np.isfinite(ffmap[lab > 0]).all()


def test_erosion_never_empties_a_slice() -> None:
    lab = np.zeros((2, 20, 20), np.uint8)
    lab[0, 5:15, 5:15] = 1  # 10×10: eroded core on slice 0
    lab[1, 5:7, 5:15] = 1  # 2 voxels thick: erosion would empty slice 1
    ff = np.where(lab > 0, 0.2, 0.9).astype(np.float32)
    ff[1, 5:7, 5:15] = 0.4
    s = np.full(lab.shape, 1000.0, np.float32)
    t = measure_labels(
        image(lab), {1: "multifidus_left"}, water=image((1 - ff) * s), fat=image(ff * s), erode_px=1
    )
    per_slice = t[t.slice.notna()].set_index("slice")["fat_fraction_pct"]
    assert per_slice.loc[0] == pytest.approx(20.0, abs=1e-4)
    assert per_slice.loc[1] == pytest.approx(40.0, abs=1e-4)  # kept its voxels instead of NaN


def test_measure_cli_t1_local(tmp_path) -> None:
    import json
    import subprocess
    import sys

    import pandas as pd

    img, lab, _ = bias_case()
    sitk.WriteImage(image(img, (1.0, 1.0, 4.0)), str(tmp_path / "t1.nii.gz"))
    sitk.WriteImage(image(lab, (1.0, 1.0, 4.0)), str(tmp_path / "labels.nii.gz"))
    (tmp_path / "labels.json").write_text(
        json.dumps({"labels": {"1": "multifidus_left", "3": "erector_spinae_left", "5": "psoas_left"}})
    )
    cmd = [sys.executable, "-m", "ParaspinalSegLib", "measure", "--image", str(tmp_path / "t1.nii.gz")]
    cmd += [
        "--labels",
        str(tmp_path / "labels.nii.gz"),
        "--fat-method",
        "t1_local",
        "--out-dir",
        str(tmp_path),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    table = pd.read_csv(tmp_path / "measurements.csv")
    assert set(table.fat_method) == {"t1_local"}
    whole = table[(table.level == "all") & table.slice.isna()].set_index("structure")
    assert 13.0 < whole.loc["multifidus_left", "fat_fraction_pct"] < 17.5
