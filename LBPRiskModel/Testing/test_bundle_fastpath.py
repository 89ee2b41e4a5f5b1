"""The numpy one-row fast path (fastpath.py) equals the scikit-learn path of the bundle to 1e-12.

Real fitted pipelines (the library's ``make_pipeline``: ComBat on and off, stability selection,
imputer/scaler/one-hot) and real bootstrap models are saved as real bundles, loaded, and every
prediction part — model-space row, risk, the 20 bootstrap risks, and the full ``predict_one``
result — is compared with the scikit-learn path on many random rows, including missing values,
unknown and unseen categories.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import OneHotEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_webapp_support import calculator_bundle, trained_bundle

from LBPRiskModelLib import fastpath
from LBPRiskModelLib.bundle import FieldSpec, load_bundle, save_bundle
from LBPRiskModelLib.preprocess import make_pipeline, transformed_to_fields

TOL = 1e-12
NUMERIC = ["age", "odi_baseline", "ff_l4", "feat_a", "feat_b", "feat_c"]
CATEGORICAL = ["sex", "centre"]


def cohort(n: int = 160, seed: int = 11) -> pd.DataFrame:
    """Synthetic cohort with centre effects (for ComBat), missing values and a planted signal."""
    rng = np.random.default_rng(seed)
    centre = rng.choice(["C1", "C2", "C3"], n)
    shift = pd.Series(centre).map({"C1": 0.0, "C2": 1.5, "C3": -1.0}).to_numpy()
    df = pd.DataFrame(
        {
            "age": rng.uniform(60, 85, n).round(),
            "odi_baseline": rng.uniform(10, 70, n).round(),
            "ff_l4": rng.uniform(5, 45, n) + 3 * shift,
            "feat_a": rng.normal(size=n) + shift,
            "feat_b": rng.normal(size=n),
            "feat_c": rng.normal(size=n) * 2 - shift,
            "sex": rng.choice(["F", "M"], n).astype(object),
            "centre": centre.astype(object),
        }
    )
    lp = -3 + 0.05 * df.odi_baseline + 0.05 * df.ff_l4 + 0.8 * df.feat_b + 0.5 * (df.sex == "M")
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-lp))).astype(int).to_numpy()
    for col in ("ff_l4", "feat_a"):
        df.loc[rng.choice(n, 8, replace=False), col] = np.nan
    df.loc[rng.choice(n, 4, replace=False), "sex"] = None  # None is its own category in sklearn
    return df, y


def schema() -> list[FieldSpec]:
    """Optional fields everywhere, so random rows with missing values pass validation."""
    out = [
        FieldSpec(c, c, c, "number", "", lo, hi, None, None)
        for c, lo, hi in [
            ("age", 60, 85),
            ("odi_baseline", 10, 70),
            ("ff_l4", 0, 60),
            ("feat_a", -4, 4),
            ("feat_b", -4, 4),
            ("feat_c", -8, 8),
        ]
    ]
    out += [
        FieldSpec("sex", "sex", "sex", "category", categories=["F", "M"]),
        FieldSpec("centre", "centre", "centre", "category", categories=["C1", "C2", "C3", "C4"]),
    ]
    return out


def make_bundle(out: Path, estimator, combat: bool, onehot_drop: str | None = None) -> Path:
    """Fit the library pipeline + 20 bootstrap refits and save a real bundle."""
    df, y = cohort()
    cfg = {
        "harmonisation": {"enabled": combat, "batch_col": "centre"},
        "selection": {"n_bootstrap": 12, "q": 4, "threshold": 0.3, "min_features": 2},
        "n_jobs": 1,
    }
    pipe = make_pipeline(NUMERIC, CATEGORICAL, ["ff_l4", "feat_a", "feat_c"], estimator, cfg)
    if onehot_drop:
        pipe.named_steps["prep"].transformers[1][1].steps[-1] = (
            "onehot",
            OneHotEncoder(drop=onehot_drop, handle_unknown="ignore", sparse_output=False),
        )
    pipe.fit(df, y)
    Zsel = pipe[:-1].transform(df)
    rng = np.random.default_rng(5)
    ci_models = []
    for _ in range(20):
        idx = rng.integers(0, len(y), len(y))
        ci_models.append(clone(estimator).fit(Zsel[idx], y[idx]))
    prep = pipe.named_steps["prep"]
    support = pipe.named_steps["select"].support_
    fields = transformed_to_fields(prep)
    if onehot_drop:  # one column fewer per category field
        enc = prep.named_transformers_["cat"].named_steps["onehot"]
        fields = NUMERIC + [c for c, cats in zip(CATEGORICAL, enc.categories_, strict=True) for _ in cats[1:]]
    cols = [c for c, keep in zip(fields, support, strict=True) if keep]
    family = {
        LogisticRegression: "logistic_regression",
        RandomForestClassifier: "random_forest",
        MLPClassifier: "mlp",
    }[type(estimator)]
    save_bundle(
        out,
        pipeline=pipe,
        family=family,
        ci_models=ci_models,
        schema=schema(),
        metadata={"model_version": "t", "risk_groups": {"names": ["low", "high"], "cutoffs": [0.4]}},
        metrics={},
        explain_info={
            "columns_to_fields": cols,
            "background_mean": Zsel.mean(axis=0).tolist(),
            "background_sample": Zsel[:8].tolist(),
            "input_columns": {**dict.fromkeys(NUMERIC, "number"), **dict.fromkeys(CATEGORICAL, "category")},
        },
        model_card_md="# card\n",
        model_card_html="<p>card</p>",
    )
    return out


def calculator_records(n: int, seed: int = 3) -> list[dict]:
    """Rows of the calculator bundles' schema (test_webapp_support), 20 % of the optional inputs missing."""
    rng = np.random.default_rng(seed)
    return [
        {
            "age": float(rng.uniform(55, 90)),
            "sex": ["F", "M"][rng.integers(2)],
            "odi_baseline": float(rng.integers(0, 101)),
            "bmi": None if rng.uniform() < 0.2 else float(rng.uniform(15, 40)),
            "mean_ff_pct": None if rng.uniform() < 0.2 else float(rng.uniform(0, 60)),
        }
        for _ in range(n)
    ]


