"""Training pipeline: split, leakage-free CV tuning, test evaluation, optimism bootstrap, bundle.

Order of operations (the test set is touched once, after every choice is fixed on training data):
1. stratified 7:3 split (manifest saved in the bundle);
2. internal k-fold CV on the training set: per fold, harmonisation + imputation/scaling + LASSO
   stability selection are fitted on the fold's training part only, then every family × grid point
   is fitted and scored (AUC) on the held-out fold; best grid point per family by mean CV AUC;
3. the selected model family = best mean CV AUC; threshold (Youden by default) and risk-group
   cut-offs from the training out-of-fold predictions;
4. final refit of the whole pipeline on the full training set, one evaluation on the test set;
5. Harrell's bootstrap optimism correction: the whole pipeline (incl. selection) refitted on each
   bootstrap sample, optimism = mean(AUC on bootstrap sample − AUC on the original training set).
"""

from __future__ import annotations

import copy
import itertools
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from LBPRiskModelLib import stats
from LBPRiskModelLib.dataset import NON_PREDICTORS, data_report, feature_roles, split_manifest
from LBPRiskModelLib.preprocess import build_preprocessor, make_pipeline, transformed_to_fields
from ParaspinalLBPCore.errors import BadInputError, MissingInputError, MissingKeyError

log = logging.getLogger(__name__)
FAMILIES = ("logistic_regression", "random_forest", "xgboost", "lightgbm", "mlp")


def _deep_update(base: dict, new: dict, where: str = "") -> dict:
    for k, v in new.items():
        if k not in base:
            raise BadInputError(f"config: unknown key {where + k!r}")
        if isinstance(base[k], dict) and isinstance(v, dict) and k != "grids":
            _deep_update(base[k], v, where + k + ".")
        elif k == "grids" and isinstance(v, dict):
            base[k].update(v)
        else:
            base[k] = v
    return base


def load_config(
    path: str | Path | None = None, quick: bool = False, overrides: dict | None = None
) -> dict[str, Any]:
    """Default protocol config, optionally the quick preset, a user YAML and overrides (unknown keys → error)."""
    cfg = yaml.safe_load(resources.files("LBPRiskModelLib").joinpath("default_config.yaml").read_text())
    if quick:
        _deep_update(
            cfg, yaml.safe_load(resources.files("LBPRiskModelLib").joinpath("quick_config.yaml").read_text())
        )
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise MissingInputError(f"{p}: config file not found")
        _deep_update(cfg, yaml.safe_load(p.read_text()) or {})
    if overrides:
        _deep_update(cfg, overrides)
    bad = [f for f in cfg["families"] if f not in FAMILIES]
    if bad:
        raise BadInputError(f"config: unknown model family {bad[0]!r}; expected one of {', '.join(FAMILIES)}")
    cfg["protocol"] = bool(
        cfg["selection"]["n_bootstrap"] >= 100 and cfg["optimism_bootstrap"] >= 100 and cfg["cv_folds"] >= 5
    )
    return cfg


def make_estimator(family: str, params: dict[str, Any], seed: int, class_weight: str | None = None) -> Any:
    """A fresh estimator of a model family with the given hyper-parameters (single-threaded)."""
    if family == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=2000, class_weight=class_weight, **params)
    if family == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(random_state=seed, n_jobs=1, class_weight=class_weight, **params)
    if family == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(random_state=seed, n_jobs=1, eval_metric="logloss", tree_method="hist", **params)
    if family == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1, class_weight=class_weight, **params)
    if family == "mlp":
        from sklearn.neural_network import MLPClassifier

        p = dict(params)
        p["hidden_layer_sizes"] = tuple(p.get("hidden_layer_sizes", (16,)))
        p.setdefault("solver", "lbfgs")  # small tabular data: lbfgs converges fast and well
        return MLPClassifier(random_state=seed, max_iter=500, **p)
    raise BadInputError(f"unknown model family {family!r}")


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    """All combinations of a small parameter grid."""
    keys = list(grid)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(grid[k] for k in keys))] or [
        {}
    ]


