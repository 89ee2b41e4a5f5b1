"""Where fat goes inside a muscle: the morphology of fatty infiltration, for real cases and the phantom.

Each pattern is a non-negative *propensity* on the muscle's voxels plus a one-parameter family of
per-voxel fat amounts (volume fraction for ``infiltrate``, 0–1 share of the fat range for the phantom),
monotone in its parameter, so :func:`solve` can meet any requested mean:

- ``diffuse``: fine (≈ 1 mm) lognormal mottling; amount = min(s·p, 1).
- ``streaky``: thin lines along the fascicles: zero crossings of a random field elongated along the
  muscle's in-plane long axis and cranio-caudally; amount = min(s·p, 1), so the lines saturate and
  widen as severity rises.
- ``patchy``: smooth blobs (≈ 4 mm) of fat; a threshold on the field, so the blobs are fat at every
  severity and grow with it.
- ``peripheral``: fat concentrated at the compartment's border (along the fascia), decaying inward
  over ≈ 3 mm, mottled; amount = min(s·p, 1) (a saturated rim widening inward).
- ``confluent``: fatty replacement of large contiguous regions (≈ 8 mm field) that spread from the
  border; a threshold, so at high grade the muscle is fat with islands of remaining muscle.

Fields are Gaussian random fields filtered in the Fourier domain (anisotropic, rotated in-plane), drawn
from the caller's generator: the same generator state gives the same pattern.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from ParaspinalLBPCore.errors import BadInputError

PATTERNS = ("diffuse", "streaky", "patchy", "peripheral", "confluent")
SCALE, THRESHOLD = "scale", "threshold"
KIND = {"diffuse": SCALE, "streaky": SCALE, "patchy": THRESHOLD, "peripheral": SCALE, "confluent": THRESHOLD}
THRESHOLD_WIDTH = {"patchy": 0.12, "confluent": 0.05}  # sigmoid width in field SDs: blob edges of ~1 voxel
PERIPHERAL_DECAY_MM = 3.0
CONFLUENT_BORDER_MM = 5.0
CONFLUENT_BORDER_WEIGHT = 0.6  # field SDs: replacement tends to start at the border


def check_pattern(pattern: str, what: str = "pattern") -> str:
    """Return ``pattern`` or raise ValueError naming the valid ones."""
    if pattern not in PATTERNS:
        raise BadInputError(f"{what}: unknown fat pattern {pattern!r}; expected one of {', '.join(PATTERNS)}")
    return pattern


def gaussian_field(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    sigma_mm: tuple[float, float, float],
    angle: float = 0.0,
) -> np.ndarray:
    """Unit-SD Gaussian random field on (z, y, x) smoothed by an anisotropic Gaussian.

    ``sigma_mm`` = (through-slice, in-plane along ``angle``, in-plane across), ``angle`` in radians from
    the x axis. Filtered by FFT on a padded grid, so the field does not wrap around.
    """
    pad = [int(np.ceil(3 * max(sigma_mm[1:]) / min(spacing[1:])))] * 2
    pad = [int(np.ceil(3 * sigma_mm[0] / spacing[0])), *pad]
    full = tuple(n + 2 * p for n, p in zip(shape, pad, strict=True))
    noise = rng.standard_normal(full)
    kz = np.fft.fftfreq(full[0], spacing[0])[:, None, None]
    ky = np.fft.fftfreq(full[1], spacing[1])[None, :, None]
    kx = np.fft.rfftfreq(full[2], spacing[2])[None, None, :]
    c, s = np.cos(angle), np.sin(angle)
    along, across = kx * c + ky * s, -kx * s + ky * c
    sz, sa, sc = sigma_mm
    gain = np.exp(-2 * np.pi**2 * ((sz * kz) ** 2 + (sa * along) ** 2 + (sc * across) ** 2))
    field = np.fft.irfftn(np.fft.rfftn(noise) * gain, s=full, axes=(0, 1, 2))
    field = field[pad[0] : pad[0] + shape[0], pad[1] : pad[1] + shape[1], pad[2] : pad[2] + shape[2]]
    return (field - field.mean()) / (field.std() + 1e-12)


def border_distance(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """In-plane distance (mm) of each voxel of ``mask`` (z, y, x) to the outside, slice by slice."""
    out = np.zeros(mask.shape, dtype=np.float64)
    for k in range(mask.shape[0]):
        if mask[k].any():
            out[k] = ndi.distance_transform_edt(np.pad(mask[k], 1), sampling=spacing[1:])[1:-1, 1:-1]
    return out


def long_axis_angle(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """In-plane angle (radians from x) of the long axis of a muscle's cross-sections (pooled over slices)."""
    _, jj, ii = np.nonzero(mask)
    if jj.size < 3:
        return 0.0
    pts = np.stack([ii * spacing[2], jj * spacing[1]])
    cov = np.cov(pts)
    vals, vecs = np.linalg.eigh(cov)
    major = vecs[:, int(np.argmax(vals))]
    return float(np.arctan2(major[1], major[0]))


