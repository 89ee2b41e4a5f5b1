"""Turn a training run into a bundle: schema, explanation background, CI models, report assets."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from LBPRiskModelLib import figures, reporting
from LBPRiskModelLib.bundle import FieldSpec, save_bundle, write_json
from LBPRiskModelLib.labels import field_text
from LBPRiskModelLib.train import (
    StageProgress,
    run_training,
    selected_fields,
    selection_frequencies,
    training_steps,
)
from ParaspinalLBPCore.errors import BadInputError

#: Steps :func:`train` counts after :func:`~LBPRiskModelLib.train.run_training`: uncertainty models,
#: report assets (figures), writing the bundle.
EXPORT_STEPS = 3


def build_schema(result: dict[str, Any], fields: list[str]) -> list[FieldSpec]:
    """Input schema of the fields the model uses, with training-data ranges and bilingual labels."""
    prep = result["prep"]
    Xtr = prep.X.iloc[result["train_idx"]]
    specs = []
    for f in fields:
        txt = field_text(f)
        role = prep.roles.get(f, "clinical")
        if f in prep.categorical:
            cats = sorted(Xtr[f].dropna().astype(str).unique().tolist())
            specs.append(
                FieldSpec(
                    name=f,
                    type="category",
                    categories=cats,
                    required=(f == "centre"),
                    missing="impute",
                    group=role,
                    **_txt(txt),
                )
            )
        else:
            col = Xtr[f].astype(float)
            specs.append(
                FieldSpec(
                    name=f,
                    type="number",
                    min=float(col.min()),
                    max=float(col.max()),
                    hard_min=txt["hard_min"],
                    hard_max=txt["hard_max"],
                    out_of_range="warn",
                    missing="impute",
                    group=role,
                    **_txt(txt),
                )
            )
    return specs


def _txt(t: dict[str, Any]) -> dict[str, Any]:
    return {k: t[k] for k in ("label_en", "label_zh", "unit", "help_en", "help_zh")}


def risk_cutoffs(cfg: dict[str, Any], oof: np.ndarray) -> dict[str, Any]:
    """Risk-group names and upper cut-offs (config, or tertiles of the training out-of-fold risk)."""
    names = list(cfg["risk_groups"]["names"])
    cuts = cfg["risk_groups"]["cutoffs"]
    if cuts is None:
        cuts = np.quantile(oof, np.linspace(0, 1, len(names) + 1)[1:-1]).round(4).tolist()
        method = f"quantiles of the training out-of-fold predicted risk ({len(names)} equal groups)"
    else:
        method = "configured"
    if len(cuts) != len(names) - 1:
        raise BadInputError("config risk_groups: need one cut-off fewer than names")
    return {"names": names, "cutoffs": [float(c) for c in cuts], "method": method}


def train(
    df: pd.DataFrame,
    outcome: str,
    cfg: dict[str, Any],
    out_dir: str | Path,
    outcome_definition: str = "",
    progress: bool | Callable[[int, int, str], None] = True,
    figures_on: bool = True,
) -> dict[str, Any]:
    """Run the whole pipeline and write the bundle; returns the training result (with bundle_hash).

    ``progress``: a tqdm bar (True), nothing (False), or ``progress(done, total, stage)`` called at each
    step and stage start; its last call is ``(total, total, "done")``. ``figures_on=False`` skips the
    report figures (tests).
    """
    steps = None
    if callable(progress):
        steps = StageProgress(progress, training_steps(cfg) + EXPORT_STEPS)
    res = run_training(df, outcome, cfg, progress=steps if steps is not None else progress)
    if steps is not None:
        steps.set_postfix_str("uncertainty models")
    advance = steps.advance if steps is not None else (lambda stage: None)
    fam = res["selected"]
    model = res["models"][fam]
    cols, fields = selected_fields(res)
    # full pipeline: fitted preprocessing steps + fitted model
    pipe = Pipeline([*[(n, s) for n, s in res["pre"].steps[:-1]], ("model", model)])
    rng = np.random.default_rng(int(cfg["seed"]) + 7)
    ci_models = _ci_models(model, res["Ztr"], res["prep"].y[res["train_idx"]], int(cfg["ci_models"]), rng)
    advance("report")
    explain_info = _explain_info(res, cols, rng, int(cfg["mlp_background"]))
    schema = build_schema(res, fields)
    metrics = res["metrics"]
    metadata = _metadata(
        cfg, outcome, outcome_definition, metrics["families"][fam]["threshold"], res["oof"][fam]
    )
    with tempfile.TemporaryDirectory() as td:
        extra = _report_files(res, Path(td), cols, figures_on)
        card_md, card_html = reporting.model_card(
            metadata | {"model_name": fam}, metrics, schema, explain_info
        )
        write_json(
            Path(td) / "tripod_ai.json", reporting.tripod_checklist(metadata | {"model_name": fam}, metrics)
        )
        extra["report/tripod_ai.json"] = Path(td) / "tripod_ai.json"
        advance("bundle")
        res["bundle_hash"] = save_bundle(
            out_dir,
            pipeline=pipe,
            family=fam,
            ci_models=ci_models,
            schema=schema,
            metadata=metadata,
            metrics=metrics,
            explain_info=explain_info,
            model_card_md=card_md,
            model_card_html=card_html,
            extra_files=extra,
        )
    res["pipeline"] = pipe
    advance("done")
    return res


def _ci_models(model: Any, Z: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> list[Any]:
    """``n`` bootstrap refits of the final estimator on the model-space training matrix ``Z``, for the
    per-patient uncertainty interval (resamples with one class only are drawn again)."""
    ci_models: list[Any] = []
    while len(ci_models) < n:
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci_models.append(clone(model).fit(Z[idx], y[idx]))
    return ci_models


#: How the deployed family's prediction-time explanations are computed (stated in the model card).
EXPLAIN_METHODS = {
    "logistic_regression": "exact linear SHAP vs the training mean (log-odds)",
    "xgboost": "native TreeSHAP, pred_contribs (log-odds)",
    "lightgbm": "native TreeSHAP, pred_contrib (log-odds)",
    "random_forest": "path-dependent TreeSHAP (probability)",
    "mlp": "permutation Shapley, 16 antithetic permutations, seed 0, {n} background rows (log-odds)",
}


def _explain_info(
    res: dict[str, Any], cols: list[str], rng: np.random.Generator, n_background: int
) -> dict[str, Any]:
    """What the bundle needs to explain a prediction: model-space column → input field, the training
    mean and a background sample (MLP), the input columns' kinds and the method's description."""
    Ztr = res["Ztr"]
    prep = res["prep"]
    bg_idx = rng.choice(len(Ztr), min(n_background, len(Ztr)), replace=False)
    return {
        "columns_to_fields": cols,
        "background_mean": Ztr.mean(axis=0).tolist(),
        "background_sample": Ztr[bg_idx].tolist(),
        "input_columns": {c: ("category" if c in prep.categorical else "number") for c in prep.X.columns},
        "method": EXPLAIN_METHODS[res["selected"]].format(n=len(bg_idx)),
    }


def _metadata(
    cfg: dict[str, Any], outcome: str, outcome_definition: str, threshold: float, oof: np.ndarray
) -> dict[str, Any]:
    """The bundle's metadata: outcome, intended use, decision threshold, risk groups, version, config."""
    return {
        "outcome": outcome,
        "outcome_definition": outcome_definition or f"binary column {outcome!r} (1 = event)",
        "intended_use": cfg["intended_use"],
        "threshold": threshold,
        "threshold_method": "Youden index on training out-of-fold predictions"
        if cfg["threshold"] == "youden"
        else "configured",
        "risk_groups": risk_cutoffs(cfg, oof),
        "model_version": cfg["model_version"],
        "n_top_features": 5,
        "config": {k: v for k, v in cfg.items() if k != "intended_use"},
    }


