"""segment() + measure_labels() on the digital phantom (ground truth): Dice, CSA and FF errors per structure × level.

Measured (make_phantom(seed=0), all 8 muscles, one click per muscle per level, level landmarks): Dice MF
0.986–0.990, ES 0.985–0.991, psoas 0.999, QL 0.995; |CSA error| median 0.35 %, max 4.92 % (multifidus right
L5), 40/40 structure × level within the issue's 5 %, mean −0.38 % (with the FF < 0.6 rim and a growth distance
penalty of 0.05/mm: 2.56 %, 9.40 %, 31/40, −3.58 %: the outer partial-volume ring and the erector's lateral
tips were missed); |FF error| with the 1-voxel erosion the CLIs and the Logic use median 0.30 pp, max 1.01 pp
(raw mean ≈ 2.9 / 5.1 pp: partial volume with fat).
Thresholds = those numbers plus a small margin. See docs/segmentation.md.

The second half checks shape.add_rim's signal rule (muscle volume fraction >= 0.5 from the Dixon pair or
one image) on discs with exact partial-volume edges and on the phantom's unrimmed segmentation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalLBPCore.structures import BY_NAME, MUSCLE_NAMES
from ParaspinalSegLib.markups import read_points
from ParaspinalSegLib.measure import measure_labels
from ParaspinalSegLib.phantom import make_phantom, write_phantom
from ParaspinalSegLib.segment import SegmentParams, ShapeParams, segment
from ParaspinalSegLib.shape import add_rim


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    """The default phantom (seed 0) written once for this module."""
    out = tmp_path_factory.mktemp("phantom")
    write_phantom(make_phantom(seed=0), out)
    return out


def _run(out, params: SegmentParams | None = None):
    """segment() on the phantom's Dixon pair with its seeds and level landmarks; also returns water, fat, truth."""
    water = sitk.ReadImage(str(out / "water.nii.gz"))
    fat = sitk.ReadImage(str(out / "fat.nii.gz"))
    r = segment(
        {"water": water, "fat": fat},
        read_points(out / "seeds.mrk.json"),
        levels=read_points(out / "levels.mrk.json"),
        params=params,
    )
    return r, water, fat, json.loads((out / "truth.json").read_text())


def _errors(
    labels: sitk.Image, water: sitk.Image, fat: sitk.Image, levels, truth, erode_px: int
) -> pd.DataFrame:
    """CSA error (%) and Dixon FF error (pp, mask eroded by ``erode_px``) per structure × level against truth."""
    names = {BY_NAME[n].value: n for n in MUSCLE_NAMES}
    table = measure_labels(
        labels, names, water=water, fat=fat, levels=levels, per_slice=False, erode_px=erode_px
    )
    rows = []
    for _, x in table[table.level != "all"].iterrows():
        tr = truth["structures"][x.structure][x.level]
        rows.append(
            {
                "structure": x.structure,
                "level": x.level,
                "csa_err_pct": 100 * (x.csa_cm2 - tr["csa_cm2"]) / tr["csa_cm2"],
                "ff_err_pp": x.fat_fraction_pct - tr["fat_fraction_pct"],
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def evaluation(phantom_dir):
    r, water, fat, truth = _run(phantom_dir)
    o = sitk.GetArrayFromImage(r.labels)
    t = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom_dir / "labels.nii.gz")))
    dice = {
        n: 2 * ((o == v) & (t == v)).sum() / ((o == v).sum() + (t == v).sum())
        for v, n in ((BY_NAME[n].value, n) for n in MUSCLE_NAMES)
    }
    # FF as the CLIs, the headless script and the Slicer Logic report it: mask eroded by 1 voxel in-plane (the
    # raw mean carries the partial-volume ring that the CSA needs; test_measure_fat_realdata checks it)
    return r, dice, _errors(r.labels, water, fat, r.levels, truth, erode_px=1), truth


