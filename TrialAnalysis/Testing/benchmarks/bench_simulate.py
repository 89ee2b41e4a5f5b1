"""Benchmark: digital-twin trial simulation (n=314 and n=2000, no MRI) and dataset validation.

Prints absolute wall/CPU times and ratios against a same-process baseline (pandas writing a
CSV as large as phenotype.csv), because the machine is shared and absolute timings are noisy.
Run: .venv/bin/python TrialAnalysis/Testing/benchmarks/bench_simulate.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from TrialAnalysisLib.schema_validation import validate_trial
from TrialAnalysisLib.simulate import simulate_trial


def _timed(fn, repeat: int = 3) -> tuple[float, float]:
    """Best wall and CPU seconds over ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def main() -> None:
    """Run the benchmark and print a small table."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        frame = pd.DataFrame({"participant_id": np.repeat([f"P{i:04d}" for i in range(314)], 40),
                              "structure": "multifidus_left", "level": "L3",
                              "a": rng.random(314 * 40), "b": rng.random(314 * 40)})  # fmt: skip
        base_w, base_c = _timed(lambda: frame.to_csv(root / "base.csv", index=False))
        rows = [("baseline: pandas to_csv 12,560 rows", base_w, base_c)]
        simulate_trial(root / "warm", n=50, seed=1)  # imports and caches
        for n in (314, 2000):
            w, c = _timed(lambda n=n: simulate_trial(root / f"sim{n}", n=n, seed=1))
            rows.append((f"simulate_trial n={n}", w, c))
        w, c = _timed(lambda: validate_trial(root / "sim314"))
        rows.append(("validate_trial n=314", w, c))
    print(f"{'task':40s} {'wall s':>8s} {'cpu s':>8s} {'x baseline (cpu)':>17s}")
    for name, w, c in rows:
        print(f"{name:40s} {w:8.3f} {c:8.3f} {c / base_c:17.1f}")


if __name__ == "__main__":
    main()
