"""Synthetic fatty infiltration of a real case inside its manual outlines: the outline stays the truth.

API::

    from ParaspinalSegLib.infiltrate import infiltrate
    res = infiltrate({"water": W, "fat": F} or {"image": S}, labels, {value: name}, severity=0.30,
                     kind="ff" (target Dixon signal FF) or "volume" (target fat volume fraction),
                     pattern="streaky" (fat_patterns.PATTERNS, or {name: pattern}), seed=0,
                     levels={"L3": (k0, k1), ...} or None, assume_same_grid=False)
    res.images["water"|"fat"|"inphase"] (Dixon) or res.images["image"]   # SimpleITK, the labels' grid
    res.labels (unchanged), res.volume_fraction (added fat volume fraction per voxel, 0 outside)
    res.truth["structures"][name][level or "all"]  # csa_cm2, volume_cm3, volume_fraction_pct, ff_pct, ...

Each labelled voxel with fat volume fraction v becomes S' = (1 − v)·S + v·S_fat for every image
(water, fat, or a single image), with S_fat the case's own pure-fat signal at that place: a local mean
of clearly-fat voxels outside the muscles (Dixon FF > 0.9, or the bright class of a single image),
eroded against partial volume and smoothed over ±15 mm in-plane and one slice, so the coil bias of the
case carries over. Mixing with a smooth reference lowers the voxel's noise to (1 − v)·σ; independent
complex Gaussian noise restores it to the case's own noise, interpolated between muscle (v = 0) and fat
(v = 1) and measured in the case (neighbour differences), and the magnitude is taken, so the noise
floor stays Rician. Severity is met per muscle × level (bisection on the pattern's parameter, see
fat_patterns). Voxels outside the labels are returned unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalLBPCore.errors import BadInputError, MissingKeyError
from ParaspinalSegLib import fat_patterns
from ParaspinalSegLib.fat import noise_floor
from ParaspinalSegLib.io import same_grid_problems

KINDS = ("ff", "volume")
CLEAR_FAT_FF = 0.9  # a Dixon voxel is "clearly fat" above this FF
REFERENCE_SIGMA_MM = 15.0  # in-plane smoothing of the fat reference (coil bias varies over ~10 cm)
WIDE_SIGMA_MM = 45.0  # fallback where no fat lies within ~2 REFERENCE_SIGMA_MM
Severity = float | Mapping[str, float | Mapping[str, float]]


@dataclass
class Infiltrated:
    """An infiltrated case: images on the labels' grid, the unchanged labels, fat volume fraction, truth."""

    images: dict[str, sitk.Image]
    labels: sitk.Image
    volume_fraction: sitk.Image
    truth: dict[str, Any]


def _arrays(
    images: Mapping[str, sitk.Image], labels: sitk.Image, assume_same_grid: bool
) -> dict[str, np.ndarray]:
    """Float arrays of the inputs after checking names, sizes and grids against the label map."""
    keys = set(images)
    if keys not in ({"water", "fat"}, {"image"}):
        raise BadInputError(
            f"infiltrate: images must be {{'water', 'fat'}} or {{'image'}}, got {sorted(keys)}"
        )
    out = {}
    for name, img in images.items():
        if img.GetSize() != labels.GetSize():
            raise BadInputError(
                f"infiltrate: {name} image size {img.GetSize()} differs from the labels' {labels.GetSize()}"
            )
        problems = same_grid_problems(img, labels)
        if problems and not assume_same_grid:
            raise BadInputError(
                f"infiltrate: {name} image and label map are on different grids ({'; '.join(problems)}); "
                "pass assume_same_grid=True if only the header differs"
            )
        arr = sitk.GetArrayFromImage(img).astype(np.float64)
        if not np.isfinite(arr).all():
            raise BadInputError(f"infiltrate: {name} image contains NaN or infinite voxels")
        out[name] = arr
    return out


def clear_fat_mask(arrays: Mapping[str, np.ndarray], muscle: np.ndarray) -> np.ndarray:
    """Voxels that are pure fat: Dixon FF > 0.9 (or a single image's bright class: above the Otsu threshold of
    the tissue outside the muscles), outside the muscles dilated by 2 voxels, eroded 1 voxel in-plane."""
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndi.generate_binary_structure(2, 1)
    away = ~ndi.binary_dilation(muscle, plane, iterations=2)
    if "water" in arrays:
        s = arrays["water"] + arrays["fat"]
        with np.errstate(invalid="ignore", divide="ignore"):
            ff = np.where(s > 0, arrays["fat"] / np.where(s > 0, s, 1), 0)
        fat = (ff > CLEAR_FAT_FF) & (s > noise_floor(s))
    else:
        s = arrays["image"]
        tissue = s[away & (s > noise_floor(s))]
        if tissue.size < 100:
            raise BadInputError(
                "infiltrate: too little tissue outside the muscles to find the case's fat signal"
            )
        fat = s > _otsu(tissue)
    fat = ndi.binary_erosion(fat & away, plane)
    if fat.sum() < 100:
        raise BadInputError(
            "infiltrate: fewer than 100 clearly-fat voxels outside the muscles; is fat bright here?"
        )
    return fat


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu threshold of a 1-D sample (between-class variance maximum)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    return float(centres[int(np.nanargmax(between[:-1]))])


