"""Per-request explanation time of tree models: compiled TreeSHAP (treeshap.py) vs the recursive one.

1. Forests of the protocol grid (100 trees, depth 3 / 6, 5 per leaf) and an unlimited-depth one:
   median time of one row's TreeSHAP, recursive (``explain.forest_shap``) vs compiled paths, same
   process, as a ratio, plus the bucket plan.
2. Real bundles (the calculator's synthetic cohort and schema, a tree family in place of the
   logistic model, 20 bootstrap refits): median ``predict_one`` (validation + prediction + interval +
   contributions) with the compiled explanation and with the recursive one.
3. Unless ``--no-serve``: the 20-client load run of ``bench_calculator.py`` on the random-forest
   bundle (p50/p99, server CPU per request, ratios to /healthz).

    .venv/bin/python Testing/benchmarks/bench_treeshap.py [--families random_forest,xgboost,lightgbm]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LBPRiskModel" / "Testing"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_webapp_support import build_bundle  # noqa: E402

from LBPRiskModelLib import explain, treeshap  # noqa: E402
from LBPRiskModelLib.bundle import load_bundle  # noqa: E402

PAYLOAD = {"age": 70, "sex": "M", "odi_baseline": 40, "bmi": 26.5, "mean_ff_pct": 20}


def estimator(family: str):  # type: ignore[no-untyped-def]
    """The protocol grid's larger setting of each tree family (default_config.yaml)."""
    if family == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=100, max_depth=6, min_samples_leaf=5, random_state=0)
    if family == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(n_estimators=150, max_depth=3, learning_rate=0.05, subsample=0.8, n_jobs=1)
    if family == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(
            n_estimators=150,
            num_leaves=8,
            learning_rate=0.05,
            min_child_samples=10,
            n_jobs=1,
            verbose=-1,
        )
    raise ValueError(f"unknown tree family {family!r}")


def build_tree_bundle(out_dir: Path, family: str, seed: int = 7) -> Path:
    """The calculator's synthetic bundle (same cohort, schema and preprocessing) with a tree model."""
    return build_bundle(out_dir, seed, model=estimator(family), family=family)


def median_ms(fn: Callable[[], object], reps: int) -> float:
    """Median wall time (ms) of ``fn`` over ``reps`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bench_forests(reps: int) -> None:
    """Recursive vs compiled TreeSHAP of one row, forests of several depths."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(250, 8, n_informative=5, random_state=0)
    print("1. random forest, one row (median ms), recursive vs compiled paths:")
    for depth, leaf in ((3, 5), (6, 5), (None, 1)):
        rf = RandomForestClassifier(100, max_depth=depth, min_samples_leaf=leaf, random_state=0).fit(X, y)
        paths = treeshap.from_sklearn_forest(rf)
        rows = X[:reps]
        t_rec = statistics.median(
            median_ms(lambda r=r, rf=rf: explain.forest_shap(rf, r[None]), 1)
            for r in rows[: max(5, reps // 10)]
        )
        t_new = statistics.median(median_ms(lambda r=r, p=paths: p.shap_values(r[None]), 5) for r in rows)
        err = np.abs(paths.shap_values(rows[:5]) - explain.forest_shap(rf, rows[:5])).max()
        plan = ", ".join(f"{b.zero.shape[1]}x{b.zero.shape[0]}" for b in paths.buckets)
        print(
            f"  depth {depth!s:>4}: {paths.n_paths:5d} paths (buckets paths x length: {plan}); "
            f"recursive {t_rec:7.2f} ms, compiled {t_new:6.3f} ms ({t_rec / t_new:5.1f}x); max |diff| {err:.1e}"
        )


def bench_bundles(families: list[str], work: Path, reps: int) -> dict[str, Path]:
    """predict_one of real bundles with the compiled explanation and with the recursive one."""
    print("2. bundle predict_one (median ms: validation + prediction + interval + contributions):")
    out = {}
    for family in families:
        path = build_tree_bundle(work / family, family)
        out[family] = path
        bundle = load_bundle(path)
        final = bundle.pipeline.steps[-1][1]
        t_new = median_ms(lambda b=bundle: b.predict_one(PAYLOAD), reps)
        t_exp = median_ms(lambda b=bundle: b._explain(b._parts([PAYLOAD])[0]), reps)
        line = f"  {family:<14} predict_one {t_new:6.2f} ms (explanation {t_exp:6.3f} ms)"
        paths = explain.compiled_paths(final)
        if paths is not None:  # before: recursive / library TreeSHAP, library predict for boosters
            boosters, bundle._fast.boosters = bundle._fast.boosters, None
            explain.use_compiled_paths(final, None)
            t_old = median_ms(lambda b=bundle: b.predict_one(PAYLOAD), max(10, reps // 10))
            t_old_exp = median_ms(lambda b=bundle: b._explain(b._parts([PAYLOAD])[0]), max(10, reps // 10))
            explain.use_compiled_paths(final, paths)
            bundle._fast.boosters = boosters
            line += (
                f"; before (recursive or library TreeSHAP{', 21 library predicts' if boosters else ''}) "
                f"{t_old:6.2f} ms (explanation {t_old_exp:6.2f} ms): "
                f"{t_old / t_new:.1f}x per request, {t_old_exp / t_exp:.1f}x per explanation"
            )
        else:
            line += " (compiled paths not in use: check the load-time log)"
        print(line)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="random_forest,xgboost,lightgbm")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--no-serve", action="store_true", help="skip the 20-client load run")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} (2 cores, shared machine: compare ratios)")
    bench_forests(args.reps)
    work = Path(tempfile.mkdtemp(prefix="bench-treeshap-"))
    families = [f for f in args.families.split(",") if f]
    bundles = bench_bundles(families, work, args.reps)
    if not args.no_serve and "random_forest" in bundles:
        import bench_calculator

        print("3. 20-client load, random-forest bundle:")
        bench_calculator.main(
            [
                "--model",
                str(bundles["random_forest"]),
                "--clients",
                str(args.clients),
                "--requests",
                str(args.requests),
                "--workers",
                args.workers,
            ]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
