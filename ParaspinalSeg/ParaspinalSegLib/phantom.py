"""Digital lumbar MRI phantom with known truth (contract C3): ``make_phantom`` and ``write_phantom``.

``make_phantom(params, seed)`` renders an axial lumbar Dixon study (water, fat, in-phase,
opposed-phase, T1w-like, T2w-like magnitude images with Rician noise and coil bias) from analytic
anatomy with partial volume, plus the ground truth: label map (structures.py values: muscles 1–8,
tissues 10–17, 0 = air), FF map F/(F+W) of the noiseless mixture, per level × structure CSA and FF,
vertebral level landmarks and one interior seed per muscle per level. Same seed and parameters give
byte-identical files. Geometry: LPS, identity direction (axial), k = 0 the most caudal slice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalLBPCore.atomic import atomic_path, atomic_write_bytes
from ParaspinalLBPCore.structures import BY_VALUE, LEVELS, MUSCLE_NAMES
from ParaspinalSegLib import phantom_physics as phys
from ParaspinalSegLib.markups import write_points
from ParaspinalSegLib.phantom_anatomy import (
    BASE_CSA_CM2,
    CHANNEL,
    CHANNEL_VALUES,
    MUSCLE_VALUE,
    level_geometry,
    make_layout,
    paint_static,
    render_over,
    static_shapes,
)
from ParaspinalSegLib.phantom_params import PhantomParams

__all__ = ["IMAGE_NAMES", "Phantom", "PhantomParams", "make_phantom", "write_phantom"]

IMAGE_NAMES = ("water", "fat", "inphase", "opposed", "t1w", "t2w")
SUBSLICES = 3  # through-slice partial-volume samples per slice
DISC_HALF_MM = 3.5  # half height of an intervertebral disc around each level boundary


@dataclass
class Phantom:
    """One rendered case: numpy arrays (k, j, i), SimpleITK images on the same grid, and truth."""

    params: PhantomParams
    seed: int
    arrays: dict[str, np.ndarray]  # the six images, "ff" and "labels"
    images: dict[str, sitk.Image]
    level_slices: dict[str, tuple[int, int]]  # inclusive k range per level
    truth: dict[str, Any]
    seeds: list[tuple[str, tuple[float, float, float], str]]
    landmarks: list[tuple[str, tuple[float, float, float], str]]
    timings: dict[str, float] = field(default_factory=dict)  # CPU seconds per rendering stage


def _muscle_areas(params: PhantomParams, level: str, area_scale: float) -> dict[str, float]:
    """Requested CSA (mm²) of every muscle at ``level``: (csa_cm2 or base × sex/body) × atrophy × asymmetry."""
    idx = LEVELS.index(level)
    out = {}
    for name in MUSCLE_NAMES:
        group, side = name.rsplit("_", 1)
        asym = 1.0 + (params.asymmetry / 2 if side == "left" else -params.asymmetry / 2)
        given = params.csa_cm2(name, level)
        base = given * 100.0 if given is not None else BASE_CSA_CM2[group][idx] * 100.0 * area_scale
        out[name] = base * params.atrophy(name, level) * asym
    return out


def _grid(params: PhantomParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Voxel-centre coordinates x (i), y (j), slice centres z (k) in mm, and the slice pitch."""
    nx, ny = params.matrix
    sx, sy = params.spacing_mm
    n = len(params.levels) * params.slices_per_level
    pitch = params.slice_thickness_mm + params.slice_gap_mm
    x = ((np.arange(nx) - (nx - 1) / 2) * sx).astype(np.float32)
    y = ((np.arange(ny) - (ny - 1) / 2) * sy + 20.0).astype(np.float32)  # FOV centred a bit posterior
    z = (np.arange(n) - (n - 1) / 2) * pitch
    return x, y, z, pitch


@dataclass
class _Frame:
    """Grid, body layout and level bookkeeping shared by the rendering stages (no random numbers)."""

    params: PhantomParams
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    pitch: float
    h: float  # mean in-plane pixel size (mm)
    lay: Any
    level_slices: dict[str, tuple[int, int]]
    centres: list[float]  # level centres as level indices (0 = L1)
    sub_z: np.ndarray  # (nz, SUBSLICES) sub-slice heights
    sub_fl: np.ndarray  # their fractional level positions
    slice_fl: np.ndarray  # (nz, 1) fractional level of each slice centre
    areas: dict[str, dict[str, float]]  # requested CSA (mm²) per level and muscle
    csa_nodes: dict[str, np.ndarray]
    boundaries: np.ndarray  # z of the level boundaries (discs)


