"""Fat maps: Dixon signal fat fraction and adipose volume fraction, and the single-image (T1/T2, fat bright) model.

- ``dixon_ff``: F/(F+W) per voxel; below the noise floor the ratio is noise (magnitude images push it
  towards 50 %), so those voxels are NaN.
- ``dixon_volume_fraction``: the share of a voxel that is adipose tissue, from its signal FF and the
  case's own adipose/lean-muscle signal ratio (calibrated against the local fat signal; see there).
- ``local_linear_ff`` ("t1_local"): one fat-bright image. A smooth coil-bias field (bias.py) is divided out;
  the fat reference is the subcutaneous fat around the muscles, each muscle's lean reference the lower of
  the pooled and its own lowest tissue class (``tissue_mode``: a homogeneous muscle's mode, or the lean
  tissue between fat patches); the linear fraction v between them is the volume fraction and
  v·k/(1 + v(k − 1)) the Dixon-comparable signal fraction (adipose tissue gives k× lean muscle's signal).
  One image can only read fat against lean muscle it sees: diffusely fatty muscles with no lean muscle
  labelled read too lean. Validation against Dixon and the phantom: docs/segmentation.md.
- ``linear_references``/``linear_ff`` ("t1_linear"): one lean and one fat reference, no bias correction.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalSegLib.bias import fit_polynomial_bias, tissue_mode


def noise_floor(signal: np.ndarray) -> float:
    """Signal level below which a voxel is background: 3 × the median of the darkest 20 % of voxels,
    kept within 5–10 % of the 99th percentile (robust whether or not the volume shows air)."""
    flat = signal[np.isfinite(signal)].ravel()
    if flat.size == 0:
        return 0.0
    if flat.size > 600_000:
        flat = flat[:: flat.size // 300_000]
    p20, p99 = np.percentile(flat, [20, 99])
    dark = flat[flat <= p20]
    estimate = 3.0 * float(np.median(dark)) if dark.size else 0.0
    # at least 5 % of the bright end (no air in view: the darkest voxels are tissue, not noise) and at
    # most 10 % (a tightly cropped volume must not have its muscle declared noise)
    return float(min(max(estimate, 0.05 * p99), 0.10 * p99))


def dixon_ff(water: np.ndarray, fat: np.ndarray, floor: float | None = None) -> np.ndarray:
    """Voxel-wise F/(F+W) (0–1, float32); NaN below the noise floor (estimated when ``floor`` is None)."""
    w = np.clip(water.astype(np.float32), 0, None)
    f = np.clip(fat.astype(np.float32), 0, None)
    s = w + f
    if floor is None:
        floor = noise_floor(s)
    with np.errstate(invalid="ignore", divide="ignore"):
        ff = np.where(s > floor, f / np.where(s > 0, s, 1), np.nan).astype(np.float32)
    return ff


def linear_references(
    image: np.ndarray, muscle: np.ndarray, band_mm: float = 30.0, spacing_ji: tuple[float, float] = (1.0, 1.0)
) -> tuple[float, float]:
    """(S_lean, S_fat) estimated from the image: lean = mode inside ``muscle`` (eroded 1 voxel in-plane),
    fat = median of the bright class (above the midpoint lean↔99th percentile) in a band around the muscles."""
    if not muscle.any():
        raise BadInputError("linear fat model: no muscle voxels to estimate the lean-muscle reference from")
    inner = ndi.binary_erosion(muscle, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool))
    vals = image[inner if inner.sum() > 50 else muscle]
    lean = tissue_mode(vals)
    r = max(1, round(band_mm / min(spacing_ji)))
    # in-plane dilation by r voxels (separable box, cheap)
    band = ndi.maximum_filter(muscle, size=(1, 2 * r + 1, 2 * r + 1)) & ~muscle
    bvals = image[band]
    if bvals.size < 50:
        raise BadInputError(
            "linear fat model: not enough tissue around the muscles to estimate the fat reference"
        )
    p99 = float(np.percentile(bvals, 99))
    bright = bvals[bvals > 0.5 * (lean + p99)]
    if bright.size < 20 or p99 <= lean:
        raise BadInputError(
            "linear fat model: no bright (fat) tissue found around the muscles; is this a fat-bright T1/T2 image?"
        )
    fat_ref = float(np.median(bright))
    return lean, fat_ref


def structure_lean_reference(image: np.ndarray, mask: np.ndarray) -> float:
    """Lean-muscle signal of one muscle: the histogram mode of its voxels (1-voxel in-plane erosion
    when enough remain), i.e. the dominant, non-fatty tissue of that muscle under its local coil gain."""
    inner = erode_inplane(mask, 1)
    vals = image[inner if inner.sum() > 50 else mask]
    if vals.size < 10:
        raise BadInputError("linear fat model: too few voxels in a muscle to estimate its lean reference")
    return tissue_mode(vals)


def linear_ff(image: np.ndarray, lean: float, fat_ref: float) -> np.ndarray:
    """FF = (S − lean)/(fat − lean), clipped to 0–1 (float32)."""
    if fat_ref <= lean:
        raise BadInputError(
            f"linear fat model: fat reference {fat_ref:.1f} is not above the lean reference {lean:.1f}"
        )
    return np.clip((image.astype(np.float32) - lean) / (fat_ref - lean), 0.0, 1.0)


# Adipose/lean-muscle signal ratio of a Dixon sum F + W: measured 2.3 on TUM01 after bias correction,
# 2.9 in the phantom's signal model. A fat-bright image with stronger contrast (T1w, where muscle can lie near
# the noise) would overstate the signal fraction; the ratio used in the conversion is capped here.
MAX_DIXON_CONTRAST = 3.0


def signal_fat_fraction(
    values: np.ndarray, lean: float, fat_ref: float, max_contrast: float = MAX_DIXON_CONTRAST
) -> np.ndarray:
    """Signal fat fraction of a lean-muscle/adipose mixture: v·k / (1 + v·(k − 1)) with v = (S − lean)/(fat − lean)
    the adipose volume fraction (clipped 0–1) and k = fat/lean the signal ratio (capped at ``max_contrast``).

    For an in-phase image (k ≤ cap) this equals v·S_fat/S, the F/(F+W) a Dixon of the same voxel reports."""
    if fat_ref <= lean:
        raise BadInputError(
            f"linear fat model: fat reference {fat_ref:.1f} is not above the lean reference {lean:.1f}"
        )
    vals = np.asarray(values, dtype=np.float64)
    v = np.clip((vals - lean) / (fat_ref - lean), 0.0, 1.0)
    k = min(fat_ref / lean, max_contrast) if lean > 0 else max_contrast
    return np.clip(v * k / (1.0 + v * (k - 1.0)), 0.0, 1.0).astype(np.float32)


def local_linear_ff(
    image: np.ndarray,
    labels: np.ndarray,
    values: list[int],
    spacing_ji: tuple[float, float] = (1.0, 1.0),
    band_mm: float = 30.0,
    bias_correction: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Non-Dixon fat maps (NaN outside the labelled muscles): coil-bias-corrected image, per-muscle lean
    reference min(global lean, own mode), subcutaneous-fat reference, signal-fraction model.

    Returns (signal fat fraction map, adipose volume fraction map v, references: lean_ref, fat_ref,
    per-muscle lean, bias gain range); both maps float32, 0–1."""
    muscle = np.isin(labels, values)
    if not muscle.any():
        raise BadInputError("linear fat model: no muscle voxels to estimate the lean-muscle reference from")
    corrected = np.asarray(image, dtype=np.float64)
    refs: dict = {}
    if bias_correction:
        field = fit_polynomial_bias(corrected, muscle, noise_floor(corrected))
        r = max(1, round(band_mm / min(spacing_ji)))
        near = ndi.maximum_filter(muscle, size=(1, 2 * r + 1, 2 * r + 1))
        idx = np.nonzero(near)
        corrected = np.zeros_like(corrected)
        corrected[idx] = np.asarray(image, dtype=np.float64)[idx] / field.at(idx)
        refs["bias_gain_range"] = field.range_over(near)
    lean_g, fat_ref = linear_references(corrected, muscle, band_mm=band_mm, spacing_ji=spacing_ji)
    refs.update(lean_ref=lean_g, fat_ref=fat_ref, lean_by_label={})
    out = np.full(np.shape(image), np.nan, np.float32)
    vol = np.full(np.shape(image), np.nan, np.float32)
    for v in values:
        m = labels == v
        if not m.any():
            continue
        lean = min(lean_g, structure_lean_reference(corrected, m)) if m.sum() >= 10 else lean_g
        refs["lean_by_label"][int(v)] = lean
        out[m] = signal_fat_fraction(corrected[m], lean, fat_ref)
        vol[m] = linear_ff(corrected[m], lean, fat_ref)
    return out, vol, refs