def propensity(
    pattern: str,
    rng: np.random.Generator,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    distance: np.ndarray | None = None,
) -> np.ndarray:
    """Propensity field of ``pattern`` on the box holding ``mask`` (z, y, x; values outside it unused).

    ``distance`` = in-plane distance to the border in mm (computed from ``mask`` when None; used by the
    peripheral and confluent patterns).
    """
    check_pattern(pattern)
    shape = mask.shape
    if pattern == "diffuse":
        g = gaussian_field(rng, shape, spacing, (1.0, 1.0, 1.0))
        return np.exp(0.5 * g)
    if pattern == "streaky":
        g = gaussian_field(rng, shape, spacing, (10.0, 6.0, 1.5), long_axis_angle(mask, spacing))
        return 0.05 + np.exp(-((g / 0.3) ** 2))
    if pattern == "patchy":
        return gaussian_field(rng, shape, spacing, (5.0, 3.0, 3.0))
    d = border_distance(mask, spacing) if distance is None else distance
    if pattern == "peripheral":
        g = gaussian_field(rng, shape, spacing, (2.0, 1.5, 1.5))
        return np.exp(-d / PERIPHERAL_DECAY_MM) * np.exp(0.3 * g)
    g = gaussian_field(rng, shape, spacing, (12.0, 10.0, 10.0))
    return g + CONFLUENT_BORDER_WEIGHT * np.exp(-d / CONFLUENT_BORDER_MM)


def amount(pattern: str, p: np.ndarray, level: float) -> np.ndarray:
    """Fat amount 0–1 per voxel for propensity ``p`` at parameter ``level`` (scale s or threshold t)."""
    if KIND[pattern] == SCALE:
        return np.clip(level * p, 0.0, 1.0)
    return 1.0 / (1.0 + np.exp(-np.clip((p - level) / THRESHOLD_WIDTH[pattern], -60, 60)))


def solve(
    pattern: str,
    p: np.ndarray,
    target: float,
    mean_of: Callable[[np.ndarray], float] | None = None,
    iterations: int = 60,
) -> tuple[np.ndarray, float]:
    """Fat amounts whose ``mean_of`` (default: plain mean) equals ``target``, by bisection on the pattern's
    parameter; returns (amounts, achieved mean). An unreachable target gives the nearest end (0 or 1)."""
    mean_of = mean_of or (lambda a: float(a.mean()))
    if p.size == 0:
        return np.zeros(0), float("nan")
    scale = KIND[pattern] == SCALE
    if scale:  # log-bisection on s in [1e-6, 1e6]
        lo, hi = -6.0, 6.0
    else:  # threshold t: high t = little fat
        lo, hi = (
            float(p.max()) + 20 * THRESHOLD_WIDTH[pattern],
            float(p.min()) - 20 * THRESHOLD_WIDTH[pattern],
        )
    param = (lambda x: 10.0**x) if scale else (lambda x: x)
    a_lo, a_hi = amount(pattern, p, param(lo)), amount(pattern, p, param(hi))
    if target <= mean_of(a_lo):
        return np.zeros_like(p), mean_of(np.zeros_like(p))
    if target >= mean_of(a_hi):
        return a_hi, mean_of(a_hi)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        a = amount(pattern, p, param(mid))
        if mean_of(a) < target:
            lo = mid
        else:
            hi = mid
    a = amount(pattern, p, param(0.5 * (lo + hi)))
    return a, mean_of(a)
