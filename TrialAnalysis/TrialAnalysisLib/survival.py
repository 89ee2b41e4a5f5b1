"""Time-to-event analyses as R's ``survival`` package computes them: KM, (stratified) log-rank, Cox.

- ``kaplan_meier``: product-limit estimate with Greenwood variance, CI transform "log" (R's
  default), "log-log" or "plain"; numbers at risk; median and its CI by R's rule (the CI for the
  median runs between the times where the upper/lower CI bounds of S(t) first reach 0.5, with the
  half-way rule when a curve sits exactly at 0.5).
- ``logrank``: k-group log-rank test, optionally stratified (per-stratum O−E and hypergeometric
  variance summed, as ``survdiff(... + strata(x))``); observed and expected events per group.
- ``cox``: statsmodels ``PHReg`` (Efron ties by default, Breslow option, strata, robust sandwich
  SE); HR with CI, Wald/LR/score tests. ``cox_zph`` is R ≥ 3.0's ``cox.zph``: a score test for
  adding g(t)·x terms (transform "km" by default; per term and GLOBAL), with the older
  Grambsch–Therneau approximation as ``method="gt"``, and a plot of the scaled Schoenfeld residuals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.duration.hazard_regression import PHReg

from ParaspinalLBPCore.errors import BadInputError, MissingKeyError
from TrialAnalysisLib.design import build_design
from TrialAnalysisLib.results import AnalysisResult, tidy

TRANSFORMS = ("log", "log-log", "plain")


def _check(df: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise MissingKeyError(f"columns {missing} not in data; columns: {list(df.columns)}")


def _km_curve(t: np.ndarray, e: np.ndarray, transform: str, z: float) -> pd.DataFrame:
    times = np.unique(t)
    n_risk = np.array([(t >= u).sum() for u in times])
    n_event = np.array([((t == u) & (e == 1)).sum() for u in times])
    n_cens = np.array([((t == u) & (e == 0)).sum() for u in times])
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1 - n_event / n_risk)
        gw = np.cumsum(np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0))
        se = np.sqrt(gw)  # std. error of the cumulative hazard / log S, as R reports
        if transform == "log":
            lo, hi = surv * np.exp(-z * se), np.minimum(surv * np.exp(z * se), 1.0)
        elif transform == "log-log":
            ll = np.log(-np.log(surv))
            w = z * se / np.log(surv)
            a, b = np.exp(-np.exp(ll + w)), np.exp(-np.exp(ll - w))
            lo, hi = np.minimum(a, b), np.maximum(a, b)
        else:
            lo, hi = np.maximum(surv - z * se * surv, 0.0), np.minimum(surv + z * se * surv, 1.0)
    bad = ~np.isfinite(se) | (surv <= 0)
    if transform != "plain":
        lo = np.where(bad, np.nan, lo)
        hi = np.where(bad, np.nan, hi)
    if transform == "log-log":
        lo = np.where(surv >= 1, np.nan, lo)
        hi = np.where(surv >= 1, np.nan, hi)
    return pd.DataFrame(
        {
            "time": times,
            "n_risk": n_risk,
            "n_event": n_event,
            "n_censor": n_cens,
            "surv": surv,
            "std_err": se,
            "ci_low": lo,
            "ci_high": hi,
        }
    )


def _quantile(times: np.ndarray, y: np.ndarray, p: float = 0.5) -> float:
    """R survfit quantile rule: first time y ≤ p; half-way to the next drop when y == p exactly."""
    tol = np.sqrt(np.finfo(float).eps)
    ok = np.isfinite(y)
    times, y = times[ok], y[ok]
    hit = np.nonzero(y <= p + tol)[0]
    if len(hit) == 0:
        return float("nan")
    i = hit[0]
    if abs(y[i] - p) <= tol:
        below = np.nonzero(y < p - tol)[0]
        if len(below):
            return float((times[i] + times[below[0]]) / 2)
        return float(times[i])
    return float(times[i])


def kaplan_meier(
    df: pd.DataFrame,
    duration: str,
    event: str,
    group: str | None = None,
    ci_transform: str = "log",
    conf_level: float = 0.95,
) -> AnalysisResult:
    """Kaplan–Meier curves (per ``group``) with CIs, numbers at risk and median survival with CI."""
    if ci_transform not in TRANSFORMS:
        raise BadInputError(f"ci_transform must be one of {TRANSFORMS}, got {ci_transform!r}")
    _check(df, [duration, event] + ([group] if group else []))
    d = df[[duration, event] + ([group] if group else [])].dropna()
    z = stats.norm.ppf(0.5 + conf_level / 2)
    groups = [(None, d)] if group is None else list(d.groupby(group, sort=True))
    curves, med = [], []
    for g, sub in groups:
        t = sub[duration].to_numpy(dtype=float)
        e = sub[event].to_numpy(dtype=float)
        if not set(np.unique(e)) <= {0.0, 1.0}:
            raise BadInputError(f"event column {event!r} must be 0/1")
        c = _km_curve(t, e, ci_transform, z)
        c.insert(0, "group", "all" if g is None else g)
        curves.append(c)
        m = _quantile(c["time"].to_numpy(), c["surv"].to_numpy())
        # the median's CI: where the lower / upper pointwise bounds of S(t) reach 0.5
        lo = _quantile(c["time"].to_numpy(), c["ci_low"].to_numpy())
        hi = _quantile(c["time"].to_numpy(), c["ci_high"].to_numpy())
        med.append(
            {
                "term": f"median {'all' if g is None else g}",
                "estimate": m,
                "ci_low": lo,
                "ci_high": hi,
                "group": "all" if g is None else g,
                "n": len(sub),
                "events": int(e.sum()),
            }
        )
    curve = pd.concat(curves, ignore_index=True)
    table = tidy(med)
    info = {
        "ci_transform": ci_transform,
        "conf_level": conf_level,
        "n": len(d),
        "events": int(d[event].sum()),
    }
    return AnalysisResult("Kaplan–Meier", table, {"curve": curve}, info)


def risk_table(km: AnalysisResult, times: Sequence[float]) -> pd.DataFrame:
    """Numbers at risk per group at the given ``times`` (as under a KM plot)."""
    curve = km.tables["curve"]
    out = {}
    for g, c in curve.groupby("group", sort=False):
        vals = []
        for u in times:
            later = c[c["time"] >= u]
            vals.append(int(later["n_risk"].iloc[0]) if len(later) else 0)
        out[g] = vals
    return pd.DataFrame(out, index=list(times)).T


def logrank(
    df: pd.DataFrame, duration: str, event: str, group: str, strata: str | Sequence[str] | None = None
) -> AnalysisResult:
    """(Stratified) log-rank test of equal survival across ``group``; observed/expected per group."""
    strata_cols = [strata] if isinstance(strata, str) else list(strata or [])
    _check(df, [duration, event, group, *strata_cols])
    d = df[[duration, event, group, *strata_cols]].dropna()
    levels = sorted(d[group].unique(), key=str)
    k = len(levels)
    if k < 2:
        raise BadInputError(f"group {group!r} needs at least 2 levels, found {levels}")
    obs = np.zeros(k)
    exp = np.zeros(k)
    var = np.zeros((k, k))
    strat_iter = d.groupby(strata_cols) if strata_cols else [(None, d)]
    for _, s in strat_iter:
        t = s[duration].to_numpy(dtype=float)
        e = s[event].to_numpy(dtype=float)
        gi = np.array([levels.index(v) for v in s[group]])
        for u in np.unique(t[e == 1]):
            at = t >= u
            n_j = np.bincount(gi[at], minlength=k).astype(float)
            d_j = np.bincount(gi[(t == u) & (e == 1)], minlength=k).astype(float)
            n, dd = n_j.sum(), d_j.sum()
            obs += d_j
            exp += dd * n_j / n
            if n > 1:
                f = dd * (n - dd) / (n - 1)
                var += f * (np.diag(n_j / n) - np.outer(n_j, n_j) / n**2)
    oe = (obs - exp)[:-1]
    v = var[:-1, :-1]
    chisq = float(oe @ np.linalg.solve(v, oe))
    dfree = k - 1
    p = float(stats.chi2.sf(chisq, dfree))
    table = tidy([{"term": "log-rank", "statistic": chisq, "df": dfree, "p": p}])
    groups = pd.DataFrame(
        {
            "group": levels,
            "n": [int((d[group] == lv).sum()) for lv in levels],
            "observed": obs,
            "expected": exp,
            "o_minus_e_sq_over_v": (obs - exp) ** 2 / np.diag(var),
        }
    )
    info = {"chisq": chisq, "df": dfree, "p": p, "strata": ", ".join(strata_cols) or "none"}
    return AnalysisResult(
        "Log-rank test" + (f" stratified by {', '.join(strata_cols)}" if strata_cols else ""),
        table,
        {"groups": groups},
        info,
    )


def score_residuals(
    t: np.ndarray, e: np.ndarray, x: np.ndarray, st: np.ndarray | None, beta: np.ndarray, efron: bool = True
) -> np.ndarray:
    """Per-subject Cox score residuals as R's ``residuals(fit, "score")`` (Efron or Breslow ties)."""
    n, p = x.shape
    w_all = np.exp(x @ beta)
    out = np.zeros((n, p))
    strata = np.zeros(n, dtype=int) if st is None else np.asarray(st)
    for s_ in np.unique(strata):
        rows = np.nonzero(strata == s_)[0]
        ts, es, xs, ws = t[rows], e[rows], x[rows], w_all[rows]
        for u_t in np.unique(ts[es == 1]):
            risk = ts >= u_t
            dead = (ts == u_t) & (es == 1)
            d = int(dead.sum())
            s0, s1 = ws[risk].sum(), ws[risk] @ xs[risk]
            d0, d1 = ws[dead].sum(), ws[dead] @ xs[dead]
            fr = np.arange(d) / d if efron else np.zeros(d)
            a0 = s0 - fr * d0
            means = (s1[None, :] - fr[:, None] * d1[None, :]) / a0[:, None]  # d × p
            # deaths share the event's score equally; everyone at risk pays w·(x − x̄_j)/a0_j per sub-step
            out[rows[dead]] += xs[dead] - means.mean(0)
            cfac = np.where(dead[risk][:, None], 1 - fr[None, :], 1.0)  # Efron: deaths fade over sub-steps
            xr, wr = xs[risk], ws[risk]
            haz = cfac / a0[None, :]  # n_risk × d
            out[rows[risk]] -= wr[:, None] * (xr * haz.sum(1)[:, None] - haz @ means)
    return out