def test_phantom_levels_from_landmarks_match_truth(evaluation) -> None:
    r, _, _, truth = evaluation
    # landmarks at mid-vertebral slices: every truth level's centre slice falls in our range for it
    for level, (k0, k1) in truth["levels"].items():
        a, b = r.levels[level]
        assert a <= (k0 + k1) / 2 <= b


def test_phantom_dice(evaluation) -> None:
    _, dice, _, _ = evaluation
    for name, value in dice.items():
        floor = 0.982  # measured ≥ 0.985
        assert value >= floor, (name, round(float(value), 3))


def test_phantom_csa_and_ff_errors(evaluation) -> None:
    _, _, err, _ = evaluation
    assert len(err) == 8 * 5
    assert err.csa_err_pct.abs().median() < 0.6  # measured 0.35
    assert err.csa_err_pct.abs().max() <= 5.0  # the target; measured 4.92 (multifidus right L5)
    assert err.ff_err_pp.abs().median() < 0.5  # measured 0.30 (1-voxel erosion; raw mean ≈ 2.9)
    assert err.ff_err_pp.abs().max() < 1.3  # measured 1.01 (raw mean ≈ 5.1); target ≤ 2 pp
    # erector spinae (the largest muscles): measured |CSA error| ≤ 3.16 %, |FF error| ≤ 0.35 pp
    es = err[err.structure.str.startswith("erector")]
    assert (es.csa_err_pct.abs() < 4.0).all(), es.round(2).to_dict("records")
    assert (es.ff_err_pp.abs() < 0.6).all(), es.round(2).to_dict("records")


# --- partial-volume rim from the Dixon signals (shape.add_rim with water/fat) ---------------------------

MUSCLE_WF, ADIPOSE_WF = (450.0, 30.0), (65.0, 1345.0)  # Dixon (water, fat) as in phantom_physics / TUM01


def _disc(
    other_wf: tuple[float, float],
    radius: float = 11.3,
    n: int = 40,
    slices: int = 3,
    muscle_wf: tuple[float, float] = MUSCLE_WF,
):
    """A muscle disc with exact partial-volume edge voxels (10 x 10 supersampled) in ``other_wf`` tissue,
    Rician noise; returns the label of its fully-inside voxels eroded by one more (a segmenter that stopped
    short), water, fat, FF and the true partial-volume area (voxels per slice)."""
    ss = 10
    yy, xx = (np.mgrid[0 : n * ss, 0 : n * ss] + 0.5) / ss - n / 2 - 0.23
    frac = (yy**2 + xx**2 <= radius**2).reshape(n, ss, n, ss).mean(axis=(1, 3))
    rng = np.random.default_rng(0)

    def signal(m: float, o: float) -> np.ndarray:
        clean = np.repeat((frac * m + (1 - frac) * o)[None], slices, 0)
        return np.hypot(clean + rng.normal(0, 12.0, clean.shape), rng.normal(0, 12.0, clean.shape))

    w, f = signal(muscle_wf[0], other_wf[0]), signal(muscle_wf[1], other_wf[1])
    ff = np.where(w + f > 100, f / np.maximum(w + f, 1e-6), 0.0)
    start = np.repeat(ndi.binary_erosion(frac > 0.999)[None], slices, 0).astype(np.uint8)
    return start, w, f, ff, float(frac.sum())


def _area_err_pct(lab: np.ndarray, area: float) -> float:
    return 100 * ((lab > 0).sum(axis=(1, 2)).mean() / area - 1)


def test_rim_recovers_partial_volume_area_against_fat() -> None:
    start, w, f, ff, area = _disc(ADIPOSE_WF)
    assert _area_err_pct(start, area) < -20  # the segmenter stopped 1.5 voxels short
    for px in (2, 4):  # the rule decides where the edge is, not the number of steps
        err = _area_err_pct(add_rim(start, ff, px, water=w, fat=f), area)
        assert abs(err) < 2.5, (px, err)  # measured -1.05 % (a 11-voxel radius disc)