@dataclass
class Prepared:
    """Modelling table split into predictors/outcome with column kinds and roles."""

    X: pd.DataFrame
    y: np.ndarray
    ids: np.ndarray
    numeric: list[str]
    categorical: list[str]
    roles: dict[str, str]


def prepare(df: pd.DataFrame, outcome: str, cfg: dict[str, Any]) -> Prepared:
    """Select predictors (drop ids, outcome, non-baseline and all-empty columns) and type them."""
    if outcome not in df.columns:
        raise MissingKeyError(f"outcome column {outcome!r} not in the data table")
    id_col = cfg.get("id_col", "case_id")
    df = df[df[outcome].notna()].reset_index(drop=True)
    yv = df[outcome]
    if yv.dtype == bool:
        yv = yv.astype(int)
    vals = set(pd.unique(yv))
    if not vals <= {0, 1} or len(vals) != 2:
        raise BadInputError(
            f"outcome column {outcome!r} must be binary 0/1 with both classes; found {sorted(vals)[:5]}"
        )
    drop = {outcome, id_col, *NON_PREDICTORS, *cfg.get("exclude", [])}
    preds = [c for c in df.columns if c not in drop and df[c].notna().any()]
    if not preds:
        raise BadInputError("no predictor columns left in the data table")
    numeric = [
        c for c in preds if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    categorical = [c for c in preds if c not in numeric]
    X = df[preds].copy()
    for c in categorical:
        X[c] = X[c].map(lambda v: None if pd.isna(v) else str(v)).astype(object)
    for c in numeric:
        X[c] = X[c].astype(float)
    ids = (
        df[id_col].astype(str).to_numpy()
        if id_col in df.columns
        else np.array([f"row{i + 1}" for i in range(len(df))])
    )
    return Prepared(
        X,
        yv.astype(int).to_numpy(),
        ids,
        numeric,
        categorical,
        feature_roles(preds, cfg.get("clinical_columns")),
    )


def _pre_pipeline(prep: Prepared, cfg: dict, seed: int, n_jobs: int) -> Any:
    harm = [c for c in prep.numeric if prep.roles[c] != "clinical"]
    c2 = copy.deepcopy(cfg)
    c2["n_jobs"] = n_jobs
    return make_pipeline(prep.numeric, prep.categorical, harm, "passthrough", c2, random_state=seed)


def _fit_pre(pre: Any, X: pd.DataFrame, y: np.ndarray) -> tuple[Any, np.ndarray]:
    """Fit harmonise → prep → select on (X, y) only; returns fitted steps and the transformed X."""
    pre = clone(pre)
    Z = X
    for _name, step in pre.steps[:-1]:
        Z = step.fit(Z, y).transform(Z)
    return pre, np.asarray(Z, dtype=float)


def _transform(pre: Any, X: pd.DataFrame) -> np.ndarray:
    Z = X
    for _name, step in pre.steps[:-1]:
        Z = step.transform(Z)
    return np.asarray(Z, dtype=float)


def _safe_auc(y: np.ndarray, p: np.ndarray) -> float:
    return stats.auc(y, p) if len(np.unique(y)) == 2 else float("nan")


def _fit_predict(
    family: str, params: dict, seed: int, cw: Any, Ztr: np.ndarray, ytr: np.ndarray, Zte: list[np.ndarray]
) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make_estimator(family, params, seed, cw).fit(Ztr, ytr)
        return [est.predict_proba(Z)[:, 1] for Z in Zte]


def _cv_fold(prep: Prepared, cfg: dict, tr: np.ndarray, va: np.ndarray, seed: int, n_jobs: int) -> dict:
    """One CV fold: fit preprocessing on the fold-train rows, score every family × grid point."""
    pre, Ztr = _fit_pre(_pre_pipeline(prep, cfg, seed, n_jobs), prep.X.iloc[tr], prep.y[tr])
    Zva = _transform(pre, prep.X.iloc[va])
    out = {}
    for fam in cfg["families"]:
        for gi, params in enumerate(grid_points(cfg["grids"][fam])):
            (p,) = _fit_predict(fam, params, seed, cfg["class_weight"], Ztr, prep.y[tr], [Zva])
            out[(fam, gi)] = p
    return out


def _optimism_rep(
    prep: Prepared, cfg: dict, tr: np.ndarray, best: dict, b: int, seed: int
) -> dict[str, float]:
    """One Harrell bootstrap replicate: whole pipeline refitted on a bootstrap sample of the training set."""
    rng = np.random.default_rng(seed + 1000 + b)
    ytr = prep.y[tr]
    while True:
        idx = tr[rng.integers(0, len(tr), len(tr))]
        if len(np.unique(prep.y[idx])) == 2:
            break
    pre, Zb = _fit_pre(_pre_pipeline(prep, cfg, seed + b, 1), prep.X.iloc[idx], prep.y[idx])
    Zo = _transform(pre, prep.X.iloc[tr])
    out = {}
    for fam in cfg["families"]:
        pb, po = _fit_predict(fam, best[fam], seed, cfg["class_weight"], Zb, prep.y[idx], [Zb, Zo])
        out[fam] = _safe_auc(prep.y[idx], pb) - _safe_auc(ytr, po)
    return out


class StageProgress:
    """A tqdm-like step counter that reports ``(done, total, stage)`` to a callback instead of drawing a bar.

    Passed as ``progress`` to :func:`run_training` (and created by ``export.train`` from a callback), so
    a program running training in the background can show the same steps the tqdm bar counts.
    """

    def __init__(self, callback: Callable[[int, int, str], None], total: int) -> None:
        self.callback, self.total, self.n, self.stage = callback, int(total), 0, ""

    def update(self, n: int = 1) -> None:
        """``n`` more steps of the current stage are done."""
        self.n = min(self.n + n, self.total)
        self.callback(self.n, self.total, self.stage)

    def set_postfix_str(self, stage: str) -> None:
        """A new stage starts (same call as tqdm's, so the training loop drives either)."""
        self.stage = stage
        self.callback(self.n, self.total, stage)

    def advance(self, stage: str) -> None:
        """One more step is done and ``stage`` starts."""
        self.n = min(self.n + 1, self.total)
        self.set_postfix_str(stage)

    def close(self) -> None:
        """Nothing to release (tqdm compatibility)."""


def training_steps(cfg: dict[str, Any]) -> int:
    """Steps :func:`run_training` counts: each CV fold, the final fit, each optimism replicate."""
    return int(cfg["cv_folds"]) + 1 + int(cfg["optimism_bootstrap"])


def run_training(
    df: pd.DataFrame, outcome: str, cfg: dict[str, Any], progress: bool | StageProgress = True
) -> dict[str, Any]:
    """Everything up to the bundle: returns fitted objects, predictions and metrics (see :func:`train`).

    ``progress``: a tqdm bar on stderr (True), nothing (False), or a :class:`StageProgress`.

    BLAS/OpenMP are limited to one thread: parallelism is over folds/replicates, and multi-threaded
    BLAS on these tiny matrices makes L-BFGS (MLP) several times slower on a loaded 2-core machine.
    """
    import lightgbm  # noqa: F401  (load every BLAS/OpenMP runtime before limiting them)
    import sklearn.neural_network  # noqa: F401
    import xgboost  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _run_training(df, outcome, cfg, progress)


def _run_training(
    df: pd.DataFrame, outcome: str, cfg: dict[str, Any], progress: bool | StageProgress
) -> dict[str, Any]:
    """The numbered steps of the module docstring, announced as stages on ``progress``."""
    seed = int(cfg["seed"])
    prep = prepare(df, outcome, cfg)
    report = data_report(
        pd.concat([prep.X, pd.Series(prep.y, name=outcome)], axis=1), outcome, list(prep.X.columns)
    )
    # 1. stratified split
    manifest = split_manifest(prep.ids, prep.y, float(cfg["test_size"]), seed)
    tr = np.flatnonzero(manifest["set"].to_numpy() == "train")
    te = np.flatnonzero(manifest["set"].to_numpy() == "test")
    if isinstance(progress, StageProgress):
        bar = progress
    else:
        bar = tqdm(total=training_steps(cfg), desc="train", disable=not progress, unit="step")
    bar.set_postfix_str("cross-validation")
    cv, best, oof = _cross_validate(prep, cfg, tr, bar)  # 2.
    selected = max(cfg["families"], key=lambda f: cv[f]["cv_auc_best"])  # 3.
    bar.set_postfix_str("final fit")
    final = _final_fit(prep, cfg, tr, te, best)  # 4.
    bar.update(1)
    clinical = _clinical_only(prep, tr, te)
    bar.set_postfix_str("optimism bootstrap")
    opt_reps = _optimism_bootstrap(prep, cfg, tr, best, bar)  # 5.
    bar.close()
    metrics = _metrics(prep, cfg, tr, te, cv, oof, final, clinical, opt_reps)
    metrics["selected_model"] = selected
    metrics["selection_reason"] = (
        f"{selected} had the highest mean internal {cfg['cv_folds']}-fold CV AUC on the training set "
        f"({cv[selected]['cv_auc_best']:.3f}); chosen before the test set was evaluated."
    )
    metrics["data_report"] = report
    metrics["n_train"], metrics["n_test"] = len(tr), len(te)
    metrics["events_train"], metrics["events_test"] = int(prep.y[tr].sum()), int(prep.y[te].sum())
    metrics["protocol_config"] = cfg["protocol"]
    return {
        "prep": prep,
        "cfg": cfg,
        "outcome": outcome,
        "manifest": manifest,
        "train_idx": tr,
        "test_idx": te,
        "pre": final["pre"],
        "Ztr": final["Ztr"],
        "Zte": final["Zte"],
        "models": final["models"],
        "best": best,
        "oof": oof,
        "p_test": final["p_test"],
        "clinical": clinical,
        "selected": selected,
        "metrics": metrics,
    }


def _cross_validate(
    prep: Prepared, cfg: dict[str, Any], tr: np.ndarray, bar: Any
) -> tuple[dict[str, Any], dict[str, dict], dict[str, np.ndarray]]:
    """Internal k-fold CV on the training rows: per family the grid's mean fold AUCs, the best grid point
    and its out-of-fold predictions (folds run in parallel; selection is single-threaded inside)."""
    seed, n_jobs = int(cfg["seed"]), int(cfg["n_jobs"])
    ytr = prep.y[tr]
    skf = StratifiedKFold(int(cfg["cv_folds"]), shuffle=True, random_state=seed)
    folds = list(skf.split(np.zeros(len(tr)), ytr))
    fold_out = Parallel(n_jobs=n_jobs)(delayed(_cv_fold)(prep, cfg, tr[a], tr[b], seed, 1) for a, b in folds)
    bar.update(len(folds))
    cv: dict[str, Any] = {}
    best: dict[str, dict] = {}
    oof: dict[str, np.ndarray] = {}
    for fam in cfg["families"]:
        grid = grid_points(cfg["grids"][fam])
        scores = []
        for gi in range(len(grid)):
            fold_aucs = [
                _safe_auc(ytr[b], fo[(fam, gi)]) for (_a, b), fo in zip(folds, fold_out, strict=True)
            ]
            scores.append(float(np.nanmean(fold_aucs)))
        gbest = int(np.nanargmax(scores))
        best[fam] = grid[gbest]
        o = np.empty(len(tr))
        for (_a, b), fo in zip(folds, fold_out, strict=True):
            o[b] = fo[(fam, gbest)]
        oof[fam] = o
        cv[fam] = {"grid": grid, "cv_auc": scores, "best_params": grid[gbest], "cv_auc_best": scores[gbest]}
    return cv, best, oof


def _final_fit(
    prep: Prepared, cfg: dict[str, Any], tr: np.ndarray, te: np.ndarray, best: dict[str, dict]
) -> dict[str, Any]:
    """Refit the whole pipeline on the training rows with each family's best grid point; the test rows
    are only transformed and predicted (the one time they are used)."""
    seed, n_jobs = int(cfg["seed"]), int(cfg["n_jobs"])
    ytr = prep.y[tr]
    pre, Ztr = _fit_pre(_pre_pipeline(prep, cfg, seed, n_jobs), prep.X.iloc[tr], ytr)
    Zte = _transform(pre, prep.X.iloc[te])
    models, p_train, p_test = {}, {}, {}
    for fam in cfg["families"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models[fam] = make_estimator(fam, best[fam], seed, cfg["class_weight"]).fit(Ztr, ytr)
        p_train[fam] = models[fam].predict_proba(Ztr)[:, 1]
        p_test[fam] = models[fam].predict_proba(Zte)[:, 1]
    return {"pre": pre, "Ztr": Ztr, "Zte": Zte, "models": models, "p_train": p_train, "p_test": p_test}


def _clinical_only(prep: Prepared, tr: np.ndarray, te: np.ndarray) -> dict[str, Any] | None:
    """Comparison model: logistic regression on the clinical predictors alone (no selection), or None
    when there are no clinical columns or nothing else."""
    clin_cols = [c for c in prep.X.columns if prep.roles[c] == "clinical"]
    if not clin_cols or len(clin_cols) >= prep.X.shape[1]:
        return None
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    prep_step = build_preprocessor(
        [c for c in clin_cols if c in prep.numeric], [c for c in clin_cols if c in prep.categorical]
    )
    cp = Pipeline([("prep", prep_step), ("model", LogisticRegression(max_iter=2000))])
    cp.fit(prep.X.iloc[tr][clin_cols], prep.y[tr])
    return {"columns": clin_cols, "p_test": cp.predict_proba(prep.X.iloc[te][clin_cols])[:, 1]}


def _optimism_bootstrap(
    prep: Prepared, cfg: dict[str, Any], tr: np.ndarray, best: dict[str, dict], bar: Any
) -> list[dict[str, float]]:
    """Harrell's optimism bootstrap of the AUC: the whole pipeline refitted per replicate (in parallel)."""
    seed, n_jobs = int(cfg["seed"]), int(cfg["n_jobs"])
    B = int(cfg["optimism_bootstrap"])
    opt_reps: list[dict[str, float]] = []
    if B > 0:
        gen = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_optimism_rep)(prep, cfg, tr, best, b, seed) for b in range(B)
        )
        for r in gen:
            opt_reps.append(r)
            bar.update(1)
    return opt_reps


