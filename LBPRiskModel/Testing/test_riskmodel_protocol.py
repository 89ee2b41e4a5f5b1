"""Full protocol configuration on a trial-sized cohort (314 rows × ~1,000 features); slow."""

from __future__ import annotations

import pytest
from test_riskmodel_validation import twin_cohort

from LBPRiskModelLib.bundle import load_bundle
from LBPRiskModelLib.export import train
from LBPRiskModelLib.train import load_config, selection_frequencies


@pytest.mark.slow
def test_full_protocol_run_recovers_planted_signal(tmp_path) -> None:
    df, planted = twin_cohort(n=314, p=1000, seed=21)
    cfg = load_config()
    assert cfg["protocol"] and cfg["selection"]["n_bootstrap"] >= 100 and cfg["optimism_bootstrap"] >= 100
    res = train(df, "responder", cfg, tmp_path / "bundle", progress=False)
    m = res["metrics"]
    assert m["protocol_config"] is True
    assert set(m["families"]) == {"logistic_regression", "random_forest", "xgboost", "lightgbm", "mlp"}
    for fam, fm in m["families"].items():
        assert fm["n_optimism_bootstrap"] == 100
        assert fm["test_auc"] > 0.65, fam
        assert fm["optimism_corrected_auc"] <= fm["apparent_train_auc"] + 1e-9 or fm["optimism"] < 0
    sel = m["families"][m["selected_model"]]
    assert sel["test_auc"] >= 0.75
    freq = selection_frequencies(res)
    assert set(freq["feature"].head(3)) == set(planted)
    b = load_bundle(tmp_path / "bundle")
    assert b.predict(df.head(5))["risk"].between(0, 1).all()