def _report_files(res: dict[str, Any], td: Path, cols: list[str], figures_on: bool) -> dict[str, Path]:
    """Write the report's CSVs (split manifest, selection frequencies, test predictions) and figures into
    ``td``; returns {bundle path: file}. Records the figure names in ``res["metrics"]["figures"]``."""
    prep = res["prep"]
    freq = selection_frequencies(res)
    res["manifest"].to_csv(td / "split_manifest.csv", index=False)
    freq.to_csv(td / "selection_frequencies.csv", index=False)
    te = res["test_idx"]
    preds = pd.DataFrame(
        {"case_id": prep.ids[te], "y": prep.y[te], **{f"p_{k}": v for k, v in res["p_test"].items()}}
    )
    if res["clinical"] is not None:
        preds["p_clinical_only"] = res["clinical"]["p_test"]
    preds.to_csv(td / "test_predictions.csv", index=False)
    extra = {
        f"report/{name}": td / name
        for name in ("split_manifest.csv", "selection_frequencies.csv", "test_predictions.csv")
    }
    figs: dict[str, Any] = {}
    if figures_on:
        figs = make_figures(res, freq, td, cols)
        for v in figs.values():
            for name in v if isinstance(v, list) else [v]:
                extra[f"report/{name}"] = td / name
    res["metrics"]["figures"] = figs
    return extra


def make_figures(res: dict[str, Any], freq: pd.DataFrame, out: Path, cols: list[str]) -> dict[str, Any]:
    """All report figures into ``out``; returns {kind: file name(s)}."""
    cfg = res["cfg"]
    te = res["test_idx"]
    yte = res["prep"].y[te]
    probs = dict(res["p_test"])
    if res["clinical"] is not None:
        probs["clinical_only"] = res["clinical"]["p_test"]
    fam = res["selected"]
    prep_names = res["pre"].named_steps["prep"].get_feature_names_out()
    sel_names = [
        n.split("__", 1)[1] if n.startswith(("num__", "cat__")) else n
        for n, s in zip(prep_names, res["pre"].named_steps["select"].support_, strict=True)
        if s
    ]
    figs: dict[str, Any] = {
        "roc": figures.roc_plot(yte, probs, out / "roc.png").name,
        "calibration": figures.calibration_plot(yte, res["p_test"], out / "calibration.png").name,
        "decision_curve": figures.decision_curve(yte, probs, out / "decision_curve.png").name,
        "stability": figures.stability_plot(
            freq, float(cfg["selection"]["threshold"]), out / "stability.png"
        ).name,
    }
    n_sh = int(cfg["report"]["shap_patients"])
    figs.update(
        figures.shap_plots(
            fam, res["models"][fam], res["Ztr"], res["Zte"], sel_names, out, n_sh, int(cfg["seed"])
        )
    )
    figs["lime"] = figures.lime_plots(
        res["models"][fam],
        res["Ztr"],
        res["Zte"],
        sel_names,
        out,
        int(cfg["report"]["lime_patients"]),
        int(cfg["seed"]),
    )
    return figs
