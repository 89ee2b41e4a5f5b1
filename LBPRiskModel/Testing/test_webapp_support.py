"""Shared helpers of the web-calculator tests: a real bundle and a real server on loopback.

``calculator_bundle()`` fits a real scikit-learn pipeline (the library's own preprocessor +
logistic regression + bootstrap refits for the interval) on a small synthetic cohort with a
planted signal, writes it with ``save_bundle`` and caches the directory for the session.
``running_server()`` starts the ``serve`` command in a subprocess on a free port and
captures its stdout/stderr, so tests can check that no submitted value is ever logged.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from LBPRiskModelLib.bundle import FieldSpec, load_bundle, save_bundle
from LBPRiskModelLib.preprocess import build_preprocessor, transformed_to_fields

# The deliverable command line, and the serve sub-command's stand-alone entry point (same options).
SERVE_CMD = [sys.executable, "-m", "LBPRiskModelLib", "serve"]
SERVE_STANDALONE_CMD = [sys.executable, "-m", "LBPRiskModelLib.webapp.serve_cli"]
NUMERIC = ["age", "odi_baseline", "bmi", "mean_ff_pct"]
CATEGORICAL = ["sex"]


def synthetic_cohort(n: int = 240, seed: int = 7) -> pd.DataFrame:
    """Cohort with a planted logistic signal: higher ODI and fat fraction → higher risk."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.uniform(60, 85, n).round(0),
            "odi_baseline": rng.uniform(10, 70, n).round(0),
            "bmi": rng.normal(25, 3, n).round(1),
            "mean_ff_pct": rng.uniform(5, 45, n).round(1),
            "sex": rng.choice(["F", "M"], n),
        }
    )
    logit = -4.0 + 0.05 * df.odi_baseline + 0.06 * df.mean_ff_pct + 0.4 * (df.sex == "M")
    df["outcome"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    df.loc[rng.choice(n, 10, replace=False), "bmi"] = np.nan
    return df


def _schema(df: pd.DataFrame) -> list[FieldSpec]:
    """Inputs covering every validation path: required/optional, warn/error range policy, categories."""
    return [
        FieldSpec(
            "age",
            "Age",
            "年龄",
            "number",
            "years",
            float(df.age.min()),
            float(df.age.max()),
            18,
            110,
            help_en="Age at baseline",
            help_zh="基线时年龄",
            required=True,
            out_of_range="warn",
        ),
        FieldSpec(
            "sex",
            "Sex",
            "性别",
            "category",
            categories=["F", "M"],
            help_en="F = female, M = male",
            help_zh="F = 女性，M = 男性",
            required=True,
        ),
        FieldSpec(
            "odi_baseline",
            "Oswestry Disability Index (baseline)",
            "Oswestry功能障碍指数 (ODI，基线)",
            "number",
            "points",
            float(df.odi_baseline.min()),
            float(df.odi_baseline.max()),
            0,
            100,
            required=True,
            out_of_range="error",
            missing="error",
        ),
        FieldSpec(
            "bmi",
            "Body-mass index",
            "体重指数 (BMI)",
            "number",
            "kg/m²",
            float(df.bmi.min()),
            float(df.bmi.max()),
            10,
            70,
        ),
        FieldSpec(
            "mean_ff_pct",
            "Mean paraspinal fat fraction",
            "椎旁肌平均脂肪分数",
            "number",
            "%",
            float(df.mean_ff_pct.min()),
            float(df.mean_ff_pct.max()),
            0,
            100,
        ),
    ]


def build_bundle(out_dir: Path, seed: int = 7, model=None, family: str = "logistic_regression") -> Path:  # type: ignore[no-untyped-def]
    """Fit preprocessor + ``model`` (default logistic regression) and 20 bootstrap refits; save a real bundle."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    df = synthetic_cohort(seed=seed)
    X, y = df[NUMERIC + CATEGORICAL], df["outcome"].to_numpy()
    model = LogisticRegression(C=1.0) if model is None else model
    pipe = Pipeline([("prep", build_preprocessor(NUMERIC, CATEGORICAL)), ("model", model)])
    pipe.fit(X, y)
    Z = pipe.steps[0][1].transform(X)
    rng = np.random.default_rng(seed)
    ci_models = []
    for _ in range(20):
        idx = rng.integers(0, len(y), len(y))
        ci_models.append(clone(model).fit(Z[idx], y[idx]))
    explain_info = {
        "columns_to_fields": transformed_to_fields(pipe.steps[0][1]),
        "background_mean": Z.mean(axis=0).tolist(),
        "background_sample": Z[:20].tolist(),
        "input_columns": {**dict.fromkeys(NUMERIC, "number"), **dict.fromkeys(CATEGORICAL, "category")},
    }
    metadata = {
        "model_version": "0.1.0-test",
        "outcome": {"en": "Synthetic outcome (test bundle)", "zh": "合成结局（测试模型包）"},
        "intended_use": {"en": "Testing the web calculator only.", "zh": "仅用于测试网页计算器。"},
        "threshold": 0.5,
        "risk_groups": {"names": ["low", "intermediate", "high"], "cutoffs": [0.2, 0.5]},
    }
    card = "# Model card\n\n- Model: logistic regression\n- Data: synthetic <script>alert(1)</script>\n\n| metric | value |\n|---|---|\n| AUC | 0.8 |\n"
    save_bundle(
        out_dir,
        pipeline=pipe,
        family=family,
        ci_models=ci_models,
        schema=_schema(df),
        metadata=metadata,
        metrics={"selected": family},
        explain_info=explain_info,
        model_card_md=card,
        model_card_html="<html><body><h1>Model card</h1></body></html>",
    )
    return out_dir


@functools.cache
def calculator_bundle() -> Path:
    """One real bundle per test session (built once, in a temporary directory)."""
    return build_bundle(Path(tempfile.mkdtemp(prefix="lbp-webapp-")) / "bundle")


@functools.cache
def trained_bundle() -> Path:
    """A bundle made by the model pipeline itself (``export.train``, quick config, logistic regression)."""
    from LBPRiskModelLib.export import train
    from LBPRiskModelLib.train import load_config

    df = synthetic_cohort(n=200)
    df.insert(0, "case_id", [f"P{i:04d}" for i in range(len(df))])
    cfg = load_config(
        quick=True,
        overrides={
            "families": ["logistic_regression"],
            "optimism_bootstrap": 2,
            "auc_bootstrap": 50,
            "n_jobs": 1,
        },
    )
    out = Path(tempfile.mkdtemp(prefix="lbp-webapp-trained-")) / "bundle"
    train(
        df, "outcome", cfg, out, outcome_definition="synthetic test outcome", progress=False, figures_on=False
    )
    return out


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running calculator: base URL and the file its stdout+stderr go to."""

    url: str
    log_path: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def running_server(
    bundle_dir: Path, timeout: float = 60.0, extra_args: tuple[str, ...] = ()
) -> Iterator[Server]:
    """Start the ``serve`` command on a free loopback port; stop it afterwards."""
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="lbp-serve-")) / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*SERVE_CMD, "--model", str(bundle_dir), "--port", str(port), *extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = Server(f"http://127.0.0.1:{port}", log_path, proc)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_text()}")
            try:
                if httpx.get(server.url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not come up within {timeout} s:\n{server.log_text()}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_synthetic_bundle_loads_and_predicts() -> None:
    """The test bundle is a real, verified bundle whose risk follows the planted signal."""
    bundle = load_bundle(calculator_bundle())
    low = bundle.predict_one({"age": 70, "sex": "F", "odi_baseline": 15, "bmi": 25, "mean_ff_pct": 6})
    high = bundle.predict_one({"age": 70, "sex": "M", "odi_baseline": 65, "bmi": 25, "mean_ff_pct": 44})
    assert 0 <= low.risk < high.risk <= 1
    assert low.ci_low <= low.risk <= low.ci_high
    assert {f for f, _, _ in high.contributions} == {"age", "sex", "odi_baseline", "bmi", "mean_ff_pct"}
