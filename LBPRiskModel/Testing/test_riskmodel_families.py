"""Every model family can be deployed: bundle round trip and prediction-time contributions that add up."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_riskmodel_bundle import cohort

from LBPRiskModelLib.bundle import load_bundle
from LBPRiskModelLib.export import train
from LBPRiskModelLib.train import load_config

TINY = {
    "n_jobs": 1,
    "cv_folds": 2,
    "optimism_bootstrap": 0,
    "auc_bootstrap": 50,
    "ci_models": 3,
    "selection": {"n_bootstrap": 10},
}


@pytest.mark.parametrize("family", ["logistic_regression", "random_forest", "xgboost", "lightgbm", "mlp"])
def test_family_bundle_round_trip_and_contributions(family: str, tmp_path) -> None:
    df = cohort(n=160, p=15, seed=4)
    cfg = load_config(
        quick=True, overrides={**TINY, "families": [family], "harmonisation": {"enabled": family == "mlp"}}
    )
    res = train(df, "responder", cfg, tmp_path / "b", progress=False, figures_on=False)
    b = load_bundle(tmp_path / "b")
    assert b.family == family
    X = df.drop(columns=["responder"])
    # 1e-12, not bit for bit: the bundle evaluates forests tree by tree (explain.fast_proba) where sklearn may
    # accumulate them in joblib's completion order, and its model-space array may reach BLAS in another
    # memory layout (another kernel, another summation order): last-bit differences, machine dependent.
    np.testing.assert_allclose(
        b.predict(df)["risk"].to_numpy(),
        res["pipeline"].predict_proba(X[list(b.input_columns)])[:, 1],
        rtol=0,
        atol=1e-12,
    )
    rec = df.iloc[5].to_dict()
    t0 = time.perf_counter()
    pred = b.predict_one(rec)
    elapsed = time.perf_counter() - t0
    total = pred.base_value + sum(c for _f, _v, c in pred.contributions)
    expected = np.log(pred.risk / (1 - pred.risk)) if pred.contribution_unit == "log-odds" else pred.risk
    # local accuracy: exact for LR/trees; MLP permutation values satisfy efficiency exactly too
    assert total == pytest.approx(expected, abs=1e-6)
    assert elapsed < 5.0  # generous sanity bound only; latency is benchmarked by the calculator
    if family == "mlp":  # harmonisation on: the centre is a required input
        assert "centre" in [f.name for f in b.schema if f.required]


def test_train_cli_with_config(tmp_path, capsys) -> None:
    from LBPRiskModelLib.cli import main

    data = tmp_path / "table.csv"
    cohort(n=160, p=15, seed=6).to_csv(data, index=False)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "n_jobs: 1\ncv_folds: 2\noptimism_bootstrap: 0\nci_models: 2\nselection: {n_bootstrap: 10}\n"
        "families: [logistic_regression]\n"
    )
    out = tmp_path / "bundle"
    args = [
        "train",
        "--data",
        str(data),
        "--outcome",
        "responder",
        "--config",
        str(cfg),
        "--no-figures",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "test AUC" in capsys.readouterr().out
    assert load_bundle(out).family == "logistic_regression"
    bad = ["train", "--data", str(data), "--outcome", "nope", "--config", str(cfg), "--out", str(out)]
    assert main(bad) == 2
    assert "'nope'" in capsys.readouterr().err
