"""Bland–Altman agreement of paired measurements: bias, limits of agreement and their confidence intervals.

For differences d = a − b of n pairs (mean d̄, SD s), the limits of agreement are d̄ ± z·s (z = 1.96;
Bland & Altman 1986, Lancet i:307–310, used 2). Confidence intervals (level 1 − alpha):

- bias: d̄ ± t(n−1) · s/√n;
- limits, ``method="exact"`` (default): the exact parametric interval of Carkeet (2015, Optom Vis Sci
  92:e71–e80). √n (d̄ + z·σ − d̄)/s follows a noncentral t with n − 1 degrees of freedom and
  noncentrality z·√n, so the upper limit's interval is d̄ + s·q/√n with q its alpha/2 and 1 − alpha/2
  quantiles (the lower limit's mirrors it);
- limits, ``method="approximate"``: Bland & Altman (1986; 1999, Stat Methods Med Res 8:135–160):
  limit ± t(n−1) · √(3 s²/n).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ParaspinalLBPCore.errors import BadInputError

METHODS = ("exact", "approximate")


def bland_altman(
    a: np.ndarray, b: np.ndarray, z: float = 1.96, alpha: float = 0.05, method: str = "exact"
) -> dict[str, float]:
    """Bias (mean of a − b), SD of the differences, limits of agreement and their CIs (``*_lo``/``*_hi``).

    Pairs with a missing value in either are dropped (``n`` counts the pairs used); fewer than 2 pairs
    give NaN statistics.
    """
    if method not in METHODS:
        raise BadInputError(f"Bland–Altman CI method {method!r}: choose {' or '.join(METHODS)}")
    if not 0 < alpha < 1 or not z > 0:
        raise BadInputError(f"Bland–Altman needs 0 < alpha < 1 and z > 0, got alpha={alpha}, z={z}")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise BadInputError(f"Bland–Altman needs paired values: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = int(d.size)
    keys = ("bias", "bias_lo", "bias_hi", "sd", "loa_lower", "loa_lower_lo", "loa_lower_hi",
            "loa_upper", "loa_upper_lo", "loa_upper_hi")  # fmt: skip
    out: dict[str, float] = {"n": n, **dict.fromkeys(keys, float("nan"))}
    if n < 2:
        return out
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    t = float(stats.t.ppf(1 - alpha / 2, n - 1))
    se = sd / np.sqrt(n)
    lower, upper = bias - z * sd, bias + z * sd
    out |= {"bias": bias, "bias_lo": bias - t * se, "bias_hi": bias + t * se, "sd": sd}
    out |= {"loa_lower": lower, "loa_upper": upper}
    if method == "approximate":
        half = t * np.sqrt(3.0) * se
        out |= {"loa_lower_lo": lower - half, "loa_lower_hi": lower + half}
        out |= {"loa_upper_lo": upper - half, "loa_upper_hi": upper + half}
    else:
        q_lo, q_hi = stats.nct.ppf([alpha / 2, 1 - alpha / 2], n - 1, z * np.sqrt(n))
        out |= {"loa_upper_lo": bias + se * q_lo, "loa_upper_hi": bias + se * q_hi}
        out |= {"loa_lower_lo": bias - se * q_hi, "loa_lower_hi": bias - se * q_lo}
    return {k: float(v) if k != "n" else v for k, v in out.items()}
