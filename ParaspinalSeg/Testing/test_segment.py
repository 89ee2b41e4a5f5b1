"""segment(): accuracy on a synthetic Dixon volume with known truth, re-running one level, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import synthetic_dixon as sd

from ParaspinalLBPCore.structures import BY_NAME
from ParaspinalSegLib import io as segio
from ParaspinalSegLib.levels import levels_from_landmarks, ranges_from_centres
from ParaspinalSegLib.markups import MarkupPoint, read_points, write_points
from ParaspinalSegLib.segment import CompetitorParams, SegmentParams, segment


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


@pytest.fixture(scope="module")
def case():
    water, fat, truth = sd.make()
    return water, fat, truth, sd.seed_points(truth)


def test_synthetic_dixon_dice_and_no_overlap(case) -> None:
    water, fat, truth, pts = case
    r = segment({"water": water, "fat": fat}, pts)
    out, t = sitk.GetArrayFromImage(r.labels), sitk.GetArrayFromImage(truth)
    for name in ("multifidus_left", "multifidus_right", "erector_spinae_left", "erector_spinae_right"):
        v = BY_NAME[name].value
        assert dice(out == v, t == v) > 0.95, name
    assert set(np.unique(out)) <= {0, 1, 2, 3, 4}  # one value per voxel: never overlapping
    assert r.labels.GetOrigin() == fat.GetOrigin()
    assert r.label_names == {
        1: "multifidus_left",
        2: "multifidus_right",
        3: "erector_spinae_left",
        4: "erector_spinae_right",
    }


def test_single_t1_like_image(case) -> None:
    water, fat, truth, pts = case
    t1 = sitk.Add(water, sitk.Multiply(fat, 2.5))  # T1-like: fat ~2.5x brighter than muscle
    r = segment(t1, pts)
    out, t = sitk.GetArrayFromImage(r.labels), sitk.GetArrayFromImage(truth)
    assert r.info["mode"] == "single"
    for v in (1, 2, 3, 4):
        assert dice(out == v, t == v) > 0.9


def test_subset_of_structures_and_painted_seeds(case) -> None:
    water, fat, truth, pts = case
    r = segment({"water": water, "fat": fat}, pts, structures=["multifidus_left"])
    out, t = sitk.GetArrayFromImage(r.labels), sitk.GetArrayFromImage(truth)
    assert set(np.unique(out)) == {0, 1}
    # without its neighbours seeded, the multifidus must still not swallow the erector (fat fascia)
    assert dice(out == 1, t == 1) > 0.85
    painted = np.zeros(t.shape, np.uint8)
    painted[4][t[4] == 2] = 2  # one painted slice of multifidus_right
    r2 = segment({"water": water, "fat": fat}, painted)
    o2 = sitk.GetArrayFromImage(r2.labels)
    assert (o2[4][t[4] == 2] == 2).all()  # every painted voxel is kept (the rim adds its 1-voxel outline)
    # no erector seeded: through-plane, the shrinking multifidus ellipse meets the growing erector, so
    # some erector is taken in the neighbouring slices (measured Dice 0.78 in the painted slice with its rim)
    assert dice(o2[4] == 2, t[4] == 2) > 0.75
    assert dice(o2 == 2, t == 2) > 0.75


def test_only_level_recomputes_only_its_slices(case) -> None:
    water, fat, _truth, pts = case
    tagged = [
        MarkupPoint(
            p.label,
            p.position_lps,
            "L3" if fat.TransformPhysicalPointToIndex(p.position_lps)[2] < 4 else "L4",
        )
        for p in pts
    ]
    full = segment({"water": water, "fat": fat}, tagged)
    assert full.levels == {"L3": (0, 4), "L4": (5, 7)}  # seeds on k=2 and 6: the midpoint slice goes to L3
    prev = sitk.GetArrayFromImage(full.labels).copy()
    prev[6, 10:20, 10:20] = 7  # a marker that re-running L3 must keep and re-running L4 must clear
    again = segment({"water": water, "fat": fat}, tagged, only_level="L3", previous=prev)
    a = sitk.GetArrayFromImage(again.labels)
    assert (a[6, 10:20, 10:20] == 7).all()
    f5 = sitk.GetArrayFromImage(full.labels)[:5]
    for v in (1, 2, 3, 4):  # the full run also sees L4's seeds, so equal up to the boundary voxels
        assert dice(a[:5] == v, f5 == v) > 0.97
    again4 = segment({"water": water, "fat": fat}, tagged, only_level="L4", previous=prev)
    assert not (sitk.GetArrayFromImage(again4.labels)[6] == 7).any()
    with pytest.raises(KeyError, match="L5"):
        segment({"water": water, "fat": fat}, tagged, only_level="L5", previous=prev)


def test_levels_from_landmarks(case) -> None:
    _, fat, _, _ = case
    pts = [
        MarkupPoint("L3", np.array(fat.TransformIndexToPhysicalPoint((80, 30, 1))), ""),
        MarkupPoint("L4", np.array(fat.TransformIndexToPhysicalPoint((80, 30, 5))), ""),
    ]
    assert levels_from_landmarks(pts, fat) == {"L3": (0, 3), "L4": (4, 7)}
    assert ranges_from_centres({"L2": 4, "L3": 11, "L4": 18, "L5": 25}, 29) == {
        "L2": (0, 7),
        "L3": (8, 14),
        "L4": (15, 21),
        "L5": (22, 28),
    }
    with pytest.raises(ValueError, match="X9"):
        levels_from_landmarks([MarkupPoint("X9", np.zeros(3), "")], fat)


def test_bad_input_messages(case, tmp_path) -> None:
    water, fat, _truth, pts = case
    shifted = sitk.Image(water)
    shifted.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(
        ValueError,
        match=r"water image and fat image are not on the same voxel grid.*origin.*assume-same-grid",
    ):
        segment({"water": shifted, "fat": fat}, pts)
    ok = segment({"water": shifted, "fat": fat}, pts, assume_same_grid=True)
    assert any("water image grid differs" in n for n in ok.info["notes"])
    outside = [*pts, MarkupPoint("psoas_left", np.array([500.0, 0.0, 110.0]), "L3")]
    with pytest.raises(ValueError, match=r"psoas_left \(level L3\).*outside the image"):
        segment({"water": water, "fat": fat}, outside)
    air = [*pts, MarkupPoint("psoas_left", np.array(fat.TransformIndexToPhysicalPoint((2, 2, 3))), "")]
    with pytest.raises(ValueError, match=r"psoas_left.*air"):
        segment({"water": water, "fat": fat}, air)
    with pytest.raises(ValueError, match="quadratus_lumborum_left was requested but has no seed"):
        segment({"water": water, "fat": fat}, pts, structures=["multifidus_left", "quadratus_lumborum_left"])
    with pytest.raises(KeyError, match="'liver'"):
        segment({"water": water, "fat": fat}, [MarkupPoint("liver", pts[0].position_lps, "")])
    nan = sitk.GetArrayFromImage(fat)
    nan[2, 5, 5] = np.nan
    nan_img = sitk.GetImageFromArray(nan)
    nan_img.CopyInformation(fat)
    with pytest.raises(ValueError, match="fat image: 1 voxels are NaN"):
        segment({"water": water, "fat": nan_img}, pts)
    with pytest.raises(ValueError, match="2D"):
        segment(fat[:, :, 3], pts)
    with pytest.raises(ValueError, match="single-slice"):
        segment(fat[:, :, 3:4], pts)
    oblique = sitk.Image(fat)
    c, s = np.cos(np.radians(50)), np.sin(np.radians(50))
    oblique.SetDirection((1, 0, 0, 0, c, -s, 0, s, c))
    with pytest.raises(ValueError, match="oblique"):
        segment(oblique, pts)
    with pytest.raises(ValueError, match="at least one point"):
        segment({"water": water, "fat": fat}, [])


def test_permuted_volume_is_reoriented(case) -> None:
    water, fat, truth, pts = case
    flipped = [
        sitk.Flip(im, [True, True, False]) for im in (water, fat)
    ]  # RAS-like storage of the same voxels
    r = segment({"water": flipped[0], "fat": flipped[1]}, pts)
    back = sitk.Resample(r.labels, truth, sitk.Transform(), sitk.sitkNearestNeighbor)
    out, t = sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(truth)
    assert dice(out == 1, t == 1) > 0.95


def test_huge_volume_refused(tmp_path, monkeypatch) -> None:
    water, _, _ = sd.make(n_slices=4)
    path = tmp_path / "big.nii.gz"
    sitk.WriteImage(water, str(path))
    monkeypatch.setattr(segio, "MAX_VOXELS", 10_000)  # the real limit, scaled down to a test-sized file
    with pytest.raises(ValueError, match=r"big\.nii\.gz has 70,400 voxels.*crop"):
        segio.read_volume(path, "image")


def test_labels_json_and_points_roundtrip(case, tmp_path) -> None:
    _, _fat, _truth, pts = case
    p = segio.write_labels_json(tmp_path / "labels.json", {1: "multifidus_left"}, {"L3": (0, 3)})
    doc = json.loads(p.read_text())
    assert doc == {"labels": {"1": "multifidus_left"}, "levels": {"L3": [0, 3]}}
    assert segio.read_labels_json(p) == ({1: "multifidus_left"}, {"L3": (0, 3)})
    (tmp_path / "plain.json").write_text('{"2": "multifidus_right"}')
    assert segio.read_labels_json(tmp_path / "plain.json") == ({2: "multifidus_right"}, {})
    write_points(
        tmp_path / "s.mrk.json", [(q.label, q.position_lps, "L3") for q in pts], coordinate_system="RAS"
    )
    back = read_points(tmp_path / "s.mrk.json")
    np.testing.assert_allclose(back[0].position_lps, pts[0].position_lps, atol=1e-5)


def test_reach_prior_stops_a_leak_into_similar_tissue() -> None:
    """A muscle joined by a neck to a long band of the same signal (bowel next to psoas on T1) stays near its click."""
    rng = np.random.default_rng(3)
    k, nj, ni = 4, 160, 220
    jj, ii = np.mgrid[0:nj, 0:ni]
    img = np.full((nj, ni), 3.0)  # fat-bright T1: fat 3, muscle 1
    r = np.hypot(jj - 80, ii - 50)
    disc = r <= 15
    img[(r > 15) & (r <= 17)] = 3.0
    img[disc] = 1.0
    band = (np.abs(jj - 80) <= 8) & (ii >= 66)
    img[band | ((np.abs(jj - 80) <= 2) & (ii >= 60) & (ii < 70))] = 1.0  # neck through the fat ring
    vol = np.repeat(img[None], k, axis=0) + rng.normal(0, 0.05, (k, nj, ni))
    image = sitk.GetImageFromArray(vol.astype(np.float32))
    image.SetSpacing((1.0, 1.0, 4.0))
    seed = [MarkupPoint("psoas_left", np.array(image.TransformIndexToPhysicalPoint((50, 80, 2))), "L3")]
    truth = np.repeat(disc[None], k, axis=0)
    unbounded = SegmentParams(competitors=CompetitorParams(extent_scale=0))
    leaky = sitk.GetArrayFromImage(segment(image, seed, params=unbounded).labels) > 0
    bounded = sitk.GetArrayFromImage(segment(image, seed).labels) > 0
    assert leaky.sum() > 1.5 * truth.sum()  # without the prior the band is taken (up to the ±45 mm ROI)
    assert dice(bounded, truth) > 0.85, dice(bounded, truth)
    far = np.hypot(jj - 80, ii - 50) > 45  # psoas cap (priors.DEFAULT_EXTENT_MM)
    assert not bounded[:, far].any()


def test_anterolateral_competitor_geometry() -> None:
    """Tissue in front of (j smaller) and lateral of an erector's deepest point, beyond 1.25 radii, is background."""
    from ParaspinalSegLib.priors import deepest_near, mark_anterolateral

    jj, ii = np.mgrid[0:100, 0:200]
    tissue = np.zeros((2, 100, 200), bool)
    tissue[:, (jj - 50) ** 2 + (ii - 50) ** 2 <= 100] = True  # right erector: radius 10 px, centre (50, 50)
    tissue[:, (jj - 50) ** 2 + (ii - 150) ** 2 <= 100] = True  # left erector
    r, j, i = deepest_near(tissue[0], (54, 47), (1.0, 1.0), 8.0)  # an off-centre click finds the centre
    assert (j, i) == (50, 50) and 9.9 <= r <= 10.1
    seeds = np.zeros((2, 100, 200), np.int32)
    clicks = {"erector_spinae_right": [(0, 54, 47)], "erector_spinae_left": [(0, 46, 153)]}
    mark_anterolateral(seeds, tissue, clicks, (1.0, 1.0), 1.25, 8.0, 9)
    for k in (0, 1):  # the slice without a click uses the nearest click's geometry
        assert seeds[k, 30, 40] == 9 and seeds[k, 30, 160] == 9  # anterior and lateral
        assert seeds[k, 30, 60] == 0 and seeds[k, 30, 140] == 0  # anterior but medial (towards the spine)
        assert seeds[k, 40, 40] == 0  # within 1.25 radii in front of the centre


