"""Agreement statistics: surface distances on shapes of known geometry, and Bland–Altman against the
published PEFR example (Bland & Altman 1986), normal tolerance factors and simulated coverage."""

from __future__ import annotations

import numpy as np
import pytest

from ParaspinalSegLib.bland_altman import bland_altman
from ParaspinalSegLib.surface import compare_masks, dice


def _disc_stack(
    radius: float, h: float, centre=(0.0, 0.0), size_mm: float = 40.0, slices: int = 3
) -> np.ndarray:
    n = round(size_mm / h)
    y, x = (np.mgrid[:n, :n] + 0.5) * h - size_mm / 2
    return np.repeat((np.hypot(x - centre[0], y - centre[1]) <= radius)[None], slices, axis=0)


# --- surface distances ---------------------------------------------------------------------------


def test_concentric_discs_and_spheres() -> None:
    h = 0.25
    r = compare_masks(_disc_stack(10, h), _disc_stack(12, h), (4.0, h, h))["all"]
    assert r["assd_mm"] == pytest.approx(2.0, abs=h)  # radius difference within a voxel
    assert r["hd95_mm"] == pytest.approx(2.0, abs=2 * h)
    assert r["dice"] == pytest.approx(2 * 100 / (100 + 144), abs=0.003)  # 2 r1² / (r1² + r2²)
    n = int(36 / h)
    z, y, x = (np.mgrid[:n, :n, :n] + 0.5) * h - 18
    radius = np.sqrt(x * x + y * y + z * z)
    s = compare_masks(radius <= 10, radius <= 13, (h, h, h))["all"]
    assert s["assd_mm"] == pytest.approx(3.0, abs=h)
    assert s["dice"] == pytest.approx(2 * 1000 / (1000 + 2197), abs=0.003)


def test_shifted_disc_against_the_analytic_mean_distance() -> None:
    """Two discs of radius R, centres d apart: a point of one circle lies | |p − c'| − R | from the other."""
    h, big_r, d = 0.2, 10.0, 3.0
    theta = np.linspace(0, 2 * np.pi, 20001)[:-1]
    analytic = np.abs(np.sqrt(big_r**2 + d**2 - 2 * big_r * d * np.cos(theta)) - big_r).mean()
    r = compare_masks(_disc_stack(big_r, h), _disc_stack(big_r, h, centre=(d, 0)), (4.0, h, h))["all"]
    assert r["assd_mm"] == pytest.approx(analytic, abs=h)


def test_identical_empty_and_per_level() -> None:
    a = _disc_stack(8, 0.5, slices=6)
    same = compare_masks(a, a, (4.0, 0.5, 0.5), {"L4": (0, 2), "L5": (3, 5)})
    assert set(same) == {"all", "L4", "L5"}
    assert all(v["dice"] == 1.0 and v["assd_mm"] == 0.0 and v["hd95_mm"] == 0.0 for v in same.values())
    b = a.copy()
    b[3:] = False  # rater B drew only the upper level
    r = compare_masks(a, b, (4.0, 0.5, 0.5), {"L4": (0, 2), "L5": (3, 5)})
    assert r["L4"]["dice"] == 1.0 and r["L5"]["dice"] == 0.0 and r["L5"]["voxels_b"] == 0
    # A's L5 outline is 4 mm (slice 3) to 12 mm (slice 5) from B's nearest outline (slice 2): mean 8 mm
    assert r["L5"]["assd_mm"] == pytest.approx(8.0, abs=0.5)
    assert np.isnan(compare_masks(a, np.zeros_like(a), (4.0, 0.5, 0.5))["all"]["assd_mm"])
    assert np.isnan(dice(np.zeros(3, bool), np.zeros(3, bool)))


# --- Bland–Altman ------------------------------------------------------------------------------

