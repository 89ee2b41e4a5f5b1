"""Stage 1 of the segmenter: validated inputs, seeds, levels, the slab of slices and the region of interest.

Everything a user can get wrong is refused here with a message naming the file, structure or level: volumes
that are not axial 3D or not finite, water and fat on different grids, seeds outside the image or in air,
level ranges outside the volume, a level without seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalLBPCore.errors import BadInputError, MissingKeyError
from ParaspinalSegLib import fat as fatmod
from ParaspinalSegLib.contrast import require_supported
from ParaspinalSegLib.io import check_finite, check_volume, match_grid, same_grid_problems
from ParaspinalSegLib.levels import levels_from_landmarks, levels_from_seed_slices, ranges_from_centres
from ParaspinalSegLib.seeds import VoxelSeed, check_structures, seeds_from_labelmap, seeds_from_points
from ParaspinalSegLib.segment_params import InputParams

DEFAULT_LEVEL_HALF_MM = 18.0  # half a lumbar level, used when only one level is seeded and no landmarks
ANTERIOR = ("psoas", "quadratus")


@dataclass
class Inputs:
    """The validated volumes: Dixon water and fat, or one image; ``reference`` carries the output grid."""

    reference: sitk.Image
    dixon: bool
    water: np.ndarray | None
    fat: np.ndarray | None
    image: np.ndarray | None
    notes: list[str]


@dataclass
class Case:
    """The validated request: seeds inside the slab, their ROI coordinates, levels, slab and ROI."""

    inp: Inputs
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    painted: bool
    seeds: list[VoxelSeed]
    local: np.ndarray  # (n, 3) k, j, i of each seed in the ROI
    names: list[str]
    missing: list[str]  # requested structures without seeds in the slab
    level_ranges: dict[str, tuple[int, int]]
    level_source: str
    roi: tuple[slice, slice, slice]
    noise_floor: float

    @property
    def rshape(self) -> tuple[int, int, int]:
        return tuple(s.stop - s.start for s in self.roi)

    def clicks(self, prefix: str | tuple[str, ...] = "") -> dict[str, list[tuple[int, int, int]]]:
        """ROI (k, j, i) of the seeds per structure name, for names starting with ``prefix``."""
        out: dict[str, list[tuple[int, int, int]]] = {}
        for s, loc in zip(self.seeds, self.local, strict=True):
            if s.name.startswith(prefix):
                out.setdefault(s.name, []).append(tuple(int(x) for x in loc))
        return out

    @property
    def anterior_clicked(self) -> bool:
        """Psoas or QL requested: they compete for the tissue in front of the erector themselves."""
        return any(n.startswith(ANTERIOR) for n in self.names)


def prepare_inputs(image_or_dixon, assume_same_grid: bool = False) -> Inputs:
    """Validate the input volume(s): axial, 3D, finite, water and fat on one grid (or say why not)."""
    notes: list[str] = []
    if isinstance(image_or_dixon, sitk.Image):
        img = check_volume(image_or_dixon, "image")
        arr = check_finite(sitk.GetArrayFromImage(img), "image")
        _note_contrast(require_supported(arr, spacing_ji=_spacing_ji(img), what="image"), notes)
        return Inputs(img, False, None, None, arr, notes)
    if isinstance(image_or_dixon, Mapping):
        missing = [k for k in ("water", "fat") if image_or_dixon.get(k) is None]
        if missing:
            raise BadInputError(f"Dixon input needs 'water' and 'fat' images; missing {missing}")
        water, fat = image_or_dixon["water"], image_or_dixon["fat"]
    elif isinstance(image_or_dixon, Sequence) and len(image_or_dixon) == 2:
        water, fat = image_or_dixon
    else:
        raise BadInputError("input must be a sitk.Image (T1/T2) or a Dixon pair {'water': img, 'fat': img}")
    fat = check_volume(fat, "fat image")
    water = check_volume(water, "water image")
    problems = same_grid_problems(water, fat)
    if problems:
        water = match_grid(water, fat, "water image", "fat image", assume_same_grid)
        notes.append(
            "water image grid differs from the fat image (" + "; ".join(problems) + "); assumed same voxels"
        )
    w = check_finite(sitk.GetArrayFromImage(water), "water image")
    f = check_finite(sitk.GetArrayFromImage(fat), "fat image")
    verdict = require_supported(water=w, fat=f, spacing_ji=_spacing_ji(fat), what="water/fat images")
    _note_contrast(verdict, notes)
    return Inputs(fat, True, w, f, None, notes)


def _spacing_ji(image: sitk.Image) -> tuple[float, float]:
    return float(image.GetSpacing()[1]), float(image.GetSpacing()[0])


def _note_contrast(verdict, notes: list[str]) -> None:
    """An input whose fat contrast could not be confirmed is segmented, with the reason in the notes."""
    if verdict.finding == "inconclusive":
        notes.append(f"contrast check: {verdict.reason}")


def _check_seeds_in_body(inp: Inputs, vseeds: Sequence[VoxelSeed]) -> float:
    """Refuse seeds in air outside the body (clicked beside the patient); returns the noise floor."""
    signal = inp.water + inp.fat if inp.dixon else inp.image
    floor = fatmod.noise_floor(signal)
    body: dict[int, np.ndarray] = {}
    for s in vseeds:
        k, j, i = s.kji
        if k not in body:  # the body on that slice: above the noise floor, holes (dark muscle, bone) filled
            body[k] = ndi.binary_fill_holes(ndi.binary_opening(signal[k] > floor, iterations=1))
        if not body[k][j, i]:
            lv = f" (level {s.level})" if s.level else ""
            raise BadInputError(
                f"seeds: seed {s.name}{lv} at voxel k,j,i={s.kji} lies in air outside the body (signal "
                f"{signal[k, j, i]:.1f}, noise floor {floor:.1f}); click inside the muscle"
            )
    return floor


def _level_ranges(levels, vseeds: Sequence[VoxelSeed], ref: sitk.Image, half: float):
    """Slice range per level from landmarks, explicit ranges or the seeds' level tags: (ranges, source)."""
    n_slices = ref.GetSize()[2]
    if levels is None:
        tagged: dict[str, list[int]] = {}
        for s in vseeds:
            if s.level:
                tagged.setdefault(s.level, []).append(s.kji[0])
        ranges = levels_from_seed_slices(tagged, n_slices, half) if tagged else {}
        source = "seeds" if tagged else "none"
    elif isinstance(levels, Mapping):
        ranges, source = {str(k): (int(v[0]), int(v[1])) for k, v in levels.items()}, "ranges"
    else:
        ranges, source = levels_from_landmarks(list(levels), ref), "landmarks"
    for lv, (a, b) in ranges.items():
        if not (0 <= a <= b < n_slices):
            raise BadInputError(f"level {lv}: slice range [{a}, {b}] outside the volume's 0..{n_slices - 1}")
    return ranges, source


