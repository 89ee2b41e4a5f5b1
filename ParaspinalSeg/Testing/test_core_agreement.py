"""ParaspinalLBPCore.agreement: ICC against Shrout & Fleiss (1979) Table 2 (exact rational arithmetic, the
printed mean squares and ICCs, R psych::ICC's intervals), invariants, CI coverage (slow)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ParaspinalLBPCore.agreement import ICC_FORMS, icc_from_matrix
from ParaspinalLBPCore.errors import BadInputError

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SF_TABLE2 = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])


def _exact_sf() -> dict[str, Fraction]:
    """ICCs of Table 2 in exact rational arithmetic (independent of the float implementation)."""
    y = [[Fraction(v) for v in row] for row in SF_TABLE2.tolist()]
    n, k = len(y), len(y[0])
    grand = sum(sum(r) for r in y) / (n * k)
    rows = [sum(r) / k for r in y]
    cols = [sum(y[i][j] for i in range(n)) / n for j in range(k)]
    ssr = k * sum((m - grand) ** 2 for m in rows)
    ssc = n * sum((m - grand) ** 2 for m in cols)
    sst = sum((v - grand) ** 2 for r in y for v in r)
    sse = sst - ssr - ssc
    bms, jms, ems = ssr / (n - 1), ssc / (k - 1), sse / ((n - 1) * (k - 1))
    wms = (ssc + sse) / (n * (k - 1))
    return {
        "BMS": bms, "JMS": jms, "EMS": ems, "WMS": wms,
        "ICC(1,1)": (bms - wms) / (bms + (k - 1) * wms),
        "ICC(2,1)": (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n),
        "ICC(3,1)": (bms - ems) / (bms + (k - 1) * ems),
    }  # fmt: skip


def test_shrout_fleiss_table2():
    res = icc_from_matrix(SF_TABLE2)
    exact = _exact_sf()
    # the paper's mean squares (Table 2) and ICCs (Table 4), as printed (2 decimals)
    assert (round(res["MSR"], 2), round(res["MSC"], 2), round(res["MSE"], 2), round(res["MSW"], 2)) == (
        11.24, 32.49, 1.02, 6.26)  # fmt: skip
    assert (round(res["ICC(1,1)"], 2), round(res["ICC(2,1)"], 2), round(res["ICC(3,1)"], 2)) == (
        0.17,
        0.29,
        0.71,
    )
    for key in ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)"):
        assert res[key] == pytest.approx(float(exact[key]), rel=1e-12)
    # 95 % CIs as printed by R psych::ICC on the same data (its documented example)
    assert res["ICC(1,1)_lower"] == pytest.approx(-0.133, abs=5e-4)
    assert res["ICC(1,1)_upper"] == pytest.approx(0.72, abs=5e-3)
    assert res["ICC(2,1)_lower"] == pytest.approx(0.019, abs=5e-4)
    assert res["ICC(2,1)_upper"] == pytest.approx(0.76, abs=5e-3)
    assert res["ICC(3,1)_lower"] == pytest.approx(0.342, abs=5e-4)
    assert res["ICC(3,1)_upper"] == pytest.approx(0.95, abs=5e-3)


def test_icc_invariants():
    rng = np.random.default_rng(1)
    truth = rng.normal(0, 1, 40)
    same = np.column_stack([truth, truth])
    perfect = icc_from_matrix(same)
    # 1 up to rounding: the error mean square of identical columns is a difference of sums (~1e-16, not 0)
    for form in ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)"):
        assert perfect[form] == pytest.approx(1.0, abs=1e-12), form
    noisy = np.column_stack([truth + rng.normal(0, 0.3, 40), truth + rng.normal(0, 0.3, 40)])
    biased = noisy + np.array([0.0, 1.0])  # rater 2 reads 1 unit higher
    a, b = icc_from_matrix(noisy), icc_from_matrix(biased)
    assert b["ICC(3,1)"] == pytest.approx(a["ICC(3,1)"], rel=1e-12)  # consistency ignores the bias
    assert b["ICC(2,1)"] < a["ICC(2,1)"] - 0.2  # absolute agreement penalises it
    for r in (a, b):
        for m in ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)"):
            assert r[f"{m}_lower"] < r[m] < r[f"{m}_upper"]


@pytest.mark.slow
def test_icc_ci_coverage():
    """95 % CIs of ICC(2,1) and ICC(3,1) cover the true value ~95 % of the time (n=30 targets, k=3)."""
    rng = np.random.default_rng(7)
    rho, n, k, reps = 0.6, 30, 3, 2000
    cover = {"ICC(2,1)": 0, "ICC(3,1)": 0}
    for _ in range(reps):
        y = rng.normal(0, np.sqrt(rho), (n, 1)) + rng.normal(0, np.sqrt(1 - rho), (n, k))
        r = icc_from_matrix(y)
        for m in cover:
            cover[m] += r[f"{m}_lower"] <= rho <= r[f"{m}_upper"]
    for m, c in cover.items():
        assert 0.93 <= c / reps <= 0.97, (m, c / reps)


def test_too_few_targets_or_raters_is_a_user_error():
    with pytest.raises(BadInputError, match="2 targets and 2 raters, got 1 x 3"):
        icc_from_matrix(np.ones((1, 3)))
    assert ICC_FORMS == ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)")
