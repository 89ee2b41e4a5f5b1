"""Mixed models: Satterthwaite df against the exact split-plot ANOVA df, EMMs/contrasts, options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from TrialAnalysisLib import mixed_model


def _split_plot(n: int = 12, t: int = 4, seed: int = 3, sd_subject: float = 2.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for arm in ("control", "exercise"):
        for i in range(n):
            b = rng.normal(0, sd_subject)
            for v in range(t):
                y = b + rng.normal(0, 1) + 0.5 * v * (arm == "exercise")
                rows.append({"id": f"{arm}{i}", "arm": arm, "visit": f"v{v}", "day": 30.0 * v, "y": y})
    return pd.DataFrame(rows)


def _anova_df(d: pd.DataFrame, n: int, t: int) -> tuple[float, int]:
    """Exact df of a between-arm cell contrast (Satterthwaite on MS_subject, MS_error) and the within df."""
    subj = d.groupby(["id", "arm"])["y"].mean().reset_index()
    ms_s = t * ((subj["y"] - subj.groupby("arm")["y"].transform("mean")) ** 2).sum() / (2 * (n - 1))
    cell = d.groupby(["arm", "visit"])["y"].transform("mean")
    resid = d["y"] - cell - d.groupby("id")["y"].transform("mean") + d.groupby("arm")["y"].transform("mean")
    df_s, df_e = 2 * (n - 1), 2 * (n - 1) * (t - 1)
    ms_e = (resid**2).sum() / df_e
    num = (ms_s + (t - 1) * ms_e) ** 2
    return float(num / (ms_s**2 / df_s + ((t - 1) * ms_e) ** 2 / df_e)), df_e


@pytest.mark.parametrize(("n", "t", "seed"), [(12, 4, 3), (20, 3, 8), (8, 6, 21)])
def test_satterthwaite_matches_split_plot_anova(n: int, t: int, seed: int) -> None:
    d = _split_plot(n, t, seed)
    r = mixed_model(d, "y", "visit", "arm", "id", reference="control")
    want_between, want_within = _anova_df(d, n, t)
    con = r.tables["contrasts"]
    assert np.allclose(con["df"], want_between, rtol=0.01)
    tab = r.table.set_index("term")
    assert tab.loc["visit[T.v1]", "df"] == pytest.approx(want_within, rel=0.01)
    f = r.tables["F_tests"].set_index("term")
    assert f.loc["visit:arm", "df"] == pytest.approx(want_within, rel=0.01)
    assert f.loc["visit:arm", "df_num"] == t - 1


def test_balanced_estimates_equal_cell_means_and_emm_differences() -> None:
    d = _split_plot()
    r = mixed_model(d, "y", "visit", "arm", "id", reference="control")
    means = d.groupby(["visit", "arm"])["y"].mean()
    emm = r.tables["emmeans"]
    for _, row in emm.iterrows():
        assert row["estimate"] == pytest.approx(means[(row["time"], row["arm"])], abs=1e-6)
    con = r.tables["contrasts"].set_index("time")
    for v in ("v0", "v3"):
        assert con.loc[v, "estimate"] == pytest.approx(
            means[(v, "exercise")] - means[(v, "control")], abs=1e-6
        )
        lo, hi = con.loc[v, ["ci_low", "ci_high"]]
        assert lo < con.loc[v, "estimate"] < hi


def test_covariates_random_slope_and_z_option() -> None:
    d = _split_plot(n=15, t=5, seed=4)
    rng = np.random.default_rng(0)
    base = d.groupby("id")["y"].transform("first") + rng.normal(0, 1, len(d))
    d = d.assign(base=base, sex=np.where(d["id"].str[-1].astype(int) % 2 == 0, "F", "M"))
    r = mixed_model(
        d, "y", "visit", "arm", "id", covariates=["base", "sex"], random_slope=True, slope_var="day"
    )
    vc = r.tables["variance_components"]["term"].tolist()
    assert "var(id day)" in vc and "cov(id intercept,day)" in vc
    z = mixed_model(d, "y", "visit", "arm", "id", covariates=["base", "sex"], df_method="z")
    assert np.isinf(z.table["df"]).all()
    with pytest.raises(ValueError, match="df_method"):
        mixed_model(d, "y", "visit", "arm", "id", df_method="containment")
    with pytest.raises(ValueError, match="reml"):
        mixed_model(d, "y", "visit", "arm", "id", df_method="kenward-roger", reml=False)
    with pytest.raises(ValueError, match="numeric time"):
        mixed_model(d, "y", "visit", "arm", "id", random_slope=True)


def test_reml_loglik_equals_statsmodels() -> None:
    d = _split_plot(n=10, t=4, seed=9)
    r = mixed_model(d, "y", "visit", "arm", "id")
    assert r.info["loglik"] == pytest.approx(r.info["statsmodels_llf"], abs=1e-4)
    assert r.info["loglik"] >= r.info["statsmodels_llf"] - 1e-9  # polishing never lowers the likelihood


@pytest.mark.parametrize(("n", "t", "seed"), [(12, 4, 3), (8, 6, 21)])
def test_kenward_roger_exact_in_balanced_designs(n: int, t: int, seed: int) -> None:
    """In balanced split-plot designs KR reproduces the exact F tests (df and statistic)."""
    d = _split_plot(n, t, seed)
    kr = mixed_model(d, "y", "visit", "arm", "id", reference="control", df_method="kenward-roger")
    sat = mixed_model(d, "y", "visit", "arm", "id", reference="control")
    want_between, want_within = _anova_df(d, n, t)
    assert np.allclose(kr.tables["contrasts"]["df"], want_between, rtol=0.01)
    f_kr, f_sat = kr.tables["F_tests"].set_index("term"), sat.tables["F_tests"].set_index("term")
    assert f_kr.loc["visit:arm", "df"] == pytest.approx(want_within, rel=0.01)
    assert f_kr.loc["visit:arm", "statistic"] == pytest.approx(f_sat.loc["visit:arm", "statistic"], rel=1e-4)
    assert np.allclose(kr.tables["contrasts"]["se"], sat.tables["contrasts"]["se"], rtol=1e-4)


def test_kenward_roger_unbalanced_inflates_se() -> None:
    d = _split_plot(10, 5, 6)
    d = d.drop(index=np.random.default_rng(1).choice(len(d), 25, replace=False)).reset_index(drop=True)
    kr = mixed_model(d, "y", "visit", "arm", "id", df_method="kenward-roger")
    sat = mixed_model(d, "y", "visit", "arm", "id")
    ratio = kr.tables["contrasts"]["se"].to_numpy() / sat.tables["contrasts"]["se"].to_numpy()
    assert (ratio >= 1 - 1e-9).all() and (ratio < 1.1).all()  # Φ_A = Φ + 2ΦΛΦ adds small-sample bias
    assert np.allclose(kr.tables["contrasts"]["df"], sat.tables["contrasts"]["df"], rtol=0.1)
