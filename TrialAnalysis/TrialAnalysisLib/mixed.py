"""Linear mixed models by visit with Satterthwaite or Kenward–Roger small-sample df (as lmerTest/pbkrtest).

``mixed_model(df, "odi", "visit", "arm", "participant_id", covariates=["sex", "centre"])`` fits
``outcome ~ time * treatment + covariates + (1 | subject)`` (``random_slope=True`` adds a random
slope on a numeric time, ``slope_var``) with statsmodels ``MixedLM`` (REML by default). statsmodels
only gives z tests, so the df are computed here: the REML (or ML) log-likelihood is re-implemented
from per-subject sufficient statistics, parametrised by the variance parameters
θ = (random-effect (co)variances, residual variance), and statsmodels' optimum is polished by Newton
steps on it; for a contrast L the variance φ(θ) = L (X'V(θ)⁻¹X)⁻¹ L' is differentiated, the
covariance A of θ̂ is the inverse of the negative Hessian of the log-likelihood (both exact for REML,
central differences for ML), and ν = 2 φ² / (∇φ' A ∇φ) (Satterthwaite 1946; Giesbrecht & Burns 1985;
multi-df F tests by lmerTest's eigen-decomposition method).
``df_method="kenward-roger"`` gives the Kenward–Roger (1997) adjusted covariance Φ_A (used for SEs)
and df (as pbkrtest; contrasts use t = Lβ/√(LΦ_AL') with the KR df, as lmerTest); "z" gives
asymptotic normal tests.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from ParaspinalLBPCore.errors import BadInputError, MissingKeyError
from TrialAnalysisLib.design import build_design, is_categorical
from TrialAnalysisLib.results import AnalysisResult, tidy

DF_METHODS = ("satterthwaite", "kenward-roger", "z")


class _Lik:
    """Gaussian (RE)ML log-likelihood of a two-level model from per-group sufficient statistics."""

    def __init__(self, y: np.ndarray, x: np.ndarray, z: np.ndarray, groups: np.ndarray, reml: bool) -> None:
        codes, inv = np.unique(groups, return_inverse=True)
        g = len(codes)
        p, q = x.shape[1], z.shape[1]
        self.p, self.q, self.n, self.reml = p, q, len(y), reml
        self.xtx = np.zeros((g, p, p))
        self.xtz = np.zeros((g, p, q))
        self.ztz = np.zeros((g, q, q))
        self.xty = np.zeros((g, p))
        self.zty = np.zeros((g, q))
        self.yty = np.zeros(g)
        self.ni = np.bincount(inv, minlength=g).astype(float)
        np.add.at(self.xtx, inv, x[:, :, None] * x[:, None, :])
        np.add.at(self.xtz, inv, x[:, :, None] * z[:, None, :])
        np.add.at(self.ztz, inv, z[:, :, None] * z[:, None, :])
        np.add.at(self.xty, inv, x * y[:, None])
        np.add.at(self.zty, inv, z * y[:, None])
        np.add.at(self.yty, inv, y * y)
        self.tri = np.tril_indices(q)

    def g_derivatives(self) -> list[np.ndarray]:
        """∂G/∂θ_k for each element of G's lower triangle (symmetric unit matrices, in θ's order)."""
        derivs = []
        for a, b in zip(*self.tri, strict=True):
            e = np.zeros((self.q, self.q))
            e[a, b] = e[b, a] = 1.0
            derivs.append(e)
        return derivs

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        """θ → (G, σ²); θ holds the lower triangle of G (row-major) then σ²."""
        gmat = np.zeros((self.q, self.q))
        gmat[self.tri] = theta[:-1]
        gmat = gmat + np.tril(gmat, -1).T
        return gmat, float(theta[-1])

    def parts(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(X'V⁻¹X, X'V⁻¹y, y'V⁻¹y, log|V|) at θ."""
        gmat, s2 = self.unpack(theta)
        m = s2 * np.eye(self.q)[None] + gmat[None] @ self.ztz
        pmat = np.linalg.solve(m, np.broadcast_to(gmat, m.shape))
        zx = np.transpose(self.xtz, (0, 2, 1))
        xvx = (self.xtx.sum(0) - np.einsum("gpq,gqr,grs->ps", self.xtz, pmat, zx)) / s2
        xvy = (self.xty.sum(0) - np.einsum("gpq,gqr,gr->p", self.xtz, pmat, self.zty)) / s2
        yvy = (self.yty.sum() - np.einsum("gq,gqr,gr->", self.zty, pmat, self.zty)) / s2
        _sign, ld = np.linalg.slogdet(np.eye(self.q)[None] + gmat[None] @ self.ztz / s2)
        logdet = float(self.n * np.log(s2) + ld.sum())
        return xvx, xvy, float(yvy), logdet

    def loglik(self, theta: np.ndarray) -> float:
        """REML (or ML) log-likelihood with R's constants (lme4's logLik)."""
        xvx, xvy, yvy, logdet = self.parts(theta)
        beta = np.linalg.solve(xvx, xvy)
        rvr = yvy - beta @ xvy
        if self.reml:
            return float(
                -0.5 * (logdet + np.linalg.slogdet(xvx)[1] + rvr + (self.n - self.p) * np.log(2 * np.pi))
            )
        return float(-0.5 * (logdet + rvr + self.n * np.log(2 * np.pi)))

    def cov_beta(self, theta: np.ndarray) -> np.ndarray:
        """Var(β̂) = (X'V(θ)⁻¹X)⁻¹."""
        return np.linalg.inv(self.parts(theta)[0])