def fat_reference(
    arrays: Mapping[str, np.ndarray], fat: np.ndarray, spacing: tuple[float, float, float], where: np.ndarray
) -> dict[str, np.ndarray]:
    """Per image, the local pure-fat signal at the voxels ``where`` (NaN elsewhere): Gaussian-weighted mean of
    the clearly-fat voxels (in-plane σ 15 mm, one slice); where too few lie near, the same at 45 mm, then
    the slice's median. Computed on 4 mm blocks (the reference is smooth) and interpolated linearly."""
    b = max(1, round(4.0 / min(spacing[1:])))
    nz, ny, nx = fat.shape
    pad = ((0, 0), (0, -ny % b), (0, -nx % b))

    def blocks(a: np.ndarray) -> np.ndarray:
        a = np.pad(a, pad)
        return a.reshape(nz, a.shape[1] // b, b, a.shape[2] // b, b).sum(axis=(2, 4))

    idx = np.nonzero(where)
    coords = np.array([idx[0], (idx[1] - (b - 1) / 2) / b, (idx[2] - (b - 1) / 2) / b])
    den_b = blocks(fat.astype(np.float64))
    out = {}
    for name, arr in arrays.items():
        num_b = blocks(np.where(fat, arr, 0.0))
        vals = np.full(idx[0].size, np.nan)
        for sigma_mm in (REFERENCE_SIGMA_MM, WIDE_SIGMA_MM):
            sig = (1.0, sigma_mm / (b * spacing[1]), sigma_mm / (b * spacing[2]))
            den = ndi.map_coordinates(ndi.gaussian_filter(den_b, sig), coords, order=1, mode="nearest")
            num = ndi.map_coordinates(ndi.gaussian_filter(num_b, sig), coords, order=1, mode="nearest")
            ok = np.isnan(vals) & (den > 0.02 * b * b)
            vals[ok] = num[ok] / den[ok]
        for k in np.unique(idx[0][np.isnan(vals)]):
            sel = np.isnan(vals) & (idx[0] == k)
            vals[sel] = np.median(arr[k][fat[k]]) if fat[k].any() else np.median(arr[fat])
        ref = np.full(arr.shape, np.nan)
        ref[idx] = vals
        out[name] = ref
    return out


def noise_sigma(arr: np.ndarray, mask: np.ndarray) -> float:
    """Noise SD inside ``mask`` from horizontal neighbour differences (robust MAD / √2; texture included)."""
    pair = mask[:, :, 1:] & mask[:, :, :-1]
    d = np.diff(arr, axis=2)[pair]
    if d.size < 50:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def _targets(severity: Severity, names: Mapping[int, str], levels: Mapping[str, tuple[int, int]]) -> dict:
    """{name: {level: target}} from a number, {name: number} or {name: {level: number}}."""
    out: dict[str, dict[str, float]] = {}
    for name in names.values():
        spec = severity if isinstance(severity, int | float) else severity.get(name, 0.0)
        out[name] = {}
        for lv in levels:
            value = spec if isinstance(spec, int | float) else spec.get(lv)
            if value is None:
                raise MissingKeyError(f"infiltrate: severity for {name} lists no value for level {lv}")
            if not 0.0 <= float(value) <= 1.0:
                raise BadInputError(
                    f"infiltrate: severity {value!r} for {name} {lv} must be a fraction in [0, 1]"
                )
            out[name][lv] = float(value)
    if not isinstance(severity, int | float):
        unknown = set(severity) - set(names.values())
        if unknown:
            raise MissingKeyError(
                f"infiltrate: severity names unknown structure(s) {sorted(unknown)}; labels hold {sorted(names.values())}"
            )
    return out


def _signal_ff(images: Mapping[str, np.ndarray]) -> np.ndarray:
    """Dixon signal FF F/(F+W) per voxel (0 where both are 0)."""
    s = images["water"] + images["fat"]
    return np.where(s > 0, images["fat"] / np.where(s > 0, s, 1), 0.0)


def _ff_mean(arrays, refs, idx) -> Any:
    """mean over ``idx`` of the noise-free mixed signal FF, as a function of the volume fractions there."""
    w, f = arrays["water"][idx], arrays["fat"][idx]
    rw, rf = refs["water"][idx], refs["fat"][idx]

    def mean_of(v: np.ndarray) -> float:
        mf = (1 - v) * f + v * rf
        s = (1 - v) * w + v * rw + mf
        return float(np.mean(np.where(s > 0, mf / np.where(s > 0, s, 1), 0.0)))

    return mean_of


def _volume_fraction(
    arrays, refs, labels, names, targets, levels, patterns, kind, spacing, seed
) -> np.ndarray:
    """Per-voxel fat volume fraction: each muscle's pattern (its own generator), solved per level."""
    vf = np.zeros(labels.shape)
    for value, name in sorted(names.items()):
        box = ndi.find_objects((labels == value).astype(np.int8))[0]
        bmask = labels[box] == value
        p = fat_patterns.propensity(patterns[name], np.random.default_rng([seed, int(value)]), bmask, spacing)
        z = np.arange(box[0].start, box[0].stop)[:, None, None]
        for lv, (k0, k1) in levels.items():
            sel = bmask & (z >= k0) & (z <= k1)
            if not sel.any() or targets[name][lv] <= 0:
                continue
            kk, jj, ii = np.nonzero(sel)
            idx = (kk + box[0].start, jj + box[1].start, ii + box[2].start)
            mean_of = _ff_mean(arrays, refs, idx) if kind == "ff" else None
            vf[idx], _ = fat_patterns.solve(patterns[name], p[sel], targets[name][lv], mean_of)
    return vf


def _add_noise(arrays, refs, vf, muscle, fat, seed) -> dict[str, np.ndarray]:
    """Mix, then restore the case's noise: σ_target(v) = (1 − v)·σ_muscle + v·σ_fat, Rician magnitude."""
    rng = np.random.default_rng([seed, 999])
    out = {}
    sel = vf > 0
    v = vf[sel]
    for name, arr in arrays.items():
        s_m, s_f = noise_sigma(arr, ndi.binary_erosion(muscle)), noise_sigma(arr, fat)
        target = (1 - v) * s_m + v * s_f
        extra = np.sqrt(np.clip(target**2 - ((1 - v) * s_m) ** 2, 0, None))
        mixed = (1 - v) * arr[sel] + v * refs[name][sel]
        res = arr.copy()
        res[sel] = np.hypot(mixed + extra * rng.standard_normal(v.size), extra * rng.standard_normal(v.size))
        out[name] = res
    return out


def infiltrate(
    images: Mapping[str, sitk.Image],
    labels: sitk.Image,
    label_names: Mapping[int, str],
    severity: Severity,
    *,
    kind: str = "volume",
    pattern: str | Mapping[str, str] = "diffuse",
    seed: int = 0,
    levels: Mapping[str, tuple[int, int]] | None = None,
    assume_same_grid: bool = False,
) -> Infiltrated:
    """Replace a fraction of each labelled muscle by the case's own fat, inside the outlines (see module doc).

    ``severity``: target per muscle (and level) — the mean fat volume fraction (``kind="volume"``) or the mean
    Dixon signal FF F/(F+W) inside the outline (``kind="ff"``, Dixon only; a target below the muscle's own FF
    leaves it unchanged). Structures absent from a severity mapping are left unchanged.
    """
    if kind not in KINDS:
        raise BadInputError(f"infiltrate: kind {kind!r}; expected one of {', '.join(KINDS)}")
    lab = sitk.GetArrayFromImage(labels)
    arrays = _arrays(images, labels, assume_same_grid)
    if kind == "ff" and "water" not in arrays:
        raise BadInputError(
            "infiltrate: kind='ff' (target Dixon FF) needs a water/fat pair; use kind='volume'"
        )
    names = {int(v): str(n) for v, n in label_names.items()}
    missing = [n for v, n in names.items() if not (lab == v).any()]
    if missing:
        raise BadInputError(f"infiltrate: label map holds no voxels of {', '.join(missing)}")
    lv_map = dict(levels) if levels else {"all": (0, lab.shape[0] - 1)}
    targets = _targets(severity, names, lv_map)
    pats = {n: fat_patterns.check_pattern(pattern if isinstance(pattern, str) else pattern.get(n, "diffuse"), n)
            for n in names.values()}  # fmt: skip
    spacing = labels.GetSpacing()[::-1]
    muscle = np.isin(lab, list(names))
    fat = clear_fat_mask(arrays, muscle)
    refs = fat_reference(arrays, fat, spacing, muscle)
    vf = _volume_fraction(arrays, refs, lab, names, targets, lv_map, pats, kind, spacing, seed)
    new = _add_noise(arrays, refs, vf, muscle, fat, seed)
    out_images = {n: _like(a, labels, images[n].GetPixelID()) for n, a in new.items()}
    # the truth is read from the images as stored (integer inputs are rounded)
    stored = {n: sitk.GetArrayFromImage(img).astype(np.float64) for n, img in out_images.items()}
    if "water" in stored:  # in-phase magnitude W + F of the same voxels, for single-image methods
        out_images["inphase"] = _like(stored["water"] + stored["fat"], labels)
    truth = case_truth(stored, lab, names, vf, lv_map, spacing, arrays)
    truth.update(pattern=pats, severity={n: targets[n] for n in names.values()}, kind=kind, seed=int(seed),
                 fat_reference={n: round(float(np.median(r[muscle])), 3) for n, r in refs.items()},
                 fat_reference_voxels=int(fat.sum()))  # fmt: skip
    return Infiltrated(out_images, labels, _like(vf, labels), truth)


def _like(arr: np.ndarray, ref: sitk.Image, pixel: int = sitk.sitkFloat32) -> sitk.Image:
    """``arr`` on ``ref``'s grid in the pixel type of the input (integers rounded), so untouched voxels keep
    their exact values."""
    img = sitk.GetImageFromArray(arr)
    if pixel in (sitk.sitkFloat32, sitk.sitkFloat64):
        img = sitk.Cast(img, pixel)
    else:
        img = sitk.Cast(sitk.Round(img), pixel)
    img.CopyInformation(ref)
    return img


def eroded_inplane(mask: np.ndarray, px: int = 1) -> np.ndarray:
    """In-plane 4-neighbour erosion by ``px``; a slice it would empty keeps its voxels (as measure does)."""
    if px <= 0:
        return mask
    core = ndi.binary_erosion(mask, np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool), iterations=px)
    emptied = mask.any(axis=(1, 2)) & ~core.any(axis=(1, 2))
    core[emptied] = mask[emptied]
    return core