def _slab(ranges: Mapping[str, tuple[int, int]], seed_k: np.ndarray, only_level, n_slices: int, half: float):
    """Slices to segment: one level, else every level holding a seed, else half a level around the seeds."""
    if only_level is not None:
        if only_level not in ranges:
            raise MissingKeyError(
                f"only_level {only_level!r}: unknown level; known: {', '.join(ranges) or 'none'}"
            )
        return ranges[only_level]
    if ranges:
        covered = [r for r in ranges.values() if np.any((seed_k >= r[0]) & (seed_k <= r[1]))]
        k0 = min(r[0] for r in covered) if covered else int(seed_k.min())
        k1 = max(r[1] for r in covered) if covered else int(seed_k.max())
        return k0, k1
    lo = ranges_from_centres({"_": float(seed_k.min())}, n_slices, half)["_"]
    hi = ranges_from_centres({"_": float(seed_k.max())}, n_slices, half)["_"]
    return lo[0], hi[1]


def prepare_case(inp: Inputs, seeds, structures, levels, only_level, p: InputParams) -> Case:
    """Stage 1: seeds, levels, the slab of slices and the region of interest around the clicks."""
    ref = inp.reference
    shape = tuple(ref.GetSize()[::-1])
    spacing = tuple(ref.GetSpacing()[::-1])
    painted = isinstance(seeds, np.ndarray | sitk.Image)
    vseeds = seeds_from_labelmap(seeds, shape) if painted else seeds_from_points(list(seeds), ref)
    names = check_structures(vseeds, structures)
    vseeds = [s for s in vseeds if s.name in names]
    floor = _check_seeds_in_body(inp, vseeds)
    half = DEFAULT_LEVEL_HALF_MM / spacing[0]
    ranges, source = _level_ranges(levels, vseeds, ref, half)
    k0, k1 = _slab(ranges, np.array([s.kji[0] for s in vseeds]), only_level, shape[0], half)
    vseeds = [s for s in vseeds if k0 <= s.kji[0] <= k1]
    if not vseeds:
        raise BadInputError(f"level {only_level}: no seeds in its slices {k0}..{k1}")
    missing = [n for n in names if n not in {s.name for s in vseeds}]
    names = [n for n in names if n not in missing]
    kji = np.array([s.kji for s in vseeds])
    mj, mi = round(p.margin_mm / spacing[1]), round(p.margin_mm / spacing[2])
    j0, j1 = max(0, kji[:, 1].min() - mj), min(shape[1], kji[:, 1].max() + mj + 1)
    i0, i1 = max(0, kji[:, 2].min() - mi), min(shape[2], kji[:, 2].max() + mi + 1)
    roi = (slice(k0, k1 + 1), slice(j0, j1), slice(i0, i1))
    local = kji - np.array([k0, j0, i0])
    return Case(inp, spacing, shape, painted, vseeds, local, names, missing, ranges, source, roi, floor)


__all__ = ["Case", "Inputs", "prepare_case", "prepare_inputs"]
