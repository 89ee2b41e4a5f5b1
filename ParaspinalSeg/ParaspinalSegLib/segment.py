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

Stages (one function each below, one parameter group each in :class:`SegmentParams`; the why and the numbers
are in docs/segmentation.md):

1. inputs (:func:`prepare_case`): volumes, seeds, levels, the slab and the region around the clicks;
2. competitors (:func:`find_competitors`): what is certainly not muscle — fat, signal voids, tissue beyond each
   muscle's reach, the erector's anterolateral neighbour — as competing seeds;
3. midline (:func:`find_midline`): a hard left/right barrier along the spinous process / interspinous ligament;
4. growth (:func:`grow_structures`): all structures grow at once by shortest paths on a voxel graph, the
   multifidus and erector of one side as one mass (their shared fascia is often invisible);
5. split (:func:`split_structures`): each mass into multifidus and erector by size-normalised geodesic distance,
   re-drawn along the fascia where one shows;
6. shape (:func:`regularise`): reach and erector-front clips, per-slice regularisation, the partial-volume rim,
   the multifidus' medial margin. Labels never overlap by construction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPCore.structures import BY_NAME, BY_VALUE
from ParaspinalSegLib import fat as fatmod
from ParaspinalSegLib.compartment import (
    CLEAR_FAT_FF,
    envelope,
    fill_features,
    intramuscular_fat,
    lean_water,
    merge_groups,
)
from ParaspinalSegLib.growcut import edge_graph, grow
from ParaspinalSegLib.markups import MarkupPoint
from ParaspinalSegLib.priors import (
    clip_erector_front,
    clip_midline_margin,
    clip_to_reach,
    mark_anterolateral,
    mark_unreachable,
    midline_barrier,
    midline_path,
    reach_masks,
)
from ParaspinalSegLib.seeds import VoxelSeed
from ParaspinalSegLib.segment_inputs import Case, Inputs, prepare_case, prepare_inputs
from ParaspinalSegLib.segment_params import (
    CompartmentParams,
    CompetitorParams,
    FrontParams,
    GrowthParams,
    InputParams,
    MidlineParams,
    SegmentParams,
    ShapeParams,
    SplitParams,
)
from ParaspinalSegLib.shape import add_rim, postprocess
from ParaspinalSegLib.split import ridge as split_ridge
from ParaspinalSegLib.split import split_pairs

PARASPINAL = ("multifidus", "erector")


@dataclass
class SegmentationResult:
    """Output of :func:`segment`."""

    labels: sitk.Image
    label_names: dict[int, str]
    levels: dict[str, tuple[int, int]]
    info: dict = field(default_factory=dict)


@dataclass
class _Evidence:
    """Stage 2's output: feature channels, competing seeds and the reach of each structure."""

    feats: np.ndarray  # Dixon: water, fat, FF relative to the muscle; single image: signal, fat-likeness
    ff: np.ndarray
    ridge: np.ndarray  # bright-line strength of the fat (single: the) image
    background: np.ndarray  # fat | signal void
    refs: dict[str, float]
    seed_arr: np.ndarray  # growth seeds: group labels, bg_label for competitors, 0 unlabelled
    groups: list[list[str]]
    group_of: dict[str, int]
    bg_label: int
    seeds_by_name: dict[str, list[tuple[int, int, int]]]  # every seeded voxel (click discs)
    reach: dict[str, np.ndarray]
    fill: np.ndarray | None = None  # fat-aware pass: voxels whose signals were filled (intramuscular fat)


@dataclass
class _Midline:
    blocked: np.ndarray | None = None  # voxels the growth may not enter (the barrier)
    path_cols: np.ndarray | None = None  # (k, j) column of the barrier
    columns: np.ndarray | None = None  # (k,) median column per slice (reported in info)
    nonmuscle: np.ndarray | None = None  # |signal/ref − 1| + FF


# --- 2. competitors ---------------------------------------------------------------------------------------


@dataclass
class _Signals:
    """Feature channels and tissue classes on the ROI (stage 2's image part)."""

    feats: np.ndarray  # Dixon: water, fat, FF relative to lean muscle; single image: signal, fat-likeness
    ff: np.ndarray  # FF (single image: fat-likeness 0-1)
    ridge: np.ndarray  # bright-line strength of the fat (single: the) image
    dark: np.ndarray  # signal void
    fat: np.ndarray  # competing fat
    refs: dict[str, float]
    fill: np.ndarray | None = None  # fat-aware pass: intramuscular fat and mixed voxels, signals filled