# Bland JM, Altman DG. Lancet 1986;i:307-10, Table 1: peak expiratory flow rate (l/min) of 17 subjects,
# first reading with the Wright and with the mini Wright peak flow meter. The paper reports mean
# difference -2.1, SD 38.8, limits (2 SD) -79.7 to 75.5, and CIs of the limits -114.3 to -45.1 and
# 40.9 to 110.1 (from SE = 16.3 = sqrt(3 * 38.8² / 17) and t(16) = 2.12).
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


def test_bland_altman_reproduces_the_lancet_pefr_example() -> None:
    r = bland_altman(WRIGHT, MINI, z=2.0, method="approximate")
    assert r["n"] == 17
    assert r["bias"] == pytest.approx(-2.1, abs=0.05)
    assert r["sd"] == pytest.approx(38.8, abs=0.05)
    assert (r["loa_lower"], r["loa_upper"]) == (pytest.approx(-79.7, abs=0.1), pytest.approx(75.5, abs=0.1))
    # the paper's CIs come from rounded SE and t (16.3, 2.12): agreement within 0.2 l/min
    assert (r["loa_lower_lo"], r["loa_lower_hi"]) == (
        pytest.approx(-114.3, abs=0.2),
        pytest.approx(-45.1, abs=0.2),
    )
    assert (r["loa_upper_lo"], r["loa_upper_hi"]) == (
        pytest.approx(40.9, abs=0.2),
        pytest.approx(110.1, abs=0.2),
    )
    assert (r["bias_lo"], r["bias_hi"]) == (pytest.approx(-22.0, abs=0.1), pytest.approx(17.8, abs=0.1))
    default = bland_altman(WRIGHT, MINI)  # 1.96 SD, exact CIs: wider and shifted outwards
    assert default["loa_lower"] == pytest.approx(-2.1176 - 1.96 * 38.7651, abs=1e-3)
    assert default["loa_upper_hi"] > r["loa_upper_hi"] and default["loa_lower_lo"] < r["loa_lower_lo"]


@pytest.mark.parametrize(("n", "k"), [(10, 2.911), (20, 2.396), (30, 2.220)])
def test_exact_limit_ci_is_the_normal_tolerance_factor(n: int, k: float) -> None:
    """The upper end of the exact CI of mean + z·SD is mean + k·SD with k the one-sided normal tolerance
    factor (coverage Φ(z), confidence 1 − alpha/2): published 95 %/95 % factors (ISO 16269-6 tables)."""
    d = np.random.default_rng(n).normal(0, 1, n)
    r = bland_altman(d, np.zeros(n), z=1.6448536, alpha=0.10)
    assert (r["loa_upper_hi"] - d.mean()) / d.std(ddof=1) == pytest.approx(k, abs=5e-4)
    assert (d.mean() - r["loa_lower_lo"]) / d.std(ddof=1) == pytest.approx(k, abs=5e-4)


def test_exact_limit_ci_coverage() -> None:
    """4000 simulated studies of 17 pairs: each limit's 95 % CI covers the true limit 93.5–96.5 % of the time."""
    rng = np.random.default_rng(11)
    mu, sigma, n, reps = 1.0, 2.0, 17, 4000
    hits = np.zeros(2)
    for _ in range(reps):
        r = bland_altman(rng.normal(mu, sigma, n), np.zeros(n))
        hits += [r["loa_lower_lo"] <= mu - 1.96 * sigma <= r["loa_lower_hi"],
                 r["loa_upper_lo"] <= mu + 1.96 * sigma <= r["loa_upper_hi"]]  # fmt: skip
    assert np.all(np.abs(hits / reps - 0.95) < 0.015), hits / reps


def test_bland_altman_input_errors() -> None:
    with pytest.raises(ValueError, match="paired"):
        bland_altman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="method"):
        bland_altman([1, 2], [1, 2], method="bootstrap")
    r = bland_altman([1.0, np.nan, 3.0], [1.5, 2.0, np.nan])
    assert r["n"] == 1 and np.isnan(r["bias"])
