"""Fast prediction-time contributions (no shap needed) equal the real shap package's values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shap
from lightgbm import LGBMClassifier
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from xgboost import XGBClassifier

from LBPRiskModelLib.explain import forest_shap, model_contributions, permutation_shap, to_input_fields


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(300, 6, n_informative=4, random_state=0)
    return X, y


def test_random_forest_treeshap_equals_shap(data) -> None:
    X, y = data
    rf = RandomForestClassifier(40, max_depth=5, min_samples_leaf=3, random_state=0).fit(X, y)
    mine = forest_shap(rf, X[:8])
    ex = shap.TreeExplainer(rf)
    ref = ex.shap_values(X[:8])[:, :, 1]
    np.testing.assert_allclose(mine[:, :-1], ref, atol=1e-10)
    assert mine[0, -1] == pytest.approx(ex.expected_value[1], abs=1e-10)
    # local accuracy: bias + contributions = predicted probability
    np.testing.assert_allclose(mine.sum(axis=1), rf.predict_proba(X[:8])[:, 1], atol=1e-10)


def test_xgboost_and_lightgbm_native_equal_shap(data) -> None:
    X, y = data
    bg = X[:50]
    for model in (
        XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1).fit(X, y),
        LGBMClassifier(n_estimators=30, num_leaves=8, n_jobs=1, verbose=-1).fit(X, y),
    ):
        fam = "xgboost" if isinstance(model, XGBClassifier) else "lightgbm"
        mine = model_contributions(fam, model, X[:10], bg)
        ref = shap.TreeExplainer(model).shap_values(X[:10])
        ref = ref[1] if isinstance(ref, list) else ref
        np.testing.assert_allclose(mine[:, :-1], ref, atol=1e-5)
        margin = (
            model.predict(X[:10], output_margin=True)
            if fam == "xgboost"
            else model.predict(X[:10], raw_score=True)
        )
        np.testing.assert_allclose(mine.sum(axis=1), margin, atol=1e-5)


def test_linear_equals_shap_linear_explainer(data) -> None:
    X, y = data
    lr = LogisticRegression().fit(X, y)
    bg = X[:100]
    mine = model_contributions("logistic_regression", lr, X[:10], bg)
    ref = shap.LinearExplainer(lr, bg).shap_values(X[:10])
    np.testing.assert_allclose(mine[:, :-1], ref, atol=1e-10)
    np.testing.assert_allclose(mine.sum(axis=1), lr.decision_function(X[:10]), atol=1e-10)


def _exact_interventional_shapley(f, x: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Exact interventional Shapley values by enumerating all coalitions (small p only)."""
    p = len(x)

    def v(S: tuple[int, ...]) -> float:
        A = bg.copy()
        A[:, list(S)] = x[list(S)]
        return float(f(A).mean())

    phi = np.zeros(p)
    for j in range(p):
        others = [k for k in range(p) if k != j]
        for r in range(p):
            for S in itertools.combinations(others, r):
                w = math.factorial(r) * math.factorial(p - r - 1) / math.factorial(p)
                phi[j] += w * (v((*S, j)) - v(S))
    return phi


def test_mlp_permutation_shapley_converges_to_exact(data) -> None:
    from threadpoolctl import threadpool_limits

    X, y = data
    with threadpool_limits(1):  # multi-threaded BLAS on tiny matrices is slow on a loaded machine
        mlp = MLPClassifier((8,), solver="lbfgs", max_iter=500, random_state=0).fit(X, y)
    bg = X[:20]

    def f(A: np.ndarray) -> np.ndarray:
        p = np.clip(mlp.predict_proba(A)[:, 1], 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    x = X[200]
    exact = _exact_interventional_shapley(f, x, bg)
    approx = permutation_shap(f, x, bg, n_permutations=200, seed=0)
    # efficiency holds exactly; values close to the exact ones
    assert approx[:-1].sum() + approx[-1] == pytest.approx(f(x[None])[0], abs=1e-9)
    np.testing.assert_allclose(approx[:-1], exact, atol=0.05 * np.abs(exact).max())
    fast = model_contributions("mlp", mlp, x[None], bg)[0]
    assert np.corrcoef(fast[:-1], exact)[0, 1] > 0.95


def test_sum_back_to_input_fields() -> None:
    phi = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = to_input_fields(phi, ["age", "sex", "sex", "bmi"], ["age", "sex", "bmi"])
    np.testing.assert_allclose(out, [[1.0, 5.0, 4.0]])
