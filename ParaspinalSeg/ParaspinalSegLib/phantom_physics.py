"""MR signal model of the phantom: tissue signals, fat patterns, coil bias and Rician noise.

Dixon amplitudes are in the units of the real TUM01 case (3T, 6-echo Dixon): lean muscle water
≈ 470, subcutaneous fat F ≈ 1345 / W ≈ 65. Muscle tissue is a mix of lean muscle and adipocytes;
its fat fraction parameter is the signal fat fraction F/(F+W) a Dixon measurement reports.
T1w-like and T2w-like images weight each tissue's water and fat components (fat bright on both,
CSF dark on T1w, bright on T2w).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ParaspinalSegLib import fat_patterns
from ParaspinalSegLib.phantom_anatomy import CHANNEL, CHANNEL_VALUES

# Lean muscle and adipose tissue Dixon signals (water, fat).
LEAN_W, LEAN_F = 470.0, 10.0
ADIPOSE_W, ADIPOSE_F = 65.0, 1345.0
LEAN_FF = LEAN_F / (LEAN_W + LEAN_F)
MAX_TISSUE_FF = 0.95
MUSCLE_SIGNAL = LEAN_W + LEAN_F  # SNR reference: lean muscle Dixon signal / noise sigma
# Water-component weights on T1w / T2w, fat-component weights.
FAT_T1, FAT_T2 = 1.0, 0.7
MUSCLE_T1, MUSCLE_T2 = 0.75, 0.45

# Per label value: Dixon water, Dixon fat, T1w water weight, T2w water weight.
TISSUE = {
    0: (0.0, 0.0, 0.0, 0.0),  # air
    10: (420.0, 380.0, 0.8, 0.8),  # vertebral body marrow
    11: (200.0, 200.0, 0.8, 0.5),  # posterior elements (cortical bone + marrow)
    12: (500.0, 15.0, 0.2, 2.4),  # CSF
    13: (380.0, 10.0, 0.55, 1.6),  # disc
    14: (ADIPOSE_W, ADIPOSE_F, 1.0, 1.0),  # subcutaneous fat
    15: (450.0, 40.0, 0.7, 0.6),  # skin
    16: (350.0, 20.0, 0.7, 1.1),  # abdominal contents (bowel; visceral fat added by a field)
    17: (ADIPOSE_W, ADIPOSE_F, 1.0, 1.0),  # intermuscular / retroperitoneal fat
}


def _table(col: int) -> np.ndarray:
    return np.array([TISSUE.get(int(v), (0, 0, 0, 0))[col] for v in CHANNEL_VALUES], dtype=np.float32)


CONST_W, CONST_F, CONST_T1W, CONST_T2W = (_table(i) for i in range(4))
for _v in range(1, 9):  # muscles are filled in from their fat-fraction maps
    CONST_W[CHANNEL[_v]] = CONST_F[CHANNEL[_v]] = 0.0


def adipose_fraction(ff: np.ndarray) -> np.ndarray:
    """Adipose volume fraction v of muscle tissue whose signal fat fraction is ``ff``."""
    d_f, d_a = ADIPOSE_F - LEAN_F, (ADIPOSE_W + ADIPOSE_F) - (LEAN_W + LEAN_F)
    return np.clip((ff * (LEAN_W + LEAN_F) - LEAN_F) / (d_f - ff * d_a), 0.0, 1.0)


def muscle_signals(ff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dixon (water, fat) of muscle tissue with signal fat fraction ``ff`` (lean + adipose mix).

    Total signal rises with the adipose volume fraction; below the lean muscle's own lipid signal
    (ff < LEAN_FF) the tissue is lean muscle with less intramyocellular lipid.
    """
    v = adipose_fraction(ff)
    total = (LEAN_W + LEAN_F) * (1 - v) + (ADIPOSE_W + ADIPOSE_F) * v
    return (total * (1 - ff)).astype(np.float32), (total * ff).astype(np.float32)


def pattern_fields(rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple[float, float, float],
                   patterns: set[str]) -> dict[str, np.ndarray]:  # fmt: skip
    """Non-negative texture fields (z, y, x) for the requested fat patterns.

    diffuse: fine, low-contrast mottling; streaky: thin meandering lines (zero crossings of a
    field elongated antero-posteriorly and along z, like fat along fascicle septa); patchy: blobs.
    """
    sz, sy, sx = spacing
    out: dict[str, np.ndarray] = {}
    for name in ("diffuse", "streaky", "patchy"):  # fixed order: determinism
        noise = rng.standard_normal(shape, dtype=np.float32)
        if name not in patterns:
            continue
        if name == "diffuse":
            g = ndi.gaussian_filter(noise, (0.5, 1.0 / sy, 1.0 / sx), truncate=2.5)
            out[name] = np.exp(0.5 * g / (g.std() + 1e-9))  # fine lognormal mottling, skewed like real FF
        elif name == "streaky":
            g = ndi.gaussian_filter(noise, (8.0 / sz, 5.0 / sy, 1.6 / sx), truncate=2.5)
            g /= g.std() + 1e-9
            out[name] = 0.08 + np.exp(-((g / 0.3) ** 2))
        else:
            g = ndi.gaussian_filter(noise, (5.0 / sz, 4.5 / sy, 4.5 / sx), truncate=2.5)
            g /= g.std() + 1e-9
            out[name] = 0.1 + 1.0 / (1.0 + np.exp(-(g - 0.9) / 0.2))
    return out