# Dixon volume fraction: voxels with F/(F+W) above this near the muscles are adipose tissue (its reference).
ADIPOSE_MIN_FF = 0.8
# In-plane smoothing of the local adipose-signal reference: the coil gain varies over ~10 cm (as infiltrate.py).
REFERENCE_SIGMA_MM = 25.0
# Muscle voxels up to this signal FF calibrate the adipose/lean signal ratio (k is ill-determined near pure fat).
CALIBRATION_MAX_FF = 0.6


def dixon_volume_fraction(
    water: np.ndarray,
    fat: np.ndarray,
    muscle: np.ndarray,
    spacing_ji: tuple[float, float] = (1.0, 1.0),
    floor: float | None = None,
    band_mm: float = 30.0,
) -> tuple[np.ndarray, dict]:
    """Adipose volume fraction per voxel from a Dixon pair (0–1, float32; NaN below the noise floor).

    Two compartments, lean muscle (signal FF taken as 0) and adipose tissue (signal FF s_a, total signal
    k × lean's): a voxel of signal FF s holds v = s / (s + k (s_a − s)); s is free of the coil gain. s_a is
    the median F/(F+W) of the fat around the muscles. k is calibrated on the case: a muscle voxel's total
    signal S against the local adipose signal R (a plane fitted to the adipose voxels' signal with Gaussian
    weights of REFERENCE_SIGMA_MM: the same coil gain, its gradient included; voxels with no fat within
    ~2.5 sigma are not used) gives k = (s_a R / S − s) / (s_a − s) whatever its mixture; the median over the muscle
    voxels up to CALIBRATION_MAX_FF is taken, so fatty muscle calibrates it as well as lean. Returns (v,
    references)."""
    w = np.clip(np.asarray(water, dtype=np.float64), 0, None)
    f = np.clip(np.asarray(fat, dtype=np.float64), 0, None)
    total_full = w + f
    floor = noise_floor(total_full) if floor is None else floor
    with np.errstate(invalid="ignore", divide="ignore"):
        s_full = np.where(total_full > floor, f / np.where(total_full > 0, total_full, 1.0), np.nan)
    r = max(1, round(band_mm / min(spacing_ji)))
    box = _box(muscle, r)
    muscle, total, s = muscle[box], total_full[box], s_full[box]
    near = ndi.maximum_filter(muscle, size=(1, 2 * r + 1, 2 * r + 1)) & ~muscle
    adipose = ndi.binary_erosion(near & (s > ADIPOSE_MIN_FF), np.ones((1, 3, 3), bool))
    if adipose.sum() < 50:
        raise BadInputError(
            "fat volume fraction: too little fat around the muscles to calibrate the fat signal"
        )
    s_a = float(np.median(s[adipose]))
    sigma = (0.0, REFERENCE_SIGMA_MM / spacing_ji[0], REFERENCE_SIGMA_MM / spacing_ji[1])
    near_fat = ndi.maximum_filter(adipose, size=(1, 2 * r + 1, 2 * r + 1))  # fat within band_mm
    calib = erode_inplane(muscle, 1) & (total > floor) & (s <= CALIBRATION_MAX_FF) & near_fat
    local, ok = _local_plane(total, adipose, sigma, calib)
    if ok.sum() < 50:
        raise BadInputError(
            "fat volume fraction: too little muscle below 60 % fat signal near fat to calibrate it"
        )
    sv, tv = s[calib][ok], total[calib][ok]
    k = float(np.median((s_a * local[ok] / tv - sv) / (s_a - sv)))
    sc = np.clip(s_full, 0.0, s_a)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (sc / (sc + k * (s_a - sc))).astype(np.float32)
    return v, {"adipose_ff": s_a, "adipose_to_lean_signal": k, "calibration_voxels": int(calib.sum())}


