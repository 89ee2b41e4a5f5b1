"""split.refine_split: the multifidus/erector boundary moves onto a visible fascia line within its band
and stays where the first split put it when no line is visible."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ParaspinalSegLib import split
from ParaspinalSegLib.split import fascia_strength, refine_split


def _case(line_col: int | None):
    """A 3-slice 40×60 mass; multifidus = columns ≥ 35 (medial towards larger i); optional fat line."""
    region = np.zeros((3, 50, 70), bool)
    region[:, 5:45, 5:65] = True
    first = region.copy()
    first[:, :, :35] = False
    fat = np.zeros(region.shape, np.float32)
    water = np.where(region, 1.0, 0.0).astype(np.float32)
    if line_col is not None:
        fat[:, 5:45, line_col] = 0.5  # a one-voxel fascia: bright in fat, dark in water
        water[:, 5:45, line_col] = 0.5
    return region, first, fascia_strength(fat, water, 1.5)


def test_boundary_snaps_to_fascia_within_band() -> None:
    region, first, strength = _case(line_col=40)
    mf = refine_split(region, first, strength, +1, 1.0, band_mm=8.0, prior_weight=0.02)
    for k in range(3):
        # every row of the mass now ends the multifidus at the line (line voxel goes to the erector)
        cols = [np.flatnonzero(mf[k, j]).min() for j in range(5, 45)]
        assert set(cols[3:-3]) == {41}, sorted(set(cols))  # the outer rows' line is not trusted (mass edge)
        assert set(cols) <= {40, 41, 42}
    assert not (mf & ~region).any()


def test_line_beyond_band_and_no_line_keep_first_split() -> None:
    region, first, strength = _case(line_col=55)  # 20 voxels from the first boundary: outside an 8 mm band
    mf = refine_split(region, first, strength, +1, 1.0, band_mm=8.0, prior_weight=0.02)
    lateral_edge = [np.flatnonzero(mf[1, j]).min() for j in range(5, 45)]
    assert max(abs(c - 35) for c in lateral_edge) <= 8
    region, first, strength = _case(line_col=None)
    mf = refine_split(region, first, strength, +1, 1.0, band_mm=8.0, prior_weight=0.02)
    assert (mf == first).all()
    # mirrored side: medial towards smaller i
    mf = refine_split(region[:, :, ::-1], first[:, :, ::-1], strength[:, :, ::-1], -1, 1.0, 8.0, 0.02)
    assert (mf == first[:, :, ::-1]).all()


def test_streak_next_to_a_boundary_already_on_a_fascia_is_ignored() -> None:
    """With the line gate (split.LINE_GAIN 1.5, the default): the first boundary sits on a fascia
    (column 34); an equally bright streak inside the multifidus 4 columns away (the phantom's fatty
    multifidus) must not pull the boundary; a much brighter line does. Gate off: the streak pulls it."""
    assert split.LINE_GAIN == 1.5
    region, first, _ = _case(line_col=None)
    fat = np.zeros(region.shape, np.float32)
    water = np.where(region, 1.0, 0.0).astype(np.float32)
    fat[:, 5:45, 34] = water[:, 5:45, 34] = 0.5  # fascia on the first boundary
    fat[:, 10:40, 38] = water[:, 10:40, 38] = 0.5  # streak of the same strength inside the multifidus
    strength = fascia_strength(fat, water, 1.5)
    mf = refine_split(region, first, strength, +1, 1.0, band_mm=8.0, prior_weight=0.0)
    assert (mf == first).all()
    ungated = refine_split(region, first, strength, +1, 1.0, band_mm=8.0, prior_weight=0.0, line_gain=0.0)
    assert (ungated != first).any()
    fat[:, 10:40, 38] = 1.0  # a line far stronger than the first boundary's: the seam moves onto it
    water[:, 10:40, 38] = 0.0
    strength = fascia_strength(fat, water, 1.5)
    mf = refine_split(region, first, strength, +1, 1.0, band_mm=8.0, prior_weight=0.0)
    cols = [np.flatnonzero(mf[1, j]).min() for j in range(15, 35)]
    assert set(cols) == {39}, sorted(set(cols))


def _two_muscle_mass(line: bool):
    """One side's grown multifidus + erector mass (5 slices, rows 10–49, columns 10–79, 1 mm voxels):
    multifidus = columns ≥ 51 (medial = larger i), erector = columns ≤ 49, fascia at column 50 (fat
    bright, water dark) when ``line``; everything else is fat (background)."""
    shape = (5, 60, 90)
    region = np.zeros(shape, bool)
    region[:, 10:50, 10:80] = True
    water = np.where(region, 1.0, 0.05).astype(np.float32)
    fat = np.where(region, 0.08, 1.0).astype(np.float32)
    if line:
        water[:, 10:50, 50] = 0.3
        fat[:, 10:50, 50] = 0.6
    ff = fat / (water + fat)
    feats = np.stack([water, fat, ff])
    return region, feats, split.ridge(fat, 1.0), ~region


def _split(region, feats, ridge_, background, mf_click, es_click):
    from ParaspinalSegLib.segment import SplitParams

    names = ["multifidus_left", "erector_spinae_left"]
    clicks = {"multifidus_left": [mf_click], "erector_spinae_left": [es_click]}
    seeds = {
        n: [(k, j + dj, i + di) for k, j, i in c for dj in (-1, 0, 1) for di in (-1, 0, 1)]
        for n, c in clicks.items()
    }
    res = split.split_pairs(
        region.astype(np.int32),
        [(names, 1)],
        seeds,
        clicks,
        feats,
        ridge_,
        background,
        (1.0, 1.0, 1.0),
        True,
        SplitParams(),
    )
    return res["multifidus_left"], res["erector_spinae_left"]


def test_split_pairs_follows_a_visible_fascia_wherever_the_clicks_are() -> None:
    """Known answer: with a fascia line between the two muscles the split is the line, and it does not
    move when either click moves by 4–8 mm inside its muscle (the click only says which muscle is which)."""
    region, feats, ridge_, background = _two_muscle_mass(line=True)
    truth_mf = region.copy()
    truth_mf[:, :, :51] = False
    for mf_click, es_click in [
        ((2, 30, 65), (2, 30, 30)),
        ((2, 22, 72), (2, 38, 22)),
        ((2, 38, 56), (2, 24, 44)),
    ]:
        mf, es = _split(region, feats, ridge_, background, mf_click, es_click)
        assert not (mf & es).any() and ((mf | es) == region).all()
        wrong = int((mf ^ truth_mf).sum())
        assert wrong <= 0.01 * truth_mf.sum(), (mf_click, es_click, wrong)


def test_split_pairs_without_a_line_moves_with_the_clicks_but_stays_between_them() -> None:
    """Without any image evidence the boundary comes from the clicks alone (the known limitation): it lies
    between the two clicks, and moving the multifidus click laterally enlarges the multifidus."""
    region, feats, ridge_, background = _two_muscle_mass(line=False)
    sizes = []
    for mf_i in (66, 60):
        mf, _es = _split(region, feats, ridge_, background, (2, 30, mf_i), (2, 30, 30))
        cols = [np.flatnonzero(mf[2, j]).min() for j in range(12, 48)]
        assert min(cols) > 30 and max(cols) < mf_i
        sizes.append(int(mf.sum()))
    assert sizes[1] > sizes[0]


def _two_discs():
    """A 'multifidus' disc (centre (40, 30), radius 8 mm) merged with an 'erector' disc (centre (40, 50),
    radius 16 mm) on 1 mm voxels: one non-background mass, as the two muscles are after the growth."""
    jj, ii = np.mgrid[:80, :90]
    mf = (jj - 40) ** 2 + (ii - 30) ** 2 <= 8**2
    es = (jj - 40) ** 2 + (ii - 50) ** 2 <= 16**2
    return mf | es


def test_away_radius_is_the_multifidus_radius_wherever_the_click_is() -> None:
    """Known answer 8 mm (the disc's radius) for clicks up to 4 mm from the centre in any direction, also
    towards the erector, whose bulk (16 mm deep) lies 12 mm away; the distance at the click itself varies."""
    mass = _two_discs()
    at_click = []
    for dj, di in [(0, 0), (0, -4), (0, 4), (4, 0), (-3, -3), (3, 3)]:
        click = (40 + dj, 30 + di)
        r = split.away_radius(mass, click, (40.0, 50.0), (1.0, 1.0), 8.0, 5.0)
        assert 7.5 <= r <= 8.5, (click, r)
        at_click.append(float(ndi.distance_transform_edt(mass)[click]))
    assert min(at_click) <= 5.0  # the old estimate: a click 4 mm off-centre gives half the radius
    # a wider search stays on the multifidus; unrestricted, it ends in the erector's bulk
    assert 7.5 <= split.away_radius(mass, (40, 34), (40.0, 50.0), (1.0, 1.0), 12.0, 5.0) <= 8.5
    assert split.away_radius(mass, (40, 34), None, (1.0, 1.0), 12.0) > 12.0


def test_muscle_radii_pools_the_sides() -> None:
    """Each muscle's size is the deepest point near its clicks (8 mm for the multifidus clicked at its centre
    on the left and 4 mm off-centre on the right), one size per muscle for both sides."""
    mass = np.stack([_two_discs()] * 2)
    clicks = {
        "multifidus_left": [(0, 40, 30)],
        "erector_spinae_left": [(0, 40, 50)],
        "multifidus_right": [(1, 40, 26)],
        "erector_spinae_right": [(1, 40, 50)],
    }
    groups = [["multifidus_left", "erector_spinae_left"], ["multifidus_right", "erector_spinae_right"]]
    r = split.muscle_radii(groups, clicks, mass, (1.0, 1.0), 8.0, 5.0)
    assert r["multifidus_left"] == r["multifidus_right"] and abs(r["multifidus_left"] - 8.0) < 0.5
    assert (
        r["erector_spinae_left"] == r["erector_spinae_right"] and abs(r["erector_spinae_left"] - 16.0) < 0.5
    )
    # the distance to the edge at the clicks themselves would give the right multifidus half the size
    assert float(ndi.distance_transform_edt(mass[1])[40, 26]) <= 4.5