def _steps(theta: np.ndarray) -> np.ndarray:
    return 1e-4 * np.maximum(np.abs(theta), 1e-2 * np.max(np.abs(theta)))


def _hessian(f: Any, x: np.ndarray) -> np.ndarray:
    """Central-difference Hessian of a scalar function."""
    h = _steps(x)
    k = len(x)
    out = np.zeros((k, k))
    f0 = f(x)
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h[i]
        out[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = h[j]
            v = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
            out[i, j] = out[j, i] = v
    return out


def _gradient(f: Any, x: np.ndarray) -> np.ndarray:
    """Central-difference gradient of a scalar function."""
    h = _steps(x)
    out = np.zeros(len(x))
    for i in range(len(x)):
        e = np.zeros(len(x))
        e[i] = h[i]
        out[i] = (f(x + e) - f(x - e)) / (2 * h[i])
    return out


def _polish(lik: _Lik, theta: np.ndarray, iters: int = 6) -> np.ndarray:
    """Newton steps on the exact (RE)ML log-likelihood from the optimizer's answer, so θ̂ is the optimum
    itself rather than wherever statsmodels' optimizer stopped (the df depend on it)."""
    best = lik.loglik(theta)
    for _ in range(iters):
        g = _gradient(lik.loglik, theta)
        h = _hessian(lik.loglik, theta)
        try:
            step = -np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        for shrink in (1.0, 0.5, 0.25, 0.1):
            cand = theta + shrink * step
            gm, s2 = lik.unpack(cand)
            if s2 <= 0 or np.any(np.linalg.eigvalsh(gm) < 0):
                continue
            val = lik.loglik(cand)
            if val >= best - 1e-12:
                break
        else:
            break
        converged = np.all(np.abs(cand - theta) <= 1e-10 * np.maximum(1, np.abs(theta)))
        theta, best = cand, val
        if converged:
            break
    return theta


def _jacobian_cov(lik: _Lik, theta: np.ndarray) -> np.ndarray:
    """d Var(β̂) / dθ_k by central differences, shape (k, p, p)."""
    h = _steps(theta)
    out = []
    for i in range(len(theta)):
        e = np.zeros(len(theta))
        e[i] = h[i]
        out.append((lik.cov_beta(theta + e) - lik.cov_beta(theta - e)) / (2 * h[i]))
    return np.array(out)


def _reml_derivatives(
    lik: _Lik, y: np.ndarray, x: np.ndarray, z: np.ndarray, groups: np.ndarray, theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact Var(β̂), dVar(β̂)/dθ_k = C P_k C and the REML Hessian for V linear in θ.

    With Π = V⁻¹ − V⁻¹X C X'V⁻¹, r̃ = Π y and V_k = ∂V/∂θ_k (∂²V = 0):
    ∂²ℓ_R/∂θ_a∂θ_b = ½ tr(Π V_a Π V_b) − r̃' V_a Π V_b r̃.
    """
    gmat, s2 = lik.unpack(theta)
    derivs = lik.g_derivatives()
    k, p = len(theta), x.shape[1]
    blocks = []
    xtvx = np.zeros((p, p))
    xtvy = np.zeros(p)
    for idx in _group_index(groups):
        xi, zi = x[idx], z[idx]
        vinv = np.linalg.inv(zi @ gmat @ zi.T + s2 * np.eye(len(idx)))
        dv = [zi @ e @ zi.T for e in derivs] + [np.eye(len(idx))]
        xtvx += xi.T @ vinv @ xi
        xtvy += xi.T @ vinv @ y[idx]
        blocks.append((idx, vinv, dv))
    c = np.linalg.inv(xtvx)
    beta = c @ xtvy
    pk = np.zeros((k, p, p))
    qkl = np.zeros((k, k, p, p))
    trdd = np.zeros((k, k))
    rr = np.zeros((k, k))  # Σ r̃' V_a V⁻¹ V_b r̃ (block part of r̃' V_a Π V_b r̃)
    xvr = np.zeros((k, p))  # X' V⁻¹ V_a r̃
    for idx, vinv, dv in blocks:
        xi = x[idx]
        vx = vinv @ xi
        rt = vinv @ (y[idx] - xi @ beta)
        m = [vinv @ d for d in dv]
        dr = [d @ rt for d in dv]
        for a in range(k):
            pk[a] += vx.T @ dv[a] @ vx
            xvr[a] += vx.T @ dr[a]
            for b in range(k):
                qkl[a, b] += vx.T @ dv[a] @ m[b] @ vx
                trdd[a, b] += np.sum(m[a] * m[b].T)
                rr[a, b] += dr[a] @ vinv @ dr[b]
    hess = np.zeros((k, k))
    for a in range(k):
        for b in range(k):
            tr = (
                trdd[a, b]
                - np.trace(c @ qkl[a, b])
                - np.trace(c @ qkl[b, a])
                + np.trace(c @ pk[a] @ c @ pk[b])
            )
            quad = rr[a, b] - xvr[a] @ c @ xvr[b]
            hess[a, b] = 0.5 * tr - quad
    jac = np.array([c @ pk[a] @ c for a in range(k)])
    return c, jac, hess


def _group_index(groups: np.ndarray) -> list[np.ndarray]:
    """Row indices of each group (in order of the sorted group codes)."""
    codes, inv = np.unique(groups, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    return np.split(order, np.cumsum(np.bincount(inv, minlength=len(codes)))[:-1])


class Satterthwaite:
    """Satterthwaite df for contrasts of the fixed effects of a fitted (RE)ML model.

    REML fits use exact derivatives (:func:`_reml_derivatives`); ML fits use central differences.
    """

    def __init__(self, lik: _Lik, theta: np.ndarray, data: tuple | None = None) -> None:
        self.lik, self.theta = lik, theta
        if lik.reml and data is not None:
            self.cov, self.jac, hess = _reml_derivatives(lik, *data, theta)
        else:
            self.cov = lik.cov_beta(theta)
            hess = _hessian(lik.loglik, theta)
            self.jac = _jacobian_cov(lik, theta)
        self.acov = np.linalg.pinv(-hess)

    def df(self, lvec: np.ndarray) -> float:
        """ν = 2 (L C L')² / (∇' A ∇) for one contrast row ``lvec``."""
        phi = float(lvec @ self.cov @ lvec)
        grad = np.einsum("p,kpq,q->k", lvec, self.jac, lvec)
        den = float(grad @ self.acov @ grad)
        return float(2 * phi**2 / den) if den > 0 else float("inf")

    def f_test(self, lmat: np.ndarray, beta: np.ndarray) -> tuple[float, int, float]:
        """Multi-df F test of L β = 0 with lmerTest's eigen method: (F, num df, den df)."""
        lmat = np.atleast_2d(lmat)
        vl = lmat @ self.cov @ lmat.T
        vals, vecs = np.linalg.eigh(vl)
        keep = vals > 1e-10 * vals.max()
        vals, vecs = vals[keep], vecs[:, keep]
        pl = vecs.T @ lmat
        qk = len(vals)
        t2 = (pl @ beta) ** 2 / vals
        f = float(t2.sum() / qk)
        nus = np.array([self.df(r) for r in pl])
        if qk == 1:
            return f, 1, float(nus[0])
        e = np.sum(nus[nus > 2] / (nus[nus > 2] - 2))
        den = 2 * e / (e - qk) if e > qk else float("nan")
        return f, qk, float(den)


class KenwardRoger:
    """Kenward–Roger (1997) adjusted covariance Φ_A and denominator df for a linear-in-θ two-level model.

    V_i = Z_i G Z_i' + σ² I is linear in θ, so the second-derivative terms R_ij vanish;
    W is the inverse expected REML information, as in pbkrtest.
    """

    def __init__(
        self, lik: _Lik, y: np.ndarray, x: np.ndarray, z: np.ndarray, groups: np.ndarray, theta: np.ndarray
    ) -> None:
        gmat, s2 = lik.unpack(theta)
        derivs = lik.g_derivatives()
        k = len(theta)
        p = x.shape[1]
        xtvx = np.zeros((p, p))
        pk = np.zeros((k, p, p))
        qkl = np.zeros((k, k, p, p))
        trdd = np.zeros((k, k))
        for idx in _group_index(groups):
            xi, zi = x[idx], z[idx]
            vinv = np.linalg.inv(zi @ gmat @ zi.T + s2 * np.eye(len(idx)))
            dv = [zi @ e @ zi.T for e in derivs] + [np.eye(len(idx))]
            vx = vinv @ xi
            xtvx += xi.T @ vx
            m = [vinv @ d for d in dv]  # V⁻¹ dV_k
            for a in range(k):
                pk[a] += vx.T @ dv[a] @ vx
                for b in range(k):
                    qkl[a, b] += vx.T @ dv[a] @ m[b] @ vx
                    trdd[a, b] += np.sum(m[a] * m[b].T)
        phi = np.linalg.inv(xtvx)
        info = np.zeros((k, k))
        for a in range(k):
            for b in range(k):
                info[a, b] = 0.5 * (
                    trdd[a, b]
                    - np.trace(phi @ qkl[a, b])
                    - np.trace(phi @ qkl[b, a])
                    + np.trace(phi @ pk[a] @ phi @ pk[b])
                )
        self.w = np.linalg.pinv(info)
        lam = sum(self.w[a, b] * (qkl[a, b] - pk[a] @ phi @ pk[b]) for a in range(k) for b in range(k))
        self.phi = phi
        self.phi_a = phi + 2 * phi @ lam @ phi
        self.pk = pk

    def test(self, lmat: np.ndarray, beta: np.ndarray) -> tuple[float, int, float, float]:
        """KR F test of L β = 0: (scaled F*, num df ℓ, den df m, unscaled Wald F with Φ_A)."""
        lmat = np.atleast_2d(lmat)
        ell = lmat.shape[0]
        phi, w = self.phi, self.w
        theta_m = lmat.T @ np.linalg.solve(lmat @ phi @ lmat.T, lmat)
        k = len(self.pk)
        tp = [theta_m @ phi @ self.pk[a] @ phi for a in range(k)]
        a1 = sum(w[a, b] * np.trace(tp[a]) * np.trace(tp[b]) for a in range(k) for b in range(k))
        a2 = sum(w[a, b] * np.trace(tp[a] @ tp[b]) for a in range(k) for b in range(k))
        bb = (a1 + 6 * a2) / (2 * ell)
        g = ((ell + 1) * a1 - (ell + 4) * a2) / ((ell + 2) * a2)
        den = 3 * ell + 2 * (1 - g)
        c1, c2, c3 = g / den, (ell - g) / den, (ell + 2 - g) / den
        e_star = 1 / (1 - a2 / ell)
        v_star = (2 / ell) * (1 + c1 * bb) / ((1 - c2 * bb) ** 2 * (1 - c3 * bb))
        rho = v_star / (2 * e_star**2)
        m = 4 + (ell + 2) / (ell * rho - 1)
        lam = m / (e_star * (m - 2))
        lb = lmat @ beta
        f = float(lb @ np.linalg.solve(lmat @ self.phi_a @ lmat.T, lb) / ell)
        return float(lam * f), ell, float(m), f


def mixed_model(
    df: pd.DataFrame,
    outcome: str,
    time: str,
    treatment: str | None,
    subject: str,
    covariates: Sequence[str] = (),
    random_slope: bool = False,
    df_method: str = "satterthwaite",
    reml: bool = True,
    *,
    slope_var: str | None = None,
    time_as: str = "auto",
    reference: object | None = None,
    conf_level: float = 0.95,
) -> AnalysisResult:
    """Mixed model ``outcome ~ time [* treatment] + covariates + (1 [+ slope] | subject)``.

    ``time`` is a factor (visit) when it is a string/category column or ``time_as="factor"``, else
    numeric (linear trend); visit order (and the reference visit) is the category order, or the
    order of first appearance in ``df`` for plain strings. ``random_slope`` adds a random slope on
    the numeric column ``slope_var`` (default ``time``). ``df_method``: "satterthwaite",
    "kenward-roger" (needs ``reml=True``; SEs from the adjusted covariance) or "z". ``reference``
    is the reference arm. Returns fixed effects, EMMs per time × arm, arm contrasts at each time,
    Type III-style F tests and the variance components.
    """
    if df_method not in DF_METHODS:
        raise BadInputError(f"df_method must be one of {DF_METHODS}, got {df_method!r}")
    if df_method == "kenward-roger" and not reml:
        raise BadInputError("df_method 'kenward-roger' needs reml=True")
    covariates = list(covariates)
    slope_var = slope_var or (time if random_slope else None)
    cols = [outcome, time, subject] + ([treatment] if treatment else []) + covariates
    cols += [slope_var] if slope_var and slope_var not in cols else []
    d, time_factor = _analysis_frame(df, cols, time, time_as)
    inter = (time, treatment) if (treatment and time_factor) else None
    x, design = build_design(
        d,
        [time] + ([treatment] if treatment else []) + covariates,
        references={treatment: reference} if treatment and reference is not None else {},
        factors=((time,) if time_factor else ()) + ((treatment,) if treatment else ()),
        interaction=inter,
    )
    y = pd.to_numeric(d[outcome]).to_numpy(dtype=float)
    groups = d[subject].to_numpy()
    z = _random_design(d, slope_var if random_slope else None)
    fit = _fit_statsmodels(y, x, groups, z, reml, outcome)
    lik = _Lik(y, x, z, groups, reml)
    q = z.shape[1]
    theta = _polish(lik, np.concatenate([np.asarray(fit.cov_re)[np.tril_indices(q)], [fit.scale]]))
    inf = _Inference(lik, theta, (y, x, z, groups), df_method, conf_level)
    table = tidy([inf.contrast(c, inf.eye[i]) for i, c in enumerate(design.columns)])
    tables = _time_arm_tables(inf, design, d, time, treatment, time_factor)
    tables["F_tests"] = tidy(
        [inf.f_test(tname, design.term_columns(tname)) for tname in [t.name for t in design.terms]]
        + ([inf.f_test(":".join(inter), design.term_columns(":".join(inter)))] if inter else []),
        ["term", "df_num", "df", "statistic", "p"],
    )
    re_names = ["intercept"] + ([slope_var] if random_slope else [])
    tables["variance_components"] = _variance_components(lik, theta, subject, re_names)
    info = {
        "outcome": outcome,
        "n_obs": len(d),
        "n_subjects": int(pd.Series(groups).nunique()),
        "method": "REML" if reml else "ML",
        "df_method": df_method,
        "loglik": lik.loglik(theta),
        "statsmodels_llf": float(fit.llf),
        "converged": bool(fit.converged),
    }
    if treatment:
        info["reference"] = str(design.term(treatment).levels[0])
    return AnalysisResult(
        f"Mixed model of {outcome}",
        table,
        tables,
        info,
        notes=[f"Random effects: {' + '.join(re_names)} by {subject}."],
        fit={"statsmodels": fit, "design": design, "lik": lik, "theta": theta},
    )


def _analysis_frame(df: pd.DataFrame, cols: list[str], time: str, time_as: str) -> tuple[pd.DataFrame, bool]:
    """Complete rows of ``cols`` and whether ``time`` is a factor; a string time becomes a categorical
    in order of first appearance in ``df`` (baseline, eoi, m1, …), so the first visit is the reference."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise MissingKeyError(f"columns {missing} not in data; columns: {list(df.columns)}")
    d = df[cols].dropna().reset_index(drop=True)
    time_factor = time_as == "factor" or (time_as == "auto" and is_categorical(d[time]))
    if time_factor and not isinstance(d[time].dtype, pd.CategoricalDtype):
        d[time] = pd.Categorical(d[time], categories=list(pd.unique(df[time].dropna())))
    return d, time_factor


def _random_design(d: pd.DataFrame, slope_var: str | None) -> np.ndarray:
    """Random-effects design Z: intercept, plus the numeric ``slope_var`` for a random slope."""
    if slope_var is None:
        return np.ones((len(d), 1))
    if is_categorical(d[slope_var]):
        raise BadInputError(
            f"random slope needs a numeric time column; {slope_var!r} is categorical (set slope_var)"
        )
    return np.column_stack([np.ones(len(d)), d[slope_var].to_numpy(dtype=float)])


def _fit_statsmodels(
    y: np.ndarray, x: np.ndarray, groups: np.ndarray, z: np.ndarray, reml: bool, outcome: str
) -> Any:
    """statsmodels MixedLM fit, the starting point for :func:`_polish`: L-BFGS, then BFGS, then
    Nelder–Mead + BFGS until one converges (its warnings are silenced; ``converged`` is reported)."""
    model = sm.MixedLM(y, x, groups, exog_re=z)
    fit = None
    for method in (["lbfgs"], ["bfgs"], ["nm", "bfgs"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fit = model.fit(reml=reml, method=method)
            except (np.linalg.LinAlgError, ValueError):
                continue
        if fit.converged:
            break
    if fit is None:
        raise BadInputError(f"mixed model for {outcome!r} did not converge")
    return fit


class _Inference:
    """Tests of linear combinations of the fixed effects at θ̂ with the chosen df method."""

    def __init__(self, lik: _Lik, theta: np.ndarray, data: tuple, df_method: str, conf_level: float) -> None:
        xvx, xvy, _, _ = lik.parts(theta)
        self.beta = np.linalg.solve(xvx, xvy)
        self.eye = np.eye(len(self.beta))
        self.sat = Satterthwaite(lik, theta, data) if df_method == "satterthwaite" else None
        self.kr = KenwardRoger(lik, *data, theta) if df_method == "kenward-roger" else None
        self.cov = self.kr.phi_a if self.kr else lik.cov_beta(theta)
        self.zq = conf_level / 2 + 0.5

    def contrast(self, name: str, lvec: np.ndarray, **extra: Any) -> dict[str, Any]:
        """Estimate, SE, df, t, two-sided p and CI of ``lvec @ beta`` (one tidy row named ``name``)."""
        est = float(lvec @ self.beta)
        se = float(np.sqrt(lvec @ self.cov @ lvec))
        if self.sat:
            dfv = self.sat.df(lvec)
        else:
            dfv = self.kr.test(lvec[None, :], self.beta)[2] if self.kr else float("inf")
        tval = est / se
        qv = stats.t.ppf(self.zq, dfv)
        return {
            "term": name,
            "estimate": est,
            "se": se,
            "df": dfv,
            "statistic": tval,
            "p": float(2 * stats.t.sf(abs(tval), dfv)),
            "ci_low": est - qv * se,
            "ci_high": est + qv * se,
            **extra,
        }

    def f_test(self, name: str, idx: list[int]) -> dict[str, Any]:
        """F test that the coefficients ``idx`` (one model term) are all zero."""
        beta = self.beta
        if self.sat:
            f, k, den = self.sat.f_test(self.eye[idx], beta)
        elif self.kr:
            f, k, den, _ = self.kr.test(self.eye[idx], beta)
        else:
            f = float(beta[idx] @ np.linalg.solve(self.cov[np.ix_(idx, idx)], beta[idx]) / len(idx))
            k, den = len(idx), float("inf")
        return {"term": name, "df_num": k, "df": den, "statistic": f, "p": float(stats.f.sf(f, k, den))}


def _time_arm_tables(
    inf: _Inference, design: Any, d: pd.DataFrame, time: str, treatment: str | None, time_factor: bool
) -> dict[str, pd.DataFrame]:
    """EMMs per time × arm ("emmeans") and each arm minus the reference arm at each time ("contrasts");
    a numeric time is evaluated at up to about 8 of its observed values."""
    tlevels = (
        design.term(time).levels
        if time_factor
        else sorted(d[time].unique())[:: max(1, d[time].nunique() // 8)]
    )
    arms = design.term(treatment).levels if treatment else [None]
    emm, con = [], []
    for tv in tlevels:
        for a in arms:
            fixed = {time: tv} | ({treatment: a} if treatment else {})
            name = f"{tv}" + (f" {a}" if treatment else "")
            emm.append(inf.contrast(name, design.reference_row(fixed), time=tv, arm=a))
        if treatment:
            for a in arms[1:]:
                lvec = design.reference_row({time: tv, treatment: a}) - design.reference_row(
                    {time: tv, treatment: arms[0]}
                )
                con.append(inf.contrast(f"{a} - {arms[0]} at {tv}", lvec, time=tv))
    tables = {"emmeans": tidy(emm)}
    if con:
        tables["contrasts"] = tidy(con)
    return tables


def _variance_components(lik: _Lik, theta: np.ndarray, subject: str, re_names: list[str]) -> pd.DataFrame:
    """Residual variance, then the random-effect variances and covariances at θ̂."""
    gmat = lik.unpack(theta)[0]
    vc = [{"term": "residual variance", "estimate": float(theta[-1])}]
    for i in range(len(re_names)):
        for j in range(i + 1):
            nm = f"var({subject} {re_names[i]})" if i == j else f"cov({subject} {re_names[j]},{re_names[i]})"
            vc.append({"term": nm, "estimate": float(gmat[i, j])})
    return tidy(vc, ["term", "estimate"])
