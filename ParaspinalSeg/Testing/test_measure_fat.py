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
