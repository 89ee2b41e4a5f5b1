"""Seeds for the segmentation: user clicks (markups) or painted seed label maps → voxel seed arrays.

A seed point is checked against the image (inside it, not in air) and tagged with its level
(the point's description, e.g. ``L3``, or the level whose slice range holds it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ParaspinalLBPCore.errors import BadInputError, MissingKeyError
from ParaspinalLBPCore.structures import BY_NAME, BY_VALUE, MUSCLE_NAMES, structure
from ParaspinalSegLib.levels import point_to_index
from ParaspinalSegLib.markups import MarkupPoint


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
            raise MissingKeyError(
                f"{source}: point label {p.label!r} is not a muscle structure name; expected one of {', '.join(MUSCLE_NAMES)}"
            )
        level = p.description.strip().upper()
        kji = point_to_index(image, p.position_lps)
        if not all(0 <= c < n for c, n in zip(kji, size_kji, strict=True)):
            where = f" (level {level})" if level else ""
            raise BadInputError(
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
        raise BadInputError(f"seed label map: shape {arr.shape} differs from the image's {tuple(shape_kji)}")
    out = []
    for value in np.unique(arr[arr != 0]):
        s = BY_VALUE.get(int(value))
        if s is None or s.name not in MUSCLE_NAMES:
            raise BadInputError(
                f"seed label map: value {value} is not a muscle label (1–8, see structures.py)"
            )
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
                raise MissingKeyError(
                    f"structure {n!r} is not a muscle that can be segmented ({', '.join(MUSCLE_NAMES)})"
                )
            if n not in seeded:
                raise BadInputError(
                    f"structure {n} was requested but has no seed; place at least one point labelled {n!r}"
                )
            names.append(n)
    if not names:
        raise BadInputError("no seeds: place at least one point per muscle (labels = structure names)")
    return names


def points_from_labels(
    labels: np.ndarray,
    reference: sitk.Image,
    names: Mapping[int, str],
    slabs: int = 4,
    first_level: int = 1,
    shift_mm: float = 0.0,
    rng: np.random.Generator | None = None,
) -> list[MarkupPoint]:
    """One click per structure per slab from a label map (k, j, i on ``reference``'s grid): the label's most
    interior voxel on the slab's middle slice, level ``L<first_level + slab>``.

    This is the validation's seeding rule (a user clicking "in the middle of the muscle"); it also turns an
    earlier segmentation into clicks. ``shift_mm`` > 0 moves each click 0.6–1 × ``shift_mm`` in-plane to a
    voxel ≥ 2 voxels inside the label (drawn with ``rng``), to measure how much the result depends on
    where the click sits. A structure absent from a slab's middle slice gets no click there.
    """
    from scipy import ndimage as ndi

    if shift_mm and rng is None:
        raise BadInputError("points_from_labels: shift_mm needs a random generator (rng)")
    sx, sy = reference.GetSpacing()[:2]
    points = []
    for index, slab in enumerate(np.array_split(np.arange(labels.shape[0]), slabs)):
        k = int(slab[len(slab) // 2])
        for value, name in names.items():
            mask = labels[k] == value
            if not mask.any():
                continue
            dt = ndi.distance_transform_edt(mask)
            j, i = np.unravel_index(np.argmax(dt), dt.shape)
            if shift_mm:
                jj, ii = np.nonzero(mask & (dt >= 2))
                dist = np.hypot((jj - j) * sy, (ii - i) * sx)
                ok = np.flatnonzero((dist <= shift_mm) & (dist >= 0.6 * shift_mm))
                if ok.size:
                    pick = ok[rng.integers(ok.size)]
                    j, i = jj[pick], ii[pick]
            xyz = reference.TransformIndexToPhysicalPoint((int(i), int(j), k))
            points.append(MarkupPoint(name, np.array(xyz), f"L{index + first_level}"))
    return points