def _metrics(
    prep: Prepared,
    cfg: dict[str, Any],
    tr: np.ndarray,
    te: np.ndarray,
    cv: dict[str, Any],
    oof: dict[str, np.ndarray],
    final: dict[str, Any],
    clinical: dict[str, Any] | None,
    opt_reps: list[dict[str, float]],
) -> dict[str, Any]:
    """Test-set metrics per family (threshold fixed on the training out-of-fold predictions) and of the
    clinical-only model."""
    ytr, yte = prep.y[tr], prep.y[te]
    metrics: dict[str, Any] = {"families": {}}
    for fam in cfg["families"]:
        thr = (
            stats.youden_threshold(ytr, oof[fam]) if cfg["threshold"] == "youden" else float(cfg["threshold"])
        )
        p_test = final["p_test"][fam]
        m = _test_metrics(yte, p_test, int(cfg["auc_bootstrap"]), int(cfg["seed"]))
        apparent = _safe_auc(ytr, final["p_train"][fam])
        optimism = float(np.nanmean([r[fam] for r in opt_reps])) if opt_reps else float("nan")
        m = {
            "best_params": cv[fam]["best_params"],
            "cv_auc": cv[fam]["cv_auc_best"],
            "cv_grid": {"params": cv[fam]["grid"], "auc": cv[fam]["cv_auc"]},
            "threshold": thr,
            **m,
            "apparent_train_auc": apparent,
            "optimism": optimism,
            "optimism_corrected_auc": apparent - optimism,
            "n_optimism_bootstrap": len(opt_reps),
            **stats.threshold_metrics(yte, p_test, thr),
        }
        if clinical is not None:
            d, z, pv = stats.delong_test(yte, p_test, clinical["p_test"])
            m["vs_clinical_only"] = {"auc_difference": d, "z": z, "p_delong": pv}
        m["subgroups"] = subgroup_table(prep.X.iloc[te], yte, p_test, thr)
        metrics["families"][fam] = m
    if clinical is not None:
        a, _se, lo, hi = stats.delong_auc_ci(yte, clinical["p_test"])
        metrics["clinical_only"] = {
            "columns": clinical["columns"],
            "test_auc": a,
            "test_auc_ci_delong": [lo, hi],
        }
    return metrics