def test_rim_stops_at_a_signal_void() -> None:
    start, w, f, ff, area = _disc((0.0, 0.0))  # cortical bone / air around the muscle
    for px in (2, 5):
        err = _area_err_pct(add_rim(start, ff, px, water=w, fat=f), area)
        assert abs(err) < 2.5, (px, err)  # measured -0.96 %


def test_rim_leaves_voxels_between_two_labels() -> None:
    start, w, f, ff, _ = _disc(ADIPOSE_WF)
    two = start.copy()
    two[:, :, 20:] = np.where(start[:, :, 20:] > 0, 2, 0)
    two[:, :, 20] = 0  # a one-voxel gap between label 1 (left half) and label 2 (right half)
    out = add_rim(two, ff, 2, water=w, fat=f)
    assert (out[two > 0] == two[two > 0]).all()  # labels only grow
    between = (two[:, :, 19] == 1) & (two[:, :, 21] == 2)
    assert between.sum() > 30 and (out[:, :, 20][between] == 0).all()  # next to both labels: left alone
    assert set(np.unique(out)) == {0, 1, 2}
    with pytest.raises(ValueError, match="water and fat signals or the single image"):
        add_rim(two, ff, 2, water=w)


def _disc_single(other: float, muscle: float = 370.0, fat: float = 1400.0):
    """As :func:`_disc` for one fat-bright image (T1-like signals); ``ff`` = the linear fat-likeness."""
    start, w, _, _, area = _disc((other, 0.0), muscle_wf=(muscle, 0.0))
    return start, w, np.clip((w - muscle) / (fat - muscle), 0, 1), area


def test_rim_single_image_recovers_partial_volume_area() -> None:
    for other in (1400.0, 0.0):  # fat, then a signal void
        start, image, ff, area = _disc_single(other)
        for px in (2, 4):
            err = _area_err_pct(add_rim(start, ff, px, image=image), area)
            assert abs(err) < 2.5, (other, px, err)  # measured -0.80 % (fat), -0.96 % (void)


@pytest.fixture(scope="module")
def unrimmed(phantom_dir):
    """The segmenter's labels before its rim step (rim_px=0), the phantom's Dixon signals and truth."""
    return _run(phantom_dir, SegmentParams(shape=ShapeParams(rim_px=0)))


def test_phantom_csa_with_the_signal_rim(unrimmed) -> None:
    """Muscle fraction >= 0.5 from the Dixon signals: the label area estimates the partial-volume CSA.

    Measured: |CSA error| median 0.48 %, max 8.15 % (erector right L1, where the growth stops up to 6 voxels
    short of the lateral tip: lean muscle, not partial volume), 35/40 within 5 %, mean -1.39 % (the FF < 0.6
    rim: 2.56 %, 9.40 %, 31/40, -3.58 %); FF error with the 1-voxel erosion median 0.34, max 1.18 pp."""
    r, water, fat, truth = unrimmed
    lab = sitk.GetArrayFromImage(r.labels)
    w, f = sitk.GetArrayFromImage(water), sitk.GetArrayFromImage(fat)
    s = w + f
    ff = np.where(s > 0, f / np.maximum(s, 1e-6), 0.0)
    rim = sitk.GetImageFromArray(add_rim(lab, ff, 2, water=w, fat=f))
    rim.CopyInformation(r.labels)
    err = _errors(rim, water, fat, r.levels, truth, erode_px=1)
    csa = err.csa_err_pct
    assert csa.abs().median() < 0.8
    assert csa.abs().max() < 9.0
    assert (csa.abs() <= 5.0).sum() >= 34
    assert abs(csa.mean()) < 2.0
    assert err.ff_err_pp.abs().median() < 0.6
    assert err.ff_err_pp.abs().max() < 1.6
