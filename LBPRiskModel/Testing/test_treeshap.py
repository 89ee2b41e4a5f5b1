"""Vectorised path-dependent TreeSHAP (treeshap.py) equals the recursive Algorithm 2 and real shap.

Real random forests of several sizes and depths (unlimited included), on data with few features
(so paths split repeatedly on one feature), a constant feature, rows sitting exactly on split
thresholds, and missing values (trees that saw NaN in training, and the bundle path where the
imputer removes them). References: ``explain.forest_shap`` (the recursive implementation),
``shap.TreeExplainer`` and the additivity property (bias + contributions = ``predict_proba``).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import shap
import xgboost as xgb
from lightgbm import LGBMClassifier
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from xgboost import XGBClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_bundle_fastpath import calculator_records, make_bundle, random_records
from test_webapp_support import build_bundle

from LBPRiskModelLib import explain, fastpath, treeshap
from LBPRiskModelLib.bundle import load_bundle

EXACT = 1e-10  # vs the recursive implementation (the brief's bound; observed ~1e-16)
SHAP = 1e-9  # vs the real shap package


def data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four informative-ish features (paths reuse them) plus one constant column."""
    X, y = make_classification(n, 4, n_informative=3, n_redundant=1, random_state=seed)
    return np.column_stack([X, np.full(n, 2.5)]), y


def tie_rows(rf: RandomForestClassifier, n: int, seed: int = 1) -> np.ndarray:
    """Rows whose values are split thresholds of the forest (ties: ``x == threshold``)."""
    rng = np.random.default_rng(seed)
    t = rf.estimators_[0].tree_
    thr = {f: t.threshold[t.feature == f] for f in range(rf.n_features_in_)}
    rows = rng.normal(size=(n, rf.n_features_in_))
    for r in range(n):
        for f, values in thr.items():
            if len(values):
                rows[r, f] = values[rng.integers(len(values))]
    return rows


def has_repeated_feature(tree) -> bool:
    """True if some root-to-leaf path of the sklearn tree splits twice on one feature."""
    t = tree.tree_
    stack = [(0, frozenset())]
    while stack:
        j, seen = stack.pop()
        if t.children_left[j] == -1:
            continue
        f = int(t.feature[j])
        if f in seen:
            return True
        stack += [(int(t.children_left[j]), seen | {f}), (int(t.children_right[j]), seen | {f})]
    return False


FORESTS = [
    dict(n_estimators=1, max_depth=None, min_samples_leaf=1),
    dict(n_estimators=25, max_depth=2, min_samples_leaf=5),
    dict(n_estimators=100, max_depth=6, min_samples_leaf=5),  # the protocol grid's deeper forest
    dict(n_estimators=40, max_depth=None, min_samples_leaf=1),  # unlimited depth, pure leaves
]


@pytest.mark.parametrize("params", FORESTS, ids=lambda p: f"{p['n_estimators']}x{p['max_depth']}")
def test_equals_recursive_and_shap(params: dict) -> None:
    X, y = data()
    rf = RandomForestClassifier(random_state=0, **params).fit(X, y)
    paths = treeshap.from_sklearn_forest(rf)
    if params["max_depth"] != 2:
        assert any(has_repeated_feature(e) for e in rf.estimators_)
        assert paths.max_length < max(e.tree_.max_depth for e in rf.estimators_)  # merged elements
    rows = np.vstack([X[:6], tie_rows(rf, 6), X[-4:] + 1e-3])
    mine = paths.shap_values(rows)
    rec = explain.forest_shap(rf, rows)
    np.testing.assert_allclose(mine, rec, rtol=0, atol=EXACT)
    ex = shap.TreeExplainer(rf)
    ref = ex.shap_values(rows)[:, :, 1]
    np.testing.assert_allclose(mine[:, :-1], ref, rtol=0, atol=SHAP)
    assert mine[0, -1] == pytest.approx(ex.expected_value[1], abs=SHAP)
    proba = rf.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(mine.sum(axis=1), proba, rtol=0, atol=EXACT)  # additivity
    np.testing.assert_allclose(paths.predict(rows), proba, rtol=0, atol=EXACT)
    assert np.all(mine[:, 4] == 0.0)  # the constant feature is never split on


