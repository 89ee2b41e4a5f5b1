"""Model bundle: round trip, tamper/extra-file/version/trust-list refusal, schema validation, CLI."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from LBPRiskModelLib.bundle import MANIFEST, BundleError, load_bundle
from LBPRiskModelLib.cli import main
from LBPRiskModelLib.export import train
from LBPRiskModelLib.train import load_config

FAST = {"n_jobs": 1, "optimism_bootstrap": 2, "auc_bootstrap": 100, "ci_models": 5}


def cohort(n: int = 240, p: int = 40, seed: int = 3) -> pd.DataFrame:
    """Small synthetic cohort with clinical columns, a measurement and radiomic features."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    df = pd.DataFrame(X, columns=[f"original_glcm_F{i}__multifidus_left__L4" for i in range(p)])
    df["fat_fraction_pct__multifidus_left__all"] = rng.uniform(5, 45, n)
    df["age"] = rng.normal(70, 6, n).round()
    df["sex"] = rng.choice(["F", "M"], n)
    df["centre"] = rng.choice(["C1", "C2", "C3"], n)
    lp = (
        1.2 * X[:, 0]
        - 1.0 * X[:, 1]
        + 0.08 * (df["fat_fraction_pct__multifidus_left__all"] - 25)
        + 0.8 * (df["sex"] == "M")
    )
    df["responder"] = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int)
    df.insert(0, "case_id", [f"P{i:04d}" for i in range(n)])
    return df


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict, pd.DataFrame]:
    df = cohort()
    out = tmp_path_factory.mktemp("bundle") / "b"
    cfg = load_config(quick=True, overrides=FAST)
    res = train(df, "responder", cfg, out, outcome_definition="test outcome", progress=False)
    return out, res, df


def test_round_trip_predictions_identical(trained) -> None:
    out, res, df = trained
    b = load_bundle(out)
    direct = res["pipeline"].predict_proba(df.drop(columns=["responder"]).loc[:, list(b.input_columns)])[:, 1]
    via = b.predict(df, id_col="case_id")
    # 1e-12: the bundle applies the pipeline's steps one by one (forests tree by tree), so BLAS and the
    # forest may sum in another order than Pipeline.predict_proba: last-bit differences, machine dependent.
    np.testing.assert_allclose(via["risk"].to_numpy(), direct, rtol=0, atol=1e-12)
    assert {"risk", "risk_group", "top1_feature", "top1_contribution", "ci_low", "ci_high"} <= set(
        via.columns
    )
    assert (via["ci_low"] <= via["risk"]).all() and (via["risk"] <= via["ci_high"]).all()
    assert set(via["risk_group"]) <= {"low", "intermediate", "high"}
    # a second load gives bit-identical predictions: exact on purpose, the same computation on the same data
    # in one process (the skops round trip restores every fitted number exactly)
    np.testing.assert_array_equal(load_bundle(out).predict(df)["risk"].to_numpy(), via["risk"].to_numpy())


def test_predict_one_explanation_adds_up(trained) -> None:
    out, _res, df = trained
    b = load_bundle(out)
    rec = df.iloc[0].to_dict()
    pred = b.predict_one(rec)
    assert 0 < pred.risk < 1 and pred.ci_low <= pred.risk <= pred.ci_high
    assert pred.bundle_hash == (out / "bundle_hash").read_text().strip()
    total = pred.base_value + sum(c for _f, _v, c in pred.contributions)
    if pred.contribution_unit == "log-odds":
        assert total == pytest.approx(np.log(pred.risk / (1 - pred.risk)), abs=1e-6)
    else:
        assert total == pytest.approx(pred.risk, abs=1e-6)
    mags = [abs(c) for _f, _v, c in pred.contributions]
    assert mags == sorted(mags, reverse=True)
    assert pred.top_features[0] == pred.contributions[0][0]
    # the planted strongest feature is among the model's inputs
    assert "original_glcm_F0__multifidus_left__L4" in [f.name for f in b.schema]


def test_schema_and_validation(trained) -> None:
    out, _res, df = trained
    b = load_bundle(out)
    for f in b.schema:
        assert f.label_en and f.label_zh and f.type in ("number", "category")
        if f.type == "number":
            assert f.min <= f.max
    num = next(f for f in b.schema if f.type == "number")
    rec = df.iloc[1].to_dict()
    ok = b.validate(rec)
    assert ok.ok and not ok.warnings
    bad = dict(rec, **{num.name: "abc"})
    assert "number" in b.validate(bad).errors[num.name]
    far = dict(rec, **{num.name: num.max + 10 * (num.max - num.min)})
    res = b.validate(far)
    if num.hard_max is not None and far[num.name] > num.hard_max:
        assert num.name in res.errors
    else:
        assert "training range" in res.warnings[num.name]
    missing = dict(rec, **{num.name: ""})
    assert "imputed" in b.validate(missing).warnings[num.name]
    with pytest.raises(ValueError, match=num.name):
        b.predict_one(bad)
    ff = next((f for f in b.schema if f.name.startswith("fat_fraction_pct")), None)
    if ff is not None:
        assert "valid range" in b.validate(dict(rec, **{ff.name: 150})).errors[ff.name]