def _near_clicks(shape: tuple[int, ...], local: np.ndarray, half_px: int) -> np.ndarray:
    """In-plane squares of ``half_px`` around the clicks (their own slices)."""
    near = np.zeros(shape, bool)
    for k, j, i in local:
        near[k, max(j - half_px, 0) : j + half_px + 1, max(i - half_px, 0) : i + half_px + 1] = True
    return near


def _dixon_signals(inp: Inputs, roi, seed_kji: np.ndarray, p: SegmentParams, fat_aware: bool) -> _Signals:
    """Water, fat and FF relative to lean muscle's water signal; fat and voids. Fat-aware: the lean reference
    from unmixing the click neighbourhood, and intramuscular fat filled (compartment.py)."""
    sm = (0, p.inputs.smoothing_px, p.inputs.smoothing_px)
    cp = p.competitors
    w0, f0 = inp.water[roi].astype(np.float32), inp.fat[roi].astype(np.float32)
    w, f = ndi.gaussian_filter(w0, sm), ndi.gaussian_filter(f0, sm)
    ref = float(np.median(inp.water[tuple(seed_kji.T)]))
    if fat_aware:
        s0 = w + f
        pure = (f > CLEAR_FAT_FF * s0) & (s0 > 0)
        if pure.any():
            near = _near_clicks(w.shape, seed_kji - [r.start for r in roi], 2)
            adipose = (float(np.median(w[pure])), float(np.median(f[pure])))
            ref = float(np.median(lean_water(w[near], f[near], adipose)))
    if ref <= 0:
        raise BadInputError("seeds: the water signal at the seeds is zero; are the seeds inside the muscles?")
    s = w + f
    ff = np.where(s > 0.15 * ref, f / np.maximum(s, 1e-6), 0.0)
    feats = np.stack([w / ref, f / ref, ff]).astype(np.float32)
    dark = s < cp.dark_fraction * ref
    fat = (ff > cp.fat_threshold) & ~dark
    sig = _Signals(feats, ff, split_ridge(f0 / ref, p.growth.ridge_sigma_px), dark, fat, {"water_ref": ref})
    return _fill_intramuscular(sig, f0 / ref, p) if fat_aware else sig


def _single_signals(inp: Inputs, roi, seed_kji: np.ndarray, p: SegmentParams, fat_aware: bool) -> _Signals:
    """Signal relative to lean muscle and the linear fat-likeness (fat bright); fat and voids (not where muscle
    sits at the noise level). Fat-aware: the lean reference is the darker tissue around the clicks."""
    sm = (0, p.inputs.smoothing_px, p.inputs.smoothing_px)
    cp = p.competitors
    i0 = inp.image[roi].astype(np.float32)
    im = ndi.gaussian_filter(i0, sm)
    local = ndi.uniform_filter(inp.image, (1, 5, 5))[tuple(seed_kji.T)]
    lean = float(np.median(local))
    bright = float(np.percentile(im, 99))
    floor = fatmod.noise_floor(inp.image)
    if fat_aware:
        near = _near_clicks(im.shape, seed_kji - [r.start for r in roi], 5) & (im > 2 * floor)
        lean = min(lean, float(np.percentile(im[near], 25))) if near.any() else lean
    if lean <= 0:
        raise BadInputError("seeds: the image signal at the seeds is zero; are the seeds inside the muscles?")
    pff = np.clip((im - lean) / max(bright - lean, 1e-6), 0, 1)
    feats = np.stack([im / lean, pff]).astype(np.float32)
    # muscle near the noise level (some T1 protocols): no signal-void competitor, fat alone bounds it
    dark = im < cp.dark_fraction * lean if lean > 2 * floor else np.zeros(im.shape, bool)
    refs = {"lean_ref": lean, "bright_ref": bright}
    sig = _Signals(
        feats, pff, split_ridge(i0 / lean, p.growth.ridge_sigma_px), dark, pff > cp.fat_threshold, refs
    )
    return _fill_intramuscular(sig, i0 / lean, p) if fat_aware else sig