def shape_fields(rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 patterns: set[str]) -> dict[str, np.ndarray]:  # fmt: skip
    """Random fields of the border-shaped patterns (peripheral: fine mottling; confluent: ≈ 10 mm regions);
    the border distance is added per slice at rendering (``shaped_ff``). Drawn from their own generator so
    the other patterns' random numbers do not change."""
    out = {}
    if "peripheral" in patterns:
        out["peripheral"] = fat_patterns.gaussian_field(rng, shape, spacing, (2.0, 1.5, 1.5)).astype(
            np.float32
        )
    if "confluent" in patterns:
        out["confluent"] = fat_patterns.gaussian_field(rng, shape, spacing, (12.0, 10.0, 10.0)).astype(
            np.float32
        )
    return out


def shaped_ff(
    pattern: str, field: np.ndarray, distance: np.ndarray, weight: np.ndarray, target: float
) -> np.ndarray:
    """Per-pixel signal FF of a border-shaped pattern (``distance`` to the muscle border in mm) whose
    ``weight``-ed mean is ``target``: lean muscle plus a 0–1 fat share from fat_patterns, up to MAX_TISSUE_FF."""
    if pattern == "peripheral":
        p = np.exp(-distance / fat_patterns.PERIPHERAL_DECAY_MM) * np.exp(0.3 * field)
    else:
        p = field + fat_patterns.CONFLUENT_BORDER_WEIGHT * np.exp(
            -distance / fat_patterns.CONFLUENT_BORDER_MM
        )
    lean = min(LEAN_FF + 0.01, target)
    wsum = float(weight.sum())

    def mean_ff(a: np.ndarray) -> float:
        return float(((lean + (MAX_TISSUE_FF - lean) * a) * weight).sum() / wsum)

    share, _ = fat_patterns.solve(pattern, p, target, mean_ff)
    return (lean + (MAX_TISSUE_FF - lean) * share).astype(np.float32)


def texture_ff(pattern: np.ndarray, weight: np.ndarray, target: float, iterations: int = 8) -> np.ndarray:
    """Per-pixel signal FF following ``pattern`` whose ``weight``-ed mean equals ``target``."""
    wsum = float(weight.sum())
    if wsum <= 0:
        return np.full(pattern.shape, target, dtype=np.float32)
    q = pattern / (float((pattern * weight).sum()) / wsum)
    lean = min(LEAN_FF + 0.01, target)
    ff = np.clip(lean + (target - lean) * q, 0.0, MAX_TISSUE_FF)
    for _ in range(iterations):
        err = target - float((ff * weight).sum()) / wsum
        if abs(err) < 1e-5:
            break
        ff = np.clip(ff + err, 0.0, MAX_TISSUE_FF)
    return ff.astype(np.float32)


def bias_field(rng: np.random.Generator, shape: tuple[int, int, int], strength: float) -> np.ndarray:
    """Smooth multiplicative coil sensitivity in [1 - strength, 1 + strength] (posterior coil brighter)."""
    nz, ny, nx = shape
    z = np.linspace(-1, 1, nz, dtype=np.float32)[:, None, None]
    y = np.linspace(-1, 1, ny, dtype=np.float32)[None, :, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, None, :]
    c = rng.uniform(-1, 1, 6).astype(np.float32)
    f = (0.6 * c[0] * x + (0.8 + 0.2 * c[1]) * y + 0.4 * c[2] * x * x + 0.3 * c[3] * y * y
         + 0.3 * c[4] * x * y + 0.2 * c[5] * z)  # fmt: skip
    f = f - 0.5 * (f.max() + f.min())
    f = f / max(float(np.abs(f).max()), 1e-6)
    return (1.0 + strength * f).astype(np.float32)


def rician(signal: np.ndarray, sigma: float, noise_re: np.ndarray, noise_im: np.ndarray) -> np.ndarray:
    """Magnitude of signal + complex Gaussian noise (sigma per channel, unit-variance fields): Rician."""
    out = noise_re * np.float32(sigma)
    out += signal
    out *= out
    im = noise_im * np.float32(sigma)
    im *= im
    out += im
    return np.sqrt(out, out=out)