@pytest.mark.parametrize(("degrees", "accepted"), [(35.0, True), (45.0, False)])
def test_segmenter_and_measurement_share_the_oblique_limit(degrees: float, accepted: bool) -> None:
    """An axial stack angled along the L5–S1 disc (35°) is accepted by both the segmenter's input check
    and the measurement; 45° is refused by both, so a volume never segments but fails to measure."""
    from ParaspinalSegLib.io import MAX_OBLIQUE_DEG, to_axial
    from ParaspinalSegLib.measure import check_axial

    img = sitk.Image(20, 20, 6, sitk.sitkFloat32)
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    img.SetDirection((1, 0, 0, 0, c, -s, 0, s, c))
    assert MAX_OBLIQUE_DEG == 40.0
    if accepted:
        to_axial(img, "image")
        check_axial(img, "image")
    else:
        with pytest.raises(ValueError, match="oblique"):
            to_axial(img, "image")
        with pytest.raises(ValueError, match="not axial"):
            check_axial(img, "image")


def test_points_from_labels_clicks_the_middle_and_shifted_clicks_stay_inside() -> None:
    """seeds.points_from_labels: one click per structure per slab at the label's most interior voxel; shifted
    clicks move 0.6–1 × shift_mm and stay ≥ 2 voxels inside; a structure absent from a slab gets none."""
    from ParaspinalSegLib.seeds import points_from_labels

    lab = np.zeros((8, 60, 80), np.uint8)
    yy, xx = np.mgrid[:60, :80]
    lab[:, (yy - 30) ** 2 + (xx - 20) ** 2 <= 100] = 1  # disc r = 10 voxels centred at (30, 20)
    lab[:4, (yy - 30) ** 2 + (xx - 55) ** 2 <= 64] = 3  # only in the first two slabs
    ref = sitk.GetImageFromArray(lab)
    ref.SetSpacing((0.8, 0.8, 4.0))
    names = {1: "multifidus_left", 3: "erector_spinae_left"}
    pts = points_from_labels(lab, ref, names, slabs=4, first_level=2)
    assert [(p.label, p.description) for p in pts] == [
        ("multifidus_left", "L2"), ("erector_spinae_left", "L2"), ("multifidus_left", "L3"),
        ("erector_spinae_left", "L3"), ("multifidus_left", "L4"), ("multifidus_left", "L5"),
    ]  # fmt: skip
    centre = ref.TransformIndexToPhysicalPoint((20, 30, 1))
    np.testing.assert_allclose(pts[0].position_lps, centre)
    rng = np.random.default_rng(0)
    for p in points_from_labels(lab, ref, names, shift_mm=5.0, rng=rng):
        i, j, k = ref.TransformPhysicalPointToIndex(p.position_lps.tolist())
        value = {n: v for v, n in names.items()}[p.label]
        assert lab[k, j, i] == value
        cj, ci = (30, 20) if value == 1 else (30, 55)
        assert 3.0 - 1e-9 <= np.hypot((j - cj) * 0.8, (i - ci) * 0.8) <= 5.0 + 1e-9
    with pytest.raises(ValueError, match="rng"):
        points_from_labels(lab, ref, names, shift_mm=5.0)