def cox(
    df: pd.DataFrame,
    duration: str,
    event: str,
    covariates: Sequence[str],
    ties: str = "efron",
    strata: str | Sequence[str] | None = None,
    robust: bool = False,
    conf_level: float = 0.95,
    references: dict[str, object] | None = None,
    cluster: str | None = None,
) -> AnalysisResult:
    """Cox proportional-hazards model: coef, HR with CI, Wald/LR/score tests (as R ``coxph``).

    ``ties``: "efron" (R's default) or "breslow"; ``strata``: column(s) with separate baseline
    hazards; ``references``: reference level per factor covariate. ``robust=True`` gives R's
    sandwich variance D'D from dfbeta residuals (score residuals with the fit's tie method × the
    model variance), summed within ``cluster`` when given (R ``cluster(id)``).
    """
    if ties not in ("efron", "breslow"):
        raise BadInputError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    strata_cols = [strata] if isinstance(strata, str) else list(strata or [])
    covariates = list(covariates)
    extra = [cluster] if cluster and cluster not in covariates + strata_cols else []
    _check(df, [duration, event, *covariates, *strata_cols, *extra])
    d = df[[duration, event, *covariates, *strata_cols, *extra]].dropna().reset_index(drop=True)
    x, design = build_design(d, covariates, references=references)
    x = x[:, 1:]
    names = design.columns[1:]
    st = None
    if strata_cols:
        st = pd.factorize(d[strata_cols].astype(str).agg("|".join, axis=1))[0]
    t = d[duration].to_numpy(dtype=float)
    e = d[event].to_numpy(dtype=float)
    model = PHReg(t, x, status=e, ties=ties, strata=st)
    res = model.fit()
    beta = np.asarray(res.params)
    cov_naive = np.linalg.inv(-model.hessian(beta))
    cov = cov_naive
    if robust or cluster:
        dfb = score_residuals(t, e, x, st, beta, ties == "efron") @ cov_naive
        if cluster:
            dfb = pd.DataFrame(dfb).groupby(d[cluster].to_numpy()).sum().to_numpy()
        cov = dfb.T @ dfb
    table = _hazard_ratio_rows(names, beta, np.sqrt(np.diag(cov)), stats.norm.ppf(0.5 + conf_level / 2))
    tests, llf, llf0 = _cox_global_tests(model, beta, cov)
    info = {
        "n": len(d),
        "events": int(e.sum()),
        "ties": ties,
        "robust": bool(robust or cluster),
        "loglik": llf,
        "loglik_null": llf0,
        "strata": ", ".join(strata_cols) or "none",
    }
    fit = {
        "result": res,
        "model": model,
        "beta": beta,
        "cov": cov_naive,
        "names": names,
        "time": t,
        "event": e,
        "x": x,
        "strata": st,
        "ties": ties,
    }
    return AnalysisResult("Cox proportional hazards", table, {"tests": tests}, info, fit=fit)


