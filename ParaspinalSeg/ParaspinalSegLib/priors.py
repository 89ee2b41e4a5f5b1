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


def midline_path(
    nonmuscle: np.ndarray,
    cols_lr: tuple[float, float],
    rows: tuple[int, int],
    search: int,
    move_cost: float = 0.5,
    saturate: float = 1.0,
    slice_median: int = 5,
) -> np.ndarray:
    """Per slice and row, the midline column: the cheapest top-to-bottom path through a midline-likeness map.

    The spinous process / interspinous ligament is a thin dark vertical structure between the two
    multifidi, often tilted or curved in the slice; one column per slice cuts into the muscle where it is.
    ``nonmuscle`` (k, j, i) is high on the midline structure (segment() passes darkness, 1 − signal / muscle
    signal, clipped to [0, 1]); values are capped at ``saturate`` and averaged over 3 columns and 3 slices.
    Per slice the path takes one column per row of ``rows`` within ``search`` columns of the midpoint of
    ``cols_lr`` (and strictly between them), moving at most one column per row, at cost −map +
    ``move_cost`` per column moved + a light pull to the midpoint; a median over ``slice_median`` slices
    per row removes single-slice detours (the spine is continuous). Returns (k, rows[1] − rows[0]) columns.
    """
    nk = nonmuscle.shape[0]
    c0 = round(0.5 * (cols_lr[0] + cols_lr[1]))
    lo, hi = max(1, c0 - search), min(nonmuscle.shape[2] - 2, c0 + search)
    lo = max(lo, int(min(cols_lr)) + 1)
    hi = min(hi, int(max(cols_lr)) - 1)
    nr = rows[1] - rows[0]
    if hi < lo or nr <= 0:
        return np.full((nk, max(nr, 0)), c0, np.int64)
    band = np.minimum(nonmuscle[:, rows[0] : rows[1], lo : hi + 1].astype(np.float64), saturate)
    band = ndi.uniform_filter1d(band, 3, axis=2)
    if nk >= 3:
        band = ndi.uniform_filter1d(band, 3, axis=0, mode="nearest")
    cols = np.arange(lo, hi + 1)
    cost = -band + 0.05 * (np.abs(cols - c0) / max(search, 1))[None, None, :]
    nc = cols.size
    acc = cost[:, 0].copy()
    back = np.zeros((nr, nk, nc), np.int8)
    for r in range(1, nr):
        pad = np.pad(acc, ((0, 0), (1, 1)), constant_values=np.inf)
        cand = np.stack([pad[:, :-2] + move_cost, pad[:, 1:-1], pad[:, 2:] + move_cost], axis=2)
        best = np.argmin(cand, axis=2)  # 0: from column −1, 1: same, 2: from column +1
        acc = np.take_along_axis(cand, best[:, :, None], 2)[:, :, 0] + cost[:, r]
        back[r] = best - 1
    out = np.zeros((nk, nr), np.int64)
    c = np.argmin(acc, axis=1)
    ks = np.arange(nk)
    for r in range(nr - 1, -1, -1):
        out[:, r] = c
        c = c + back[r][ks, c]
    if nk >= 3 and slice_median > 1:  # the spine is continuous: single-slice detours go
        out = ndi.median_filter(out, size=(min(slice_median, nk | 1), 1), mode="nearest")
    return out + lo


