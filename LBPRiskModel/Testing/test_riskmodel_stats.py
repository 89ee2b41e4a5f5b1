"""Statistics of LBPRiskModelLib: fast DeLong vs the O(mn) definition, Hanley–McNeil, bootstrap; metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from LBPRiskModelLib import stats


def _naive_delong(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """DeLong et al. (1988) straight from the definition: placement values ψ(X, Y) over all pairs."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]).astype(float) + 0.5 * (pos[:, None] == neg[None, :])
    a = psi.mean()
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return a, float(np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)))


# Hanley & McNeil (1982), Radiology 143:29, Table 1: CT ratings 1..5 of 58 normal and 51 abnormal.
HM_NORMAL = [33, 6, 6, 11, 2]
HM_ABNORMAL = [3, 2, 2, 11, 33]


def _hm_data() -> tuple[np.ndarray, np.ndarray]:
    s = np.r_[np.repeat(np.arange(1, 6), HM_NORMAL), np.repeat(np.arange(1, 6), HM_ABNORMAL)].astype(float)
    y = np.r_[np.zeros(58), np.ones(51)].astype(int)
    return y, s


def test_hanley_mcneil_published_example() -> None:
    """AUC 0.893 and SE 0.032 as published for the CT rating data."""
    y, s = _hm_data()
    a, se, lo, hi = stats.delong_auc_ci(y, s)
    assert a == pytest.approx(0.8932, abs=5e-4)
    assert stats.hanley_mcneil_se(a, 51, 58) == pytest.approx(0.032, abs=5e-4)
    # DeLong is nonparametric; on these ratings it agrees with Hanley–McNeil to within 10 %
    assert se == pytest.approx(0.032, rel=0.10)
    assert lo < a < hi


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_delong_equals_definition_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(150) < 0.4).astype(int)
    s = np.round(rng.normal(size=150) + y, 1)  # rounding creates ties
    a, se, _, _ = stats.delong_auc_ci(y, s)
    a0, se0 = _naive_delong(y, s)
    assert a == pytest.approx(a0, abs=1e-12)
    assert a == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert se == pytest.approx(se0, rel=1e-10)


def test_delong_se_matches_bootstrap_and_coverage() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.5).astype(int)
    s = rng.normal(size=300) + 1.0 * y
    a, _se, lo, hi = stats.delong_auc_ci(y, s)
    blo, bhi = stats.bootstrap_auc_ci(y, s, n_boot=2000, seed=1)
    assert (bhi - blo) == pytest.approx(hi - lo, rel=0.15)
    assert blo < a < bhi


def test_paired_delong_test() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.5).astype(int)
    good = rng.normal(size=400) + 1.5 * y
    noise = rng.normal(size=400)
    d, _z, p = stats.delong_test(y, good, noise)
    assert d > 0.25 and p < 1e-6
    d, _z, p = stats.delong_test(y, good, good + 1e-9 * rng.normal(size=400))
    assert abs(d) < 1e-6 and p > 0.5


def test_threshold_metrics_hand_example() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.4, 0.6])
    m = stats.threshold_metrics(y, p, 0.5)  # TP 3, FN 1, FP 1, TN 3
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 3)
    assert m["sensitivity"] == 0.75 and m["specificity"] == 0.75 and m["ppv"] == 0.75 and m["npv"] == 0.75
    assert m["f1"] == pytest.approx(0.75)
    assert stats.brier(y, p) == pytest.approx(np.mean((p - y) ** 2))
    # J = 0.5 at thresholds 0.8, 0.6 and 0.3: the first (most specific) is taken
    assert stats.youden_threshold(y, p) == pytest.approx(0.8)


def test_calibration_and_net_benefit() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 20000)
    y = (rng.random(20000) < p).astype(int)
    slope, inter = stats.calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1.0, abs=0.06) and inter == pytest.approx(0.0, abs=0.05)
    # over-confident predictions (logit × 2) → slope ≈ 0.5
    lp = np.log(p / (1 - p)) * 2
    slope2, _ = stats.calibration_slope_intercept(y, 1 / (1 + np.exp(-lp)))
    assert slope2 == pytest.approx(0.5, abs=0.04)
    nb = stats.net_benefit(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.2, 0.1]), np.array([0.5]))
    assert nb["model"][0] == pytest.approx(1 / 4 - 1 / 4 * 1.0)  # TP 1, FP 1, w = 1
    assert nb["treat_all"][0] == pytest.approx(0.5 - 0.5)