def case_truth(
    images: Mapping[str, np.ndarray],
    labels: np.ndarray,
    names: Mapping[int, str],
    vf: np.ndarray,
    levels: Mapping[str, tuple[int, int]],
    spacing: tuple[float, float, float],
    before: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Truth per structure × level (and ``all``): CSA (mean over slices present), volume, mean fat volume
    fraction, Dixon signal FF in the outline raw and 1-voxel eroded (Dixon only) and the FF before."""
    dixon = "water" in images
    inside = np.isin(labels, list(names))
    ff = ff0 = None
    if dixon:
        ff = np.zeros(labels.shape)
        ff[inside] = _signal_ff({n: images[n][inside] for n in ("water", "fat")})
    if dixon and before is not None:
        ff0 = np.zeros(labels.shape)
        ff0[inside] = _signal_ff({n: before[n][inside] for n in ("water", "fat")})
    px_cm2, vox_cm3 = spacing[1] * spacing[2] / 100.0, spacing[0] * spacing[1] * spacing[2] / 1000.0
    out: dict[str, Any] = {}
    for value, name in sorted(names.items()):
        mask = labels == value
        core = eroded_inplane(mask)
        rows = {}
        for lv, (k0, k1) in {**levels, "all": (0, labels.shape[0] - 1)}.items():
            m, c = np.zeros_like(mask), np.zeros_like(mask)
            m[k0 : k1 + 1], c[k0 : k1 + 1] = mask[k0 : k1 + 1], core[k0 : k1 + 1]
            per_slice = m.sum(axis=(1, 2))
            if not per_slice.any():
                continue
            row = {
                "csa_cm2": round(float(per_slice[per_slice > 0].mean() * px_cm2), 4),
                "volume_cm3": round(float(m.sum() * vox_cm3), 4),
                "n_voxels": int(m.sum()),
                "volume_fraction_pct": round(float(vf[m].mean() * 100), 3),
            }
            if ff is not None:
                row.update(
                    ff_pct=round(float(ff[m].mean() * 100), 3),
                    ff_eroded_pct=round(float(ff[c].mean() * 100), 3),
                )
            if ff0 is not None:
                row["ff_before_pct"] = round(float(ff0[m].mean() * 100), 3)
            rows[lv] = row
        out[name] = rows
    return {"structures": out, "levels": {lv: list(r) for lv, r in levels.items()}}
