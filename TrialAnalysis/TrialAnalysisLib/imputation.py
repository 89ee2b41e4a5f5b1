"""Multiple imputation by chained equations (MICE) and Rubin's rules with Barnard–Rubin df.

Own implementation (numpy): each incomplete numeric column is imputed in turn from all other
columns by Bayesian linear regression with predictive mean matching (``method="pmm"``, mice's default for numeric
data, keeps bounded scores such as ODI 0–100 in range) or by drawing from the posterior predictive
normal (``method="norm"``). Factor columns are used as predictors (dummy coded, levels in order of first
appearance: the imputations do not depend on how levels are named, so a coded dataset, arms A/B, imputes
exactly as its unblinded original); missing factor values are filled by draws from the observed
distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ParaspinalLBPCore.errors import BadInputError
from TrialAnalysisLib.design import is_categorical


def _encode(df: pd.DataFrame) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Numeric matrix of ``df`` (factor columns as dummies) and each column's positions in it."""
    parts, pos, k = [], {}, 0
    for c in df.columns:
        s = df[c]
        if is_categorical(s):
            levs = list(pd.unique(s.dropna()))  # first appearance: independent of the level names
            block = (
                np.column_stack([(s == lv).to_numpy(dtype=float) for lv in levs[1:]])
                if len(levs) > 1
                else None
            )
            if block is None:
                pos[c] = []
                continue
        else:
            block = pd.to_numeric(s).to_numpy(dtype=float, na_value=np.nan)[:, None]
        parts.append(block)
        pos[c] = list(range(k, k + block.shape[1]))
        k += block.shape[1]
    return np.hstack(parts) if parts else np.zeros((len(df), 0)), pos


def _draw_beta(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    """(beta_hat, posterior draw beta*, sigma*) of a normal linear model with a small ridge, as mice.norm does."""
    xtx = x.T @ x
    xtx += np.eye(len(xtx)) * 1e-5 * np.maximum(np.diag(xtx), 1e-8)
    inv = np.linalg.inv(xtx)
    bhat = inv @ (x.T @ y)
    resid = y - x @ bhat
    dfree = max(len(y) - x.shape[1], 1)
    sigma = float(np.sqrt(resid @ resid / rng.chisquare(dfree)))
    chol = np.linalg.cholesky((inv + inv.T) / 2)
    bstar = bhat + sigma * chol @ rng.standard_normal(len(bhat))
    return bhat, bstar, sigma


def mice(
    df: pd.DataFrame,
    m: int = 20,
    *,
    seed: int | None = 1,
    n_iter: int = 10,
    method: str = "pmm",
    donors: int = 5,
) -> list[pd.DataFrame]:
    """Return ``m`` completed copies of ``df`` imputed by chained equations (numeric columns)."""
    if m < 1:
        raise BadInputError(f"number of imputations must be ≥ 1, got {m}")
    if method not in ("pmm", "norm"):
        raise BadInputError(f"imputation method must be 'pmm' or 'norm', got {method!r}")
    rng = np.random.default_rng(seed)
    df = df.reset_index(drop=True).copy()
    miss = {c: df[c].isna().to_numpy() for c in df.columns if df[c].isna().any()}
    num_targets = [c for c in miss if not is_categorical(df[c])]
    for c in num_targets:
        if miss[c].all():
            raise BadInputError(f"column {c!r} has no observed values to impute from")
    out = []
    for _ in range(m):
        cur = df.copy()
        for c, mk in miss.items():  # initial fill: random draws from observed values (factors stay at it)
            obs = df.loc[~mk, c].to_numpy()
            cur.loc[mk, c] = rng.choice(obs, size=int(mk.sum()))
        mat, pos = _encode(cur)
        ones = np.ones((len(cur), 1))
        for _ in range(n_iter if num_targets else 0):
            for c in num_targets:
                mk = miss[c]
                j = pos[c][0]
                others = np.delete(mat, j, axis=1)
                x = np.hstack([ones, others])
                y = mat[:, j]
                bhat, bstar, sigma = _draw_beta(x[~mk], y[~mk], rng)
                if method == "norm":
                    mat[mk, j] = x[mk] @ bstar + sigma * rng.standard_normal(int(mk.sum()))
                else:
                    yhat_obs = x[~mk] @ bhat
                    yhat_mis = x[mk] @ bstar
                    yobs = y[~mk]
                    dist = np.abs(yhat_mis[:, None] - yhat_obs[None, :])
                    k = min(donors, len(yobs))
                    idx = np.argpartition(dist, k - 1, axis=1)[:, :k]
                    pick = idx[np.arange(len(idx)), rng.integers(0, k, size=len(idx))]
                    mat[mk, j] = yobs[pick]
        for c in num_targets:
            cur[c] = mat[:, pos[c][0]]
        out.append(cur)
    return out


@dataclass
class Pooled:
    """Rubin's-rules pooled estimate: Q̄, within W, between B, total T, df (Barnard–Rubin), fmi."""

    estimate: float
    se: float
    within: float
    between: float
    total: float
    df: float
    riv: float
    fmi: float
    m: int

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided t confidence interval with the pooled df."""
        q = stats.t.ppf(0.5 + level / 2, self.df)
        return self.estimate - q * self.se, self.estimate + q * self.se


def rubin(estimates: np.ndarray, variances: np.ndarray, df_complete: float = np.inf) -> Pooled:
    """Pool one scalar over imputations (Rubin 1987; Barnard & Rubin 1999 small-sample df)."""
    q = np.asarray(estimates, dtype=float)
    u = np.asarray(variances, dtype=float)
    m = len(q)
    qbar = float(q.mean())
    w = float(u.mean())
    b = float(q.var(ddof=1)) if m > 1 else 0.0
    t = w + (1 + 1 / m) * b
    lam = (1 + 1 / m) * b / t if t > 0 else 0.0
    riv = (1 + 1 / m) * b / w if w > 0 else np.inf
    if lam <= 1e-12:
        dfv = float(df_complete)
    else:
        df_old = (m - 1) / lam**2
        if np.isfinite(df_complete):
            df_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
            dfv = df_old * df_obs / (df_old + df_obs)
        else:
            dfv = df_old
    fmi = (riv + 2 / (dfv + 3)) / (1 + riv) if np.isfinite(dfv) else lam
    return Pooled(qbar, float(np.sqrt(t)), w, b, t, float(dfv), float(riv), float(fmi), m)