def test_ties_follow_predict_not_float64() -> None:
    """A float64 value equal to a threshold is rounded to float32 first, as sklearn and shap do; the
    old recursive code compared float64 values, so its bias + contributions missed predict_proba."""
    X, y = data()
    rf = RandomForestClassifier(30, max_depth=5, random_state=0).fit(X, y)
    rows = tie_rows(rf, 40, seed=3)
    proba = rf.predict_proba(rows)[:, 1]
    mine = treeshap.from_sklearn_forest(rf).shap_values(rows)
    np.testing.assert_allclose(mine.sum(axis=1), proba, rtol=0, atol=EXACT)
    float64_rule = np.array(
        [sum(explain.tree_shap_sklearn(e, r) for e in rf.estimators_) / 30 for r in rows[:10]]
    )
    assert np.abs(float64_rule.sum(axis=1) - proba[:10]).max() > 1e-3  # the case really occurs


def test_missing_values_follow_missing_go_to_left() -> None:
    """Trees that saw NaN in training send it where ``missing_go_to_left`` says, as predict does."""
    X, y = data(400, seed=2)
    rng = np.random.default_rng(0)
    X[rng.uniform(size=X.shape) < 0.15] = np.nan
    X[:, 4] = 2.5
    rf = RandomForestClassifier(30, max_depth=6, random_state=0).fit(X, y)
    assert any(e.tree_.missing_go_to_left[e.tree_.children_left != -1].any() for e in rf.estimators_)
    rows = X[:30]
    assert np.isnan(rows).any()
    mine = treeshap.from_sklearn_forest(rf).shap_values(rows)
    proba = rf.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(mine.sum(axis=1), proba, rtol=0, atol=EXACT)
    np.testing.assert_allclose(mine[:8], explain.forest_shap(rf, rows[:8]), rtol=0, atol=EXACT)
    full = ~np.isnan(rows).any(axis=1)  # shap sends NaN left in sklearn trees: compare complete rows
    ref = shap.TreeExplainer(rf).shap_values(rows[full])[:, :, 1]
    np.testing.assert_allclose(mine[full, :-1], ref, rtol=0, atol=SHAP)