def _fill_intramuscular(sig: _Signals, raw_fat: np.ndarray, p: SegmentParams) -> _Signals:
    """Fat-aware pass: intramuscular fat (enclosed clear fat) and mixed voxels take the surrounding muscle's
    signals; only the fat outside the muscles competes."""
    clear = (sig.ff > CLEAR_FAT_FF) & ~sig.dark
    inside = intramuscular_fat(clear, sig.dark, p.compartment.fascia_gap_px)
    fill = (sig.fat & ~clear) | inside
    valid = ~sig.dark & ~sig.fat
    feats = fill_features(sig.feats, fill, valid, p.compartment.fill_sigma_px)
    fat_channel = 1 if feats.shape[0] == 3 else 0
    ridge = split_ridge(
        np.where(fill, feats[fat_channel], raw_fat).astype(np.float32), p.growth.ridge_sigma_px
    )
    return _Signals(feats, sig.ff, ridge, sig.dark, clear & ~inside, sig.refs, fill)


def _groups(names: Sequence[str]) -> list[list[str]]:
    """Growth groups: multifidus + erector of one side together (split afterwards), every other alone."""
    groups = []
    for side in ("left", "right"):
        para = [n for n in (f"multifidus_{side}", f"erector_spinae_{side}") if n in names]
        if para:
            groups.append(para)
    return groups + [[n] for n in names if not any(n in g for g in groups)]


def _disc(radius_px: float) -> list[tuple[int, int]]:
    r = int(np.floor(radius_px))
    return [
        (dj, di)
        for dj in range(-r, r + 1)
        for di in range(-r, r + 1)
        if dj * dj + di * di <= radius_px**2 + 1e-9
    ]


def _seed_array(
    case: Case, background: np.ndarray, group_of: dict[str, int], bg_label: int, p: SegmentParams
):
    """Growth seeds: competitors (background, tissue in front of the back muscles), then the click discs."""
    rshape = case.rshape
    sj, si = case.spacing[1:]
    seed_arr = np.zeros(rshape, np.int32)
    seed_arr[background] = bg_label
    para_rows = [
        loc[1] for sd, loc in zip(case.seeds, case.local, strict=True) if sd.name.startswith(PARASPINAL)
    ]
    if p.competitors.anterior_limit_mm > 0 and para_rows and not case.anterior_clicked:
        j_lim = int(min(para_rows) - p.competitors.anterior_limit_mm / sj)
        if j_lim > 0:
            seed_arr[:, :j_lim, :] = bg_label
    disc = [(0, 0)] if case.painted else _disc(p.inputs.seed_radius_mm / min(sj, si))
    seeds_by_name: dict[str, list[tuple[int, int, int]]] = {}
    for s, (k, j, i) in zip(case.seeds, case.local, strict=True):
        for dj, di in disc:
            jj, ii = j + dj, i + di
            if 0 <= jj < rshape[1] and 0 <= ii < rshape[2]:
                seed_arr[k, jj, ii] = group_of[s.name]
                seeds_by_name.setdefault(s.name, []).append((int(k), int(jj), int(ii)))
    return seed_arr, seeds_by_name


def find_competitors(case: Case, p: SegmentParams, fat_aware: bool = False) -> _Evidence:
    """Stage 2: feature channels and competing seeds (fat, voids, the erector's anterolateral neighbour, tissue
    beyond every muscle's reach); click discs seed their growth groups. ``fat_aware``: only the fat outside the
    muscles competes (compartment.py)."""
    cp: CompetitorParams = p.competitors
    signals = _dixon_signals if case.inp.dixon else _single_signals
    sig = signals(case.inp, case.roi, np.array([s.kji for s in case.seeds]), p, fat_aware)
    feats, ff, ridge, background, refs = sig.feats, sig.ff, sig.ridge, sig.dark | sig.fat, sig.refs
    groups = _groups(case.names)
    group_of = {n: gi for gi, g in enumerate(groups, start=1) for n in g}
    bg_label = len(groups) + 1
    seed_arr, seeds_by_name = _seed_array(case, background, group_of, bg_label, p)
    spacing_ji = case.spacing[1:]
    if cp.anterolateral_factor > 0 and not case.anterior_clicked:
        mark_anterolateral(
            seed_arr,
            ~background,
            case.clicks("erector"),
            spacing_ji,
            cp.anterolateral_factor,
            cp.anterolateral_search_mm,
            bg_label,
        )
    clicks_ji = {n: [c[1:] for c in cs] for n, cs in case.clicks().items()}
    reach = (
        reach_masks(clicks_ji, case.rshape[1:], spacing_ji, cp.extent_scale) if cp.extent_scale > 0 else {}
    )
    mark_unreachable(seed_arr, reach, len(case.names), bg_label)
    return _Evidence(
        feats,
        ff,
        ridge,
        background,
        refs,
        seed_arr,
        groups,
        group_of,
        bg_label,
        seeds_by_name,
        reach,
        sig.fill,
    )