def _frame(params: PhantomParams) -> _Frame:
    """Stage 1: voxel grid, layout, level slice ranges and the z-interpolation nodes of the muscle areas."""
    x, y, z, pitch = _grid(params)
    spl, nlev = params.slices_per_level, len(params.levels)
    lay = make_layout(params.sex, params.body_scale, params.subcutaneous_fat())
    # Level j of the list (0 = most cranial) covers k in [(nlev-1-j)*spl, (nlev-j)*spl - 1].
    level_slices = {lv: ((nlev - 1 - j) * spl, (nlev - j) * spl - 1) for j, lv in enumerate(params.levels)}
    z_bottom = z[0] - pitch / 2
    level_h = spl * pitch
    first_idx = LEVELS.index(params.levels[0])

    def frac_level(zz: float) -> float:
        """Fractional level index (0 = L1) at height zz; level centres sit mid-slab."""
        pos = (zz - z_bottom) / level_h  # 0 at caudal end of the most caudal level
        return float(first_idx + (nlev - 0.5) - pos)

    areas = {lv: _muscle_areas(params, lv, lay.area_scale) for lv in params.levels}
    centres = [float(LEVELS.index(lv)) for lv in params.levels]
    offsets = (np.arange(SUBSLICES) + 0.5) / SUBSLICES - 0.5
    sub_z = z[:, None] + offsets[None, :] * params.slice_thickness_mm  # (nz, SUBSLICES)
    sub_fl = np.vectorize(frac_level)(sub_z)
    # Node values at level centres chosen so that each level's mean over its samples is the request.
    csa_nodes = _mean_preserving({m: [areas[lv][m] for lv in params.levels] for m in MUSCLE_NAMES},
                                 centres, sub_fl, level_slices, params.levels)  # fmt: skip
    return _Frame(params, x, y, z, pitch, float(np.mean(params.spacing_mm)), lay, level_slices, centres,
                  sub_z, sub_fl, np.vectorize(frac_level)(z)[:, None], areas, csa_nodes,
                  z_bottom + level_h * np.arange(nlev + 1))  # fmt: skip


def _static_body(fr: _Frame, rng: np.random.Generator) -> np.ndarray:
    """Stage 2: tissue fractions of the anatomy constant along z (body, fat layers, abdomen), painted once."""
    static = np.zeros((CHANNEL_VALUES.size, fr.y.size, fr.x.size), dtype=np.float32)
    static[CHANNEL[0]] = 1.0
    paint_static(static, static_shapes(fr.lay, rng), fr.x, fr.y, fr.h)
    return static


def _slice_shapes(fr: _Frame) -> list[list[list[Any]]]:
    """Stage 3: spine and muscle shapes at every sub-slice position (discs at the level boundaries)."""
    subshapes = []
    for k in range(fr.z.size):
        row = []
        for t in range(SUBSLICES):
            fl = float(fr.sub_fl[k, t])
            shapes = level_geometry(
                fr.lay, fl, {m: float(np.interp(fl, fr.centres, fr.csa_nodes[m])) for m in MUSCLE_NAMES}
            )
            if fr.params.discs and np.min(np.abs(fr.boundaries - fr.sub_z[k, t])) < DISC_HALF_MM:
                for shp in shapes:
                    if shp.label == 10:
                        shp.label = 13
                        shp.radius_table = shp.radius_table * np.float32(1.04)
                        shp._extent_key = None
            row.append(shapes)
        subshapes.append(row)
    return subshapes


def _roi(fr: _Frame, subshapes: list[list[list[Any]]]) -> tuple[slice, slice]:
    """The (rows, columns) box holding every z-varying shape."""
    ext = np.array([s.extent() for row in subshapes for shapes in row for s in shapes])
    i0, i1 = np.searchsorted(fr.x, ext[:, 0].min()), np.searchsorted(fr.x, ext[:, 1].max())
    j0, j1 = np.searchsorted(fr.y, ext[:, 2].min()), np.searchsorted(fr.y, ext[:, 3].max())
    return slice(j0, j1), slice(i0, i1)