def _hazard_ratio_rows(names: list[str], beta: np.ndarray, se: np.ndarray, zq: float) -> pd.DataFrame:
    """Coefficient table: log HR, SE, Wald z and p, CI, and the HR with its CI (``zq``: normal quantile)."""
    zs = beta / se
    rows = []
    for i, nm in enumerate(names):
        rows.append(
            {
                "term": nm,
                "estimate": beta[i],
                "se": se[i],
                "statistic": zs[i],
                "p": float(2 * stats.norm.sf(abs(zs[i]))),
                "ci_low": beta[i] - zq * se[i],
                "ci_high": beta[i] + zq * se[i],
                "hr": np.exp(beta[i]),
                "hr_ci_low": np.exp(beta[i] - zq * se[i]),
                "hr_ci_high": np.exp(beta[i] + zq * se[i]),
            }
        )
    return tidy(rows)


def _cox_global_tests(model: PHReg, beta: np.ndarray, cov: np.ndarray) -> tuple[pd.DataFrame, float, float]:
    """Likelihood-ratio, Wald (with ``cov``) and score (log-rank) tests of β = 0, as ``summary(coxph)``;
    also the log partial likelihoods at β̂ and at 0."""
    b0 = np.zeros_like(beta)
    llf0 = float(model.loglike(b0))
    llf = float(model.loglike(beta))
    u0 = model.score(b0)
    i0 = -model.hessian(b0)
    p = len(beta)
    lr = 2 * (llf - llf0)
    wald = float(beta @ np.linalg.solve(cov, beta))
    score = float(u0 @ np.linalg.solve(i0, u0))
    tests = tidy(
        [
            {"term": "likelihood ratio", "statistic": lr, "df": p, "p": float(stats.chi2.sf(lr, p))},
            {"term": "Wald", "statistic": wald, "df": p, "p": float(stats.chi2.sf(wald, p))},
            {"term": "score (log-rank)", "statistic": score, "df": p, "p": float(stats.chi2.sf(score, p))},
        ],
        ["term", "statistic", "df", "p"],
    )
    return tests, llf, llf0