# --- 3. midline -------------------------------------------------------------------------------------------


def _side_column(case: Case, side: str) -> float | None:
    """Mean ROI column of one side's multifidus/erector clicks (else of all its clicks); None without any."""
    mine = [(s.name, loc[2]) for s, loc in zip(case.seeds, case.local, strict=True) if s.name.endswith(side)]
    if not mine:
        return None
    para = [c for n, c in mine if n.startswith(PARASPINAL)]
    return float(np.mean(para or [c for _, c in mine]))


def find_midline(case: Case, ev: _Evidence, p: MidlineParams) -> _Midline:
    """Stage 3: the cheapest dark path (spinous process, interspinous ligament) between the two sides' clicks,
    one column per row, as a barrier no 6-neighbour step crosses (needs clicks on both sides)."""
    cl, cr = _side_column(case, "_left"), _side_column(case, "_right")
    rows_para = [
        loc[1] for s, loc in zip(case.seeds, case.local, strict=True) if s.name.startswith(PARASPINAL)
    ]
    if cl is None or cr is None or not rows_para:
        return _Midline()
    rshape = case.rshape
    sj, si = case.spacing[1:]
    ext = p.rows_mm / sj
    r0, r1 = max(0, int(min(rows_para) - ext)), min(rshape[1], int(max(rows_para) + ext) + 1)
    mf = case.clicks("multifidus")
    mf_l, mf_r = mf.get("multifidus_left"), mf.get("multifidus_right")
    # the spinous process lies midway between the two multifidi (the erectors may be asymmetric)
    if mf_l and mf_r:
        cl, cr = float(np.mean([c[2] for c in mf_l])), float(np.mean([c[2] for c in mf_r]))
    # signal void (bone, ligament) on every sequence
    total = ev.feats[0] + ev.feats[1] if case.inp.dixon else ev.feats[0]
    path = midline_path(np.clip(1.0 - total, 0.0, 1.0), (cl, cr), (r0, r1), round(p.search_mm / si))
    blocked, path_cols = midline_barrier(path, (r0, r1), rshape)
    columns = np.round(np.median(path, axis=1)).astype(np.int64)
    ev.seed_arr[blocked] = 0
    return _Midline(blocked, path_cols, columns, np.abs(ev.feats[0] - 1.0) + ev.ff)


# --- 4. growth --------------------------------------------------------------------------------------------


def grow_structures(case: Case, ev: _Evidence, mid: _Midline, p: GrowthParams) -> np.ndarray:
    """Stage 4: every group grows from its seeds by shortest paths; competitors' voxels come back as 0."""
    node_cost = p.ridge_weight * np.maximum(ev.ridge - p.ridge_floor, 0) if p.ridge_weight else None
    graph = edge_graph(
        ev.feats * p.diff_weight,
        case.spacing,
        node_cost=node_cost,
        eps_per_mm=p.eps_per_mm,
        blocked=mid.blocked,
    )
    grown, _dist = grow(graph, ev.seed_arr)
    grown[grown == ev.bg_label] = 0
    return grown


# --- 5. split ---------------------------------------------------------------------------------------------


