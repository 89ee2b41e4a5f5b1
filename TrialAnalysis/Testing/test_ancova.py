"""ANCOVA, MICE and Rubin's rules: invariants, agreement with statsmodels OLS, recovery of planted effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from test_reference_values import anorexia

from TrialAnalysisLib import ancova
from TrialAnalysisLib.imputation import mice, rubin


def _sim(n: int, rng: np.random.Generator, effect: float = -5.0, miss: float = 0.0) -> pd.DataFrame:
    """Simple two-arm trial: baseline, sex, centre, outcome change; MAR missingness on the outcome."""
    arm = np.where(rng.random(n) < 0.5, "exercise", "control")
    sex = rng.choice(["F", "M"], n)
    centre = rng.choice(["C1", "C2", "C3"], n)
    base = rng.normal(40, 10, n)
    ce = pd.Series(centre).map({"C1": 0.0, "C2": 2.0, "C3": -1.0}).to_numpy()
    y = (
        -8
        - 0.25 * (base - 40)
        + effect * (arm == "exercise")
        + 1.5 * (sex == "M")
        + ce
        + rng.normal(0, 12, n)
    )
    aux = y + rng.normal(0, 6, n)  # an earlier visit, correlated with the outcome
    df = pd.DataFrame({"y": y, "arm": arm, "sex": sex, "centre": centre, "base": base, "aux": aux})
    if miss:
        p = 1 / (1 + np.exp(-(np.log(miss / (1 - miss)) + 0.05 * (aux - aux.mean()))))
        df.loc[rng.random(n) < p, "y"] = np.nan
    return df


def test_matches_statsmodels_ols_with_factor_covariates() -> None:
    rng = np.random.default_rng(0)
    df = _sim(300, rng)
    r = ancova(df, "y", "arm", ["base", "sex", "centre"], reference="control")
    ols = smf.ols("y ~ C(arm, Treatment('control')) + base + sex + centre", df).fit()
    d = r.tables["difference"].iloc[0]
    assert d["estimate"] == pytest.approx(ols.params.iloc[1], rel=1e-10)
    assert d["se"] == pytest.approx(ols.bse.iloc[1], rel=1e-10)
    # LS-means: average of predictions over the sex × centre reference grid, base at its mean
    grid = pd.MultiIndex.from_product([["F", "M"], ["C1", "C2", "C3"]], names=["sex", "centre"]).to_frame(
        index=False
    )
    grid["base"] = df["base"].mean()
    for arm in ("control", "exercise"):
        want = ols.predict(grid.assign(arm=arm)).mean()
        got = r.tables["lsmeans"].set_index("arm").loc[arm, "estimate"]
        assert got == pytest.approx(want, rel=1e-10)
    # Type III: single-df F = t², multi-df centre F equals the nested-model F test
    t3 = r.tables["type3"].set_index("term")
    assert t3.loc["arm", "statistic"] == pytest.approx(d["statistic"] ** 2, rel=1e-10)
    red = smf.ols("y ~ C(arm, Treatment('control')) + base + sex", df).fit()
    f_nested = ((red.ssr - ols.ssr) / 2) / (ols.ssr / ols.df_resid)
    assert t3.loc["centre", "statistic"] == pytest.approx(f_nested, rel=1e-9)


def test_one_sided_p_and_ci() -> None:
    an = anorexia()
    two = ancova(an, "change", "Treat", ["Prewt"], reference="Cont")
    less = ancova(an, "change", "Treat", ["Prewt"], reference="Cont", alternative="less")
    greater = ancova(an, "change", "Treat", ["Prewt"], reference="Cont", alternative="greater")
    for i in range(2):
        d2, dl, dg = (x.tables["difference"].iloc[i] for x in (two, less, greater))
        assert dg["p"] == pytest.approx(d2["p"] / 2, rel=1e-9)  # both arms gain more weight than control
        assert dl["p"] == pytest.approx(1 - d2["p"] / 2, rel=1e-9)
        q = stats.t.ppf(0.975, d2["df"])
        assert d2["ci_high"] - d2["estimate"] == pytest.approx(q * d2["se"], rel=1e-12)


def test_responder_analysis() -> None:
    an = anorexia()
    r = ancova(an, "change", "Treat", ["Prewt"], responder_threshold=0, responder_direction="greater")
    resp = r.tables["responder"].set_index("term")
    gained = an.assign(g=an["change"] >= 0).groupby("Treat")["g"].mean()
    assert resp.loc["responders FT", "estimate"] == pytest.approx(gained["FT"])
    glm = smf.logit("g ~ C(Treat) + Prewt", an.assign(g=(an["change"] >= 0).astype(float))).fit(disp=0)
    assert resp.loc["log OR FT vs CBT", "estimate"] == pytest.approx(glm.params["C(Treat)[T.FT]"], rel=1e-6)
    assert resp.loc["log OR FT vs CBT", "odds_ratio"] == pytest.approx(
        np.exp(glm.params["C(Treat)[T.FT]"]), rel=1e-6
    )


def test_rubin_rules_hand_computed() -> None:
    q = np.array([1.0, 1.2, 0.8, 1.1, 0.9])
    u = np.array([0.04, 0.05, 0.045, 0.05, 0.04])
    p = rubin(q, u, df_complete=100)
    b = q.var(ddof=1)
    t = u.mean() + 1.2 * b
    lam = 1.2 * b / t
    df_old = 4 / lam**2
    df_obs = 101 / 103 * 100 * (1 - lam)
    assert p.estimate == pytest.approx(1.0)
    assert p.total == pytest.approx(t)
    assert p.df == pytest.approx(df_old * df_obs / (df_old + df_obs))
    assert rubin(np.ones(5), u, df_complete=50).df == pytest.approx(50)  # no between variance → complete df


def test_mi_without_missing_equals_complete_case() -> None:
    df = _sim(200, np.random.default_rng(1))
    cc = ancova(df, "y", "arm", ["base", "sex"], reference="control")
    mi = ancova(df, "y", "arm", ["base", "sex"], reference="control", imputations=5)
    a, b = cc.tables["difference"].iloc[0], mi.tables["difference"].iloc[0]
    assert b["estimate"] == pytest.approx(a["estimate"], rel=1e-12)
    assert b["se"] == pytest.approx(a["se"], rel=1e-12)
    assert b["df"] == pytest.approx(a["df"])


def test_mice_pmm_is_deterministic_and_draws_observed_values() -> None:
    df = _sim(150, np.random.default_rng(2), miss=0.3)[["y", "arm", "base", "aux"]]
    a = mice(df, 3, seed=7)
    b = mice(df, 3, seed=7)
    observed = set(df["y"].dropna())
    mk = df["y"].isna()
    assert mk.sum() > 20
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
        assert not x.isna().any().any()
        assert set(x.loc[mk, "y"]) <= observed
        pd.testing.assert_series_equal(x.loc[~mk, "y"], df.loc[~mk, "y"])


@pytest.mark.parametrize("codes", [{"exercise": "A", "control": "B"}, {"exercise": "B", "control": "A"}])
def test_mi_does_not_depend_on_the_arm_labels(codes: dict[str, str]) -> None:
    """Arms renamed to codes (a blinded dataset) impute identically: the pooled difference is the same up
    to its sign, whichever code the treated arm got (factor dummies follow first appearance, not names)."""
    df = _sim(200, np.random.default_rng(8), miss=0.3)
    named = ancova(df, "y", "arm", ["base", "sex"], reference="control", imputations=4, auxiliary=["aux"])
    coded = ancova(df.assign(arm=df["arm"].map(codes)), "y", "arm", ["base", "sex"], reference="B",
                   imputations=4, auxiliary=["aux"])  # fmt: skip
    a, b = named.tables["difference"].iloc[0], coded.tables["difference"].iloc[0]
    sign = 1.0 if codes["exercise"] == "A" else -1.0
    assert b["estimate"] == pytest.approx(sign * a["estimate"], rel=1e-9)
    assert (b["se"], b["df"]) == pytest.approx((a["se"], a["df"]), rel=1e-9)
    assert named.info["method"].startswith("multiple imputation") and a["df"] < named.info["df_resid"]


def test_mi_recovers_effect_under_mar() -> None:
    """MAR on an auxiliary variable: MI with the auxiliary is close to the full-data estimate."""
    rng = np.random.default_rng(5)
    full = _sim(2000, rng)
    df = full.copy()
    p = 1 / (1 + np.exp(-(-1.5 + 0.08 * (df["aux"] - df["aux"].mean()))))
    df.loc[rng.random(len(df)) < p, "y"] = np.nan
    ref = ancova(full, "y", "arm", ["base"], reference="control").tables["difference"].iloc[0]
    mi = ancova(df, "y", "arm", ["base"], reference="control", imputations=10, auxiliary=["aux"]).tables[
        "difference"
    ]
    mi = mi.iloc[0]
    assert abs(mi["estimate"] - ref["estimate"]) < 1.5 * ref["se"]
    assert mi["df"] < ref["df"]  # between-imputation variance shows up in the Barnard–Rubin df


@pytest.mark.slow
def test_ci_coverage_complete_cases() -> None:
    """95 % CI of the adjusted difference covers the planted effect in 93–97 % of 1000 simulated trials."""
    rng = np.random.default_rng(11)
    hits = []
    for _ in range(1000):
        d = ancova(_sim(120, rng), "y", "arm", ["base", "sex", "centre"], reference="control").tables[
            "difference"
        ]
        hits.append(d["ci_low"].iloc[0] <= -5.0 <= d["ci_high"].iloc[0])
    assert 0.93 <= np.mean(hits) <= 0.97


@pytest.mark.slow
def test_ci_coverage_multiple_imputation() -> None:
    """MI (m = 10) under MAR: 95 % CI covers the planted effect in 93–97 % of 300 simulated trials."""
    rng = np.random.default_rng(12)
    hits = []
    for _ in range(300):
        d = ancova(
            _sim(200, rng, miss=0.2),
            "y",
            "arm",
            ["base", "sex"],
            reference="control",
            imputations=10,
            auxiliary=["aux"],
            seed=int(rng.integers(1 << 30)),
        ).tables["difference"]
        hits.append(d["ci_low"].iloc[0] <= -5.0 <= d["ci_high"].iloc[0])
    assert 0.93 <= np.mean(hits) <= 0.97


def test_errors_name_the_problem() -> None:
    df = _sim(50, np.random.default_rng(3))
    with pytest.raises(KeyError, match="nope"):
        ancova(df, "y", "arm", ["nope"])
    with pytest.raises(ValueError, match="alternative"):
        ancova(df, "y", "arm", ["base"], alternative="bigger")
    with pytest.raises(ValueError, match="reference level"):
        ancova(df, "y", "arm", ["base"], reference="placebo")