def test_padding_and_bucketing_are_harmless() -> None:
    """Exact-length buckets, one padded bucket and the planned buckets give the same values."""
    X, y = data()
    rf = RandomForestClassifier(30, max_depth=None, min_samples_leaf=2, random_state=0).fit(X, y)
    rows = X[:20]
    out = {m: treeshap.from_sklearn_forest(rf, buckets=m) for m in ("exact", "pad", "auto")}
    assert len(out["exact"].buckets) > 1 and len(out["pad"].buckets) == 1
    vals = {m: p.shap_values(rows) for m, p in out.items()}
    np.testing.assert_allclose(vals["pad"], vals["exact"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(vals["auto"], vals["exact"], rtol=0, atol=1e-13)
    one_by_one = np.vstack([out["auto"].shap_values(r) for r in rows])  # batch == row by row
    np.testing.assert_allclose(one_by_one, vals["auto"], rtol=0, atol=1e-15)


@pytest.fixture(scope="module")
def forest_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle: the library's pipeline (imputers, scaler, one-hot, selection) + a forest."""
    est = RandomForestClassifier(n_estimators=30, max_depth=6, min_samples_leaf=3, random_state=0)
    return make_bundle(tmp_path_factory.mktemp("rf") / "b", est, combat=False)


def test_bundle_uses_checked_paths_and_matches_recursive(forest_bundle: Path) -> None:
    """At load the compiled paths pass the self-check and explain every prediction; the model-space
    rows the imputer delivers never contain NaN; contributions equal the recursive ones."""
    bundle = load_bundle(forest_bundle)
    final = bundle.pipeline.steps[-1][1]
    assert bundle._fast is not None and explain.compiled_paths(final) is bundle._fast.tree_paths
    rows = [r for r in random_records(200, seed=4) if bundle.validate(r).ok][:40]
    assert sum(any(v is None for v in r.values()) for r in rows) >= 10
    Z = bundle._parts(rows)[0]
    assert not np.isnan(Z).any()
    Zs = bundle._reference_parts(rows)[0]
    assert not np.isnan(Zs).any()
    fast = explain.model_contributions("random_forest", final, Z, bundle._bg)
    np.testing.assert_allclose(fast, explain.forest_shap(final, Z), rtol=0, atol=fastpath.TOLERANCE)
    for rec in rows[:10]:
        pred = bundle.predict_one(rec)
        total = pred.base_value + sum(c for *_, c in pred.contributions)
        assert math.isclose(total, pred.risk, rel_tol=0, abs_tol=1e-12)


def test_self_check_rejects_a_wrong_path(forest_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 1e-9 change of one leaf value is caught by the load-time check (warning): recursive TreeSHAP
    is used, while the verified prediction fast path stays."""
    bundle = load_bundle(forest_bundle)
    final = bundle.pipeline.steps[-1][1]
    probes = fastpath.probe_records(bundle.schema, bundle.input_columns)
    bundle._fast.tree_paths.buckets[0].value[0] += 1e-9
    assert fastpath.max_difference(bundle._fast, bundle._reference_parts, probes) <= fastpath.TOLERANCE
    with caplog.at_level(logging.WARNING):
        assert fastpath.check_explanations(bundle._fast, bundle._fast.model_space(probes)) > 1e-10
    assert "compiled TreeSHAP differs" in caplog.text
    assert explain.compiled_paths(final) is None
    Z = bundle._parts(probes[:3])[0]
    # Exact on purpose: without compiled paths model_contributions calls explain.forest_shap itself, so
    # both sides are the same function on the same array in this process (equality proves the fallback).
    np.testing.assert_array_equal(
        explain.model_contributions("random_forest", final, Z, bundle._bg), explain.forest_shap(final, Z)
    )


# ------------------------------------------------------------------------------------ boosters
def booster(family: str, seed: int = 0):  # type: ignore[no-untyped-def]
    """The protocol grid's larger XGBoost / LightGBM setting (default_config.yaml)."""
    if family == "xgboost":
        return XGBClassifier(
            n_estimators=150, max_depth=3, learning_rate=0.05, subsample=0.8, n_jobs=1, random_state=seed
        )
    return LGBMClassifier(
        n_estimators=150, num_leaves=8, learning_rate=0.05, min_child_samples=10, n_jobs=1, verbose=-1
    )


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("nan_in_training", [False, True], ids=["complete", "nan"])
def test_boosters_equal_their_own_contributions_and_predict(family: str, nan_in_training: bool) -> None:
    """Compiled paths give the library's margin (summed in its order: equal to the last bit on this
    machine) and its SHAP values (LightGBM float64: 1e-12; XGBoost computes them in float32: 2e-5),
    with missing values (both missing-value rules of LightGBM: NaN-aware splits, and NaN compared as 0)
    and ties."""
    X, y = data(400, seed=5)
    rng = np.random.default_rng(1)
    if nan_in_training:
        X[rng.uniform(size=X.shape) < 0.1] = np.nan
    model = booster(family).fit(X, y)
    rows = X[:60].copy()
    rows[rng.uniform(size=rows.shape) < 0.1] = np.nan  # NaN at predict time in both cases
    if family == "xgboost":
        paths = treeshap.from_xgboost(model)
        thr = [float(np.float32(n["split_condition"])) for n in _xgb_splits(model)]
        rows[:10, 0] = thr[:10]  # x == threshold: XGBoost sends it right (x < thr is false)
        lib = model.get_booster().predict(xgb.DMatrix(rows), pred_contribs=True)
        margin = model.predict(rows, output_margin=True)
        lv = np.column_stack(
            [np.full(len(rows), treeshap.xgboost_base_margin(model)), paths.leaf_values(rows)]
        )
        mine_margin = np.cumsum(lv.astype(np.float32), axis=1, dtype=np.float32)[:, -1]
        margin_tol = 1e-5  # float32 margins of order 1: another order moves them by a few ulps (1e-7 each)
        tol = fastpath.XGBOOST_CONTRIB_TOLERANCE
    else:
        paths = treeshap.from_lightgbm(model)
        rows[:10, 0] = [t["threshold"] for t in _lgbm_splits(model)][:10]  # x == threshold: left
        lib = model.predict(rows, pred_contrib=True)
        margin = model.predict(rows, raw_score=True)
        mine_margin = np.cumsum(paths.leaf_values(rows), axis=1)[:, -1]
        margin_tol = tol = 1e-12  # float64 margins of order 1: another order moves them by a few 1e-16
    # Same terms in the library's order, so equal bit for bit here; a library build that vectorises its
    # sum (or a future release that reorders it) may differ in the last bits on another machine.
    np.testing.assert_allclose(mine_margin, margin, rtol=0, atol=margin_tol)
    mine = paths.shap_values(rows)
    np.testing.assert_allclose(mine, lib, rtol=0, atol=tol)
    np.testing.assert_allclose(mine.sum(axis=1), paths.predict(rows), rtol=0, atol=1e-12)  # additivity
    np.testing.assert_allclose(paths.predict(rows), margin, rtol=0, atol=1e-12 if tol < 1e-6 else 1e-5)


def _xgb_splits(model) -> list[dict]:  # type: ignore[no-untyped-def]
    """Split nodes of feature 0 in the booster's JSON dump (for tie rows)."""
    import json

    out, stack = [], [json.loads(t) for t in model.get_booster().get_dump(dump_format="json")]
    while stack:
        node = stack.pop()
        stack += node.get("children", [])
        if node.get("split") == "f0":
            out.append(node)
    return out


def _lgbm_splits(model) -> list[dict]:  # type: ignore[no-untyped-def]
    """Split nodes of feature 0 in LightGBM's ``dump_model()``."""
    out, stack = [], [t["tree_structure"] for t in model.booster_.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            stack += [node["left_child"], node["right_child"]]
            if node["split_feature"] == 0:
                out.append(node)
    return out


def booster_bundle(out: Path, family: str) -> Path:
    """The calculator's synthetic bundle (cohort, schema, preprocessing, 20 refits) with a booster."""
    return build_bundle(out, 7, model=booster(family), family=family)


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_booster_bundle_predicts_and_explains_from_arrays(tmp_path: Path, family: str) -> None:
    """A real booster bundle: the model and its 20 bootstrap refits are evaluated from one set of
    compiled paths and equal the library's ``predict_proba`` within the load-time check's bound
    (``fastpath.TOLERANCE``, 1e-12); the explanation passes that check and sums to the model's log-odds."""
    bundle = load_bundle(booster_bundle(tmp_path / "b", family))
    final = bundle.pipeline.steps[-1][1]
    assert bundle._fast is not None and bundle._fast.boosters is not None
    assert len(bundle._fast.boosters.bases) == 21
    assert explain.compiled_paths(final) is bundle._fast.tree_paths
    rows = calculator_records(200)
    Zf, rf, bf = bundle._parts(rows)
    Zs, rs, bs = bundle._reference_parts(rows)
    np.testing.assert_allclose(Zf, Zs, rtol=0, atol=1e-12)
    assert not np.isnan(Zf).any()  # the imputer fills every missing input
    # Not bit for bit: the fast path's LightGBM sigmoid uses numpy's exp, whose SIMD kernel numpy picks per
    # CPU at run time (with AVX-512 it differs from the C library's exp in ~5 % of random arguments), the
    # library its own C++; on another machine 3 of 200 probabilities differed by 1 ulp (1.1e-16). The bundle
    # accepts the fast path within fastpath.TOLERANCE, so the test asserts that bound.
    np.testing.assert_allclose(rf, rs, rtol=0, atol=fastpath.TOLERANCE)
    np.testing.assert_allclose(bf, bs, rtol=0, atol=fastpath.TOLERANCE)
    for rec in [r for r in rows if bundle.validate(r).ok][:10]:
        pred = bundle.predict_one(rec)
        total = pred.base_value + sum(c for *_, c in pred.contributions)
        assert math.isclose(total, math.log(pred.risk / (1 - pred.risk)), abs_tol=1e-5)
