"""Anatomical priors for the seeded segmentation: how far a muscle can reach from its clicks.

A muscle's cross-section never extends more than a few centimetres from an interior click on a
slice of the same level (measured with clicks at the deepest point: ≤ 38 mm for every muscle of the
real TUM01 and MuscleMap cases and the phantom). Without this bound a muscle whose signal is close to
that of its neighbours (psoas or quadratus lumborum next to bowel on a T1 image where muscle sits at
the noise level) grows through the whole abdomen. The caps below are generous (≈ 1.4× the largest
extent seen) so that they only stop leaks; set one to 0 to disable it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage as ndi

# maximal in-plane distance (mm) of a muscle voxel from the nearest click of that muscle
DEFAULT_EXTENT_MM: dict[str, float] = {
    "multifidus": 40.0,
    "erector_spinae": 55.0,
    "psoas": 45.0,
    "quadratus_lumborum": 55.0,
}


def extent_cap_mm(name: str, caps: Mapping[str, float] = DEFAULT_EXTENT_MM) -> float:
    """The cap for a structure name such as ``psoas_left`` (0 = none)."""
    for family, cap in caps.items():
        if name.startswith(family):
            return float(cap)
    return 0.0


def reach_masks(
    clicks_ji: Mapping[str, Sequence[tuple[int, int]]],
    shape_ji: tuple[int, int],
    spacing_ji: tuple[float, float],
    scale: float = 1.0,
    caps: Mapping[str, float] = DEFAULT_EXTENT_MM,
) -> dict[str, np.ndarray]:
    """Per structure, the in-plane region within its cap (× ``scale``) of any of its clicks (2D, all slices).

    Clicks of all levels are projected onto one plane: the bound is on the in-plane distance only, so a
    muscle that drifts laterally from level to level keeps the union of its levels' reach. Structures
    with a cap of 0 get no mask.
    """
    out: dict[str, np.ndarray] = {}
    for name, pts in clicks_ji.items():
        cap = extent_cap_mm(name, caps) * scale
        if cap <= 0 or not pts:
            continue
        m = np.zeros(shape_ji, bool)
        for j, i in pts:
            m[j, i] = True
        out[name] = ndi.distance_transform_edt(~m, sampling=spacing_ji) <= cap
    return out


def midline_columns(
    nonmuscle: np.ndarray, cols_lr: tuple[float, float], rows: tuple[int, int], search: int
) -> np.ndarray:
    """Per-slice midline column: the most non-muscle column between the left and right seeds."""
    c0 = round(0.5 * (cols_lr[0] + cols_lr[1]))
    lo, hi = max(1, c0 - search), min(nonmuscle.shape[2] - 2, c0 + search)
    lo = max(lo, int(min(cols_lr)) + 1)
    hi = min(hi, int(max(cols_lr)) - 1)
    if hi < lo:
        return np.full(nonmuscle.shape[0], c0)
    band = nonmuscle[:, rows[0] : rows[1], lo : hi + 1].mean(axis=1)
    band = ndi.uniform_filter1d(band, 3, axis=1)
    # prefer the centre slightly on ties (spinous process is close to the seeds' midpoint)
    prior = 0.05 * np.abs(np.arange(lo, hi + 1) - c0) / max(search, 1)
    cols = lo + np.argmax(band - prior[None, :], axis=1)
    # the spine is continuous: median over neighbouring slices removes single-slice outliers
    if cols.size >= 3:
        cols = ndi.median_filter(cols, size=min(5, cols.size | 1), mode="nearest")
    return cols


__all__ = [
    "DEFAULT_EXTENT_MM",
    "clip_to_reach",
    "deepest_near",
    "extent_cap_mm",
    "mark_anterolateral",
    "mark_unreachable",
    "midline_columns",
    "reach_masks",
]


def mark_unreachable(
    seed_arr: np.ndarray, reach: Mapping[str, np.ndarray], n_structures: int, bg_label: int
) -> None:
    """Make unlabelled voxels beyond every structure's reach background seeds (competitors), in place.

    Only when every requested structure has a reach mask: otherwise an unbounded one may own them.
    """
    if not reach or len(reach) < n_structures:
        return
    beyond = ~np.logical_or.reduce(list(reach.values()))
    sub = seed_arr[:, beyond]
    sub[sub == 0] = bg_label
    seed_arr[:, beyond] = sub


def clip_to_reach(labels: np.ndarray, reach: Mapping[str, np.ndarray], value_of: Mapping[str, int]) -> None:
    """Remove, in place, each structure's voxels lying beyond its reach (they become background)."""
    for name, m in reach.items():
        v = value_of[name]
        labels[(labels == v) & ~m[None]] = 0


def deepest_near(
    mask2d: np.ndarray, ji_: tuple[int, int], spacing_ji: tuple[float, float], search_mm: float
) -> tuple[float, int, int]:
    """Deepest point of ``mask2d`` within ``search_mm`` of a click: (distance to the mask's edge in mm, j, i).

    Clicks anywhere in the middle of a muscle give the same point, so geometry derived from it does not
    depend on where exactly the user clicked.
    """
    j, i = ji_
    rj, ri = (max(1, int(search_mm / s)) for s in spacing_ji)
    j0, i0 = max(0, j - rj - 60), max(0, i - ri - 60)
    crop = mask2d[j0 : j + rj + 61, i0 : i + ri + 61]
    dt = ndi.distance_transform_edt(crop, sampling=spacing_ji)
    jj, ii = np.ogrid[: crop.shape[0], : crop.shape[1]]
    near = ((jj - (j - j0)) * spacing_ji[0]) ** 2 + ((ii - (i - i0)) * spacing_ji[1]) ** 2 <= search_mm**2
    bj, bi = np.unravel_index(int(np.argmax(np.where(near, dt, -1.0))), dt.shape)
    return float(dt[bj, bi]), int(bj) + j0, int(bi) + i0


def mark_anterolateral(
    seed_arr: np.ndarray,
    tissue: np.ndarray,
    erector_clicks: Mapping[str, Sequence[tuple[int, int, int]]],
    spacing_ji: tuple[float, float],
    factor: float,
    search_mm: float,
    bg_label: int,
) -> None:
    """Make the tissue in front of and lateral to each erector spinae a competing seed, in place.

    The erector's anterior edge (the middle layer of the thoracolumbar fascia, often invisible) lies about
    one inscribed radius in front of its deepest point; the muscle beyond it (quadratus lumborum, the
    lateral layer) has the same signal, so without psoas/QL seeds nothing else would compete for it.
    Voxels more than ``factor`` × that radius anterior of the deepest point near a click *and* lateral of
    it are background, on every slice of the ROI (geometry of the nearest click slice). Arrays are (k, j, i)
    on an LPS-aligned grid: j grows posteriorly, i towards the patient's left.
    """
    jj, ii = np.mgrid[: seed_arr.shape[1], : seed_arr.shape[2]]
    for name, pts in erector_clicks.items():
        zones = []
        for k, j, i in pts:
            r, dj, di = deepest_near(tissue[k], (j, i), spacing_ji, search_mm)
            lateral = ii < di if name.endswith("_right") else ii > di
            zones.append((k, ((dj - jj) * spacing_ji[0] > factor * r) & lateral))
        ks = np.array([z[0] for z in zones])
        for kk in range(seed_arr.shape[0]):
            zone = zones[int(np.argmin(np.abs(ks - kk)))][1]
            sl = seed_arr[kk]
            sl[zone & (sl == 0)] = bg_label
