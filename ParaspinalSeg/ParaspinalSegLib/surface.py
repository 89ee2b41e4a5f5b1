"""Overlap and surface distances between two masks of the same structure (Dice, ASSD, HD95) in mm.

Surfaces are the in-plane outlines of each axial slice (mask voxels with a 4-neighbour outside the
mask in the same slice), the plane the CSA is measured in: with 4–5 mm slices a 3D surface would
count whole slice faces as "surface". A point's distance is to the nearest outline point of the
other mask anywhere in the volume (Euclidean, voxel spacing in mm), so an outline on a slice where
the other mask is absent is penalised by the distance to its nearest slice. Per level, the outline
points on that level's slices are pooled.

- ASSD (average symmetric surface distance) = mean of the distances of both masks' outline points.
- HD95 = the larger of the two directed 95th percentiles (as in the DeepMind ``surface-distance``
  package's robust Hausdorff).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage as ndi

_CROSS = np.array([[[0, 0, 0], [0, 1, 0], [0, 0, 0]], [[0, 1, 0], [1, 1, 1], [0, 1, 0]], [[0, 0, 0], [0, 1, 0], [0, 0, 0]]], bool)  # fmt: skip
_IN_PLANE = _CROSS.copy()
_IN_PLANE[0] = _IN_PLANE[2] = False


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A∩B| / (|A| + |B|); NaN when both are empty."""
    na, nb = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    if na + nb == 0:
        return float("nan")
    return 2.0 * int(np.count_nonzero(a & b)) / (na + nb)


def outline(mask: np.ndarray) -> np.ndarray:
    """In-plane outline of every slice (k, j, i array): mask voxels with a 4-neighbour outside it."""
    return mask & ~ndi.binary_erosion(mask, _IN_PLANE, border_value=0)


def outline_distances(
    a: np.ndarray, b: np.ndarray, spacing_kji: tuple[float, float, float]
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((k of A's outline points, their distances to B's outline), (the same from B to A)), in mm.

    Empty arrays for an empty mask; distances are NaN when the other mask is empty.
    """
    both = a | b
    empty = (np.zeros(0, int), np.zeros(0))
    if not both.any():
        return empty, empty
    box = tuple(slice(max(0, lo - 1), hi + 2) for lo, hi in zip(*_bounds(both), strict=True))
    oa, ob = outline(a[box]), outline(b[box])
    out = []
    for src, dst in ((oa, ob), (ob, oa)):
        k = np.nonzero(src)[0] + box[0].start
        if not dst.any():
            out.append((k, np.full(k.size, np.nan)))
            continue
        dist = ndi.distance_transform_edt(~dst, sampling=spacing_kji)
        out.append((k, dist[src]))
    return out[0], out[1]


def _bounds(mask: np.ndarray) -> tuple[list[int], list[int]]:
    idx = [np.flatnonzero(mask.any(axis=tuple(d for d in range(3) if d != axis))) for axis in range(3)]
    return [int(i[0]) for i in idx], [int(i[-1]) for i in idx]


def summarise(d_ab: np.ndarray, d_ba: np.ndarray) -> dict[str, float]:
    """ASSD and HD95 (mm) of two directed distance sets (either may be empty: a level where one mask has
    no slice); NaN when both are empty or the other mask is empty everywhere (NaN distances)."""
    parts = [d for d in (d_ab, d_ba) if d.size]
    if not parts or any(np.isnan(d).any() for d in parts):
        return {"assd_mm": float("nan"), "hd95_mm": float("nan")}
    pooled = np.concatenate(parts)
    return {
        "assd_mm": float(pooled.mean()),
        "hd95_mm": float(max(np.percentile(d, 95) for d in parts)),
    }


def compare_masks(
    a: np.ndarray,
    b: np.ndarray,
    spacing_kji: tuple[float, float, float],
    levels: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, dict[str, float]]:
    """``{level: {dice, assd_mm, hd95_mm, voxels_a, voxels_b}}`` for ``all`` and each level's slices
    (inclusive k ranges); a level where both masks are empty is left out."""
    (ka, da), (kb, db) = outline_distances(a, b, spacing_kji)
    ranges = {"all": (0, a.shape[0] - 1), **dict(levels or {})}
    out = {}
    for level, (k0, k1) in ranges.items():
        sa, sb = a[k0 : k1 + 1], b[k0 : k1 + 1]
        if not (sa.any() or sb.any()):
            continue
        in_a, in_b = (ka >= k0) & (ka <= k1), (kb >= k0) & (kb <= k1)
        out[level] = {
            "dice": dice(sa, sb),
            **summarise(da[in_a], db[in_b]),
            "voxels_a": int(np.count_nonzero(sa)),
            "voxels_b": int(np.count_nonzero(sb)),
        }
    return out
