"""KM, log-rank, Cox and the PH check: invariants and agreement with statsmodels/closed forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.duration.hazard_regression import PHReg
from statsmodels.duration.survfunc import survdiff
from test_reference_values import lung

from TrialAnalysisLib import cox, cox_zph, kaplan_meier, logrank
from TrialAnalysisLib.survival import plot_km, plot_zph, risk_table


def test_km_without_censoring_is_the_empirical_survival() -> None:
    t = np.array([3, 5, 5, 8, 10, 12, 15, 20.0])
    df = pd.DataFrame({"t": t, "e": 1})
    km = kaplan_meier(df, "t", "e")
    curve = km.tables["curve"]
    for u, s in zip(curve["time"], curve["surv"], strict=True):
        assert s == pytest.approx((t > u).mean())
    assert km.table["estimate"].iloc[0] == pytest.approx(9.0)  # S = 0.5 exactly on [8, 10): R's half-way rule


def test_km_transforms_contain_the_estimate_and_risk_table() -> None:
    lu = lung()
    for tr in ("log", "log-log", "plain"):
        c = kaplan_meier(lu, "time", "status", "sex", ci_transform=tr).tables["curve"].dropna()
        assert (c["ci_low"] <= c["surv"] + 1e-12).all() and (c["surv"] <= c["ci_high"] + 1e-12).all()
    km = kaplan_meier(lu, "time", "status", "sex")
    rt = risk_table(km, [0, 500])
    assert rt.loc[1, 0] == (lu["sex"] == 1).sum()
    assert rt.loc[2, 500] == ((lu["sex"] == 2) & (lu["time"] >= 500)).sum()
    with pytest.raises(ValueError, match="ci_transform"):
        kaplan_meier(lu, "time", "status", ci_transform="arcsine")


def test_stratified_logrank_matches_statsmodels_survdiff() -> None:
    lu = lung().dropna(subset=["ph.ecog"])
    r = logrank(lu, "time", "status", "sex", strata="ph.ecog")
    chi, p = survdiff(lu["time"], lu["status"], lu["sex"], strata=lu["ph.ecog"])
    assert r.info["chisq"] == pytest.approx(chi, rel=1e-10)
    assert r.info["p"] == pytest.approx(p, rel=1e-8)
    g = r.tables["groups"]
    assert g["observed"].sum() == pytest.approx(g["expected"].sum())  # O − E sums to zero


def test_cox_breslow_strata_robust_match_statsmodels() -> None:
    lu = lung().dropna(subset=["ph.ecog"])
    r = cox(lu, "time", "status", ["age", "sex"], ties="breslow", strata="ph.ecog", robust=True)
    st = pd.factorize(lu["ph.ecog"].astype(str))[0]
    ref = PHReg(
        lu["time"].to_numpy(float),
        lu[["age", "sex"]].to_numpy(float),
        status=lu["status"].to_numpy(float),
        ties="breslow",
        strata=st,
    ).fit(groups=np.arange(len(lu)))
    assert np.allclose(r.table["estimate"], ref.params, rtol=1e-8)
    assert np.allclose(r.table["se"], ref.bse, rtol=1e-8)
    assert np.allclose(r.table["hr"], np.exp(ref.params))
    with pytest.raises(ValueError, match="ties"):
        cox(lu, "time", "status", ["age"], ties="exact")


def test_categorical_covariate_is_treatment_coded() -> None:
    lu = lung().assign(sexf=lambda d: d["sex"].map({1: "male", 2: "female"}))
    num = cox(lu, "time", "status", ["sex"])
    cat = cox(lu, "time", "status", ["sexf"], references={"sexf": "male"})
    assert cat.table["estimate"].iloc[0] == pytest.approx(num.table["estimate"].iloc[0], rel=1e-10)
    assert cat.table["term"].iloc[0] == "sexf[T.female]"


def _sim_surv(n: int, rng: np.random.Generator, non_ph: bool) -> pd.DataFrame:
    x = rng.integers(0, 2, n)
    if non_ph:  # hazard ratio flips sign over time: early high, late low
        t = np.where(x == 1, rng.weibull(3.0, n) * 1.0, rng.weibull(0.7, n) * 1.0)
    else:
        t = rng.exponential(1 / np.exp(0.7 * x))
    c = rng.exponential(2.0, n)
    return pd.DataFrame({"t": np.minimum(t, c), "e": (t <= c).astype(float), "x": x.astype(float)})


def test_schoenfeld_test_detects_non_proportional_hazards(tmp_path) -> None:
    rng = np.random.default_rng(4)
    ph = cox_zph(cox(_sim_surv(400, rng, False), "t", "e", ["x"]))
    nph = cox_zph(cox(_sim_surv(400, rng, True), "t", "e", ["x"]))
    assert ph.table.set_index("term").loc["x", "p"] > 0.05
    assert nph.table.set_index("term").loc["x", "p"] < 0.001
    plot_zph(nph, tmp_path / "zph.png")
    km = kaplan_meier(_sim_surv(100, rng, False), "t", "e", "x")
    plot_km(km, tmp_path / "km.png")
    assert (tmp_path / "zph.png").stat().st_size > 5000 and (tmp_path / "km.png").stat().st_size > 5000


def test_cox_zph_matches_r_survival_3() -> None:
    """R ≥ 3.0: cox.zph(coxph(Surv(time, status) ~ age + sex + ph.ecog, lung)) prints
    age 0.188 / sex 2.305 / ph.ecog 2.054 / GLOBAL 4.464 (df 3, p 0.22)."""
    lu = lung()
    z = cox_zph(cox(lu, "time", "status", ["age", "sex", "ph.ecog"])).table.set_index("term")
    for term, chisq in (("age", 0.188), ("sex", 2.305), ("ph.ecog", 2.054), ("GLOBAL", 4.464)):
        assert round(z.loc[term, "statistic"], 3) == pytest.approx(chisq, abs=1e-9)
    assert z.loc["GLOBAL", "df"] == 3 and round(z.loc["GLOBAL", "p"], 2) == 0.22
    gt = cox_zph(cox(lu, "time", "status", ["age", "sex", "ph.ecog"]), method="gt").table.set_index("term")
    assert gt.loc["sex", "statistic"] == pytest.approx(
        z.loc["sex", "statistic"], rel=0.15
    )  # older approximation


def test_results_serialise_and_summarise() -> None:
    """Every public result has a readable summary and a JSON-able dict with its tidy table."""
    import json

    from test_mixed import sleepstudy
    from test_reference_values import anorexia

    from TrialAnalysisLib import ancova, mixed_model, sample_size

    lu = lung()
    results = [
        kaplan_meier(lu, "time", "status", "sex"),
        logrank(lu, "time", "status", "sex"),
        cox(lu, "time", "status", ["age", "sex"]),
        ancova(
            anorexia(), "change", "Treat", ["Prewt"], responder_threshold=0, responder_direction="greater"
        ),
        mixed_model(sleepstudy(), "Reaction", "Days", None, "Subject"),
        sample_size(),
    ]
    for r in results:
        d = json.loads(json.dumps(r.to_dict()))
        assert d["table"] and {"term", "estimate"} <= set(d["table"][0])
        text = r.summary()
        assert r.name in text and str(r.table["term"].iloc[0]) in text


def test_robust_variance_as_r_dfbeta_sandwich() -> None:
    """Score residuals: equal to statsmodels without ties; cluster(id) sums dfbeta within clusters."""
    lu = lung()
    jit = lu.assign(time=lu["time"] + np.random.default_rng(0).uniform(0, 0.5, len(lu)))
    ref = PHReg(
        jit["time"].to_numpy(float),
        jit[["age", "sex"]].to_numpy(float),
        status=jit["status"].to_numpy(float),
        ties="efron",
    ).fit(groups=np.arange(len(jit)))
    r = cox(jit, "time", "status", ["age", "sex"], robust=True)
    assert np.allclose(r.table["se"], ref.bse, rtol=1e-8)
    # Breslow is invariant to duplicating every row (Efron is not: duplicates add ties)
    tied = cox(lu, "time", "status", ["age", "sex"], ties="breslow", robust=True)
    both = pd.concat([lu, lu]).assign(id=np.tile(np.arange(len(lu)), 2))
    dup = cox(both, "time", "status", ["age", "sex"], ties="breslow", cluster="id")
    assert np.allclose(dup.table["estimate"], tied.table["estimate"], rtol=1e-7)
    assert np.allclose(dup.table["se"], tied.table["se"], rtol=1e-6)
    naive = cox(lu, "time", "status", ["age", "sex"])
    assert not np.allclose(tied.table["se"], naive.table["se"], rtol=1e-3)