def split_structures(grown: np.ndarray, case: Case, ev: _Evidence, p: SplitParams) -> np.ndarray:
    """Stage 5: structure values per voxel; each multifidus + erector mass split by split.split_pairs."""
    out = np.zeros(grown.shape, np.uint8)
    for g in ev.groups:
        if len(g) == 1:
            out[grown == ev.group_of[g[0]]] = BY_NAME[g[0]].value
    pairs = [(g, ev.group_of[g[0]]) for g in ev.groups if len(g) > 1]
    if pairs:
        masks = split_pairs(
            grown,
            pairs,
            ev.seeds_by_name,
            case.clicks(),
            ev.feats,
            ev.ridge,
            ev.background,
            case.spacing,
            case.inp.dixon,
            p,
        )
        for n, mask in masks.items():
            out[mask] = BY_NAME[n].value
    return out


# --- 6. shape ---------------------------------------------------------------------------------------------


def _clip_erector_fronts(out: np.ndarray, case: Case, ev: _Evidence, p: FrontParams) -> None:
    """The erector's anterior fascia (priors.clip_erector_front), only when psoas/QL do not compete."""
    if p.factor <= 0 or case.anterior_clicked:
        return
    for n in (n for n in case.names if n.startswith("erector")):
        clip_erector_front(
            out,
            BY_NAME[n].value,
            n.endswith("_right"),
            case.spacing[1:],
            p.factor,
            p.slope,
            ev.ridge if p.band_mm > 0 else None,
            p.band_mm,
            p.pull,
        )


def regularise(out: np.ndarray, case: Case, ev: _Evidence, mid: _Midline, p: SegmentParams) -> np.ndarray:
    """Stage 6: reach and erector-front clips, per-slice shape, partial-volume rim, multifidus medial margin."""
    clip_to_reach(out, ev.reach, {n: BY_NAME[n].value for n in case.names})
    _clip_erector_fronts(out, case, ev, p.front)
    sp: ShapeParams = p.shape
    seeds_by_value = {BY_NAME[n].value: v for n, v in ev.seeds_by_name.items()}
    out = postprocess(out, seeds_by_value, sp.open_radius_px)
    inp = case.inp
    signals = (
        {"water": inp.water[case.roi], "fat": inp.fat[case.roi]}
        if inp.dixon
        else {"image": inp.image[case.roi]}
    )
    out = add_rim(out, ev.ff, sp.rim_px, min_fraction=sp.rim_min_fraction, **signals)
    # where muscle sits at the noise level (some T1 protocols) signal cannot tell ligament from muscle
    mp: MidlineParams = p.midline
    clear = inp.dixon or ev.refs["lean_ref"] > 2 * case.noise_floor
    if mp.margin_mm > 0 and mid.path_cols is not None and clear:
        mf = [BY_NAME[n].value for n in case.names if n.startswith("multifidus")]
        clip_midline_margin(
            out, mf, mid.path_cols, mid.nonmuscle, mp.margin_mm / case.spacing[2], mp.margin_nonmuscle
        )
    return out


# --- 7. compartments --------------------------------------------------------------------------------------


def complete_compartments(out: np.ndarray, case: Case, p: SegmentParams) -> np.ndarray:
    """Stage 7: segment again with intramuscular fat treated as muscle (compartment.py), give each structure
    its envelope, and keep that result for the multifidus + erector groups it enlarges by at least
    ``min_gain``: there the lean segmentation stopped at fat inside the muscle. Only where both muscles of a
    side are clicked (the fat plane between them is filled like intramuscular fat, so each must compete for
    its own compartment); psoas and quadratus lumborum keep the lean segmentation (their fatty infiltration is
    not validated, and the fat-aware pass crosses their fat sheath where it is open)."""
    cm: CompartmentParams = p.compartment
    if cm.min_gain <= 0 or not any(len(g) == 2 for g in _groups(case.names)):
        return out
    ev = find_competitors(case, p, fat_aware=True)
    mid = find_midline(case, ev, p.midline)
    grown = grow_structures(case, ev, mid, p.growth)
    fat_out = regularise(split_structures(grown, case, ev, p.split), case, ev, mid, p)
    if cm.envelope_mm > 0:
        zones = (ev.seed_arr == ev.bg_label) & ~ev.background
        free = ~ev.background & ~zones
        if mid.blocked is not None:
            free &= ~mid.blocked
        radius = cm.envelope_mm / min(case.spacing[1:])
        for n in case.names:
            v = BY_NAME[n].value
            fat_out[envelope(fat_out == v, radius) & free & (fat_out == 0)] = v
    for g in (g for g in ev.groups if len(g) == 2):  # multifidus + erector of one side, both clicked
        values = [BY_NAME[n].value for n in g]
        before, after = np.isin(out, values), np.isin(fat_out, values)
        if after.sum() >= (1 + cm.min_gain) * before.sum():
            out = merge_groups(out, fat_out, values)
    return out


