"""Leakage-free preprocessing: ComBat-style centre harmonisation, imputation/scaling, LASSO stability selection.

Every step is a scikit-learn transformer so it is fitted on training folds only (inside the CV loop,
the optimism bootstrap and the final fit) and serialised with skops (plain array/dict attributes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


class ComBatHarmonizer(TransformerMixin, BaseEstimator):
    """Location/scale ComBat (Johnson 2007 without empirical-Bayes shrinkage) for centre effects.

    Per feature: standardise with the pooled mean/SD, estimate each batch's mean shift ``gamma`` and
    variance ``delta`` on the fitting data, and remove them. No outcome is used (no leakage); batches
    unseen at fit time pass through unchanged. Works on a DataFrame and returns a DataFrame.
    """

    def __init__(self, batch_col: str = "centre", columns: list[str] | None = None, enabled: bool = True):
        self.batch_col = batch_col
        self.columns = columns
        self.enabled = enabled

    def fit(self, X: pd.DataFrame, y: Any = None) -> ComBatHarmonizer:
        self.active_ = bool(self.enabled and self.batch_col in X.columns and X[self.batch_col].nunique() > 1)
        cols = [c for c in (self.columns or []) if c in X.columns]
        self.columns_ = cols
        self.mean_ = {}
        self.sd_ = {}
        self.gamma_ = {}
        self.delta_ = {}
        if not self.active_ or not cols:
            return self
        A = X[cols].to_numpy(dtype=float)
        batch = X[self.batch_col].astype(str).to_numpy()
        mean = np.nanmean(A, axis=0)
        sd = np.nanstd(A, axis=0)
        sd[~np.isfinite(sd) | (sd == 0)] = 1.0
        S = (A - mean) / sd
        self.mean_ = dict(zip(cols, mean.tolist(), strict=True))
        self.sd_ = dict(zip(cols, sd.tolist(), strict=True))
        for b in np.unique(batch):
            Sb = S[batch == b]
            g = np.nan_to_num(np.nanmean(Sb, axis=0)) if len(Sb) else np.zeros(len(cols))
            d = np.nanvar(Sb, axis=0) if len(Sb) > 1 else np.ones(len(cols))
            d = np.where(np.isfinite(d) & (d > 1e-8), d, 1.0)
            self.gamma_[str(b)] = g.tolist()
            self.delta_[str(b)] = d.tolist()
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if not getattr(self, "active_", False) or not self.columns_:
            return X
        X = X.copy()
        cols = self.columns_
        mean = np.array([self.mean_[c] for c in cols])
        sd = np.array([self.sd_[c] for c in cols])
        A = X[cols].to_numpy(dtype=float)
        batch = X[self.batch_col].astype(str).to_numpy()
        S = (A - mean) / sd
        for b, g in self.gamma_.items():
            rows = batch == b
            if rows.any():
                S[rows] = (S[rows] - np.array(g)) / np.sqrt(np.array(self.delta_[b]))
        X[cols] = S * sd + mean
        return X


class StabilitySelector(TransformerMixin, BaseEstimator):
    """LASSO (L1 logistic) stability selection over bootstrap resamples.

    The penalty is chosen on the fitting data so that one L1 fit keeps about ``q`` features
    (Meinshausen & Bühlmann 2010); each of ``n_bootstrap`` (≥ 100 by protocol) bootstrap fits records
    which features are non-zero; features selected in ≥ ``threshold`` of them are kept (at least
    ``min_features``, the most frequent, if none reach it). ``frequency_`` holds the frequencies.
    """

    def __init__(
        self,
        n_bootstrap: int = 100,
        threshold: float = 0.6,
        q: int = 10,
        min_features: int = 1,
        random_state: int = 0,
        n_jobs: int = 1,
        enabled: bool = True,
    ):
        self.n_bootstrap = n_bootstrap
        self.threshold = threshold
        self.q = q
        self.min_features = min_features
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.enabled = enabled

    def _choose_c(self, X: np.ndarray, y: np.ndarray) -> float:
        """Bisection on log C so that an L1 fit keeps about ``q`` features."""
        from sklearn.svm import l1_min_c

        lo = np.log(l1_min_c(X, y, loss="log") * 1.01)
        hi = lo + np.log(1e3)
        for _ in range(10):
            mid = (lo + hi) / 2
            k = int(np.sum(_l1_fit(X, y, float(np.exp(mid))) != 0))
            if k > self.q:
                hi = mid
            else:
                lo = mid
        return float(np.exp(lo))

    def fit(self, X: np.ndarray, y: np.ndarray) -> StabilitySelector:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y).astype(int)
        p = X.shape[1]
        if not self.enabled or p <= 1:
            self.C_ = float("nan")
            self.frequency_ = np.ones(p)
            self.support_ = np.ones(p, dtype=bool)
            return self
        self.C_ = self._choose_c(X, y)
        rng = np.random.default_rng(self.random_state)
        n = len(y)
        samples = []
        while len(samples) < self.n_bootstrap:
            idx = rng.integers(0, n, n)
            if len(np.unique(y[idx])) == 2:
                samples.append(idx)
        coefs = Parallel(n_jobs=self.n_jobs)(delayed(_l1_fit_boot)(X, y, idx, self.C_) for idx in samples)
        self.frequency_ = np.mean([c != 0 for c in coefs], axis=0)
        support = self.frequency_ >= self.threshold
        if support.sum() < self.min_features:
            support = np.zeros(p, dtype=bool)
            support[np.argsort(-self.frequency_, kind="stable")[: self.min_features]] = True
        self.support_ = support
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=float)[:, self.support_]


def _l1_fit(X: np.ndarray, y: np.ndarray, C: float, weight: np.ndarray | None = None) -> np.ndarray:
    """Coefficients of one L1-penalised logistic regression (liblinear).

    liblinear visits coordinates in a random order; a fixed ``random_state`` makes the fit (and so
    which coefficients end at exactly zero) independent of numpy's global generator.
    """
    m = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", max_iter=200, tol=1e-3, random_state=0)
    return m.fit(X, y, sample_weight=weight).coef_.ravel()


def _l1_fit_boot(X: np.ndarray, y: np.ndarray, idx: np.ndarray, C: float) -> np.ndarray:
    """L1 fit on a bootstrap sample, as unique rows weighted by their counts (same fit, ~1/3 fewer rows)."""
    rows, counts = np.unique(idx, return_counts=True)
    return _l1_fit(X[rows], y[rows], C, counts.astype(float))


def build_preprocessor(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """Median imputation + standardisation for numbers; mode imputation + one-hot for categories."""
    num = Pipeline(
        [("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("scale", StandardScaler())]
    )
    cat = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    parts = [("num", num, numeric)]
    if categorical:
        parts.append(("cat", cat, categorical))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def transformed_to_fields(prep: ColumnTransformer) -> list[str]:
    """Input field of every output column of a fitted :func:`build_preprocessor` transformer."""
    out: list[str] = []
    for name, trans, cols in prep.transformers_:
        if name == "num":
            out += list(cols)
        elif name == "cat":
            for col, cats in zip(cols, trans.named_steps["onehot"].categories_, strict=True):
                out += [col] * len(cats)
    return out


def make_pipeline(
    numeric: list[str],
    categorical: list[str],
    harmonise_cols: list[str],
    estimator: Any,
    cfg: dict,
    random_state: int = 0,
) -> Pipeline:
    """The full leakage-free pipeline: harmonise → impute/scale/one-hot → stability selection → model."""
    sel = cfg.get("selection", {})
    return Pipeline(
        [
            (
                "harmonise",
                ComBatHarmonizer(
                    cfg.get("harmonisation", {}).get("batch_col", "centre"),
                    harmonise_cols,
                    bool(cfg.get("harmonisation", {}).get("enabled", False)),
                ),
            ),
            ("prep", build_preprocessor(numeric, categorical)),
            (
                "select",
                StabilitySelector(
                    n_bootstrap=int(sel.get("n_bootstrap", 100)),
                    threshold=float(sel.get("threshold", 0.6)),
                    q=int(sel.get("q", 10)),
                    min_features=int(sel.get("min_features", 1)),
                    random_state=random_state,
                    n_jobs=int(cfg.get("n_jobs", 2)),
                    enabled=bool(sel.get("enabled", True)),
                ),
            ),
            ("model", estimator),
        ]
    )
