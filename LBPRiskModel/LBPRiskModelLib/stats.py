"""Performance statistics: fast DeLong AUC variance, bootstrap CIs, threshold metrics, calibration, net benefit."""

from __future__ import annotations

import numpy as np
from scipy import stats as sst

from ParaspinalLBPCore.errors import BadInputError


def _midrank(x: np.ndarray) -> np.ndarray:
    """Mid-ranks (ties get the average rank), 1-based; numpy-only for speed in bootstrap loops."""
    n = len(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]
    r = np.empty(n)
    r[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return r


def delong_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fast DeLong (Sun & Xu 2014): AUCs (k,), structural components V10 (k, m), V01 (k, n).

    ``scores`` is (k, N) for k classifiers on the same N cases; positives are ``y == 1``.
    """
    y = np.asarray(y).astype(int)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise BadInputError("AUC needs both outcome classes")
    k = scores.shape[0]
    tx = np.empty((k, m))
    ty = np.empty((k, n))
    tz = np.empty((k, m + n))
    for r in range(k):
        tx[r] = _midrank(pos[r])
        ty[r] = _midrank(neg[r])
        tz[r] = _midrank(np.concatenate([pos[r], neg[r]]))
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v01, v10


def delong_auc_ci(y: np.ndarray, score: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float, float]:
    """AUC, DeLong SE and the (1−alpha) CI (normal, on the AUC scale, clipped to [0, 1])."""
    aucs, v01, v10 = delong_components(y, score)
    m, n = v01.shape[1], v10.shape[1]
    var = np.var(v01[0], ddof=1) / m + np.var(v10[0], ddof=1) / n
    se = float(np.sqrt(var))
    z = sst.norm.ppf(1 - alpha / 2)
    auc = float(aucs[0])
    return auc, se, max(0.0, auc - z * se), min(1.0, auc + z * se)


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> tuple[float, float, float]:
    """Paired DeLong test of two correlated AUCs: (AUC_a − AUC_b, z, two-sided p)."""
    aucs, v01, v10 = delong_components(y, np.vstack([score_a, score_b]))
    m, n = v01.shape[1], v10.shape[1]
    cov = np.cov(v01) / m + np.cov(v10) / n
    lvec = np.array([1.0, -1.0])
    var = float(lvec @ cov @ lvec)
    diff = float(aucs[0] - aucs[1])
    if var <= 0:
        return diff, 0.0, 1.0
    z = diff / np.sqrt(var)
    return diff, float(z), float(2 * sst.norm.sf(abs(z)))


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC (exponential approximation)."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return float(np.sqrt(var))


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann–Whitney AUC (ties count one half)."""
    return float(delong_components(y, score)[0][0])


def bootstrap_auc_ci(
    y: np.ndarray, score: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC (stratified resampling keeps both classes)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(int)
    score = np.asarray(score, dtype=float)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    vals = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        vals[b] = auc(y[idx], score[idx])
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def youden_threshold(y: np.ndarray, prob: np.ndarray) -> float:
    """Probability threshold maximising sensitivity + specificity − 1 (ties → the highest threshold)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, prob)
    j = tpr - fpr
    k = int(np.argmax(j))
    return float(min(max(thr[k], 0.0), 1.0))


def threshold_metrics(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV, F1, accuracy at ``prob >= threshold``."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(prob) >= threshold).astype(int)
    tp = int(np.sum((pred == 1) & (y == 1)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))

    def div(a: float, b: float) -> float:
        return float(a / b) if b else float("nan")

    sens, ppv = div(tp, tp + fn), div(tp, tp + fp)
    return {
        "sensitivity": sens,
        "specificity": div(tn, tn + fp),
        "ppv": ppv,
        "npv": div(tn, tn + fn),
        "f1": div(2 * tp, 2 * tp + fp + fn),
        "accuracy": div(tp + tn, len(y)),
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }


def brier(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean squared error of the predicted probabilities."""
    return float(np.mean((np.asarray(prob) - np.asarray(y)) ** 2))


def calibration_slope_intercept(y: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """Calibration slope (logistic regression of y on logit p) and intercept (calibration-in-the-large, slope fixed at 1)."""
    import statsmodels.api as sm

    y = np.asarray(y).astype(float)
    p = np.clip(np.asarray(prob, dtype=float), 1e-6, 1 - 1e-6)
    lp = np.log(p / (1 - p))
    if np.ptp(lp) < 1e-12:  # constant predictions (e.g. nothing selected): the slope is undefined
        inter = float(np.log(y.mean() / (1 - y.mean())) - lp[0]) if 0 < y.mean() < 1 else float("nan")
        return float("nan"), inter
    try:
        slope = float(sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit().params[1])
        inter = float(sm.GLM(y, np.ones_like(lp), family=sm.families.Binomial(), offset=lp).fit().params[0])
    except (ValueError, np.linalg.LinAlgError):
        return float("nan"), float("nan")
    return slope, inter


def calibration_curve(y: np.ndarray, prob: np.ndarray, n_bins: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Mean predicted vs observed event rate in quantile bins."""
    prob = np.asarray(prob, dtype=float)
    y = np.asarray(y).astype(float)
    edges = np.unique(np.quantile(prob, np.linspace(0, 1, n_bins + 1)))
    b = np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, len(edges) - 2)
    mp = np.array([prob[b == i].mean() for i in range(len(edges) - 1) if np.any(b == i)])
    ob = np.array([y[b == i].mean() for i in range(len(edges) - 1) if np.any(b == i)])
    return mp, ob


def net_benefit(y: np.ndarray, prob: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Decision-curve net benefit of the model, treat-all and treat-none at each threshold."""
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, dtype=float)
    n = len(y)
    prev = y.mean()
    nb, nb_all = [], []
    for t in thresholds:
        pred = prob >= t
        tp = np.sum(pred & (y == 1))
        fp = np.sum(pred & (y == 0))
        w = t / (1 - t)
        nb.append(tp / n - fp / n * w)
        nb_all.append(prev - (1 - prev) * w)
    return {
        "threshold": np.asarray(thresholds),
        "model": np.array(nb),
        "treat_all": np.array(nb_all),
        "treat_none": np.zeros(len(thresholds)),
    }