def random_records(n: int, seed: int = 1) -> list[dict]:
    """Rows across and beyond the training ranges, with missing values and unseen categories."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row = {
            "age": float(rng.uniform(40, 100)),
            "odi_baseline": float(rng.integers(0, 101)),
            "ff_l4": float(rng.uniform(0, 70)),
            "feat_a": float(rng.normal(0, 3)),
            "feat_b": float(rng.normal(0, 3)),
            "feat_c": float(rng.normal(0, 5)),
            "sex": ["F", "M", None][rng.integers(3)],
            "centre": ["C1", "C2", "C3", "C4", None][rng.integers(5)],
        }
        for k in list(row):
            if rng.uniform() < 0.12:
                row[k] = None
        rows.append(row)
    return rows


def assert_paths_equal(bundle, rows: list[dict]) -> None:
    """Fast and scikit-learn parts agree to 1e-12 (batched and one row at a time)."""
    assert bundle._fast is not None
    Zf, rf, bf = bundle._parts(rows)
    Zs, rs, bs = bundle._reference_parts(rows)
    assert Zf.shape == Zs.shape and bf.shape == bs.shape
    np.testing.assert_allclose(Zf, Zs, rtol=0, atol=TOL)
    np.testing.assert_allclose(rf, rs, rtol=0, atol=TOL)
    np.testing.assert_allclose(bf, bs, rtol=0, atol=TOL)
    for row in rows[:40]:
        Z1, r1, b1 = bundle._parts([row])
        np.testing.assert_allclose(Z1[0], Zs[rows.index(row)], rtol=0, atol=TOL)
        np.testing.assert_allclose(r1[0], rs[rows.index(row)], rtol=0, atol=TOL)
        np.testing.assert_allclose(b1[0], bs[rows.index(row)], rtol=0, atol=TOL)


def assert_predict_one_equal(path: Path, records: list[dict]) -> None:
    """Full ``predict_one`` (risk, interval, group, contributions) with and without the fast path."""
    fast, slow = load_bundle(path), load_bundle(path)
    slow._fast = None
    for rec in records:
        a, b = fast.predict_one(rec), slow.predict_one(rec)
        for attr in ("risk", "ci_low", "ci_high", "base_value"):
            assert math.isclose(getattr(a, attr), getattr(b, attr), rel_tol=0, abs_tol=TOL), attr
        assert a.risk_group == b.risk_group and a.warnings == b.warnings
        assert [(f, v) for f, v, _ in a.contributions] == [(f, v) for f, v, _ in b.contributions]
        np.testing.assert_allclose(
            [c for *_, c in a.contributions], [c for *_, c in b.contributions], rtol=0, atol=TOL
        )


@pytest.mark.parametrize(
    "estimator,combat",
    [
        (LogisticRegression(C=0.5), True),
        (LogisticRegression(C=1.0), False),
        (RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0), True),
        (MLPClassifier(hidden_layer_sizes=(6,), max_iter=300, random_state=0), False),
    ],
    ids=["logreg-combat", "logreg", "forest-combat", "mlp"],
)
def test_fast_path_equals_sklearn(tmp_path: Path, estimator, combat: bool) -> None:
    path = make_bundle(tmp_path / "b", estimator, combat)
    bundle = load_bundle(path)
    if isinstance(estimator, RandomForestClassifier):  # all 21 forests walked as one node array
        assert bundle._fast.forests is not None and len(bundle._fast.forests.counts) == 21
    rows = random_records(400)
    assert_paths_equal(bundle, rows)
    valid = [r for r in rows if bundle.validate(r).ok][:25]
    assert len(valid) >= 10
    assert_predict_one_equal(path, valid)
    if combat:  # ComBat really changes the model-space rows for a known centre
        row = {**rows[0], "centre": "C2", "ff_l4": 30.0}
        other = {**row, "centre": "C4"}  # unseen centre: passes through unchanged
        assert not np.allclose(bundle._parts([row])[0], bundle._parts([other])[0])


def test_logistic_interval_is_one_matrix_product(tmp_path: Path) -> None:
    """For logistic regression the model and all bootstrap models are one stacked coefficient matrix."""
    bundle = load_bundle(make_bundle(tmp_path / "b", LogisticRegression(), True))
    coef, intercept = bundle._fast.linear
    assert coef.shape[1] == 21 and intercept.shape == (21,)
    np.testing.assert_array_equal(coef[:, 0], bundle.pipeline.steps[-1][1].coef_.ravel())  # a copy: exact


@pytest.mark.parametrize("which", ["calculator", "trained"])
def test_calculator_and_trained_bundles_use_the_fast_path(which: str) -> None:
    """The calculator's test bundle and a bundle written by ``export.train`` compile and agree."""
    for path in [calculator_bundle() if which == "calculator" else trained_bundle()]:
        bundle = load_bundle(path)
        assert bundle._fast is not None
        rows = calculator_records(300)
        assert_paths_equal(bundle, rows)
        assert_predict_one_equal(path, [r for r in rows if bundle.validate(r).ok][:20])


