"""Semi-automated paraspinal muscle segmentation from one click per muscle per level.

Python API (used by the Slicer Logic and the ``segment`` CLI)::

    result = segment(
        {"water": water_img, "fat": fat_img},   # Dixon pair (sitk.Image), or one T1/T2 sitk.Image (fat bright)
        seeds,                                  # list[MarkupPoint] (labels = structure names, description = level)
                                                # or a painted seed label map (array / sitk.Image, values 1–8)
        structures=None,                        # subset of structure names (default: every seeded one)
        levels=None,                            # L1..L5 landmark points, or {level: (k0, k1)}, or None
        only_level=None, previous=None,         # re-run one level: keep `previous` labels elsewhere
        assume_same_grid=False,                 # accept water/fat grids that differ only in geometry metadata
    )
    result.labels       # sitk.Image uint8 on the fat (Dixon) or input image grid, structures.py values
    result.label_names  # {value: structure name}
    result.levels       # {level: (k0, k1)} inclusive slice ranges (C1)
    result.info         # timings, seeds, references, warnings

Algorithm (numpy/scipy; see docs/segmentation.md): on a region around the seeds, (1) automatic
competing seeds mark what is certainly not muscle — fat (FF > 0.7: subcutaneous and
intermuscular fat, fat lines of the fascia, marrow) and signal voids (cortical bone, ligaments,
air); (2) a hard left/right barrier is placed at the midline, found in the image (the
cheapest dark path, one column per row, of the spinous process / interspinous ligament between the
multifidus seeds: priors.midline_path); (3) all
structures grow together by shortest paths on a 3D voxel graph whose step cost combines the
water, fat and fat-fraction differences plus a ridge (bright fat line = fascia) term, with
multifidus + erector spinae of one side grown as one region; (4) that region is split between
multifidus and erector spinae by size-normalised geodesic distance (each muscle's distance is
divided by its own inscribed radius at the seed, so the large erector is not cut at the
bisector; then, within ``split_refine_band_mm``, re-drawn per slice along the fascia by split.py);
(5) per slice, each label keeps the component holding its seed (or the largest), holes are filled
and spurs removed; multifidus voxels within ``midline_margin_mm`` of the midline path that are not
clearly muscle (ligament / lamina tissue) are removed. Labels never overlap by construction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalSegLib import fat as fatmod
from ParaspinalSegLib.growcut import edge_graph, grow
from ParaspinalSegLib.io import check_finite, check_volume, match_grid
from ParaspinalSegLib.levels import levels_from_landmarks, levels_from_seed_slices, ranges_from_centres
from ParaspinalSegLib.markups import MarkupPoint
from ParaspinalSegLib.priors import (
    clip_erector_front,
    clip_midline_margin,
    clip_to_reach,
    mark_anterolateral,
    mark_unreachable,
    midline_barrier,
    midline_columns,
    midline_path,
    reach_masks,
)
from ParaspinalSegLib.seeds import VoxelSeed, check_structures, seeds_from_labelmap, seeds_from_points
from ParaspinalSegLib.shape import add_rim, postprocess
from ParaspinalSegLib.split import ridge as split_ridge
from ParaspinalSegLib.split import split_pairs
from ParaspinalSegLib.structures import BY_NAME

DEFAULT_LEVEL_HALF_MM = 18.0  # half a lumbar level, used when only one level is seeded and no landmarks


@dataclass
class SegmentParams:
    """Tunable parameters (defaults tuned on the real TUM01 Dixon case and checked on the phantom)."""

    smoothing_px: float = 0.7
    eps_per_mm: float = 0.04  # growth cost per mm: 0.05 missed the phantom erectors' lateral tips (CSA −8 %)
    ridge_weight: float = 10.0
    ridge_sigma_px: float = 1.0
    ridge_floor: float = 0.2
    diff_weight: float = 1.0
    fat_threshold: float = 0.7
    dark_fraction: float = 0.4
    seed_radius_mm: float = 2.0
    margin_mm: float = 45.0
    anterior_limit_mm: float = 25.0
    midline_search_mm: float = 8.0
    # priors.midline_path: the midline as a per-row path through dark (signal-void) tissue midway between the
    # multifidus clicks (± midline_search_mm; follows a tilted spinous process); False = one column per slice
    # (priors.midline_columns). midline_margin_mm: multifidus voxels closer than this to it that are not
    # clearly muscle (|water/ref − 1| + FF above midline_margin_nonmuscle: the interspinous ligament / lamina
    # tissue has water ≈ 0.55 × muscle, FF ≈ 0.2) are removed after the rim (0 = off; Dixon, or T1 whose
    # muscle is clear of the noise floor)
    midline_path: bool = True
    midline_path_dark: bool = True  # path cost: darkness (1 − signal / muscle's), else the non-muscle index
    midline_path_rows_mm: float = 25.0  # the path spans the paraspinal clicks' rows ± this (a muscle's depth)
    midline_margin_mm: float = 2.5
    midline_margin_nonmuscle: float = 0.3
    size_normalised_split: bool = True
    split_ridge_weight: float = 30.0
    split_radius_power: float = 1.0
    split_eps_per_mm: float = 0.05
    split_diff_weight: float = 0.0
    split_recentre_iterations: int = 0
    radius_search_mm: float = 0.0
    # split.refine_split (off by default: helps TUM01/MuscleMap, but snaps onto fat streaks inside the
    # phantom's multifidus; see docs/segmentation.md): seam along the fascia within this band; 8 mm tested
    split_refine_band_mm: float = 8.0
    split_refine_sigma_px: float = 1.5
    split_refine_prior: float = 0.02
    split_refine_contrast: float = 0.3  # weight of split.side_contrast (FF differs across the seam)
    split_refine_slices: int = 3  # fascia strength averaged over this many neighbouring slices
    split_refine_straight: bool = False  # pull towards one column per slice (median of the first boundary)
    split_radius_away_mm: float = 8.0  # split.muscle_radii: deepest point within 8 mm of a click (0 = at it)
    split_radius_toward_mm: float = 5.0  # ... advancing at most 5 mm towards the other muscle's clicks
    split_radius_pool_sides: bool = True  # ... one size per muscle for both sides (mean over their clicks)
    rim_px: int = 2
    rim_max_ff: float = 0.6
    rim_min_fraction: float = 0.5  # muscle volume fraction a rim voxel needs (0.5: partial-volume CSA)
    open_radius_px: float = 1.0
    close_radius_px: int = 0
    anterolateral_factor: float = 1.25  # see priors.mark_anterolateral; 0 = off
    anterolateral_search_mm: float = 8.0
    # priors.clip_erector_front: the erector's anterior fascia, a prior line factor × its inscribed radius in
    # front of its deepest point (less slope × lateral mm), re-drawn along the fat ridge within band_mm (0 = the
    # line itself); only without psoas/QL clicks; factor 0 = off
    erector_front_factor: float = 1.0
    erector_front_slope: float = 0.3
    erector_front_band_mm: float = 4.0
    erector_front_pull: float = 0.02
    extent_scale: float = 1.0  # × priors.DEFAULT_EXTENT_MM (a muscle's reach from its clicks); 0 = off


@dataclass
class SegmentationResult:
    """Output of :func:`segment`."""

    labels: sitk.Image
    label_names: dict[int, str]
    levels: dict[str, tuple[int, int]]
    info: dict = field(default_factory=dict)


@dataclass
class _Inputs:
    reference: sitk.Image
    dixon: bool
    water: np.ndarray | None
    fat: np.ndarray | None
    image: np.ndarray | None
    notes: list[str]


def prepare_inputs(image_or_dixon, assume_same_grid: bool = False) -> _Inputs:
    """Validate the input volume(s): axial, 3D, finite, water and fat on one grid (or say why not)."""
    notes: list[str] = []
    if isinstance(image_or_dixon, sitk.Image):
        img = check_volume(image_or_dixon, "image")
        arr = check_finite(sitk.GetArrayFromImage(img), "image")
        return _Inputs(img, False, None, None, arr, notes)
    if isinstance(image_or_dixon, Mapping):
        missing = [k for k in ("water", "fat") if image_or_dixon.get(k) is None]
        if missing:
            raise ValueError(f"Dixon input needs 'water' and 'fat' images; missing {missing}")
        water, fat = image_or_dixon["water"], image_or_dixon["fat"]
    elif isinstance(image_or_dixon, Sequence) and len(image_or_dixon) == 2:
        water, fat = image_or_dixon
    else:
        raise ValueError("input must be a sitk.Image (T1/T2) or a Dixon pair {'water': img, 'fat': img}")
    fat = check_volume(fat, "fat image")
    water = check_volume(water, "water image")
    from ParaspinalSegLib.io import same_grid_problems

    problems = same_grid_problems(water, fat)
    if problems:
        water = match_grid(water, fat, "water image", "fat image", assume_same_grid)
        notes.append(
            "water image grid differs from the fat image (" + "; ".join(problems) + "); assumed same voxels"
        )
    w = check_finite(sitk.GetArrayFromImage(water), "water image")
    f = check_finite(sitk.GetArrayFromImage(fat), "fat image")
    return _Inputs(fat, True, w, f, None, notes)


def _features(inp: _Inputs, roi: tuple[slice, ...], seed_kji: np.ndarray, p: SegmentParams):
    """Scaled feature channels, fat-likeness map, ridge cost and background mask on the ROI."""
    sm = (0, p.smoothing_px, p.smoothing_px)
    if inp.dixon:
        w0 = inp.water[roi].astype(np.float32)
        f0 = inp.fat[roi].astype(np.float32)
        w = ndi.gaussian_filter(w0, sm)
        f = ndi.gaussian_filter(f0, sm)
        ref = float(np.median(inp.water[tuple(seed_kji.T)]))
        if ref <= 0:
            raise ValueError(
                "seeds: the water signal at the seeds is zero; are the seeds inside the muscles?"
            )
        s = w + f
        ff = np.where(s > 0.15 * ref, f / np.maximum(s, 1e-6), 0.0)
        feats = np.stack([w / ref, f / ref, ff])
        ridge = split_ridge(f0 / ref, p.ridge_sigma_px)
        dark = s < p.dark_fraction * ref
        fatty = (ff > p.fat_threshold) & ~dark
        refs = {"water_ref": ref}
    else:
        i0 = inp.image[roi].astype(np.float32)
        im = ndi.gaussian_filter(i0, sm)
        lean = float(np.median(ndi.uniform_filter(inp.image, (1, 5, 5))[tuple(seed_kji.T)]))
        if lean <= 0:
            raise ValueError(
                "seeds: the image signal at the seeds is zero; are the seeds inside the muscles?"
            )
        bright = float(np.percentile(im, 99))
        pff = np.clip((im - lean) / max(bright - lean, 1e-6), 0, 1)
        feats = np.stack([im / lean, pff])
        ridge = split_ridge(i0 / lean, p.ridge_sigma_px)
        # muscle near the noise level (some T1 protocols): no signal-void competitor, fat alone bounds it
        floor = fatmod.noise_floor(inp.image)
        dark = im < p.dark_fraction * lean if lean > 2 * floor else np.zeros(im.shape, bool)
        fatty = pff > p.fat_threshold
        ff = pff
        refs = {"lean_ref": lean, "bright_ref": bright}
    return feats.astype(np.float32), ff, ridge, dark | fatty, refs


def _disc(radius_px: float) -> list[tuple[int, int]]:
    r = int(np.floor(radius_px))
    return [
        (dj, di)
        for dj in range(-r, r + 1)
        for di in range(-r, r + 1)
        if dj * dj + di * di <= radius_px**2 + 1e-9
    ]


def segment(
    image_or_dixon,
    seeds: Sequence[MarkupPoint] | np.ndarray | sitk.Image,
    structures: Sequence[str] | None = None,
    levels: Sequence[MarkupPoint] | Mapping[str, tuple[int, int]] | None = None,
    only_level: str | None = None,
    previous: sitk.Image | np.ndarray | None = None,
    assume_same_grid: bool = False,
    params: SegmentParams | None = None,
) -> SegmentationResult:
    """Segment the seeded muscles (see the module docstring); errors name the input, structure or level."""
    t0 = time.perf_counter()
    p = params or SegmentParams()
    inp = prepare_inputs(image_or_dixon, assume_same_grid)
    ref_img = inp.reference
    shape = ref_img.GetSize()[::-1]
    sk_, sj_, si_ = ref_img.GetSpacing()[::-1]
    spacing = (sk_, sj_, si_)

    # --- seeds -------------------------------------------------------------------------------
    painted = isinstance(seeds, np.ndarray | sitk.Image)
    vseeds = seeds_from_labelmap(seeds, shape) if painted else seeds_from_points(list(seeds), ref_img)
    names = check_structures(vseeds, structures)
    vseeds = [s for s in vseeds if s.name in names]
    signal = inp.water + inp.fat if inp.dixon else inp.image
    floor = fatmod.noise_floor(signal)
    body_cache: dict[int, np.ndarray] = {}
    for s in vseeds:
        k, j, i = s.kji
        if (
            k not in body_cache
        ):  # the body on that slice: above the noise floor, holes (dark muscle, bone) filled
            body_cache[k] = ndi.binary_fill_holes(ndi.binary_opening(signal[k] > floor, iterations=1))
        if not body_cache[k][j, i]:
            lv = f" (level {s.level})" if s.level else ""
            raise ValueError(
                f"seeds: seed {s.name}{lv} at voxel k,j,i={s.kji} lies in air outside the body (signal "
                f"{signal[k, j, i]:.1f}, noise floor {floor:.1f}); click inside the muscle"
            )

    # --- levels ------------------------------------------------------------------------------
    n_slices = shape[0]
    half = DEFAULT_LEVEL_HALF_MM / sk_
    if levels is None:
        tagged: dict[str, list[int]] = {}
        for s in vseeds:
            if s.level:
                tagged.setdefault(s.level, []).append(s.kji[0])
        level_ranges = levels_from_seed_slices(tagged, n_slices, half) if tagged else {}
        level_source = "seeds" if tagged else "none"
    elif isinstance(levels, Mapping):
        level_ranges = {str(k): (int(v[0]), int(v[1])) for k, v in levels.items()}
        level_source = "ranges"
    else:
        level_ranges = levels_from_landmarks(list(levels), ref_img)
        level_source = "landmarks"
    for lv, (a, b) in level_ranges.items():
        if not (0 <= a <= b < n_slices):
            raise ValueError(f"level {lv}: slice range [{a}, {b}] outside the volume's 0..{n_slices - 1}")

    seed_k = np.array([s.kji[0] for s in vseeds])
    if only_level is not None:
        if only_level not in level_ranges:
            raise KeyError(
                f"only_level {only_level!r}: unknown level; known: {', '.join(level_ranges) or 'none'}"
            )
        k0, k1 = level_ranges[only_level]
    elif level_ranges:
        covered = [r for r in level_ranges.values() if np.any((seed_k >= r[0]) & (seed_k <= r[1]))]
        k0 = min(r[0] for r in covered) if covered else int(seed_k.min())
        k1 = max(r[1] for r in covered) if covered else int(seed_k.max())
    else:
        rng = ranges_from_centres({"_": float(seed_k.min())}, n_slices, half)["_"]
        rng2 = ranges_from_centres({"_": float(seed_k.max())}, n_slices, half)["_"]
        k0, k1 = rng[0], rng2[1]
    vseeds = [s for s in vseeds if k0 <= s.kji[0] <= k1]
    if not vseeds:
        raise ValueError(f"level {only_level}: no seeds in its slices {k0}..{k1}")
    missing_here = [n for n in names if n not in {s.name for s in vseeds}]
    names = [n for n in names if n not in missing_here]

    # --- region of interest ------------------------------------------------------------------
    kji = np.array([s.kji for s in vseeds])
    mj, mi = round(p.margin_mm / sj_), round(p.margin_mm / si_)
    j0, j1 = max(0, kji[:, 1].min() - mj), min(shape[1], kji[:, 1].max() + mj + 1)
    i0, i1 = max(0, kji[:, 2].min() - mi), min(shape[2], kji[:, 2].max() + mi + 1)
    roi = (slice(k0, k1 + 1), slice(j0, j1), slice(i0, i1))
    rshape = (k1 - k0 + 1, j1 - j0, i1 - i0)
    local = kji - np.array([k0, j0, i0])

    t_feat = time.perf_counter()
    feats, ff, ridge, background, refs = _features(inp, roi, kji, p)

    # --- groups: MF+ES of one side grow together, split afterwards ---------------------------
    group_of: dict[str, int] = {}
    groups: list[list[str]] = []
    for side in ("left", "right"):
        para = [n for n in (f"multifidus_{side}", f"erector_spinae_{side}") if n in names]
        if para:
            groups.append(para)
    for n in names:
        if not any(n in g for g in groups):
            groups.append([n])
    for gi, g in enumerate(groups, start=1):
        for n in g:
            group_of[n] = gi
    bg_label = len(groups) + 1

    seed_arr = np.zeros(rshape, np.int32)
    seed_arr[background] = bg_label
    para_rows = [
        loc[1] for sd, loc in zip(vseeds, local, strict=True) if sd.name.startswith(("multifidus", "erector"))
    ]
    if p.anterior_limit_mm > 0 and para_rows and not any(n.startswith(("psoas", "quadratus")) for n in names):
        # without psoas/QL seeds nothing else competes for the muscle anterior to the transverse
        # processes: tissue this far anterior of the paraspinal clicks is background
        j_lim = int(min(para_rows) - p.anterior_limit_mm / sj_)
        if j_lim > 0:
            seed_arr[:, :j_lim, :] = bg_label
    disc = [(0, 0)] if painted else _disc(p.seed_radius_mm / min(sj_, si_))
    seeds_by_name: dict[str, list[tuple[int, int, int]]] = {}
    for s, (k, j, i) in zip(vseeds, local, strict=True):
        for dj, di in disc:
            jj, ii = j + dj, i + di
            if 0 <= jj < rshape[1] and 0 <= ii < rshape[2]:
                seed_arr[k, jj, ii] = group_of[s.name]
                seeds_by_name.setdefault(s.name, []).append((int(k), int(jj), int(ii)))

    if p.anterolateral_factor > 0 and not any(n.startswith(("psoas", "quadratus")) for n in names):
        erectors = {}
        for s, loc in zip(vseeds, local, strict=True):
            if s.name.startswith("erector"):
                erectors.setdefault(s.name, []).append(tuple(int(x) for x in loc))
        mark_anterolateral(
            seed_arr,
            ~background,
            erectors,
            (sj_, si_),
            p.anterolateral_factor,
            p.anterolateral_search_mm,
            bg_label,
        )
    clicks: dict[str, list[tuple[int, int]]] = {}
    for s, loc in zip(vseeds, local, strict=True):
        clicks.setdefault(s.name, []).append((int(loc[1]), int(loc[2])))
    reach = reach_masks(clicks, rshape[1:], (sj_, si_), p.extent_scale) if p.extent_scale > 0 else {}
    mark_unreachable(seed_arr, reach, len(names), bg_label)

    # --- midline barrier ---------------------------------------------------------------------
    blocked = None
    midline_cols = path_cols = nonmuscle = None
    left = [s for s, loc in zip(vseeds, local, strict=True) if s.name.endswith("_left")]
    right = [s for s, loc in zip(vseeds, local, strict=True) if s.name.endswith("_right")]
    if left and right:
        loc_by = {id(s): loc for s, loc in zip(vseeds, local, strict=True)}
        cl = float(
            np.mean(
                [loc_by[id(s)][2] for s in left if "multifidus" in s.name or "erector" in s.name]
                or [loc_by[id(s)][2] for s in left]
            )
        )
        cr = float(
            np.mean(
                [loc_by[id(s)][2] for s in right if "multifidus" in s.name or "erector" in s.name]
                or [loc_by[id(s)][2] for s in right]
            )
        )
        rows_para = [loc_by[id(s)][1] for s in vseeds if "multifidus" in s.name or "erector" in s.name]
        if rows_para:
            ext = (p.midline_path_rows_mm if p.midline_path else 10.0) / sj_
            r0 = max(0, int(min(rows_para) - ext))
            r1 = min(rshape[1], int(max(rows_para) + ext) + 1)
            nonmuscle = np.abs(feats[0] - 1.0) + ff
            search = round(p.midline_search_mm / si_)
            mf_l = [loc_by[id(s)][2] for s in left if s.name.startswith("multifidus")]
            mf_r = [loc_by[id(s)][2] for s in right if s.name.startswith("multifidus")]
            if p.midline_path and mf_l and mf_r:
                # the spinous process lies midway between the two multifidi (the erectors may be asymmetric)
                cl, cr = float(np.mean(mf_l)), float(np.mean(mf_r))
            if p.midline_path:
                # signal void (bone, ligament) on every sequence; bright fat also flanks the multifidus
                total = feats[0] + feats[1] if inp.dixon else feats[0]
                dark = np.clip(1.0 - total, 0.0, 1.0) if p.midline_path_dark else nonmuscle
                path = midline_path(dark, (cl, cr), (r0, r1), search)
                blocked, path_cols = midline_barrier(path, (r0, r1), rshape)
                midline_cols = np.round(np.median(path, axis=1)).astype(np.int64)
            else:
                midline_cols = midline_columns(nonmuscle, (cl, cr), (r0, r1), search)
                path_cols = np.repeat(midline_cols[:, None], rshape[1], axis=1)
                blocked = np.zeros(rshape, bool)
                blocked[np.arange(rshape[0]), :, midline_cols] = True
            seed_arr[blocked] = 0
    t_graph = time.perf_counter()
    stage1_cost = p.ridge_weight * np.maximum(ridge - p.ridge_floor, 0) if p.ridge_weight else None
    graph = edge_graph(
        feats * p.diff_weight, spacing, node_cost=stage1_cost, eps_per_mm=p.eps_per_mm, blocked=blocked
    )
    grown, _dist = grow(graph, seed_arr)
    t_grow = time.perf_counter()
    grown[grown == bg_label] = 0

    # --- split MF / ES (split.split_pairs) ----------------------------------------------------
    out = np.zeros(rshape, np.uint8)
    for g in groups:
        if len(g) == 1:
            out[grown == group_of[g[0]]] = BY_NAME[g[0]].value
    click_kji: dict[str, list[tuple[int, int, int]]] = {}
    for s, loc in zip(vseeds, local, strict=True):
        click_kji.setdefault(s.name, []).append(tuple(int(x) for x in loc))
    pairs = [g for g in groups if len(g) > 1]
    if pairs:
        pair_choice = split_pairs(
            grown,
            [(g, group_of[g[0]]) for g in pairs],
            seeds_by_name,
            click_kji,
            feats,
            ridge,
            background,
            spacing,
            inp.dixon,
            p,
        )
        for n, mask in pair_choice.items():
            out[mask] = BY_NAME[n].value
    clip_to_reach(out, reach, {n: BY_NAME[n].value for n in names})
    erectors_here = [n for n in names if n.startswith("erector")]
    if (
        p.erector_front_factor > 0
        and erectors_here
        and not any(n.startswith(("psoas", "quadratus")) for n in names)
    ):
        # the erector's anterior fascia (priors.clip_erector_front); clicked psoas/QL compete themselves
        for n in erectors_here:
            clip_erector_front(
                out,
                BY_NAME[n].value,
                n.endswith("_right"),
                (sj_, si_),
                p.erector_front_factor,
                p.erector_front_slope,
                ridge if p.erector_front_band_mm > 0 else None,
                p.erector_front_band_mm,
                p.erector_front_pull,
            )
    seeds_by_value = {BY_NAME[n].value: v for n, v in seeds_by_name.items()}
    out = postprocess(out, seeds_by_value, p.open_radius_px, p.close_radius_px)
    signals = {"water": inp.water[roi], "fat": inp.fat[roi]} if inp.dixon else {"image": inp.image[roi]}
    out = add_rim(out, ff, p.rim_px, p.rim_max_ff, min_fraction=p.rim_min_fraction, **signals)
    # on T1 images whose muscle sits at the noise level, signal cannot tell ligament from muscle: no margin
    if p.midline_margin_mm > 0 and path_cols is not None and (inp.dixon or refs["lean_ref"] > 2 * floor):
        mf = [BY_NAME[n].value for n in names if n.startswith("multifidus")]
        clip_midline_margin(
            out, mf, path_cols, nonmuscle, p.midline_margin_mm / si_, p.midline_margin_nonmuscle
        )

    # --- assemble full volume ----------------------------------------------------------------
    if previous is not None:
        prev = sitk.GetArrayFromImage(previous) if isinstance(previous, sitk.Image) else np.asarray(previous)
        if prev.shape != tuple(shape):
            raise ValueError(
                f"previous: label map shape {prev.shape} differs from the image's {tuple(shape)}"
            )
        full = prev.astype(np.uint8).copy()
        full[k0 : k1 + 1] = 0
    else:
        full = np.zeros(shape, np.uint8)
    full[roi] = np.where(out > 0, out, full[roi])
    warnings: list[str] = []
    if missing_here:
        warnings.append(f"no seeds in slices {k0}..{k1} for: {', '.join(missing_here)}")
    for n in names:
        v = BY_NAME[n].value
        if not (out == v).any():
            raise ValueError(f"structure {n}: the segmentation came out empty; check its seeds")
        for lv, (a, b) in level_ranges.items():
            if a >= k0 and b <= k1 and not (full[a : b + 1] == v).any():
                warnings.append(f"structure {n}: empty at level {lv}")
    labels = sitk.GetImageFromArray(full)
    labels.CopyInformation(ref_img)
    label_names = {BY_NAME[n].value: n for n in sorted(set(names) | _names_in(full))}
    t_end = time.perf_counter()
    info = {
        "mode": "dixon" if inp.dixon else "single",
        "slices": [int(k0), int(k1)],
        "roi_kji": [[int(k0), int(k1)], [int(j0), int(j1) - 1], [int(i0), int(i1) - 1]],
        "n_seeds": len(vseeds),
        "level_source": level_source,
        "midline_columns": (midline_cols + i0).tolist() if midline_cols is not None else None,
        "references": refs,
        "noise_floor": floor,
        "notes": inp.notes,
        "warnings": warnings,
        "params": asdict(p),
        "seconds": {
            "inputs": round(t_feat - t0, 3),
            "features": round(t_graph - t_feat, 3),
            "grow": round(t_grow - t_graph, 3),
            "split_post": round(t_end - t_grow, 3),
            "total": round(t_end - t0, 3),
        },
    }
    return SegmentationResult(labels, label_names, level_ranges, info)


def _names_in(arr: np.ndarray) -> set[str]:
    from ParaspinalSegLib.structures import BY_VALUE

    return {BY_VALUE[int(v)].name for v in np.unique(arr) if int(v) in BY_VALUE}


__all__ = ["SegmentParams", "SegmentationResult", "VoxelSeed", "prepare_inputs", "segment"]