def midline_barrier(
    path: np.ndarray, rows: tuple[int, int], shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The left/right barrier along a midline path (:func:`midline_path`): (k, j, i) mask, (k, j) columns.

    Rows outside ``rows`` (in front of the spinous process: canal, vertebral body) take the path's median
    column; on each row every column between this row's and the previous row's column is blocked, so that
    no 6-neighbour step crosses the barrier.
    """
    nk, nj, ni = shape
    full = np.empty((nk, nj), np.int64)
    straight = np.round(np.median(path, axis=1, keepdims=True)).astype(np.int64)
    full[:, : rows[0]] = straight
    full[:, rows[0] : rows[1]] = path
    full[:, rows[1] :] = straight
    prev = np.concatenate([full[:, :1], full[:, :-1]], axis=1)
    lo, hi = np.minimum(full, prev), np.maximum(full, prev)
    ii = np.arange(ni)[None, None, :]
    return (ii >= lo[:, :, None]) & (ii <= hi[:, :, None]), full


def clip_midline_margin(
    labels: np.ndarray,
    values: Sequence[int],
    path_cols: np.ndarray,
    nonmuscle: np.ndarray,
    margin_px: float,
    max_nonmuscle: float,
) -> int:
    """Remove, in place, voxels of ``values`` closer than ``margin_px`` columns to the midline path that are
    not clearly muscle (``nonmuscle`` above ``max_nonmuscle``): the interspinous ligament / lamina tissue beside
    the spinous process has an intermediate signal that the growth takes into the multifidus. Returns how many.
    """
    ii = np.arange(labels.shape[2])[None, None, :]
    near = np.abs(ii - path_cols[:, :, None]) < margin_px
    cut = near & np.isin(labels, list(values)) & (nonmuscle > max_nonmuscle)
    labels[cut] = 0
    return int(cut.sum())


__all__ = [
    "DEFAULT_EXTENT_MM",
    "anterior_seam",
    "clip_erector_front",
    "clip_midline_margin",
    "clip_to_reach",
    "deepest_near",
    "extent_cap_mm",
    "mark_anterolateral",
    "mark_unreachable",
    "midline_barrier",
    "midline_path",
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
    mask2d: np.ndarray,
    ji_: tuple[int, int],
    spacing_ji: tuple[float, float],
    search_mm: float,
    toward_ji: tuple[float, float] | None = None,
    toward_mm: float = 0.0,
) -> tuple[float, int, int]:
    """Deepest point of ``mask2d`` within ``search_mm`` of a click: (distance to the mask's edge in mm, j, i).

    Clicks anywhere in the middle of a muscle give the same point, so geometry derived from it does not
    depend on where exactly the user clicked. With ``toward_ji``, the search advances at most ``toward_mm``
    further in that direction than the click.
    """
    j, i = ji_
    rj, ri = (max(1, int(search_mm / s)) for s in spacing_ji)
    j0, i0 = max(0, j - rj - 60), max(0, i - ri - 60)
    crop = mask2d[j0 : j + rj + 61, i0 : i + ri + 61]
    dt = ndi.distance_transform_edt(crop, sampling=spacing_ji)
    jj, ii = np.ogrid[: crop.shape[0], : crop.shape[1]]
    dj, di = (jj - (j - j0)) * spacing_ji[0], (ii - (i - i0)) * spacing_ji[1]
    near = dj**2 + di**2 <= search_mm**2
    if toward_ji is not None:
        vj, vi = (toward_ji[0] - j) * spacing_ji[0], (toward_ji[1] - i) * spacing_ji[1]
        near = near & ((dj * vj + di * vi) / max(float(np.hypot(vj, vi)), 1e-6) <= toward_mm)
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


def anterior_seam(
    strength: np.ndarray,
    prior_rows: np.ndarray,
    start_cols: np.ndarray,
    step: int,
    band_px: float,
    pull: float,
) -> np.ndarray:
    """Rows of the erector's anterior fascia, per slice and step lateral of the erector's deepest point.

    ``strength`` (k, j, i): fascia line strength; ``prior_rows`` (k, t): prior row at column
    ``start_cols[k] + step·t`` (``step`` = −1 on the right side, +1 on the left). Per slice, the cheapest path
    over t (moving at most one row per column) within ``band_px`` rows of the prior, at cost −strength +
    ``pull`` × |offset| / band: it follows a visible line near the prior and the prior where none shows
    (also outside the image). All slices run at once (vectorised over k), so this stays fast.
    """
    nk, nj, ni = strength.shape
    nt = prior_rows.shape[1]
    band = max(1, round(band_px))
    offs = np.arange(-band, band + 1)
    base = np.round(prior_rows).astype(np.int64)  # (k, t)
    ks = np.arange(nk)[:, None]
    pen = pull / band * np.abs(offs)[None, :]

    def cost(t: int) -> np.ndarray:
        rows = base[:, t, None] + offs[None, :]
        col = start_cols + step * t
        ok = (rows >= 0) & (rows < nj) & ((col >= 0) & (col < ni))[:, None]
        st = strength[ks, np.clip(rows, 0, nj - 1), np.clip(col, 0, ni - 1)[:, None]]
        return np.where(ok, -st, 1e6) + pen

    acc = cost(0)
    back = np.zeros((nt, nk, offs.size), np.int64)
    for t in range(1, nt):
        shift = base[:, t] - base[:, t - 1]  # row change of the prior between the two columns
        padded = np.pad(acc, ((0, 0), (2, 2)), constant_values=np.inf)
        # previous offset o' = o + shift − d for a row move d ∈ {−1, 0, +1}
        idx = offs[None, :, None] + band + 2 + shift[:, None, None] - np.array([-1, 0, 1])[None, None, :]
        cand = np.take_along_axis(padded[:, :, None], np.clip(idx, 0, offs.size + 3).reshape(nk, -1, 1), 1)
        cand = cand.reshape(nk, offs.size, 3)
        cand[(idx < 0) | (idx > offs.size + 3)] = np.inf
        best = np.argmin(cand, axis=2)
        acc = np.take_along_axis(cand, best[:, :, None], 2)[:, :, 0] + cost(t)
        back[t] = np.take_along_axis(idx, best[:, :, None], 2)[:, :, 0] - band - 2
    out = np.asarray(prior_rows, float).copy()
    o = np.argmin(acc, axis=1)
    for t in range(nt - 1, -1, -1):
        rows = base[:, t] + offs[o]
        inside = (rows >= 0) & (rows < nj)
        out[inside, t] = rows[inside]
        if t:
            o = back[t][np.arange(nk), o] + band
    return out


def clip_erector_front(
    labels: np.ndarray,
    value: int,
    right: bool,
    spacing_ji: tuple[float, float],
    factor: float,
    slope: float,
    strength: np.ndarray | None = None,
    band_mm: float = 4.0,
    pull: float = 0.02,
) -> int:
    """Remove, in place, erector voxels (``value`` in ``labels`` (k, j, i)) in front of its anterior fascia.

    The erector's anterior boundary is the middle layer of the thoracolumbar fascia, running from the
    transverse-process tip laterally and slightly backwards; the quadratus lumborum / lateral layer in front
    of it has the same signal, so the growth leaks across its gaps. Per slice, from the erector's own deepest
    point (inscribed radius r; a thin leak barely moves it, and it does not depend on the click), the prior
    boundary lateral of that point lies ``factor`` × r in front of it, less ``slope`` × the lateral distance
    (mm); with ``strength`` (fascia line strength, same shape as ``labels``) it is re-drawn along the line
    within ``band_mm`` (:func:`anterior_seam`). Voxels in front of it are removed; returns how many.
    """
    nk, nj, ni = labels.shape
    sj, si = spacing_ji
    step = -1 if right else 1
    anchors = np.zeros((nk, 3))  # r (mm), j, i of the deepest point; r = 0: slice skipped
    n_lat = 1
    for k in range(nk):
        m = labels[k] == value
        if m.sum() < 20:
            continue
        jr, ir = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        j0, i0 = jr[0], ir[0]
        crop = np.pad(m[j0 : jr[-1] + 1, i0 : ir[-1] + 1], 1)
        dt = ndi.distance_transform_edt(crop, sampling=spacing_ji)
        dj, di = np.unravel_index(int(np.argmax(dt)), dt.shape)
        anchors[k] = dt[dj, di], dj + j0 - 1, di + i0 - 1
        n_lat = max(n_lat, int(anchors[k, 2] - ir[0] if right else ir[-1] - anchors[k, 2]) + 1)
    valid = anchors[:, 0] > 0
    if not valid.any():
        return 0
    t = np.arange(n_lat)
    rows = anchors[:, 1, None] - (factor * anchors[:, 0, None] - slope * t[None, :] * si) / sj  # (k, t)
    start = anchors[:, 2].astype(np.int64)
    if strength is not None:
        rows = anterior_seam(strength, rows, start, step, band_mm / sj, pull)
    limit = np.full((nk, ni), -1.0)  # most anterior row allowed per column (−1: no limit)
    for k in np.flatnonzero(valid):
        cols = start[k] + step * t[1:]
        ok = (cols >= 0) & (cols < ni)
        limit[k, cols[ok]] = rows[k, 1:][ok]
    cut = (labels == value) & (np.arange(nj)[None, :, None] < limit[:, None, :])
    labels[cut] = 0
    return int(cut.sum())