def _local_plane(
    values: np.ndarray, mask: np.ndarray, sigma: tuple[float, float, float], where: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First-order normalised convolution: at the voxels ``where``, the value of the plane fitted in-plane (per
    slice, Gaussian weights ``sigma`` in voxels) to ``values`` on ``mask``; (values, well-conditioned flags).
    The weighted moments are smooth at this scale, so they are computed on a grid coarsened ~sigma/6 times
    and interpolated linearly."""
    step = max(1, int(min(sigma[1:]) // 6))
    nk, nj, ni = mask.shape
    pj, pi = -nj % step, -ni % step

    def coarse(arr: np.ndarray) -> np.ndarray:
        arr = np.pad(arr, ((0, 0), (0, pj), (0, pi)))
        return arr.reshape(nk, arr.shape[1] // step, step, arr.shape[2] // step, step).sum(axis=(2, 4))

    jj, ii = np.mgrid[0:nj, 0:ni].astype(np.float64)
    y, x = (jj / sigma[1])[None], (ii / sigma[2])[None]
    a = mask.astype(np.float64)
    av = np.where(mask, values, 0.0)
    idx = np.nonzero(where)
    at = np.stack(
        [idx[0].astype(np.float64), (idx[1] - (step - 1) / 2) / step, (idx[2] - (step - 1) / 2) / step]
    )
    small = (0.0, sigma[1] / step, sigma[2] / step)

    def moment(arr: np.ndarray) -> np.ndarray:
        return ndi.map_coordinates(ndi.gaussian_filter(coarse(arr), small), at, order=1, mode="nearest")

    m1, mx, my = moment(a), moment(a * x), moment(a * y)
    mxx, mxy, myy = moment(a * x * x), moment(a * x * y), moment(a * y * y)
    rhs = np.stack([moment(av), moment(av * x), moment(av * y)], -1)
    mat = np.stack(
        [np.stack([m1, mx, my], -1), np.stack([mx, mxx, mxy], -1), np.stack([my, mxy, myy], -1)], -2
    )
    ok = np.abs(np.linalg.det(mat)) > 1e-9 * np.abs(m1) ** 3
    coef = np.full(rhs.shape, np.nan)
    coef[ok] = np.linalg.solve(mat[ok], rhs[ok][..., None])[..., 0]
    xv, yv = np.broadcast_to(x, mask.shape)[idx], np.broadcast_to(y, mask.shape)[idx]
    return coef[:, 0] + coef[:, 1] * xv + coef[:, 2] * yv, ok


def _box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """All slices × the in-plane bounding box of ``mask`` grown by ``pad`` voxels (the whole array if empty)."""
    j = np.flatnonzero(mask.any(axis=(0, 2)))
    i = np.flatnonzero(mask.any(axis=(0, 1)))
    if j.size == 0:
        return (slice(None),) * mask.ndim
    return (
        slice(None),
        slice(max(j[0] - pad, 0), j[-1] + pad + 1),
        slice(max(i[0] - pad, 0), i[-1] + pad + 1),
    )


def erode_inplane(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Erode a (K, J, I) mask slice by slice (4-neighbourhood), to drop partial-volume edge voxels."""
    if iterations <= 0:
        return mask
    st = np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool)
    return ndi.binary_erosion(mask, structure=st, iterations=iterations)