def _rehash(path: Path) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in (MANIFEST, "bundle_hash"))
    man = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(path).as_posix()}\n" for p in files
    )
    (path / MANIFEST).write_text(man)
    (path / "bundle_hash").write_text(hashlib.sha256(man.encode()).hexdigest() + "\n")


def test_one_byte_change_to_any_file_is_refused(trained, tmp_path) -> None:
    out, _res, _df = trained
    work = tmp_path / "b"
    shutil.copytree(out, work)
    files = sorted(p for p in work.rglob("*") if p.is_file())
    assert len(files) >= 10
    for f in files:
        original = f.read_bytes()
        data = bytearray(original)
        data[len(data) // 2] ^= 0x01
        f.write_bytes(bytes(data))
        with pytest.raises(BundleError, match=re.escape(f.name)):
            load_bundle(work)
        f.write_bytes(original)
    load_bundle(work)  # restored → accepted
    (work / "report" / "extra.txt").write_text("x")
    with pytest.raises(BundleError, match=re.escape("extra.txt")):
        load_bundle(work)


def test_incompatible_version_and_untrusted_type_refused(trained, tmp_path) -> None:
    out, _res, _df = trained
    work = tmp_path / "b"
    shutil.copytree(out, work)
    meta = json.loads((work / "metadata.json").read_text())
    meta["versions"]["scikit-learn"] = "0.24.2"
    (work / "metadata.json").write_text(json.dumps(meta))
    _rehash(work)
    with pytest.raises(BundleError, match="scikit-learn"):
        load_bundle(work)
    shutil.rmtree(work)
    shutil.copytree(out, work)
    import skops.io as sio
    from sklearn.svm import SVC

    sio.dump(SVC().fit([[0.0], [1.0]], [0, 1]), work / "ci_models.skops")
    _rehash(work)  # hashes consistent, but the file holds another model type
    with pytest.raises(BundleError, match=re.escape("ci_models.skops")):
        load_bundle(work)
    from fractions import Fraction

    sio.dump([Fraction(1, 3)], work / "ci_models.skops")
    _rehash(work)  # a type outside the explicit trust list is never instantiated
    with pytest.raises(BundleError, match="trust list"):
        load_bundle(work)


def test_cli_predict_and_report(trained, tmp_path, capsys) -> None:
    out, _res, df = trained
    data = tmp_path / "new.csv"
    df.drop(columns=["responder"]).head(12).to_csv(data, index=False)
    preds = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(out), "--data", str(data), "--out", str(preds)]) == 0
    p = pd.read_csv(preds)
    assert len(p) == 12 and p["risk"].between(0, 1).all() and "top1_feature" in p.columns
    rep = tmp_path / "report.html"
    assert main(["report", "--model", str(out), "--out", str(rep)]) == 0
    html = rep.read_text()
    for needle in ("DeLong", "TRIPOD", "Calibration", "data:image/png;base64", "Subgroups"):
        assert needle in html
    assert "http://" not in html and "https://" not in html  # self-contained
    assert main(["predict", "--model", str(tmp_path / "nope"), "--data", str(data), "--out", str(preds)]) == 2
    assert "refusing bundle" in capsys.readouterr().err


def test_one_sided_valid_range_message(trained) -> None:
    """A field with only a lower hard bound (e.g. an area ≥ 0) reports '≥ 0', never crashes."""
    out, _res, df = trained
    b = load_bundle(out)
    num = next(f for f in b.schema if f.type == "number")
    num.hard_min, num.hard_max = 0.0, None
    res = b.validate(dict(df.iloc[1].to_dict(), **{num.name: -1.0}))
    assert res.errors[num.name].startswith("outside the valid range ≥ 0")


def test_model_card_states_the_disclaimer(trained) -> None:
    from LBPRiskModelLib.bundle import DISCLAIMER_EN, DISCLAIMER_ZH

    out, _res, _df = trained
    card = (out / "model_card.md").read_text(encoding="utf-8")
    assert DISCLAIMER_EN in card and DISCLAIMER_ZH in card
