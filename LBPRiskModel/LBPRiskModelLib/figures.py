"""Report figures (matplotlib Agg): ROC, calibration, decision curve, stability selection, SHAP, LIME.

The real ``shap`` and ``lime`` packages are used here (training/report time only, never in Slicer or
the calculator).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from LBPRiskModelLib import stats


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_plot(y: np.ndarray, probs: dict[str, np.ndarray], path: Path) -> Path:
    """Test-set ROC curves of every family (and the clinical-only model)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, p in probs.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {stats.auc(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="1 − specificity", ylabel="sensitivity", title="Test-set ROC curves")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def calibration_plot(y: np.ndarray, probs: dict[str, np.ndarray], path: Path) -> Path:
    """Observed vs predicted risk in quantile bins (test set)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, p in probs.items():
        mp, ob = stats.calibration_curve(y, p, n_bins=5)
        ax.plot(mp, ob, "o-", label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(
        xlabel="predicted risk",
        ylabel="observed event rate",
        title="Calibration (test set, quintiles)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(fontsize=7)
    return _save(fig, path)


def decision_curve(y: np.ndarray, probs: dict[str, np.ndarray], path: Path) -> Path:
    """Net benefit vs threshold probability, with treat-all and treat-none."""
    th = np.linspace(0.01, 0.9, 90)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    nb = None
    for name, p in probs.items():
        nb = stats.net_benefit(y, p, th)
        ax.plot(th, nb["model"], label=name)
    assert nb is not None
    ax.plot(th, nb["treat_all"], "k--", lw=1, label="treat all")
    ax.plot(th, nb["treat_none"], "k-", lw=1, label="treat none")
    ax.set(
        xlabel="threshold probability",
        ylabel="net benefit",
        title="Decision curve (test set)",
        ylim=(-0.05, max(0.05, y.mean() + 0.05)),
    )
    ax.legend(fontsize=7)
    return _save(fig, path)


def stability_plot(freq: pd.DataFrame, threshold: float, path: Path, top: int = 25) -> Path:
    """Bar chart of the most frequently selected features (LASSO bootstrap stability selection)."""
    d = freq.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.28 * len(d) + 1)))
    ax.barh(
        [s[:60] for s in d["feature"]],
        d["frequency"],
        color=["tab:blue" if s else "tab:gray" for s in d["selected"]],
    )
    ax.axvline(threshold, color="k", ls=":")
    ax.set(xlabel="selection frequency over bootstrap LASSO fits", xlim=(0, 1), title="Stability selection")
    ax.tick_params(axis="y", labelsize=7)
    return _save(fig, path)


def shap_plots(
    family: str,
    model: Any,
    Ztr: np.ndarray,
    Zte: np.ndarray,
    names: list[str],
    out: Path,
    n_patients: int,
    seed: int,
) -> dict[str, Any]:
    """SHAP beeswarm on the test set and waterfall plots for the first ``n_patients`` test cases."""
    import shap

    files: dict[str, Any] = {"waterfall": []}
    rng = np.random.default_rng(seed)
    bg = Ztr[rng.choice(len(Ztr), min(50, len(Ztr)), replace=False)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family in ("random_forest", "xgboost", "lightgbm"):
            explainer = shap.TreeExplainer(model)
            sv = explainer(Zte)
            if sv.values.ndim == 3:
                sv = sv[:, :, 1]
        elif family == "logistic_regression":
            sv = shap.LinearExplainer(model, bg)(Zte)
        else:
            sv = shap.PermutationExplainer(lambda A: model.predict_proba(A)[:, 1], bg, seed=seed)(
                Zte[: min(60, len(Zte))]
            )
    sv.feature_names = [n[:50] for n in names]
    plt.figure()
    shap.plots.beeswarm(sv, max_display=15, show=False)
    files["beeswarm"] = _save(plt.gcf(), out / "shap_beeswarm.png").name
    for i in range(min(n_patients, len(sv.values))):
        plt.figure()
        shap.plots.waterfall(sv[i], max_display=10, show=False)
        files["waterfall"].append(_save(plt.gcf(), out / f"shap_waterfall_{i + 1}.png").name)
    return files


def lime_plots(
    model: Any, Ztr: np.ndarray, Zte: np.ndarray, names: list[str], out: Path, n_patients: int, seed: int
) -> list[str]:
    """LIME explanations (tabular) of the first ``n_patients`` test cases."""
    from lime.lime_tabular import LimeTabularExplainer

    exp = LimeTabularExplainer(
        Ztr,
        feature_names=[n[:50] for n in names],
        class_names=["no", "yes"],
        random_state=seed,
        discretize_continuous=True,
    )
    files = []
    for i in range(min(n_patients, len(Zte))):
        e = exp.explain_instance(
            Zte[i], model.predict_proba, num_features=min(10, Ztr.shape[1]), num_samples=1000
        )
        fig = e.as_pyplot_figure(label=1)
        fig.set_size_inches(7, 4)
        files.append(_save(fig, out / f"lime_{i + 1}.png").name)
    return files
