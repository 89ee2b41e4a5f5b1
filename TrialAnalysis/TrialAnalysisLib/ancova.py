"""ANCOVA for the primary endpoint: OLS fit, LS-means, adjusted difference, Type III tests, responders.

``ancova(df, "odi_change", "arm", ["odi_baseline", "sex", "centre"])`` fits
``outcome ~ treatment + covariates`` by least squares with R's treatment coding, and reports
(as R ``lm`` + ``emmeans`` + ``car::Anova(type=3)`` would): coefficients, LS-means per arm
(factor covariates averaged over their levels, numeric covariates at their mean), the adjusted
difference of each arm vs the reference arm with CI and p (``alternative`` two-sided, "less" or
"greater" for the protocol's one-sided test), Type III F tests, and optionally a responder
analysis (logistic regression: odds ratio, and g-computation risk difference). With
``imputations=m`` missing values are multiply imputed by chained equations and every quantity is
pooled by Rubin's rules (Barnard–Rubin df; Type III tests by the D1 statistic).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from ParaspinalLBPCore.errors import BadInputError, MissingKeyError
from TrialAnalysisLib.design import build_design, levels_of
from TrialAnalysisLib.imputation import mice, rubin
from TrialAnalysisLib.results import AnalysisResult, tidy

ALTERNATIVES = ("two-sided", "less", "greater")


def _p_value(stat: float, dfree: float, alternative: str) -> float:
    if alternative == "two-sided":
        return float(2 * stats.t.sf(abs(stat), dfree))
    if alternative == "greater":
        return float(stats.t.sf(stat, dfree))
    return float(stats.t.cdf(stat, dfree))


def _ci(est: float, se: float, dfree: float, level: float) -> tuple[float, float]:
    q = stats.t.ppf(0.5 + level / 2, dfree)
    return est - q * se, est + q * se


def _ols(y: np.ndarray, x: np.ndarray) -> dict[str, Any]:
    q, r = np.linalg.qr(x)
    if np.min(np.abs(np.diag(r))) < 1e-10 * np.max(np.abs(np.diag(r))):
        raise BadInputError("design matrix is rank deficient (a covariate level is empty or collinear)")
    beta = np.linalg.solve(r, q.T @ y)
    resid = y - x @ beta
    n, p = x.shape
    rss = float(resid @ resid)
    dfree = n - p
    sigma2 = rss / dfree
    rinv = np.linalg.inv(r)
    cov = sigma2 * rinv @ rinv.T
    llf = -n / 2 * (np.log(2 * np.pi) + np.log(rss / n) + 1)
    return {"beta": beta, "cov": cov, "df": dfree, "sigma2": sigma2, "rss": rss, "llf": llf, "n": n, "p": p}


def _fit_once(
    d: pd.DataFrame,
    outcome: str,
    treatment: str,
    covariates: list[str],
    reference: object,
    responder: dict[str, Any] | None,
) -> dict[str, Any]:
    x, design = build_design(
        d, [treatment, *covariates], references={treatment: reference}, factors=(treatment,)
    )
    y = pd.to_numeric(d[outcome], errors="raise").to_numpy(dtype=float)
    fit = _ols(y, x)
    arms = design.term(treatment).levels
    rows = {a: design.reference_row({treatment: a}) for a in arms}
    out: dict[str, Any] = {"design": design, "fit": fit, "arms": arms}
    out["coef"] = [(c, fit["beta"][i], fit["cov"][i, i]) for i, c in enumerate(design.columns)]
    out["lsm"] = [(a, float(rows[a] @ fit["beta"]), float(rows[a] @ fit["cov"] @ rows[a])) for a in arms]
    diffs = []
    for a in arms[1:]:
        lvec = rows[a] - rows[arms[0]]
        diffs.append((f"{a} - {arms[0]}", float(lvec @ fit["beta"]), float(lvec @ fit["cov"] @ lvec)))
    out["diff"] = diffs
    type3 = []
    for t in design.terms:
        idx = design.term_columns(t.name)
        type3.append((t.name, fit["beta"][idx], fit["cov"][np.ix_(idx, idx)]))
    out["type3"] = type3
    if responder is not None:
        out["resp"] = _responder(d, x, design, treatment, arms, outcome, responder)
    return out


def _responder(
    d: pd.DataFrame,
    x: np.ndarray,
    design: Any,
    treatment: str,
    arms: list,
    outcome: str,
    spec: dict[str, Any],
) -> list[tuple[str, float, float]]:
    """Logistic regression of responder status: (log OR, var) and g-computation (RD, var) per arm."""
    thr = float(spec["threshold"])
    direction = spec.get("direction", "less")
    yv = d[outcome].to_numpy(dtype=float)
    yb = (yv <= thr) if direction == "less" else (yv >= thr)
    res = sm.GLM(yb.astype(float), x, family=sm.families.Binomial()).fit()
    beta, cov = np.asarray(res.params), np.asarray(res.cov_params())
    out = []
    tcols = design.term_columns(treatment)
    for a, ci in zip(arms[1:], tcols, strict=True):
        x1 = x.copy()
        x0 = x.copy()
        x1[:, tcols] = 0
        x0[:, tcols] = 0
        x1[:, ci] = 1
        p1 = 1 / (1 + np.exp(-x1 @ beta))
        p0 = 1 / (1 + np.exp(-x0 @ beta))
        rd = float(np.mean(p1 - p0))
        grad = (x1 * (p1 * (1 - p1))[:, None]).mean(0) - (x0 * (p0 * (1 - p0))[:, None]).mean(0)
        out.append((f"log OR {a} vs {arms[0]}", float(beta[ci]), float(cov[ci, ci])))
        out.append((f"risk difference {a} - {arms[0]}", rd, float(grad @ cov @ grad)))
        out.append((f"responders {a}", float(yb[d[treatment].to_numpy() == a].mean()), np.nan))
    out.append((f"responders {arms[0]}", float(yb[d[treatment].to_numpy() == arms[0]].mean()), np.nan))
    return out


def _d1(qs: list[np.ndarray], us: list[np.ndarray]) -> tuple[float, float, float]:
    """Li–Raghunathan–Rubin D1 pooled Wald F for a k-vector: (F, df2, riv)."""
    m = len(qs)
    k = len(qs[0])
    qbar = np.mean(qs, axis=0)
    ubar = np.mean(us, axis=0)
    b = np.cov(np.array(qs).T, ddof=1).reshape(k, k) if m > 1 else np.zeros((k, k))
    uinv = np.linalg.inv(ubar)
    r = (1 + 1 / m) * np.trace(b @ uinv) / k
    f = float(qbar @ uinv @ qbar / (k * (1 + r)))
    t = k * (m - 1)
    if r <= 0 or m < 2:
        return f, np.inf, r
    dfv = 4 + (t - 4) * (1 + (1 - 2 / t) / r) ** 2 if t > 4 else t * (1 + 1 / k) * (1 + r) ** 2 / 2
    return f, float(dfv), float(r)


def ancova(
    df: pd.DataFrame,
    outcome: str,
    treatment: str,
    covariates: Sequence[str] = (),
    *,
    reference: object | None = None,
    alternative: str = "two-sided",
    conf_level: float = 0.95,
    responder_threshold: float | None = None,
    responder_direction: str = "less",
    imputations: int = 0,
    auxiliary: Sequence[str] = (),
    seed: int | None = 1,
    mi_method: str = "pmm",
) -> AnalysisResult:
    """ANCOVA ``outcome ~ treatment + covariates``: LS-means, adjusted difference, Type III, responders.

    ``imputations=0`` analyses complete cases; ``imputations=m`` imputes outcome and covariates by
    MICE (``auxiliary`` columns help predict but are not in the model) and pools by Rubin's rules.
    ``alternative`` applies to the treatment difference p-value ("less": the arm lowers the outcome).
    ``reference`` is the reference arm (default: the first level). ``responder_threshold`` adds the
    responder analysis: responder = outcome ≤ threshold (``responder_direction="less"``) or ≥ it.
    """
    if alternative not in ALTERNATIVES:
        raise BadInputError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    covariates = list(covariates)
    cols = [outcome, treatment] + covariates + [a for a in auxiliary if a not in covariates]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise MissingKeyError(f"columns {missing} not in data; columns: {list(df.columns)}")
    d = df[cols].copy()
    if d[treatment].isna().any():
        raise BadInputError(f"treatment column {treatment!r} has missing values")
    if reference is None:
        reference = levels_of(d[treatment])[0]
    responder = None
    if responder_threshold is not None:
        responder = {"threshold": responder_threshold, "direction": responder_direction}
    if imputations and imputations > 0:
        completed = mice(d, imputations, seed=seed, method=mi_method)
        fits = [_fit_once(c, outcome, treatment, covariates, reference, responder) for c in completed]
        method = f"multiple imputation (MICE {mi_method}, m={imputations}, Rubin's rules, Barnard–Rubin df)"
    else:
        cc = d[[outcome, treatment, *covariates]].dropna()
        fits = [_fit_once(cc, outcome, treatment, covariates, reference, responder)]
        method = "complete cases"
    pooled = _Pooled(fits, conf_level)
    diff = pooled.rows("diff", alternative)
    diff["alternative"] = alternative
    tables = {
        "lsmeans": pooled.rows("lsm").drop(columns=["statistic", "p"]).rename(columns={"term": "arm"}),
        "difference": diff,
        "type3": _type3_table(fits),
    }
    if responder is not None:
        tables["responder"] = _responder_table(pooled.rows("resp"))
    fit = fits[0]["fit"]
    info = {
        "method": method,
        "outcome": outcome,
        "treatment": treatment,
        "reference": str(reference),
        "n_total": len(d),
        "n_analysed": fit["n"],
        "df_resid": fit["df"],
        "conf_level": conf_level,
        "alternative": alternative,
        **_fit_info(fits),
    }
    notes = [
        f"Covariates: {', '.join(covariates) or 'none'}; factor covariates averaged over levels for LS-means."
    ]
    return AnalysisResult(
        f"ANCOVA of {outcome} by {treatment}", pooled.rows("coef"), tables, info, notes, fit=fits
    )


def _fit_info(fits: list[dict[str, Any]]) -> dict[str, Any]:
    """One fit: its dispersion, RSS, log-likelihood and R's AIC (which counts the residual variance as a
    parameter); several fits: the number of imputations."""
    fit = fits[0]["fit"]
    if len(fits) > 1:
        return {"imputations": len(fits)}
    return {
        "dispersion": fit["sigma2"],
        "rss": fit["rss"],
        "loglik": fit["llf"],
        "aic": -2 * fit["llf"] + 2 * (fit["p"] + 1),
    }


class _Pooled:
    """Estimates of one or more fits (one per imputed dataset) pooled by Rubin's rules into tidy rows.

    A single fit is reported as is, with the residual df (normal reference for responder quantities).
    """

    def __init__(self, fits: list[dict[str, Any]], conf_level: float) -> None:
        self.fits, self.conf_level = fits, conf_level
        self.dfc = fits[0]["fit"]["df"]

    def pool(self, key: str, i: int) -> tuple[str, float, float, float]:
        """(name, estimate, SE, df) of the ``i``-th quantity of kind ``key`` (coef, lsm, diff, resp)."""
        fits = self.fits
        name = fits[0][key][i][0]
        if len(fits) == 1:
            _, e, v = fits[0][key][i]
            return (
                name,
                e,
                float(np.sqrt(v)) if np.isfinite(v) else np.nan,
                (self.dfc if key != "resp" else np.inf),
            )
        est = np.array([f[key][i][1] for f in fits])
        var = np.array([f[key][i][2] for f in fits])
        if not np.all(np.isfinite(var)):
            return name, float(est.mean()), np.nan, np.nan
        pr = rubin(est, var, self.dfc if key != "resp" else np.inf)
        return name, pr.estimate, pr.se, pr.df

    def rows(self, key: str, alt: str = "two-sided", label: str = "term") -> pd.DataFrame:
        """Tidy table of every quantity of kind ``key`` with t statistic, p (``alt``) and CI."""
        out = []
        for i in range(len(self.fits[0][key])):
            name, e, se, dfv = self.pool(key, i)
            stat = e / se if se and np.isfinite(se) and se > 0 else np.nan
            lo, hi = _ci(e, se, dfv, self.conf_level) if np.isfinite(se) else (np.nan, np.nan)
            p = _p_value(stat, dfv, alt) if np.isfinite(stat) else np.nan
            out.append(
                {
                    label: name,
                    "estimate": e,
                    "se": se,
                    "df": dfv,
                    "statistic": stat,
                    "p": p,
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
        return tidy(out)


def _type3_table(fits: list[dict[str, Any]]) -> pd.DataFrame:
    """Type III F test per model term: the Wald F of one fit, or the D1 statistic pooled over imputations."""
    dfc = fits[0]["fit"]["df"]
    rows = []
    for i, (name, _, _) in enumerate(fits[0]["type3"]):
        qs = [f["type3"][i][1] for f in fits]
        us = [f["type3"][i][2] for f in fits]
        k = len(qs[0])
        if len(fits) == 1:
            fstat = float(qs[0] @ np.linalg.solve(us[0], qs[0]) / k)
            df2 = dfc
        else:
            fstat, df2, _ = _d1(qs, us)
        rows.append(
            {"term": name, "df_num": k, "df": df2, "statistic": fstat, "p": float(stats.f.sf(fstat, k, df2))}
        )
    return tidy(rows, ["term", "df_num", "df", "statistic", "p"])


def _responder_table(resp: pd.DataFrame) -> pd.DataFrame:
    """Responder rows with the odds ratio and its CI on the log-OR rows (Wald z p-value there)."""
    for j, r in resp.iterrows():
        if str(r["term"]).startswith("log OR"):
            resp.loc[j, "odds_ratio"] = np.exp(r["estimate"])
            resp.loc[j, "or_ci_low"] = np.exp(r["ci_low"])
            resp.loc[j, "or_ci_high"] = np.exp(r["ci_high"])
            z = r["estimate"] / r["se"]
            resp.loc[j, "p"] = float(2 * stats.norm.sf(abs(z)))
    return resp
