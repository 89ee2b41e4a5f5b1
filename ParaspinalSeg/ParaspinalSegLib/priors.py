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


__all__ = ["DEFAULT_EXTENT_MM", "clip_to_reach", "extent_cap_mm", "mark_unreachable", "reach_masks"]


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
