"""Every row of ../shared/reference/stats_reference_values.csv reproduced by the project's own functions.

Datasets: MASS ``anorexia`` (72 rows, embedded below: R's MASS package data, Venables & Ripley),
``dietox`` (shipped in statsmodels' test results), ``lung`` (shipped in lifelines' datasets).
Agreement is required to the printed precision of each reference value (half a unit of its last
printed digit, plus 1e-7 relative for floating-point noise); lme4's random-slope variance
components are printed beyond lme4's own optimizer tolerance, so those three rows get 2e-5 relative.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels
from lbp_pytest_plugin import SHARED, shared_path

from TrialAnalysisLib import ancova, cox, kaplan_meier, logrank, mixed_model

_ANOREXIA = {
    "Cont": "80.7/80.2 89.4/80.1 91.8/86.4 74/86.3 78.1/76.1 88.3/78.1 87.3/75.1 75.1/86.7 80.6/73.5 78.4/84.6 "
    "77.6/77.4 88.7/79.5 81.3/89.6 78.1/81.4 70.5/81.8 77.3/77.3 85.2/84.2 86/75.4 84.1/79.5 79.7/73 85.5/88.3 "
    "84.4/84.7 79.6/81.4 77.5/81.2 72.3/88.2 89/78.8",
    "CBT": "80.5/82.2 84.9/85.6 81.5/81.4 82.6/81.9 79.9/76.4 88.7/103.6 94.9/98.4 76.3/93.4 81/73.4 80.5/82.1 "
    "85/96.7 89.2/95.3 81.3/82.4 76.5/72.5 70/90.9 80.4/71.3 83.3/85.4 83/81.6 87.7/89.1 84.2/83.9 86.4/82.7 "
    "76.5/75.7 80.2/82.6 87.8/100.4 83.3/85.2 79.7/83.6 84.5/84.6 80.8/96.2 87.4/86.7",
    "FT": "83.8/95.2 83.3/94.3 86/91.5 82.5/91.9 86.7/100.3 79.6/76.7 76.9/76.8 94.2/101.6 73.4/94.9 80.5/75.2 "
    "81.6/77.8 82.1/95.5 77.6/90.7 83.5/92.5 89.9/93.8 86/91.7 87.3/98",
}
LOOSE = {"var(Pig intercept)", "cov(intercept,Time)", "var(Pig Time)"}


def anorexia() -> pd.DataFrame:
    """MASS::anorexia (Treat, Prewt, Postwt) with change = Postwt − Prewt."""
    rows = [(t, *map(float, pair.split("/"))) for t, s in _ANOREXIA.items() for pair in s.split()]
    df = pd.DataFrame(rows, columns=["Treat", "Prewt", "Postwt"])
    df["change"] = df["Postwt"] - df["Prewt"]
    return df


def dietox() -> pd.DataFrame:
    return pd.read_csv(Path(statsmodels.__file__).parent / "regression/tests/results/dietox.csv")


def lung() -> pd.DataFrame:
    import lifelines

    return pd.read_csv(Path(lifelines.__file__).parent / "datasets/lung.csv")


@functools.cache
def _fits() -> dict:
    an = anorexia()
    dx = dietox()
    lu = lung()
    return {
        "ancova": ancova(an, "change", "Treat", ["Prewt"]),
        "reml": mixed_model(dx, "Weight", "Time", None, "Pig"),
        "ml": mixed_model(dx, "Weight", "Time", None, "Pig", reml=False),
        "slope": mixed_model(dx, "Weight", "Time", None, "Pig", random_slope=True),
        "km_log": kaplan_meier(lu, "time", "status", "sex"),
        "km_loglog": kaplan_meier(lu, "time", "status", "sex", ci_transform="log-log"),
        "logrank": logrank(lu, "time", "status", "sex"),
        "cox": cox(lu, "time", "status", ["sex"]),
        "cox3": cox(lu, "time", "status", ["age", "sex", "ph.ecog"]),
    }


def _mixed_value(res, q: str) -> float:
    vc = res.tables["variance_components"].set_index("term")["estimate"]
    if q.startswith("fixef "):
        return res.row(q.split()[1])["estimate"]
    if q.startswith("SE "):
        return res.row(q.split()[1])["se"]
    return {
        "residual variance": lambda: vc["residual variance"],
        "var(Pig intercept)": lambda: vc["var(Pig intercept)"],
        "cov(intercept,Time)": lambda: vc["cov(Pig intercept,Time)"],
        "var(Pig Time)": lambda: vc["var(Pig Time)"],
        "logLik": lambda: res.info["loglik"],
    }[q]()


def computed(dataset: str, analysis: str, q: str) -> float:
    """The project's value for one reference row."""
    f = _fits()
    if dataset == "anorexia":
        r = f["ancova"]
        if q.startswith("coef "):
            return r.row(q[5:])["estimate"]
        if q.startswith("SE "):
            return r.row(q[3:])["se"]
        if q.startswith("dispersion"):
            return r.info["dispersion"]
        if q.startswith("deviance"):
            return r.info["rss"]
        if q == "logLik":
            return r.info["loglik"]
        if q.startswith("AIC"):
            return r.info["aic"]
    if dataset == "dietox":
        key = {
            "LMM random intercept REML": "reml",
            "LMM random intercept ML": "ml",
            "LMM random intercept+slope REML": "slope",
        }[analysis]
        return _mixed_value(f[key], q)
    if analysis == "Kaplan-Meier":
        sex = q.split("sex=")[1].split()[0]
        res = f["km_loglog" if "log-log" in q else "km_log"].table.set_index("term").loc[f"median {sex}"]
        if q.startswith("median 95%CI lower"):
            return res["ci_low"]
        if q.startswith("median 95%CI upper"):
            return res["ci_high"]
        return res["estimate"]
    if analysis == "log-rank":
        lr = f["logrank"]
        if q == "chisq":
            return lr.info["chisq"]
        if q == "p":
            return lr.info["p"]
        grp = lr.tables["groups"].set_index("group")
        return grp.loc[int(q.split("sex=")[1]), "expected"]
    if analysis.startswith("Cox PH (Efron) age"):
        return f["cox3"].row(q.split()[1])["estimate"]
    if analysis == "Cox PH (Efron)":
        c = f["cox"]
        row = c.row("sex")
        tests = c.tables["tests"].set_index("term")["statistic"]
        return {
            "coef sex": row["estimate"],
            "SE sex": row["se"],
            "HR sex": row["hr"],
            "HR 95% lower": row["hr_ci_low"],
            "HR 95% upper": row["hr_ci_high"],
            "Wald p sex": row["p"],
            "likelihood ratio test": tests["likelihood ratio"],
            "Wald test": tests["Wald"],
            "score (logrank) test": tests["score (log-rank)"],
        }[q]
    raise KeyError(f"no computation for reference row {dataset}/{analysis}/{q}")