def test_unsupported_step_falls_back_to_sklearn(tmp_path: Path) -> None:
    """A step option the fast path does not reproduce (one-hot with drop) keeps the sklearn path."""
    path = make_bundle(tmp_path / "b", LogisticRegression(), False, onehot_drop="first")
    bundle = load_bundle(path)
    assert bundle._fast is None
    with pytest.raises(fastpath.UnsupportedError, match="drop"):
        fastpath.compile_fast_path(bundle.pipeline, bundle.ci_models, bundle.input_columns)
    pred = bundle.predict_one({"age": 70, "sex": "M", "centre": "C1", "odi_baseline": 40})
    direct = bundle._reference_parts([{"age": 70, "sex": "M", "centre": "C1", "odi_baseline": 40}])[1][0]
    assert pred.risk == direct


def test_load_time_check_detects_a_difference(tmp_path: Path) -> None:
    """The probe comparison used at load time sees a 1e-9 change of one coefficient."""
    bundle = load_bundle(make_bundle(tmp_path / "b", LogisticRegression(), True))
    probes = fastpath.probe_records(bundle.schema, bundle.input_columns)
    assert fastpath.max_difference(bundle._fast, bundle._reference_parts, probes) <= TOL
    bundle._fast.linear[0][0, 0] += 1e-9
    assert fastpath.max_difference(bundle._fast, bundle._reference_parts, probes) > TOL


def test_percentiles_equal_numpy_bit_for_bit() -> None:
    """The interval's percentile helper returns exactly ``np.percentile`` (linear method)."""
    rng = np.random.default_rng(0)
    for _ in range(3000):
        v = rng.uniform(size=rng.integers(1, 60)) ** rng.uniform(0.2, 5)
        qs = (0, 2.5, 50, 97.5, 100)
        assert fastpath.percentiles(v, qs) == [float(np.percentile(v, q)) for q in qs]
    nan = np.array([0.1, np.nan, 0.3])
    assert all(math.isnan(x) for x in fastpath.percentiles(nan, (2.5, 97.5)))
