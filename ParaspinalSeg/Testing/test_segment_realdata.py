"""segment() on the real MyoSegmenTUM Dixon case: Dice and FF vs the manual labels, one click per muscle per level.

Seeds are generated honestly from the manual labels: the distance-transform maximum of each
label on the middle slice of each of 4 equal slabs (4 levels over 29 slices), nothing more.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from lbp_pytest_plugin import shared_path
from scipy import ndimage as ndi

from ParaspinalLBPCore.structures import BY_NAME, MUSCLEMAP_LABEL_NAMES, TUM01_LABEL_NAMES
from ParaspinalSegLib.markups import MarkupPoint
from ParaspinalSegLib.measure import measure_labels
from ParaspinalSegLib.seeds import points_from_labels
from ParaspinalSegLib.segment import SegmentParams, SplitParams, segment

pytestmark = pytest.mark.realdata

# Measured (third session's end): ES right/left 0.9154/0.9198, MF right/left 0.8666/0.8842 (second session's
# end 0.890/0.913, 0.850/0.872; first 0.869/0.888, 0.832/0.852). Targets ES 0.92 / MF 0.90: not met (ES left
# 0.0002 short); docs/segmentation.md says where the Dice is lost.
MIN_DICE = {
    "erector_spinae_right": 0.910,  # 0.914/0.925 with the anterior-fascia clip (priors.clip_erector_front)
    "erector_spinae_left": 0.917,  # 0.921 with split.muscle_radii (click-independent sizes: robustness, see split.py)
    "multifidus_right": 0.862,  # 0.867 with the midline path + margin (priors.midline_path, clip_midline_margin)
    "multifidus_left": 0.880,  # 0.884 with the midline path + margin
}
# MuscleMap sub0001 (T1-like, labels probably a model's output), same seeding rule: measured MF 0.784/0.815,
# ES 0.779/0.843, psoas 0.578/0.495, QL 0.519/0.485 (R/L); psoas/QL were 0.11–0.23 before the reach prior.
MIN_DICE_MUSCLEMAP = {
    "multifidus_right": 0.76,
    "multifidus_left": 0.81,  # 0.815 with the midline path (priors.midline_path)
    "erector_spinae_right": 0.74,
    "erector_spinae_left": 0.81,
    "psoas_right": 0.55,
    "psoas_left": 0.49,  # 0.527 -> 0.495 with the midline path: psoas leaks ~2x its size here, the barrier moves it; MF gains
    "quadratus_lumborum_right": 0.47,
    "quadratus_lumborum_left": 0.45,
}


def tum01_seeds(
    truth: np.ndarray,
    ref: sitk.Image,
    shift_mm: float = 0.0,
    rng=None,
    names: dict[int, str] = TUM01_LABEL_NAMES,
    first_level: int = 2,
) -> list[MarkupPoint]:
    """One interior point per muscle per level; optionally moved 3–5 mm in-plane, staying inside."""
    return points_from_labels(truth, ref, names, first_level=first_level, shift_mm=shift_mm, rng=rng)


@pytest.fixture(scope="module")
def tum01():
    d = "data/myosegmentum_tum01/"
    fat = sitk.ReadImage(str(shared_path(d + "fat.nii.gz")))
    water = sitk.ReadImage(str(shared_path(d + "water.nii.gz")))
    labels = sitk.ReadImage(str(shared_path(d + "labels.nii.gz")))
    truth = sitk.GetArrayFromImage(labels)
    return water, fat, labels, truth


def dice_per_structure(
    out: np.ndarray, truth: np.ndarray, names: dict[int, str] = TUM01_LABEL_NAMES
) -> dict[str, float]:
    res = {}
    for v, name in names.items():
        a, b = out == BY_NAME[name].value, truth == v
        res[name] = 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())
    return res


@pytest.fixture(scope="module")
def result(tum01):
    water, fat, _labels, truth = tum01
    return segment({"water": water, "fat": fat}, tum01_seeds(truth, fat), assume_same_grid=True)


def test_water_origin_mismatch_is_detected(tum01) -> None:
    water, fat, _labels, truth = tum01
    with pytest.raises(ValueError, match=r"water image and fat image are not on the same voxel grid: origin"):
        segment({"water": water, "fat": fat}, tum01_seeds(truth, fat))


def test_tum01_dice_vs_manual(result, tum01) -> None:
    truth = tum01[3]
    out = sitk.GetArrayFromImage(result.labels)
    dice = dice_per_structure(out, truth)
    for name, value in dice.items():
        assert value >= MIN_DICE[name], (name, round(value, 4))
    assert result.levels == {"L2": (0, 7), "L3": (8, 14), "L4": (15, 21), "L5": (22, 28)}
    assert any("water image grid differs" in n for n in result.info["notes"])


def test_manual_boundary_sensitivity(tum01) -> None:
    """How much Dice one voxel of boundary disagreement costs on these masks (an inter-rater proxy).

    Measured: dilating a manual label by one voxel in-plane (into unlabelled voxels) gives Dice
    0.954–0.965, eroding it 0.923–0.953 (multifidus lowest): a rater whose outline sits one voxel
    inside or outside loses 0.04–0.08 Dice on multifidus, so 0.90 is near the reproducibility of the mask.
    """
    truth = tum01[3]
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndi.generate_binary_structure(2, 1)
    for v, name in TUM01_LABEL_NAMES.items():
        m = truth == v
        dil = ndi.binary_dilation(m, st) & ((truth == 0) | m)
        ero = ndi.binary_erosion(m, st)
        d_dil = 2 * (dil & m).sum() / (dil.sum() + m.sum())
        d_ero = 2 * (ero & m).sum() / (ero.sum() + m.sum())
        lo = 0.91 if name.startswith("multifidus") else 0.94
        assert lo < d_ero < 0.97 and 0.94 < d_dil < 0.975, (name, round(d_dil, 3), round(d_ero, 3))


def test_musclemap_dice_all_eight_muscles() -> None:
    """T1-like MuscleMap case, all 8 muscles: psoas and QL no longer grow through the abdomen."""
    img = sitk.ReadImage(str(shared_path("data/musclemap_sub0001/image.nii.gz")))
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_path("data/musclemap_sub0001/labels.nii.gz"))))
    seeds = tum01_seeds(lab, img, names=MUSCLEMAP_LABEL_NAMES, first_level=1)
    r = segment(img, seeds)
    dice = dice_per_structure(sitk.GetArrayFromImage(r.labels), lab, MUSCLEMAP_LABEL_NAMES)
    for name, value in dice.items():
        assert value >= MIN_DICE_MUSCLEMAP[name], (name, round(value, 4))


def test_tum01_fat_fraction_within_1pp_of_manual(result, tum01) -> None:
    water, fat, labels, _truth = tum01
    w = sitk.Image(water)
    w.CopyInformation(fat)
    names = {BY_NAME[n].value: n for n in TUM01_LABEL_NAMES.values()}
    ours = measure_labels(result.labels, names, water=w, fat=fat, per_slice=False, erode_px=1)
    manual = measure_labels(labels, TUM01_LABEL_NAMES, water=w, fat=fat, per_slice=False, erode_px=1)
    a = ours.set_index("structure")["fat_fraction_pct"]
    b = manual.set_index("structure")["fat_fraction_pct"]
    assert set(ours["fat_method"]) == {"dixon"}
    assert ((b > 9) & (b < 16)).all()  # README: 12–16 % without erosion; erosion removes the fatty rim
    diff = (a - b.loc[a.index]).abs()
    assert (diff < 1.0).all(), diff.round(2).to_dict()


def test_auto_non_dixon_on_synthesised_inphase_vs_dixon(tum01) -> None:
    """On a single image ``auto`` picks the validated non-Dixon method (t1_local): whole-muscle FF in the
    manual masks within 5 pp of Dixon (measured −0.29 / −2.46 / −3.37 / +1.10 pp for ES R, MF R, MF L,
    ES L; the single-reference t1_linear was 13.2 pp off for multifidus; per-level numbers in
    test_measure_fat_realdata.py)."""
    water, fat, labels, _truth = tum01
    w = sitk.Cast(water, sitk.sitkFloat64)
    w.CopyInformation(fat)
    inphase = w + sitk.Cast(fat, sitk.sitkFloat64)
    auto = measure_labels(labels, TUM01_LABEL_NAMES, image=inphase, per_slice=False).set_index("structure")
    dix = measure_labels(labels, TUM01_LABEL_NAMES, water=w, fat=fat, per_slice=False).set_index("structure")
    assert set(auto["fat_method"]) == {"t1_local"}
    diff = (auto["fat_fraction_pct"] - dix["fat_fraction_pct"]).abs()
    assert (diff < 4.0).all(), diff.to_dict()
    # Otsu-free: lean-ish muscle (Dixon 12–15 %) must not read as the 25 %+ "fat" Otsu inside the ROI gives.
    assert (auto["fat_fraction_pct"] < 20).all()


# TUM01 with the seam refinement off (SplitParams(refine_band_mm=0)): measured ES R/L 0.9071/0.9116,
# MF R/L 0.8465/0.8670.
MIN_DICE_UNREFINED = {
    "erector_spinae_right": 0.903,  # 0.907/0.915 with the anterior-fascia clip (priors.clip_erector_front)
    "erector_spinae_left": 0.907,  # 0.911 with split.muscle_radii
    "multifidus_right": 0.842,  # 0.8465 with the midline path + margin
    "multifidus_left": 0.863,  # 0.867 with the midline path + margin
}


def test_tum01_unrefined_split_dice(tum01) -> None:
    """With the fascia-seam refinement off (split.refine_band_mm=0) the previous default is reproduced."""
    water, fat, _labels, truth = tum01
    r = segment(
        {"water": water, "fat": fat},
        tum01_seeds(truth, fat),
        assume_same_grid=True,
        params=SegmentParams(split=SplitParams(refine_band_mm=0.0)),
    )
    got = dice_per_structure(sitk.GetArrayFromImage(r.labels), truth)
    for name, floor in MIN_DICE_UNREFINED.items():
        assert got[name] >= floor, (name, round(got[name], 4))
    # the refinement is what lifts the default: off is worse for every muscle
    on = dice_per_structure(
        sitk.GetArrayFromImage(
            segment({"water": water, "fat": fat}, tum01_seeds(truth, fat), assume_same_grid=True).labels
        ),
        truth,
    )
    assert all(on[n] > got[n] for n in got), (on, got)


@pytest.mark.slow
def test_seed_robustness_5mm(result, tum01) -> None:
    """Moving every seed 3–5 mm inside its muscle (three random draws): largest Dice change measured 0.0223
    (target < 0.02: not met; over 12 draws, bench_segment_accuracy.py, 0.037)."""
    water, fat, _labels, truth = tum01
    base = dice_per_structure(sitk.GetArrayFromImage(result.labels), truth)
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(3):
        moved = segment(
            {"water": water, "fat": fat}, tum01_seeds(truth, fat, 5.0, rng), assume_same_grid=True
        )
        d = dice_per_structure(sitk.GetArrayFromImage(moved.labels), truth)
        worst = max(worst, *(abs(d[n] - base[n]) for n in base))
    assert worst < MAX_SEED_SHIFT_DICE_CHANGE, worst


MAX_SEED_SHIFT_DICE_CHANGE = 0.026
_ = pd  # pandas is used through measure_labels' DataFrames


@pytest.mark.slow
def test_seed_robustness_5mm_unrefined_split(tum01) -> None:
    """Same as above with the seam refinement off (split.refine_band_mm=0): measured 0.0325."""
    water, fat, _labels, truth = tum01
    params = SegmentParams(split=SplitParams(refine_band_mm=0.0))
    run = lambda seeds: dice_per_structure(  # noqa: E731
        sitk.GetArrayFromImage(
            segment({"water": water, "fat": fat}, seeds, assume_same_grid=True, params=params).labels
        ),
        truth,
    )
    base = run(tum01_seeds(truth, fat))
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(3):
        d = run(tum01_seeds(truth, fat, 5.0, rng))
        worst = max(worst, *(abs(d[n] - base[n]) for n in base))
    assert worst < 0.036, worst
