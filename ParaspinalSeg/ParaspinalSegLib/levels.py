"""Vertebral level → slice ranges, from level landmarks (``L1``…``L5`` points) or from the seeds.

A level's slices are those closer to its landmark than to the neighbouring levels' landmarks; the
first and last levels extend by half the neighbouring spacing (clipped to the volume). Ranges are
inclusive k indices (numpy axis 0), as in contract C1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPCore.structures import LEVELS
from ParaspinalSegLib.markups import MarkupPoint


def point_to_index(image: sitk.Image, xyz_lps: Sequence[float]) -> tuple[int, int, int]:
    """Nearest voxel (k, j, i) of an LPS point; may lie outside the image (caller checks)."""
    ijk = image.TransformPhysicalPointToContinuousIndex([float(v) for v in xyz_lps])
    i, j, k = (int(np.floor(c + 0.5)) for c in ijk)
    return k, j, i


def ranges_from_centres(
    centres: Mapping[str, float], n_slices: int, single_half: float = 1e6
) -> dict[str, tuple[int, int]]:
    """Split slices between levels given each level's centre slice (fractional k).

    With a single level, it extends ``single_half`` slices either side of its centre.
    """
    if not centres:
        return {}
    order = sorted(centres.items(), key=lambda kv: kv[1])
    ks = np.array([c for _, c in order], dtype=float)
    if len(ks) > 1:
        gaps = np.diff(ks)
        if np.any(gaps <= 0):
            dup = [order[i][0] for i in np.flatnonzero(gaps <= 0)]
            raise BadInputError(
                f"levels {dup} share a slice with the next level; landmarks must be on distinct slices"
            )
        half = 0.5 * float(np.median(gaps))
    else:
        half = float(single_half)
    bounds = [ks[0] - half, *list((ks[:-1] + ks[1:]) / 2), ks[-1] + half]
    out: dict[str, tuple[int, int]] = {}
    last = len(order) - 1
    for n, (level, _) in enumerate(order):
        # inner boundaries split at the midpoint; the outer ends keep every slice overlapping the slab
        k0 = int(np.ceil(max(bounds[0], -1.0) - 0.5)) if n == 0 else int(np.floor(bounds[n])) + 1
        k1 = int(np.floor(min(bounds[-1], n_slices) + 0.5)) if n == last else int(np.floor(bounds[n + 1]))
        k0, k1 = max(0, k0), min(n_slices - 1, k1)
        if k1 >= k0:
            out[level] = (k0, k1)
    return out


def levels_from_landmarks(
    points: Iterable[MarkupPoint], image: sitk.Image, source: str = "levels"
) -> dict[str, tuple[int, int]]:
    """Slice range of each level from ``L1``…``L5`` landmark points (one per level)."""
    n_slices = image.GetSize()[2]
    centres: dict[str, float] = {}
    for p in points:
        name = p.label.strip().upper()
        if name not in LEVELS:
            raise BadInputError(f"{source}: point label {p.label!r} is not a level ({', '.join(LEVELS)})")
        if name in centres:
            raise BadInputError(f"{source}: level {name} has more than one landmark")
        k = image.TransformPhysicalPointToContinuousIndex([float(v) for v in p.position_lps])[2]
        if not (-0.5 <= k <= n_slices - 0.5):
            raise BadInputError(f"{source}: landmark {name} lies outside the image's slices (k = {k:.1f})")
        centres[name] = k
    return ranges_from_centres(centres, n_slices)


def levels_from_seed_slices(
    seed_levels: Mapping[str, Sequence[int]], n_slices: int, single_half: float = 1e6
) -> dict[str, tuple[int, int]]:
    """Slice ranges from the seeds' level tags (the mean seed slice of a level is its centre)."""
    centres = {lv: float(np.mean(ks)) for lv, ks in seed_levels.items() if lv and len(ks)}
    return ranges_from_centres(centres, n_slices, single_half)


def slice_levels(levels: Mapping[str, tuple[int, int]], n_slices: int) -> np.ndarray:
    """Level name of every slice ('' where none)."""
    out = np.full(n_slices, "", dtype=object)
    for level, (k0, k1) in levels.items():
        if not (0 <= k0 <= k1 < n_slices):
            raise BadInputError(
                f"level {level}: slice range [{k0}, {k1}] outside the volume's 0..{n_slices - 1}"
            )
        out[k0 : k1 + 1] = level
    return out