def _test_metrics(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """AUC with DeLong SE/CI and bootstrap CI, Brier score and calibration slope/intercept."""
    a, se, lo, hi = stats.delong_auc_ci(y, p)
    blo, bhi = stats.bootstrap_auc_ci(y, p, n_boot, seed=seed)
    slope, inter = stats.calibration_slope_intercept(y, p)
    return {
        "test_auc": a,
        "test_auc_se_delong": se,
        "test_auc_ci_delong": [lo, hi],
        "test_auc_ci_bootstrap": [blo, bhi],
        "brier": stats.brier(y, p),
        "calibration_slope": slope,
        "calibration_intercept": inter,
    }


def subgroup_table(X: pd.DataFrame, y: np.ndarray, p: np.ndarray, thr: float) -> list[dict[str, Any]]:
    """Test-set AUC, sensitivity and specificity by sex and centre (where the columns exist)."""
    rows = []
    for col in ("sex", "centre"):
        if col not in X.columns:
            continue
        for val in sorted(X[col].dropna().astype(str).unique()):
            mask = (X[col].astype(str) == val).to_numpy()
            tm = stats.threshold_metrics(y[mask], p[mask], thr)
            rows.append(
                {
                    "variable": col,
                    "value": val,
                    "n": int(mask.sum()),
                    "events": int(y[mask].sum()),
                    "auc": _safe_auc(y[mask], p[mask]),
                    "sensitivity": tm["sensitivity"],
                    "specificity": tm["specificity"],
                }
            )
    return rows


def selected_fields(result: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(model-space column → input field for the selected columns, distinct input fields used)."""
    pre = result["pre"]
    prep_step = pre.named_steps["prep"]
    col_fields = transformed_to_fields(prep_step)
    support = pre.named_steps["select"].support_
    cols = [f for f, s in zip(col_fields, support, strict=True) if s]
    fields = list(dict.fromkeys(cols))
    harm = pre.named_steps["harmonise"]
    if (
        getattr(harm, "active_", False)
        and any(f in harm.columns_ for f in fields)
        and harm.batch_col not in fields
    ):
        fields.append(harm.batch_col)
    return cols, fields


def selection_frequencies(result: dict[str, Any]) -> pd.DataFrame:
    """Stability-selection frequency per model-space column of the final training fit."""
    pre = result["pre"]
    sel = pre.named_steps["select"]
    names = pre.named_steps["prep"].get_feature_names_out()
    names = [n.split("__", 1)[1] if n.startswith(("num__", "cat__")) else n for n in names]
    df = pd.DataFrame(
        {
            "feature": names,
            "field": transformed_to_fields(pre.named_steps["prep"]),
            "frequency": sel.frequency_,
            "selected": sel.support_,
        }
    )
    return df.sort_values("frequency", ascending=False, kind="stable").reset_index(drop=True)
