"""Mixed models: Satterthwaite df against the exact split-plot ANOVA df, EMMs/contrasts, options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from TrialAnalysisLib import mixed_model

# lme4::sleepstudy (Belenky et al. 2003): Reaction (ms) on Days 0–9 for 18 subjects.
_SLEEPSTUDY = {
    "308": "249.56 258.7047 250.8006 321.4398 356.8519 414.6901 382.2038 290.1486 430.5853 466.3535",
    "309": "222.7339 205.2658 202.9778 204.707 207.7161 215.9618 213.6303 217.7272 224.2957 237.3142",
    "310": "199.0539 194.3322 234.32 232.8416 229.3074 220.4579 235.4208 255.7511 261.0125 247.5153",
    "330": "321.5426 300.4002 283.8565 285.133 285.7973 297.5855 280.2396 318.2613 305.3495 354.0487",
    "331": "287.6079 285 301.8206 320.1153 316.2773 293.3187 290.075 334.8177 293.7469 371.5811",
    "332": "234.8606 242.8118 272.9613 309.7688 317.4629 309.9976 454.1619 346.8311 330.3003 253.8644",
    "333": "283.8424 289.555 276.7693 299.8097 297.171 338.1665 332.0265 348.8399 333.36 362.0428",
    "334": "265.4731 276.2012 243.3647 254.6723 279.0244 284.1912 305.5248 331.5229 335.7469 377.299",
    "335": "241.6083 273.9472 254.4907 270.8021 251.4519 254.6362 245.4523 235.311 235.7541 237.2466",
    "337": "312.3666 313.8058 291.6112 346.1222 365.7324 391.8385 404.2601 416.6923 455.8643 458.9167",
    "349": "236.1032 230.3167 238.9256 254.922 250.7103 269.7744 281.5648 308.102 336.2806 351.6451",
    "350": "256.2968 243.4543 256.2046 255.5271 268.9165 329.7247 379.4445 362.9184 394.4872 389.0527",
    "351": "250.5265 300.0576 269.8939 280.5891 271.8274 304.6336 287.7466 266.5955 321.5418 347.5655",
    "352": "221.6771 298.1939 326.8785 346.8555 348.7402 352.8287 354.4266 360.4326 375.6406 388.5417",
    "369": "271.9235 268.4369 257.2424 277.6566 314.8222 317.2135 298.1353 348.1229 340.28 366.5131",
    "370": "225.264 234.5235 238.9008 240.473 267.5373 344.1937 281.1481 347.5855 365.163 372.2288",
    "371": "269.8804 272.4428 277.8989 281.7895 279.1705 284.512 259.2658 304.6306 350.7807 369.4692",
    "372": "269.4117 273.474 297.5968 310.6316 287.1726 329.6076 334.4818 343.2199 369.1417 364.1236",
}


def sleepstudy() -> pd.DataFrame:
    """lme4's sleepstudy as a long DataFrame (Reaction, Days, Subject)."""
    rows = [(float(v), d, subj) for subj, vals in _SLEEPSTUDY.items() for d, v in enumerate(vals.split())]
    return pd.DataFrame(rows, columns=["Reaction", "Days", "Subject"])


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


@pytest.mark.parametrize(
    ("slope", "est", "se", "dfs"),
    [
        (False, (251.4051, 10.4673), (9.7467, 0.8042), (22.8102, 161.0000)),
        (True, (251.4051, 10.4673), (6.8246, 1.5458), (17.0000, 17.0000)),
    ],
)
def test_lmertest_sleepstudy(slope: bool, est: tuple, se: tuple, dfs: tuple) -> None:
    """lmerTest summary(lmer(Reaction ~ Days + (1 | Subject)) and (Days | Subject)): estimates, SEs, Satterthwaite df."""
    r = mixed_model(sleepstudy(), "Reaction", "Days", None, "Subject", random_slope=slope)
    assert r.info["n_obs"] == 180 and r.info["n_subjects"] == 18
    for i, term in enumerate(("Intercept", "Days")):
        row = r.row(term)
        assert row["estimate"] == pytest.approx(est[i], abs=5e-5)
        assert row["se"] == pytest.approx(se[i], abs=5e-5)
        assert row["df"] == pytest.approx(dfs[i], abs=5e-5)
