"""Seeds for the segmentation: user clicks (markups) or painted seed label maps → voxel seed arrays.

A seed point is checked against the image (inside it, not in air) and tagged with its level
(the point's description, e.g. ``L3``, or the level whose slice range holds it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ParaspinalSegLib.levels import point_to_index
from ParaspinalSegLib.markups import MarkupPoint
from ParaspinalSegLib.structures import BY_NAME, BY_VALUE, MUSCLE_NAMES, structure


@dataclass(frozen=True)
class VoxelSeed:
    """One seed voxel: structure name, (k, j, i) index and level tag ('' if unknown)."""

    name: str
    kji: tuple[int, int, int]
    level: str = ""


def seeds_from_points(
    points: Sequence[MarkupPoint], image: sitk.Image, source: str = "seeds"
) -> list[VoxelSeed]:
    """Convert markup points (labels = structure names) to voxel seeds; errors name the structure and level."""
    size_kji = image.GetSize()[::-1]
    out = []
    for p in points:
        name = p.label.strip()
        if name not in BY_NAME or name not in MUSCLE_NAMES:
            raise KeyError(
                f"{source}: point label {p.label!r} is not a muscle structure name; expected one of {', '.join(MUSCLE_NAMES)}"
            )
        level = p.description.strip().upper()
        kji = point_to_index(image, p.position_lps)
        if not all(0 <= c < n for c, n in zip(kji, size_kji, strict=True)):
            where = f" (level {level})" if level else ""
            raise ValueError(
                f"{source}: seed {name}{where} at LPS {np.round(p.position_lps, 1).tolist()} lies outside the image "
                f"(voxel k,j,i = {kji}, image size {size_kji})"
            )
        out.append(VoxelSeed(name, kji, level))
    return out


def seeds_from_labelmap(
    seed_map: np.ndarray | sitk.Image, shape_kji: tuple[int, int, int]
) -> list[VoxelSeed]:
    """Painted seeds: every non-zero voxel of a label map with structures.py values (1–8)."""
    arr = sitk.GetArrayFromImage(seed_map) if isinstance(seed_map, sitk.Image) else np.asarray(seed_map)
    if arr.shape != tuple(shape_kji):
        raise ValueError(f"seed label map: shape {arr.shape} differs from the image's {tuple(shape_kji)}")
    out = []
    for value in np.unique(arr[arr != 0]):
        s = BY_VALUE.get(int(value))
        if s is None or s.name not in MUSCLE_NAMES:
            raise ValueError(f"seed label map: value {value} is not a muscle label (1–8, see structures.py)")
        for k, j, i in np.argwhere(arr == value):
            out.append(VoxelSeed(s.name, (int(k), int(j), int(i)), ""))
    return out


def check_structures(seeds: Sequence[VoxelSeed], structures: Sequence[str] | None) -> list[str]:
    """Requested structures (default: those seeded), each validated and required to have a seed."""
    seeded = {s.name for s in seeds}
    if structures is None:
        names = [n for n in MUSCLE_NAMES if n in seeded]
    else:
        names = []
        for n in structures:
            structure(n)
            if n not in MUSCLE_NAMES:
                raise KeyError(
                    f"structure {n!r} is not a muscle that can be segmented ({', '.join(MUSCLE_NAMES)})"
                )
            if n not in seeded:
                raise ValueError(
                    f"structure {n} was requested but has no seed; place at least one point labelled {n!r}"
                )
            names.append(n)
    if not names:
        raise ValueError("no seeds: place at least one point per muscle (labels = structure names)")
    return names
