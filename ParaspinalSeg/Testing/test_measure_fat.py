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
    t = measure_labels(
        image(lab3), NAMES, image=image(t1.astype(np.float32)), per_slice=False, fat_method="t1_linear"
    ).set_index("structure")
    assert set(t.fat_method) == {"t1_linear"} and set(t.ff_type) == {"volume"}
    # t1_linear's fraction is the linear (volume-like) one: the same number in both columns
    assert (t.fat_fraction_pct == t.fat_volume_fraction_pct).all()
    # left: 400 voxels at the 20 % level and 480 at the lean level (the mode): mean 20·400/880 %
    assert t.loc["multifidus_left", "fat_fraction_pct"] == pytest.approx(20 * 400 / 880, abs=1.0)
    assert t.loc["multifidus_right", "fat_fraction_pct"] == pytest.approx(10.0, abs=1.5)
    # no body outline in view, so the contrast check cannot judge (contrast.py); the model itself finds no fat
    flat = np.full(lab.shape, 300.0, np.float32)
    with pytest.raises(ValueError, match="no bright"):
        measure_labels(image(lab), NAMES, image=image(flat), fat_method="t1_linear")
    auto = measure_labels(image(lab), NAMES, image=image(flat), per_slice=False)
    assert set(auto.fat_method) == {"none"} and auto.fat_fraction_pct.isna().all()
    assert auto.lean_csa_cm2.isna().all() and (auto.csa_cm2 > 0).all()


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
    # measured: t1_local 15.6 / 15.9 / 1.0 vs truth 14.8 / 15.2 / 0; t1_linear (uncorrected, its linear fraction)
    # 11.5 for the deep multifidus
    for n, t in truth.items():
        assert abs(local.loc[n, "fat_fraction_pct"] - t) < 1.5, (n, local.loc[n, "fat_fraction_pct"], t)
    assert truth["multifidus_left"] - plain.loc["multifidus_left", "fat_fraction_pct"] > 2.5
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
    ffmap, vmap, refs = fatmod.local_linear_ff(img, lab, [1, 3, 5])
    assert np.isfinite(vmap[lab > 0]).all() and (vmap[lab > 0] <= 1).all()
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


def mixture_case(gain: float = 0.4, seed: int = 0, k: float = 2.6):
    """Dixon body: subcutaneous adipose tissue around the organs and, just inside it at the back, two muscles whose
    voxels are lean/adipose mixtures of known volume fraction (left: 30 % of voxels at v = 0.6, else lean; right:
    every voxel v = 0.25), adipose total signal ``k`` × lean's, a smooth coil gain 1 ± ``gain`` across the body
    (posterior brighter), Gaussian noise σ 3."""
    rng = np.random.default_rng(seed)
    nk, nj, ni = 4, 140, 180
    jj, ii = np.mgrid[0:nj, 0:ni]
    body = ((jj - 70) / 62.0) ** 2 + ((ii - 90) / 85.0) ** 2 <= 1
    inner = ((jj - 70) / 48.0) ** 2 + ((ii - 90) / 71.0) ** 2 <= 1
    lean_w, lean_f = 480.0, 0.0
    fat_s, fat_ff = 480.0 * k, 0.95
    lab = np.zeros((nk, nj, ni), np.uint8)
    lab[:, 92:116, 55:88] = 1  # multifidus_left, beside the posterior subcutaneous fat
    lab[:, 92:116, 92:125] = 2  # multifidus_right
    v = np.zeros(lab.shape)
    v[:, inner] = 0.0
    v[(lab == 1) & (rng.random(lab.shape) < 0.3)] = 0.6
    v[lab == 2] = 0.25
    w = np.where(body, fat_s * (1 - fat_ff), 0.0)[None].repeat(nk, 0)
    f = np.where(body, fat_s * fat_ff, 0.0)[None].repeat(nk, 0)
    w[:, inner], f[:, inner] = 300.0, 20.0  # organs: neither muscle nor fat
    m = lab > 0
    w[m] = (1 - v[m]) * lean_w + v[m] * fat_s * (1 - fat_ff)
    f[m] = (1 - v[m]) * lean_f + v[m] * fat_s * fat_ff
    g = 1 + gain * np.linspace(-1, 1, nj)[None, :, None] * np.linspace(0.8, 1.2, ni)[None, None, :]
    w, f = (a * g + rng.normal(0, 3, a.shape) for a in (w, f))
    w[:, ~body], f[:, ~body] = (np.abs(rng.normal(0, 3, (nk, int((~body).sum())))) for _ in range(2))
    return lab, np.abs(w).astype(np.float32), np.abs(f).astype(np.float32), v


def test_dixon_volume_fraction_known_mixture() -> None:
    """Unmixing recovers the adipose volume fraction and the fat/lean signal ratio under a coil gain; lean CSA and
    intramuscular fat area split the CSA by it; the signal FF (and fcsa from it) overstates the fat."""
    lab, w, f, v = mixture_case()
    vmap, refs = fatmod.dixon_volume_fraction(w, f, lab > 0)
    assert np.nanmax(vmap) <= 1.0 and np.nanmin(vmap) >= 0.0
    assert refs["adipose_to_lean_signal"] == pytest.approx(2.6, rel=0.04)  # measured 2.60
    assert refs["adipose_ff"] == pytest.approx(0.95, abs=0.01)
    t = measure_labels(image(lab, (1.0, 1.0, 4.0)), NAMES, water=image(w, (1.0, 1.0, 4.0)),
                       fat=image(f, (1.0, 1.0, 4.0)), per_slice=False, erode_px=1).set_index("structure")  # fmt: skip
    core = {n: fatmod.erode_inplane(lab == value, 1) for value, n in NAMES.items()}
    for name in NAMES.values():
        true_v = 100 * v[core[name]].mean()  # left 18 %, right 25 %
        row = t.loc[name]
        assert row.fat_volume_fraction_pct == pytest.approx(true_v, abs=1.0), (
            name,
            row.fat_volume_fraction_pct,
        )
        assert row.lean_csa_cm2 == pytest.approx(
            row.csa_cm2 * (1 - row.fat_volume_fraction_pct / 100), rel=1e-12
        )
        assert row.imat_cm2 == pytest.approx(row.csa_cm2 - row.lean_csa_cm2, rel=1e-12)
        assert row.fat_fraction_pct > row.fat_volume_fraction_pct + 4  # measured: left 22.7 vs 18.2 %
        assert row.fcsa_cm2 < row.lean_csa_cm2
    # signal FF of a v = 0.25 mixture with k = 2.6: 0.25·2.6·0.95 / (0.75 + 0.25·2.6) = 44 %, not 25 %
    assert t.loc["multifidus_right", "fat_fraction_pct"] == pytest.approx(44.1, abs=1.0)
    assert set(t.ff_type) == {"signal"} and set(t.ff_erode_px) == {1}


def test_measurement_columns_are_documented() -> None:
    """Every column has a unit and a meaning, and README's data-format table names every one."""
    from pathlib import Path

    from ParaspinalSegLib.measure import COLUMN_DOCS, MEASUREMENT_COLUMNS

    assert tuple(COLUMN_DOCS) == MEASUREMENT_COLUMNS and all(len(d) > 10 for _, d in COLUMN_DOCS.values())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `measurements.csv`"))
    assert all(f"`{c}`" in row for c in MEASUREMENT_COLUMNS), row
    for column, (unit, meaning) in COLUMN_DOCS.items():  # README's column table is COLUMN_DOCS, in order
        assert f"| `{column}` | {unit} | {meaning} |" in readme, column
