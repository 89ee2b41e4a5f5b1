"""Multifidus / erector spinae split of one side's grown paraspinal mass.

In axial lumbar slices the boundary between multifidus (medial, on the lamina) and erector spinae (lateral)
runs roughly front-to-back through the combined mass, and the fascia between them is often invisible. The
first split is geodesic: each voxel goes to the muscle whose clicks reach it more cheaply along the fascia-ridge
cost, the distance divided by that muscle's size (:func:`split_pairs`, :func:`muscle_radii`). That boundary
depends on where the clicks are where no line shows, so :func:`refine_split` re-draws it per slice as the
cheapest top-to-bottom seam (one column per row, moving at most one column per row) within a band around it:
cheap on bright fat / dark water lines (the fascia) and where fat content differs across the seam, with a weak
pull to the first boundary. A row takes the seam only where its line is clearly stronger than the one under the
first boundary over a run of rows (:func:`_line_rows`), so a fat streak inside a fatty multifidus does not
capture a boundary that already lies on a fascia.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse.csgraph import dijkstra

from ParaspinalSegLib.growcut import edge_graph
from ParaspinalSegLib.priors import deepest_near
from ParaspinalSegLib.segment_params import SplitParams


def ridge(img: np.ndarray, sigma: float) -> np.ndarray:
    """Bright-line strength per slice: max(−λ_min, 0) of the scale-normalised 2D Hessian."""
    s = (0, sigma, sigma)
    gjj = ndi.gaussian_filter(img, s, order=(0, 2, 0))
    gii = ndi.gaussian_filter(img, s, order=(0, 0, 2))
    gji = ndi.gaussian_filter(img, s, order=(0, 1, 1))
    lmin = 0.5 * (gjj + gii) - np.sqrt((0.5 * (gjj - gii)) ** 2 + gji**2)
    return np.maximum(-lmin, 0) * sigma * sigma


def fascia_strength(fat: np.ndarray, water: np.ndarray | None, sigma_px: float) -> np.ndarray:
    """Line strength per slice: bright ridge of ``fat`` plus dark valley of ``water`` (scale-normalised Hessian)."""
    out = ridge(fat.astype(np.float32), sigma_px)
    if water is not None:
        out += ridge(-water.astype(np.float32), sigma_px)
    return out


def side_contrast(ff: np.ndarray, width: int = 4, rows: int = 5) -> np.ndarray:
    """|mean of the ``width`` voxels after − mean of the ``width`` voxels before| along i, averaged over
    ``rows`` rows: high where tissue of different fat content meets (multifidus vs erector), even without a
    visible fascia line."""
    m = ndi.uniform_filter1d(ff, width, axis=2, mode="nearest")
    before = np.roll(m, width // 2 + 1, axis=2)
    after = np.roll(m, -(width // 2), axis=2)
    return ndi.uniform_filter1d(np.abs(after - before), rows, axis=1)


def _seam(cost: np.ndarray) -> np.ndarray:
    """Cheapest path through ``cost`` (rows × cols) taking one column per row, moving ≤ 1 column per row."""
    n, m = cost.shape
    acc = cost[0].copy()
    back = np.zeros((n, m), np.int8)
    big = np.float32(1e30)
    for j in range(1, n):
        left = np.concatenate([[big], acc[:-1]])
        right = np.concatenate([acc[1:], [big]])
        stack = np.stack([left, acc, right])
        arg = np.argmin(stack, axis=0)
        back[j] = arg.astype(np.int8) - 1
        acc = stack[arg, np.arange(m)] + cost[j]
    path = np.zeros(n, np.int64)
    path[-1] = int(np.argmin(acc))
    for j in range(n - 1, 0, -1):
        path[j - 1] = path[j] + back[j, path[j]]
    return path


# A row takes the seam only where its line is LINE_GAIN times stronger than under the first boundary, on at
# least LINE_RUN_ROWS consecutive rows (shorter runs keep the first boundary); 0 = ungated.
LINE_GAIN = 1.5
LINE_RUN_ROWS = 5


def _line_rows(
    strength2d: np.ndarray, path: np.ndarray, c0: np.ndarray, r0: int, gain: float, run_rows: int
) -> np.ndarray:
    """Rows (``r0`` + index) where the seam moves onto a clearly stronger line than the first boundary's.

    Where the geodesic boundary already lies on a fascia (the phantom: fat sheath around the multifidus)
    a nearby fat streak inside the fatty multifidus is about as strong, and the seam would jump onto it;
    there the first boundary is kept. A real fascia the first boundary missed (TUM01) is much stronger
    than the muscle the first boundary cuts through. Isolated rows are dropped (runs < ``run_rows``).
    """
    rows = np.arange(r0, r0 + path.size)
    c0i = np.clip(np.round(c0).astype(np.int64), 0, strength2d.shape[1] - 1)
    hit = strength2d[rows, path] > gain * np.maximum(strength2d[rows, c0i], 0)
    if run_rows > 1:
        hit = ndi.binary_opening(hit, np.ones(run_rows, bool))
    return hit


def refine_split(
    region: np.ndarray,
    is_mf: np.ndarray,
    strength: np.ndarray,
    medial_sign: int,
    spacing_i: float,
    band_mm: float,
    prior_weight: float,
    erode_px: int = 1,
    line_gain: float = LINE_GAIN,
    line_run_rows: int = LINE_RUN_ROWS,
) -> np.ndarray:
    """Re-draw the multifidus/erector boundary of one side per slice; returns the new multifidus mask.

    ``region``: that side's combined MF+ES voxels (k, j, i); ``is_mf``: the first split (inside region);
    ``strength``: fascia line strength (same shape); ``medial_sign``: +1 when the midline lies towards
    larger i. Each row's first boundary column is where the multifidus ends laterally; the seam may move
    within ``band_mm`` of it, at cost −strength + ``prior_weight`` × |offset| / band, on the rows the line gate
    (``line_gain``, ``line_run_rows``; :func:`_line_rows`) lets through.
    """
    out = is_mf.copy()
    band = max(1, round(band_mm / spacing_i))
    ncol = region.shape[2]
    cols = np.arange(ncol)
    for k in range(region.shape[0]):
        reg, mf = region[k], is_mf[k] & region[k]
        es = reg & ~mf
        if mf.sum() < 5 or es.sum() < 5:
            continue
        rows = np.flatnonzero(reg.any(axis=1))
        r0, r1 = rows.min(), rows.max() + 1
        # first boundary per row: the column next to the lateral-most multifidus voxel (erector side)
        c0 = np.full(r1 - r0, np.nan)
        for jj in range(r0, r1):
            cm = np.flatnonzero(mf[jj])
            ce = np.flatnonzero(es[jj])
            if cm.size and ce.size:
                c0[jj - r0] = (cm.min() if medial_sign > 0 else cm.max()) - medial_sign
        ok = np.isfinite(c0)
        if not ok.any():
            continue
        idx = np.arange(c0.size)
        c0 = np.interp(idx, idx[ok], c0[ok])
        inner = ndi.binary_erosion(reg, iterations=erode_px)[r0:r1] if erode_px > 0 else reg[r0:r1]
        off = np.abs(cols[None, :] - c0[:, None])
        cost = -np.where(inner, strength[k, r0:r1], 0).astype(np.float32) + np.float32(
            prior_weight / band
        ) * off.astype(np.float32)
        cost[off > band] = np.float32(1e6)
        path = _seam(cost)
        keep = ok & _line_rows(strength[k], path, c0, r0, line_gain, line_run_rows) if line_gain > 0 else ok
        # multifidus: region voxels on the medial side of the path (boundary column goes to the erector)
        medial = (cols[None, :] - path[:, None]) * medial_sign > 0
        new = mf.copy()  # rows holding only one of the two muscles keep the first split
        new[r0:r1][keep] = medial[keep]
        out[k] = reg & new
    return out


def refine_choice(
    choice, region, feats, dixon: bool, names, sources, p: SplitParams, spacing_i: float
) -> np.ndarray:
    """Apply :func:`refine_split` to one side's geodesic split ``choice`` (index into ``names``).

    ``feats`` are the segmenter's scaled channels (Dixon: water, fat, FF; else image, pseudo-FF);
    ``sources`` the clicked voxels per name (only their mean column is used: which side is medial).
    """
    if len(names) != 2 or not sources[names[0]] or not sources[names[1]]:
        return choice
    mf_idx = 0 if names[0].startswith("multifidus") else 1
    mf_i = np.mean([c[2] for c in sources[names[mf_idx]]])
    es_i = np.mean([c[2] for c in sources[names[1 - mf_idx]]])
    strength = fascia_strength(
        feats[1] if dixon else feats[0], feats[0] if dixon else None, p.refine_sigma_px
    )
    if p.refine_contrast > 0:
        strength = strength + p.refine_contrast * side_contrast(feats[2] if dixon else feats[1])
    if p.refine_slices > 1:
        strength = ndi.uniform_filter1d(strength, p.refine_slices, axis=0, mode="nearest")
    is_mf = refine_split(
        region,
        region & (choice == mf_idx),
        strength,
        1 if mf_i > es_i else -1,
        spacing_i,
        p.refine_band_mm,
        p.refine_prior,
    )
    new = choice.copy()
    new[region] = np.where(is_mf[region], mf_idx, 1 - mf_idx)
    return new


def away_radius(
    mask2d: np.ndarray,
    ji_: tuple[int, int],
    toward_ji: tuple[float, float] | None,
    spacing_ji: tuple[float, float],
    search_mm: float,
    toward_mm: float = 5.0,
) -> float:
    """Largest distance to the edge of ``mask2d`` (mm) within ``search_mm`` of a click, and at most
    ``toward_mm`` further towards ``toward_ji`` (the neighbouring muscle's clicks) than the click.

    The distance to background at the click itself changes by as much as the click moves (an edge click
    would shrink that muscle on every level); the deepest point near the click is the same for any click
    within reach of it. The multifidus and erector form one mass whose depth grows towards the erector's
    bulk, so the search advances only ``toward_mm`` in that direction.
    """
    return max(deepest_near(mask2d, ji_, spacing_ji, search_mm, toward_ji, toward_mm)[0], 0.0)


def muscle_radii(
    groups: list[list[str]],
    clicks: dict[str, list[tuple[int, int, int]]],
    tissue: np.ndarray,
    spacing_ji: tuple[float, float],
    away_mm: float,
    toward_mm: float,
) -> dict[str, float]:
    """Size (mm) of each muscle of ``groups`` for the size-normalised split: the mean :func:`away_radius` of
    the non-background ``tissue`` at its clicks (k, j, i), pooled over both sides of the same muscle (twice the
    clicks, so one click near a muscle's edge moves the size half as much)."""
    per: dict[str, list[float]] = {}
    for g in groups:
        for n in g:
            other = [m for m in g if m != n and clicks.get(m)]
            toward = tuple(np.mean([c[1:] for c in clicks[other[0]]], axis=0)) if other else None
            per[n] = [
                away_radius(tissue[k], (j, i), toward, spacing_ji, away_mm, toward_mm)
                for k, j, i in clicks.get(n, [])
            ]
    out = {}
    for g in groups:
        for n in g:
            family = n.rsplit("_", 1)[0]
            rs = [r for m, v in per.items() if m.rsplit("_", 1)[0] == family for r in v]
            out[n] = max(float(np.mean(rs)), 1.0) if rs else 1.0
    return out


def split_pairs(
    grown: np.ndarray,
    pairs: list[tuple[list[str], int]],
    seeds_by_name: dict[str, list[tuple[int, int, int]]],
    clicks: dict[str, list[tuple[int, int, int]]],
    feats: np.ndarray,
    ridge: np.ndarray,
    background: np.ndarray,
    spacing: tuple[float, float, float],
    dixon: bool,
    p: SplitParams,
) -> dict[str, np.ndarray]:
    """Split each grown multifidus + erector region (``pairs``: names, label in ``grown``) into its muscles.

    Geodesic distance on the fascia-ridge cost from each muscle's seed voxels (``seeds_by_name``, k, j, i in
    ``grown``'s frame) divided by the muscle's size near its clicks (``clicks``; :func:`muscle_radii`: without
    it the bisector cuts the large erector), then the fascia seam (:func:`refine_choice`). Returns a boolean
    mask per muscle.
    """
    _, sj_, si_ = spacing
    result: dict[str, np.ndarray] = {}
    # one graph over every MF+ES region (regions of different sides are not connected)
    in_pair = np.isin(grown, [v for _, v in pairs])
    kk, jj, ii = np.nonzero(in_pair)
    box = (slice(kk.min(), kk.max() + 1), slice(jj.min(), jj.max() + 1), slice(ii.min(), ii.max() + 1))
    offset = np.array([kk.min(), jj.min(), ii.min()])
    bshape = tuple(b.stop - b.start for b in box)
    sub_graph = edge_graph(
        np.zeros((0, *bshape), np.float32),
        spacing,
        node_cost=ridge[box] * p.ridge_weight,
        eps_per_mm=p.eps_per_mm,
        blocked=~in_pair[box],
    )
    radii = muscle_radii(
        [g for g, _ in pairs], clicks, ~background, (sj_, si_), p.radius_away_mm, p.radius_toward_mm
    )
    for g, value in pairs:
        region = (grown == value)[box]
        srcs: dict[str, list[tuple[int, int, int]]] = {}
        scores = []
        for n in g:
            cs = [tuple(int(x) for x in np.array(c) - offset) for c in seeds_by_name[n]]
            srcs[n] = [c for c in cs if all(0 <= a < b for a, b in zip(c, bshape, strict=True)) and region[c]]
            src = np.array([np.ravel_multi_index(c, bshape) for c in srcs[n]], dtype=np.int64)
            if src.size == 0:
                scores.append(np.full(bshape, np.inf))
                continue
            d = dijkstra(sub_graph, directed=False, indices=src, min_only=True).reshape(bshape)
            scores.append(d / radii[n])
        choice = np.argmin(np.stack(scores), axis=0)
        if p.refine_band_mm > 0 and len(g) == 2:
            choice = refine_choice(choice, region, feats[(slice(None), *box)], dixon, g, srcs, p, si_)
        for idx, n in enumerate(g):
            mask = np.zeros(grown.shape, bool)
            mask[box] = region & (choice == idx)
            result[n] = mask
    return result


__all__ = [
    "LINE_GAIN",
    "LINE_RUN_ROWS",
    "away_radius",
    "fascia_strength",
    "muscle_radii",
    "refine_choice",
    "refine_split",
    "side_contrast",
    "split_pairs",
]
