"""Fast per-prediction feature contributions that do not need the ``shap`` package.

``shap`` cannot be imported inside Slicer (its dependency ``slicer`` collides with Slicer's own
module), and the calculator needs p99 < 100 ms, so prediction-time explanations are computed here:

- logistic regression: exact linear SHAP, ``coef * (z - mean_background(z))`` in log-odds;
- XGBoost / LightGBM: TreeSHAP in log-odds from compiled paths (:mod:`treeshap`) once a bundle's
  load-time check has compared them with the library's ``pred_contribs`` / ``pred_contrib``, else
  the library's own;
- random forest: path-dependent TreeSHAP (Lundberg et al. 2018, Algorithm 2) on the predicted
  probability: vectorised over all root-to-leaf paths by :mod:`treeshap` once a bundle's load-time
  check has compared it with the recursive reference below (:func:`forest_shap`), else recursive;
- MLP: Monte-Carlo permutation Shapley values (antithetic permutations, fixed seed) of the
  log-odds against a small stored background sample (interventional; converges to exact Shapley).

All values are computed in the model's (transformed, selected) feature space and summed back to
the raw input field each transformed column came from (one-hot columns → their categorical field).
The training report uses the real ``shap`` package; tests check that these values equal shap's.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from LBPRiskModelLib import treeshap

CONTRIBUTION_UNITS = {
    "logistic_regression": "log-odds",
    "xgboost": "log-odds",
    "lightgbm": "log-odds",
    "mlp": "log-odds",
    "random_forest": "probability",
}


# ----------------------------------------------------------------------------------------------
# Path-dependent TreeSHAP for scikit-learn trees
def _extend(m: list[list[float]], pz: float, po: float, pi: int) -> list[list[float]]:
    """EXTEND step of Algorithm 2: add a split to the path, updating permutation weights."""
    m = [row[:] for row in m]
    n = len(m)
    m.append([pi, pz, po, 1.0 if n == 0 else 0.0])
    for i in range(n - 1, -1, -1):
        m[i + 1][3] += po * m[i][3] * (i + 1) / (n + 1)
        m[i][3] = pz * m[i][3] * (n - i) / (n + 1)
    return m


def _unwind(m: list[list[float]], i: int) -> list[list[float]]:
    """UNWIND step of Algorithm 2: remove path element ``i`` (undo its EXTEND)."""
    m = [row[:] for row in m]
    n_len = len(m)
    o, z = m[i][2], m[i][1]
    n = m[n_len - 1][3]
    for e in range(n_len - 2, -1, -1):
        if o != 0:
            t = m[e][3]
            m[e][3] = n * n_len / ((e + 1) * o)
            n = t - m[e][3] * z * (n_len - 1 - e) / n_len
        else:
            m[e][3] = m[e][3] * n_len / (z * (n_len - 1 - e))
    for e in range(i, n_len - 1):
        m[e][0], m[e][1], m[e][2] = m[e + 1][0], m[e + 1][1], m[e + 1][2]
    return m[: n_len - 1]


def _unwound_sum(m: list[list[float]], i: int) -> float:
    """Sum of the path weights after unwinding element ``i`` (without building the new path)."""
    n_len = len(m)
    o, z = m[i][2], m[i][1]
    total = 0.0
    if o != 0:
        n = m[n_len - 1][3]
        for e in range(n_len - 2, -1, -1):
            w = n * n_len / ((e + 1) * o)
            total += w
            n = m[e][3] - w * z * (n_len - 1 - e) / n_len
    else:
        for e in range(n_len - 2, -1, -1):
            total += m[e][3] * n_len / (z * (n_len - 1 - e))
    return total


def tree_shap_sklearn(tree: Any, x: np.ndarray, class_index: int = 1) -> np.ndarray:
    """Path-dependent TreeSHAP values of one sklearn decision tree for one row ``x``.

    Returns (n_features + 1,) with the expected value (bias) last, on the scale of the tree's
    ``tree_.value`` for ``class_index`` (class proportions for classifiers). A missing value takes
    the tree's ``missing_go_to_left`` branch, as ``predict`` does; ``x`` is compared as given
    (:func:`forest_shap` rounds it to float32 first, as scikit-learn does).
    """
    t = tree.tree_
    missing_left = np.asarray(getattr(t, "missing_go_to_left", np.zeros(t.node_count)), dtype=bool)
    left, right, feat, thr = t.children_left, t.children_right, t.feature, t.threshold
    cover = t.weighted_n_node_samples
    vals = t.value[:, 0, :]
    vals = vals / vals.sum(axis=1, keepdims=True)
    v = vals[:, class_index]
    phi = np.zeros(x.shape[0] + 1)

    def recurse(j: int, m: list[list[float]], pz: float, po: float, pi: int) -> None:
        m = _extend(m, pz, po, pi)
        if left[j] == -1:
            for i in range(1, len(m)):
                w = _unwound_sum(m, i)
                phi[int(m[i][0])] += w * (m[i][2] - m[i][1]) * v[j]
            return
        d = feat[j]
        xd = x[d]
        goes_left = xd <= thr[j] if xd == xd else bool(missing_left[j])  # xd != xd: NaN
        hot, cold = (left[j], right[j]) if goes_left else (right[j], left[j])
        iz = io = 1.0
        for k in range(1, len(m)):
            if m[k][0] == d:
                iz, io = m[k][1], m[k][2]
                m = _unwind(m, k)
                break
        recurse(hot, m, iz * cover[hot] / cover[j], io, d)
        recurse(cold, m, iz * cover[cold] / cover[j], 0.0, d)

    recurse(0, [], 1.0, 1.0, -1)
    phi[-1] = _expected_value(t, v)
    return phi


def _expected_value(t: Any, v: np.ndarray) -> float:
    """Cover-weighted mean of the leaf values (the tree's expected output)."""
    leaves = t.children_left == -1
    w = t.weighted_n_node_samples[leaves]
    return float(np.sum(w * v[leaves]) / t.weighted_n_node_samples[0])


def forest_shap(forest: Any, X: np.ndarray) -> np.ndarray:
    """Recursive TreeSHAP of a RandomForestClassifier for class 1 (probability scale); (n, p + 1),
    bias last. The reference for :mod:`treeshap`; rows are rounded to float32 as sklearn's predict does
    (so a value on a threshold goes the way ``predict_proba`` sends it)."""
    X = np.asarray(X, dtype=float).astype(np.float32).astype(float)
    out = np.zeros((X.shape[0], X.shape[1] + 1))
    for est in forest.estimators_:
        for r in range(X.shape[0]):
            out[r] += tree_shap_sklearn(est, X[r])
    return out / len(forest.estimators_)


# Vectorised TreeSHAP (treeshap.py), used only for tree models whose compiled paths were checked.
_VERIFIED: weakref.WeakKeyDictionary[Any, treeshap.TreePaths] = weakref.WeakKeyDictionary()


def use_compiled_paths(model: Any, paths: treeshap.TreePaths | None) -> None:
    """Explain ``model`` with ``paths`` from now on (after a check against :func:`forest_shap`);
    None goes back to the recursive implementation."""
    if paths is None:
        _VERIFIED.pop(model, None)
    else:
        _VERIFIED[model] = paths


def compiled_paths(model: Any) -> treeshap.TreePaths | None:
    """The checked compiled paths in use for ``model`` (None: recursive TreeSHAP)."""
    return _VERIFIED.get(model)


# ----------------------------------------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def permutation_shap(
    f: Any, x: np.ndarray, background: np.ndarray, n_permutations: int = 16, seed: int = 0
) -> np.ndarray:
    """Monte-Carlo (antithetic) permutation Shapley values of ``f`` at ``x`` vs a background sample.

    Efficiency holds exactly: the values sum to f(x) − mean f(background). (p + 1,) with bias last.
    """
    rng = np.random.default_rng(seed)
    p = x.shape[0]
    perms = []
    for _ in range(max(1, n_permutations // 2)):
        perm = rng.permutation(p)
        perms += [perm, perm[::-1]]
    nb = background.shape[0]
    rows = []
    for perm in perms:
        cur = background.copy()
        rows.append(cur.copy())
        for j in perm:
            cur[:, j] = x[j]
            rows.append(cur.copy())
    out = f(np.vstack(rows)).reshape(len(perms), p + 1, nb).mean(axis=2)
    phi = np.zeros(p + 1)
    for k, perm in enumerate(perms):
        phi[perm] += np.diff(out[k])
    phi[:p] /= len(perms)
    phi[p] = out[0, 0]
    return phi


def model_contributions(
    family: str, model: Any, Z: np.ndarray, background: np.ndarray, n_permutations: int = 16
) -> np.ndarray:
    """Contributions of each model-space column for rows ``Z`` (n, p + 1), bias last."""
    Z = np.asarray(Z, dtype=float)
    if family == "logistic_regression":
        coef = model.coef_.ravel()
        mu = background.mean(axis=0)
        phi = coef * (Z - mu)
        bias = model.intercept_[0] + coef @ mu
        return np.column_stack([phi, np.full(Z.shape[0], bias)])
    paths = _VERIFIED.get(model)
    if paths is not None and family in ("random_forest", "xgboost", "lightgbm"):
        return paths.shap_values(Z)
    if family == "xgboost":
        import xgboost as xgb

        return model.get_booster().predict(xgb.DMatrix(Z), pred_contribs=True)
    if family == "lightgbm":
        return np.asarray(model.predict(Z, pred_contrib=True))
    if family == "random_forest":
        return forest_shap(model, Z)
    if family == "mlp":

        def f(A: np.ndarray) -> np.ndarray:
            return _logit(model.predict_proba(A)[:, 1])

        return np.vstack([permutation_shap(f, z, background, n_permutations) for z in Z])
    raise ValueError(f"unknown model family {family!r}")


def to_input_fields(phi: np.ndarray, columns_to_fields: list[str], fields: list[str]) -> np.ndarray:
    """Sum model-space contributions (n, p[+1]) into raw input fields (n, len(fields))."""
    idx = {f: i for i, f in enumerate(fields)}
    out = np.zeros((phi.shape[0], len(fields)))
    for j, name in enumerate(columns_to_fields):
        out[:, idx[name]] += phi[:, j]
    return out


def fast_proba(model: Any, Z: np.ndarray) -> np.ndarray:
    """P(class 1) like ``predict_proba``; random forests are evaluated tree by tree without joblib.

    sklearn's forest ``predict_proba`` dispatches through joblib even with ``n_jobs=1``, which costs far
    more than the arithmetic of one row; this loop accumulates the same per-tree probabilities in the
    same order.
    """
    from sklearn.ensemble import RandomForestClassifier

    if not isinstance(model, RandomForestClassifier):
        return model.predict_proba(Z)[:, 1]
    Z32 = np.ascontiguousarray(Z, dtype=np.float32)
    acc = np.zeros((Z32.shape[0], model.n_classes_))
    for est in model.estimators_:
        acc += est.tree_.predict(Z32)[:, : model.n_classes_]
    acc /= len(model.estimators_)
    return acc[:, 1]