def _zph_score(
    t: np.ndarray,
    e: np.ndarray,
    x: np.ndarray,
    st: np.ndarray | None,
    beta: np.ndarray,
    gfun: Any,
    efron: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Score vector of the added g(t)·x terms and the full 2p information at the fitted β (R ≥ 3 cox.zph)."""
    p = x.shape[1]
    w_all = np.exp(x @ beta)
    u = np.zeros(p)
    imat = np.zeros((2 * p, 2 * p))
    strata = np.zeros(len(t), dtype=int) if st is None else np.asarray(st)
    for s_ in np.unique(strata):
        ins = strata == s_
        ts, es, xs, ws = t[ins], e[ins], x[ins], w_all[ins]
        for u_t in np.unique(ts[es == 1]):
            risk = ts >= u_t
            dead = (ts == u_t) & (es == 1)
            d = int(dead.sum())
            g = float(gfun(u_t))
            wr, xr = ws[risk], xs[risk]
            s0, s1, s2 = wr.sum(), wr @ xr, (xr * wr[:, None]).T @ xr
            wd, xd = ws[dead], xs[dead]
            d0, d1, d2 = wd.sum(), wd @ xd, (xd * wd[:, None]).T @ xd
            score = xd.sum(0)
            vsum = np.zeros((p, p))
            for j in range(d):
                f = j / d if efron else 0.0
                a0, a1, a2 = s0 - f * d0, s1 - f * d1, s2 - f * d2
                mean = a1 / a0
                score = score - mean
                vsum += a2 / a0 - np.outer(mean, mean)
            u += g * score
            imat[:p, :p] += vsum
            imat[:p, p:] += g * vsum
            imat[p:, :p] += g * vsum
            imat[p:, p:] += g * g * vsum
    return u, imat


def cox_zph(fit: AnalysisResult, transform: str = "km", method: str = "score") -> AnalysisResult:
    """Test of proportional hazards per term and GLOBAL, with scaled Schoenfeld residuals for plotting.

    ``method="score"`` is R ≥ 3.0 ``cox.zph``: a score test for adding g(t)·x to the fitted model
    (g = transformed time, "km" = 1 − left-continuous KM; Efron or Breslow as in the fit);
    ``method="gt"`` is the Grambsch–Therneau approximation of survival < 3.0.
    """
    f = fit.fit
    if not isinstance(f, dict) or "model" not in f:
        raise BadInputError("cox_zph needs the result of cox()")
    if method not in ("score", "gt"):
        raise BadInputError(f"method must be 'score' or 'gt', got {method!r}")
    t, e = f["time"], f["event"]
    resid = np.asarray(f["result"].schoenfeld_residuals)
    ev = e == 1
    r = resid[ev]
    te = t[ev]
    if transform == "km":
        km = _km_curve(t, e, "plain", 1.96)
        kt, ks = km["time"].to_numpy(), km["surv"].to_numpy()

        def gfun(u: float) -> float:
            before = ks[kt < u]
            return 1.0 - (before[-1] if len(before) else 1.0)
    elif transform == "identity":
        gfun = float
    elif transform == "rank":
        ranks = dict(zip(np.sort(te), stats.rankdata(np.sort(te)), strict=False))
        gfun = ranks.__getitem__
    elif transform == "log":
        gfun = np.log
    else:
        raise BadInputError(f"transform must be km, identity, rank or log; got {transform!r}")
    g = np.array([gfun(u) for u in te], dtype=float)
    vcov = f["cov"]
    nev = len(te)
    xx = g - g.mean()
    r2 = r @ vcov * nev
    p = len(f["beta"])
    if method == "gt":
        test = xx @ r2
        zj = test**2 / (np.diag(vcov) * nev * np.sum(xx**2))
        tg = xx @ r
        glob = float(tg @ vcov @ tg * nev / np.sum(xx**2))
    else:
        u2, imat = _zph_score(t, e, f["x"], f["strata"], f["beta"], gfun, f["ties"] == "efron")
        uu = np.concatenate([np.zeros(p), u2])
        zj = np.array(
            [
                float(uu[ii] @ np.linalg.solve(imat[np.ix_(ii, ii)], uu[ii]))
                for ii in ([*list(range(p)), p + j] for j in range(p))
            ]
        )
        glob = float(uu @ np.linalg.solve(imat, uu))
    rows = [
        {"term": nm, "statistic": float(zj[i]), "df": 1, "p": float(stats.chi2.sf(zj[i], 1))}
        for i, nm in enumerate(f["names"])
    ]
    rows.append(
        {"term": "GLOBAL", "statistic": glob, "df": len(zj), "p": float(stats.chi2.sf(glob, len(zj)))}
    )
    scaled = pd.DataFrame(r2 + f["beta"], columns=f["names"])
    scaled.insert(0, "g_time", g)
    scaled.insert(0, "time", te)
    return AnalysisResult(
        "Proportional hazards check (scaled Schoenfeld residuals)",
        tidy(rows, ["term", "statistic", "df", "p"]),
        {"residuals": scaled},
        {"transform": transform, "method": method, "events": nev},
    )


def plot_zph(zph: AnalysisResult, path: str | Any) -> None:
    """Scaled Schoenfeld residuals vs transformed time with a lowess smooth, one panel per term."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from statsmodels.nonparametric.smoothers_lowess import lowess

    res = zph.tables["residuals"]
    terms = [c for c in res.columns if c not in ("time", "g_time")]
    fig, axes = plt.subplots(1, len(terms), figsize=(4.5 * len(terms), 3.6), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        ax.scatter(res["g_time"], res[term], s=8, alpha=0.5, color="0.4")
        sm_ = lowess(res[term], res["g_time"], frac=0.6)
        ax.plot(sm_[:, 0], sm_[:, 1], color="C3")
        p = zph.table.set_index("term").loc[term, "p"]
        ax.set(title=f"{term} (p = {p:.3f})", xlabel=f"time ({zph.info['transform']})", ylabel="Beta(t)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_km(
    km: AnalysisResult,
    path: str | Any,
    times: Sequence[float] | None = None,
    xlabel: str = "Days",
    ylabel: str = "Survival probability",
) -> None:
    """KM curves with CI bands, censor marks and a numbers-at-risk table underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = km.tables["curve"]
    tmax = float(curve["time"].max())
    if times is None:
        times = list(np.linspace(0, tmax, 5).round())
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(7, 5.2), gridspec_kw={"height_ratios": [4, 1]}, sharex=True)
    for i, (g, c) in enumerate(curve.groupby("group", sort=False)):
        tt = np.concatenate([[0], c["time"]])
        ss = np.concatenate([[1], c["surv"]])
        ax.step(tt, ss, where="post", color=f"C{i}", label=str(g))
        lo = np.concatenate([[1], c["ci_low"].ffill().fillna(1)])
        hi = np.concatenate([[1], c["ci_high"].ffill().fillna(1)])
        ax.fill_between(tt, lo, hi, step="post", color=f"C{i}", alpha=0.15)
        cens = c[c["n_censor"] > 0]
        ax.plot(cens["time"], cens["surv"], "|", color=f"C{i}", ms=6)
    ax.set(ylabel=ylabel, ylim=(0, 1.02))
    ax.legend(loc="lower left")
    rt = risk_table(km, times)
    for i, g in enumerate(rt.index):
        for u, n in zip(times, rt.loc[g], strict=True):
            axr.text(u, i, str(n), ha="center", va="center", fontsize=8, color=f"C{i}")
    axr.set(
        yticks=range(len(rt.index)),
        yticklabels=[str(g) for g in rt.index],
        ylim=(-0.7, len(rt.index) - 0.3),
        xlabel=xlabel,
        title="Number at risk",
    )
    axr.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