# --- assembly ---------------------------------------------------------------------------------------------


def _assemble(out: np.ndarray, case: Case, previous) -> tuple[np.ndarray, list[str]]:
    """Full-volume labels (``previous`` kept outside the slab) and warnings; an empty structure is an error."""
    k0, k1 = case.roi[0].start, case.roi[0].stop - 1
    if previous is not None:
        prev = sitk.GetArrayFromImage(previous) if isinstance(previous, sitk.Image) else np.asarray(previous)
        if prev.shape != tuple(case.shape):
            raise BadInputError(
                f"previous: label map shape {prev.shape} differs from the image's {tuple(case.shape)}"
            )
        full = prev.astype(np.uint8).copy()
        full[k0 : k1 + 1] = 0
    else:
        full = np.zeros(case.shape, np.uint8)
    full[case.roi] = np.where(out > 0, out, full[case.roi])
    warnings: list[str] = []
    if case.missing:
        warnings.append(f"no seeds in slices {k0}..{k1} for: {', '.join(case.missing)}")
    for n in case.names:
        v = BY_NAME[n].value
        if not (out == v).any():
            raise BadInputError(f"structure {n}: the segmentation came out empty; check its seeds")
        for lv, (a, b) in case.level_ranges.items():
            if a >= k0 and b <= k1 and not (full[a : b + 1] == v).any():
                warnings.append(f"structure {n}: empty at level {lv}")
    return full, warnings


def _info(case: Case, ev: _Evidence, mid: _Midline, p: SegmentParams, warnings, laps) -> dict:
    """``SegmentationResult.info``: slab, ROI, seeds, references, notes, warnings, parameters, timings."""
    (k, j, i) = case.roi
    return {
        "mode": "dixon" if case.inp.dixon else "single",
        "slices": [int(k.start), int(k.stop - 1)],
        "roi_kji": [[int(s.start), int(s.stop - 1)] for s in (k, j, i)],
        "n_seeds": len(case.seeds),
        "level_source": case.level_source,
        "midline_columns": (mid.columns + i.start).tolist() if mid.columns is not None else None,
        "references": ev.refs,
        "noise_floor": case.noise_floor,
        "notes": case.inp.notes,
        "warnings": warnings,
        "params": asdict(p),
        "seconds": {name: round(t, 3) for name, t in laps.items()},
    }


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
    p = params or SegmentParams()
    t = [time.perf_counter()]
    case = prepare_case(
        prepare_inputs(image_or_dixon, assume_same_grid), seeds, structures, levels, only_level, p.inputs
    )
    t.append(time.perf_counter())
    ev = find_competitors(case, p)
    mid = find_midline(case, ev, p.midline)
    t.append(time.perf_counter())
    grown = grow_structures(case, ev, mid, p.growth)
    t.append(time.perf_counter())
    out = regularise(split_structures(grown, case, ev, p.split), case, ev, mid, p)
    out = complete_compartments(out, case, p)
    full, warnings = _assemble(out, case, previous)
    t.append(time.perf_counter())
    labels = sitk.GetImageFromArray(full)
    labels.CopyInformation(case.inp.reference)
    label_names = {BY_NAME[n].value: n for n in sorted(set(case.names) | _names_in(full))}
    laps = dict(zip(("inputs", "features", "grow", "split_post"), np.diff(t), strict=True))
    laps["total"] = t[-1] - t[0]
    return SegmentationResult(labels, label_names, case.level_ranges, _info(case, ev, mid, p, warnings, laps))


def _names_in(arr: np.ndarray) -> set[str]:
    return {BY_VALUE[int(v)].name for v in np.unique(arr) if int(v) in BY_VALUE}


__all__ = [
    "CompartmentParams",
    "CompetitorParams",
    "FrontParams",
    "GrowthParams",
    "InputParams",
    "MidlineParams",
    "SegmentParams",
    "SegmentationResult",
    "ShapeParams",
    "SplitParams",
    "VoxelSeed",
    "prepare_inputs",
    "segment",
]
