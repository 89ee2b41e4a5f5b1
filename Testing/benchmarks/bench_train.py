"""Benchmark: full default (protocol) training on 314 rows × ~1,000 features, on this machine.

Prints absolute wall times and the ratio to a same-process baseline (100 L1-logistic fits on the
same training matrix = one stability-selection pass), so numbers stay comparable on a noisy,
shared 2-core machine. Goal (issue 6): the default protocol configuration finishes in ≤ 5 min.
Usage: ``.venv/bin/python Testing/benchmarks/bench_train.py [--features 1000] [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd


def cohort(n: int, p: int, seed: int = 1) -> pd.DataFrame:
    """Synthetic digital-twin-like cohort: 3 informative radiomic features + 2 clinical, rest noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    df = pd.DataFrame(X, columns=[f"original_glcm_F{i}__multifidus_left__L{1 + i % 5}" for i in range(p)])
    df["age"] = rng.normal(70, 5, n).round()
    df["sex"] = rng.choice(["F", "M"], n)
    df["centre"] = rng.choice(["C1", "C2", "C3", "C4", "C5"], n)
    lp = X[:, 0] - X[:, 1] + 0.8 * X[:, 2] + 0.04 * (df["age"] - 70)
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int)
    df.insert(0, "case_id", [f"P{i:04d}" for i in range(n)])
    return df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=314)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits

    from LBPRiskModelLib.export import train
    from LBPRiskModelLib.preprocess import _l1_fit
    from LBPRiskModelLib.train import load_config

    df = cohort(a.rows, a.features)
    Xs = df.filter(like="original_").to_numpy()[:220]
    Xs = (Xs - Xs.mean(0)) / Xs.std(0)
    ys = df["y"].to_numpy()[:220]
    with threadpool_limits(1):
        t0 = time.perf_counter()
        for _ in range(100):
            _l1_fit(Xs, ys, 0.05)
        base = time.perf_counter() - t0
    cfg = load_config(quick=a.quick)
    with tempfile.TemporaryDirectory() as td:
        t0 = time.perf_counter()
        res = train(df, "y", cfg, f"{td}/bundle", progress=True)
        total = time.perf_counter() - t0
    m = res["metrics"]
    print(f"rows={a.rows} features={a.features + 3} config={'quick' if a.quick else 'default (protocol)'}")
    print(f"baseline (100 L1 fits, 1 thread): {base:.2f} s")
    print(f"train (incl. figures + bundle): {total:.1f} s = {total / base:.1f}x baseline; goal <= 300 s")
    fam = m["selected_model"]
    print(
        f"selected {fam}: test AUC {m['families'][fam]['test_auc']:.3f}, optimism-corrected {m['families'][fam]['optimism_corrected_auc']:.3f}"
    )


if __name__ == "__main__":
    main()