def _rows() -> list[tuple[str, str, str, str]]:
    path = SHARED / "reference/stats_reference_values.csv"
    if not path.exists():
        return [("missing", "", "", "")]
    ref = pd.read_csv(path, dtype=str)
    return list(
        ref[["dataset", "analysis", "quantity", "reference_value"]].itertuples(index=False, name=None)
    )


def _decimals(text: str) -> int:
    mant = text.lower().split("e")[0]
    exp = int(text.lower().split("e")[1]) if "e" in text.lower() else 0
    return (len(mant.split(".")[1]) if "." in mant else 0) - exp


@pytest.mark.parametrize(("dataset", "analysis", "quantity", "value"), _rows())
def test_reference_value(dataset: str, analysis: str, quantity: str, value: str) -> None:
    """One reference number, to its printed precision."""
    shared_path("reference/stats_reference_values.csv")
    ref = float(value)
    got = float(computed(dataset, analysis, quantity))
    tol = 0.5 * 10.0 ** (-_decimals(value)) + 1e-7 * abs(ref)
    if quantity in LOOSE and analysis.endswith("slope REML"):
        tol = max(tol, 2e-5 * abs(ref))
    assert math.isfinite(got)
    assert abs(got - ref) <= tol, (
        f"{dataset} / {analysis} / {quantity}: got {got!r}, R {ref!r} (tol {tol:.2g})"
    )


def test_all_reference_rows_covered() -> None:
    """The CSV has 67 data rows and every one maps to a computation."""
    shared_path("reference/stats_reference_values.csv")
    rows = _rows()
    assert len(rows) == 67
    for d, a, q, _ in rows:
        assert np.isfinite(computed(d, a, q))