def _visceral_fat(fr: _Frame, rng: np.random.Generator) -> np.ndarray:
    """Adipose fraction of the abdominal contents: a smooth random field of visceral-fat pockets."""
    nz, ny, nx = fr.z.size, fr.y.size, fr.x.size
    coarse = rng.standard_normal((nz, ny // 4 + 1, nx // 4 + 1), dtype=np.float32)
    coarse = ndi.gaussian_filter(coarse, (1.0, 1.5, 1.5))
    coarse /= coarse.std() + 1e-9
    vis = ndi.uniform_filter(np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :ny, :nx], (1, 5, 5))
    return (0.9 / (1.0 + np.exp(-(vis - 1.2) / 0.25))).astype(np.float32)


def _signal_tables(static: np.ndarray, roi: tuple[slice, slice]) -> dict[str, Any]:
    """Per-channel signal constants (water, fat, T1w, T2w) and the static anatomy's signals outside the ROI."""
    cw, cf = phys.CONST_W, phys.CONST_F
    consts = (cw, cf, cw * phys.CONST_T1W + phys.FAT_T1 * cf, cw * phys.CONST_T2W + phys.FAT_T2 * cf)
    w16, f16, t1w16, t2w16 = phys.TISSUE[16]
    d_abd = np.array([phys.ADIPOSE_W - w16, phys.ADIPOSE_F - f16,
                      phys.ADIPOSE_W + phys.FAT_T1 * phys.ADIPOSE_F - (w16 * t1w16 + phys.FAT_T1 * f16),
                      phys.ADIPOSE_W + phys.FAT_T2 * phys.ADIPOSE_F - (w16 * t2w16 + phys.FAT_T2 * f16)])  # fmt: skip
    return {
        "consts": consts,
        "d_abd": d_abd,
        "static_sig": [np.tensordot(c, static, axes=1) for c in consts],
        "static_area": static.sum(axis=(1, 2)) - static[:, roi[0], roi[1]].sum(axis=(1, 2)),
    }


def _render(fr: _Frame, static: np.ndarray, subshapes: list, roi: tuple[slice, slice], fields: dict,
            vis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
    """Stage 5: noiseless water/fat/T1w/T2w signals, label map, per-slice tissue areas and realised muscle FF."""
    nz, ny, nx = fr.z.size, fr.y.size, fr.x.size
    tab = _signal_tables(static, roi)
    ff_targets = {m: [fr.params.fat_fraction(m, lv) for lv in fr.params.levels] for m in MUSCLE_NAMES}
    ff_nodes = _mean_preserving(ff_targets, fr.centres, fr.slice_fl, fr.level_slices, fr.params.levels)
    static_roi = static[:, roi[0], roi[1]]
    xr, yr = fr.x[roi[1]], fr.y[roi[0]]
    sig = np.empty((4, nz, ny, nx), dtype=np.float32)  # water, fat, t1, t2 (noiseless)
    labels = np.empty((nz, ny, nx), dtype=np.uint8)
    labels_static = CHANNEL_VALUES[np.argmax(static, axis=0)]
    chan_area = np.empty((nz, CHANNEL_VALUES.size))  # pixels
    realised_ff = {m: np.zeros(nz) for m in MUSCLE_NAMES}
    for k in range(nz):
        frac = render_over(static_roi, subshapes[k], xr, yr, fr.h)
        chan_area[k] = tab["static_area"] + frac.sum(axis=(1, 2))
        fa_full = static[CHANNEL[16]] * vis[k]
        for c in range(4):
            sig[c, k] = tab["static_sig"][c] + tab["d_abd"][c] * fa_full
            sig[c, k][roi] = (
                np.tensordot(tab["consts"][c], frac, axes=1)
                + tab["d_abd"][c] * frac[CHANNEL[16]] * vis[k][roi]
            )
        labels[k] = labels_static
        labels[k][roi] = CHANNEL_VALUES[np.argmax(frac, axis=0)]
        targets = {m: float(np.interp(fr.slice_fl[k, 0], fr.centres, ff_nodes[m])) for m in MUSCLE_NAMES}
        _render_muscles(fr.params, frac, k, targets, fields, sig[:, k], roi, realised_ff)
    return sig, labels, chan_area, realised_ff


def _render_muscles(params: PhantomParams, frac: np.ndarray, k: int, targets: dict[str, float], fields: dict,
                    sig_k: np.ndarray, roi: tuple[slice, slice], realised_ff: dict[str, np.ndarray]) -> None:  # fmt: skip
    """Add every muscle's tissue signals on slice ``k``: per-pixel FF following its pattern, mean = target."""
    for m in MUSCLE_NAMES:
        wgt = frac[CHANNEL[MUSCLE_VALUE[m]]]
        sel = wgt > 0
        if not sel.any():
            continue
        ws = wgt[sel]
        pattern = params.pattern(m)
        if pattern in ("peripheral", "confluent"):
            box = ndi.find_objects(sel.astype(np.int8))[0]
            inside = np.pad(wgt[box] >= 0.5, 1)
            dist = ndi.distance_transform_edt(inside, sampling=params.spacing_mm[::-1])[1:-1, 1:-1]
            ffk = phys.shaped_ff(pattern, fields[pattern][k][box][sel[box]], dist[sel[box]], ws, targets[m])
        else:
            ffk = phys.texture_ff(fields[pattern][k][sel], ws, targets[m])
        realised_ff[m][k] = float((ffk * ws).sum() / ws.sum())
        mw, mf = phys.muscle_signals(ffk)
        for c, val in enumerate(
            (mw, mf, phys.MUSCLE_T1 * mw + phys.FAT_T1 * mf, phys.MUSCLE_T2 * mw + phys.FAT_T2 * mf)
        ):
            sig_k[c][roi][sel] += ws * val


def _acquire(fr: _Frame, rng: np.random.Generator, sig: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    """Stage 6: coil bias and Rician noise (one complex noise pair per acquisition; IP/OP = W ± F)."""
    params = fr.params
    shape3 = sig.shape[1:]
    bias = phys.bias_field(rng, shape3, params.bias_strength)
    sigma = phys.MUSCLE_SIGNAL / params.snr
    nw = (rng.standard_normal(shape3, dtype=np.float32), rng.standard_normal(shape3, dtype=np.float32))
    nf = (rng.standard_normal(shape3, dtype=np.float32), rng.standard_normal(shape3, dtype=np.float32))
    bw, bf = bias * sig[0], bias * sig[1]
    arrays = {
        "water": phys.rician(bw, sigma, *nw),
        "fat": phys.rician(bf, sigma, *nf),
        "inphase": phys.rician(bw + bf, sigma, nw[0] + nf[0], nw[1] + nf[1]),
        "opposed": phys.rician(bw - bf, sigma, nw[0] - nf[0], nw[1] - nf[1]),
    }
    # T1w/T2w are separate acquisitions: their noise re-uses the Dixon fields mirrored in space,
    # so at each voxel it is independent of the Dixon noise there (saves half the random numbers).
    lean_t1 = phys.MUSCLE_T1 * phys.LEAN_W + phys.FAT_T1 * phys.LEAN_F
    lean_t2 = phys.MUSCLE_T2 * phys.LEAN_W + phys.FAT_T2 * phys.LEAN_F
    arrays["t1w"] = phys.rician(
        bias * sig[2], lean_t1 / params.snr, nf[0][:, ::-1, ::-1], nw[1][:, ::-1, ::-1]
    )
    arrays["t2w"] = phys.rician(
        bias * sig[3], lean_t2 / params.snr, nw[0][::-1, :, ::-1], nf[1][::-1, :, ::-1]
    )
    return arrays, sigma


def _images(fr: _Frame, arrays: dict[str, np.ndarray]) -> dict[str, sitk.Image]:
    """SimpleITK images of every array on the phantom's grid (LPS, identity direction)."""
    origin = (float(fr.x[0]), float(fr.y[0]), float(fr.z[0]))
    spacing = (float(fr.params.spacing_mm[0]), float(fr.params.spacing_mm[1]), float(fr.pitch))
    images = {}
    for name, arr in arrays.items():
        img = sitk.GetImageFromArray(arr)
        img.SetOrigin(origin)
        img.SetSpacing(spacing)
        img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
        images[name] = img
    return images


def make_phantom(params: PhantomParams | None = None, seed: int = 0) -> Phantom:
    """Render one phantom case deterministically from ``params`` and ``seed`` (stages in ``Phantom.timings``)."""
    params = params or PhantomParams()
    params.validate()
    timings: dict[str, float] = {}
    clock = [time.process_time()]

    def lap(stage: str) -> None:
        now = time.process_time()
        timings[stage] = timings.get(stage, 0.0) + now - clock[0]
        clock[0] = now

    rng = np.random.default_rng(
        seed
    )  # draw order: static body, fat textures, visceral fat, bias, noise, jitter
    fr = _frame(params)
    static = _static_body(fr, rng)
    subshapes = _slice_shapes(fr)
    lap("shapes")
    roi = _roi(fr, subshapes)
    spacing3 = (fr.pitch, params.spacing_mm[1], params.spacing_mm[0])
    roi_shape = (fr.z.size, roi[0].stop - roi[0].start, roi[1].stop - roi[1].start)
    patterns = {params.pattern(m) for m in MUSCLE_NAMES}
    fields = phys.pattern_fields(rng, roi_shape, spacing3, patterns)
    fields.update(phys.shape_fields(np.random.default_rng([seed, 14]), roi_shape, spacing3, patterns))
    lap("static")
    vis = _visceral_fat(fr, rng)
    lap("textures")
    sig, labels, chan_area, realised_ff = _render(fr, static, subshapes, roi, fields, vis)
    lap("render")
    total = sig[0] + sig[1]
    ff_map = np.where(total > 1.0, sig[1] / np.maximum(total, 1e-6), 0.0).astype(np.float32)
    lap("ff_map")
    arrays, sigma = _acquire(fr, rng, sig)
    arrays["ff"] = ff_map
    arrays["labels"] = labels
    lap("noise")
    images = _images(fr, arrays)
    spacing = images["labels"].GetSpacing()
    truth = _truth(
        params, seed, chan_area, labels, ff_map, realised_ff, fr.areas, fr.level_slices, spacing, sigma
    )
    seeds, landmarks = _points(params, rng, labels, fr.level_slices, images["labels"], fr.lay.scale)
    lap("truth_points")
    return Phantom(params, seed, arrays, images, fr.level_slices, truth, seeds, landmarks, timings)


def _mean_preserving(targets: dict[str, list[float]], centres: list[float], sample_fl: np.ndarray,
                     level_slices: dict[str, tuple[int, int]], levels: list[str]) -> dict[str, np.ndarray]:  # fmt: skip
    """Node values at level centres whose linear interpolation averages to each level's target.

    ``sample_fl`` (nz, n_sub) are the fractional level positions actually sampled; the level mean is
    a linear map of the node values, solved exactly, so smooth z trends keep per-level truth exact.
    """
    n = len(centres)
    if n == 1:
        return {m: np.asarray(v, dtype=float) for m, v in targets.items()}
    mat = np.zeros((n, n))
    for j in range(n):
        basis = np.interp(sample_fl, centres, np.eye(n)[j])
        for i, lv in enumerate(levels):
            k0, k1 = level_slices[lv]
            mat[i, j] = basis[k0 : k1 + 1].mean()
    return {m: np.linalg.solve(mat, np.asarray(v, dtype=float)) for m, v in targets.items()}


def _truth(params: PhantomParams, seed: int, chan_area: np.ndarray, labels: np.ndarray, ff_map: np.ndarray,
           realised_ff: dict[str, np.ndarray], areas: dict[str, dict[str, float]],
           level_slices: dict[str, tuple[int, int]], spacing: tuple[float, float, float],
           sigma: float) -> dict[str, Any]:  # fmt: skip
    """Realised per structure × level CSA (true partial-volume area, label area) and FF."""
    px_cm2 = spacing[0] * spacing[1] / 100.0
    nlab = int(CHANNEL_VALUES.max()) + 1
    flat = labels.reshape(labels.shape[0], -1)
    ffs = ff_map.reshape(labels.shape[0], -1).astype(np.float64)
    counts = np.stack([np.bincount(flat[k], minlength=nlab) for k in range(flat.shape[0])])
    ff_sums = np.stack([np.bincount(flat[k], weights=ffs[k], minlength=nlab) for k in range(flat.shape[0])])
    structures: dict[str, dict[str, Any]] = {}
    for value in [int(v) for v in CHANNEL_VALUES if v != 0]:
        name = BY_VALUE[value].name
        ch = CHANNEL[value]
        per_level = {}
        for lv, (k0, k1) in level_slices.items():
            true_area = chan_area[k0 : k1 + 1, ch] * px_cm2
            n_lab = counts[k0 : k1 + 1, value]
            entry: dict[str, Any] = {
                "csa_cm2": round(float(true_area.mean()), 4),
                "csa_label_cm2": round(float(n_lab.mean() * px_cm2), 4),
                "ff_map_mean_pct": round(float(ff_sums[k0 : k1 + 1, value].sum() / n_lab.sum() * 100), 3)
                if n_lab.sum()
                else None,
            }
            if name in MUSCLE_NAMES:
                entry["csa_requested_cm2"] = round(areas[lv][name] / 100.0, 4)
                entry["fat_fraction_pct"] = round(float(realised_ff[name][k0 : k1 + 1].mean() * 100), 3)
                entry["fat_fraction_requested_pct"] = round(params.fat_fraction(name, lv) * 100, 3)
                entry["pattern"] = params.pattern(name)
            per_level[lv] = entry
        structures[name] = per_level
    return {
        "seed": int(seed),
        "label_values": {str(int(v)): BY_VALUE[int(v)].name for v in CHANNEL_VALUES if v != 0},
        "levels": {lv: list(r) for lv, r in level_slices.items()},
        "noise_sigma": {"water_fat": round(sigma, 6), "snr_reference_signal": phys.MUSCLE_SIGNAL},
        "structures": structures,
        "params": params.to_dict(),
    }


def _points(params: PhantomParams, rng: np.random.Generator, labels: np.ndarray,
            level_slices: dict[str, tuple[int, int]], ref: sitk.Image,
            scale: float) -> tuple[list, list]:  # fmt: skip
    """Seeds (deepest point of each muscle on each level's middle slice, optional jitter) and landmarks."""
    sx, sy = params.spacing_mm
    seeds, landmarks = [], []
    for lv in params.levels:
        k0, k1 = level_slices[lv]
        k = (k0 + k1 + 1) // 2
        ci = (labels.shape[2] - 1) / 2
        cj = (10.0 * scale - ref.GetOrigin()[1]) / sy  # vertebral body centre y = 10 mm × scale
        # the landmark sits at the level's exact middle (between slices for an even count), so no slice
        # is equidistant from two landmarks and any nearest-landmark rule reproduces level_slices
        landmarks.append((lv, ref.TransformContinuousIndexToPhysicalPoint((ci, cj, (k0 + k1) / 2)), ""))
        for m in MUSCLE_NAMES:
            mask = labels[k] == MUSCLE_VALUE[m]
            if not mask.any():
                continue
            rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
            r0, c0 = max(rows[0] - 1, 0), max(cols[0] - 1, 0)
            sub = mask[r0 : rows[-1] + 2, c0 : cols[-1] + 2]
            dist = np.zeros(mask.shape)
            dist[r0 : rows[-1] + 2, c0 : cols[-1] + 2] = ndi.distance_transform_edt(sub, sampling=(sy, sx))
            j, i = np.unravel_index(int(np.argmax(dist)), dist.shape)
            pj, pi = float(j), float(i)
            jitter = float(params.seed_jitter_mm)
            if jitter > 0:
                for _ in range(50):
                    dj, di = rng.normal(0.0, jitter, 2)
                    qj, qi = round(j + dj / sy), round(i + di / sx)
                    if (
                        0 <= qj < mask.shape[0]
                        and 0 <= qi < mask.shape[1]
                        and dist[qj, qi] >= 1.5 * max(sx, sy)
                    ):
                        pj, pi = float(qj), float(qi)
                        break
            seeds.append((m, ref.TransformContinuousIndexToPhysicalPoint((pi, pj, float(k))), lv))
    return seeds, landmarks


def _atomic_bytes(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


def _write_image(img: sitk.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), True)


def write_phantom(phantom: Phantom, out_dir: str | Path) -> Path:
    """Write all C3 outputs into ``out_dir`` (created); each file is written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in (*IMAGE_NAMES, "ff"):
        _write_image(phantom.images[name], out / f"{name}.nii.gz")
    _write_image(sitk.Cast(phantom.images["labels"], sitk.sitkUInt8), out / "labels.nii.gz")
    present = sorted(int(v) for v in np.unique(phantom.arrays["labels"]) if v != 0)
    labels_json = {
        "labels": {str(v): BY_VALUE[v].name for v in present},
        "levels": {lv: list(r) for lv, r in phantom.level_slices.items()},
    }
    _atomic_bytes(out / "labels.json", (json.dumps(labels_json, indent=2) + "\n").encode())
    _atomic_bytes(out / "truth.json", (json.dumps(phantom.truth, indent=2) + "\n").encode())
    _atomic_bytes(out / "params.yaml", phantom.params.to_yaml().encode())
    write_points(out / "seeds.mrk.json", phantom.seeds, name="Seeds")
    write_points(out / "levels.mrk.json", phantom.landmarks, name="Levels")
    return out
