"""Benchmark: full trial report (314 participants, 20 imputations) — target ≤ 60 s.

Standalone: ``.venv/bin/python TrialAnalysis/Testing/benchmarks/bench_trial_report.py``. Prints the
absolute times of each stage and ratios against a baseline measured in the same process (one
complete-case ANCOVA of the same data, repeated), so noisy shared machines still compare.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from TrialAnalysisLib import ancova, render_report
from TrialAnalysisLib.report import COVARIATES, run_analyses
from TrialAnalysisLib.schema import load_trial
from TrialAnalysisLib.simulate import simulate_trial
from TrialAnalysisLib.tables import wide_frame


def _timed(fn, *args, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def main() -> None:
    """Simulate, then time the baseline, the analyses alone and the full report (HTML + PDF)."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = simulate_trial(Path(tmp) / "data", n=314, seed=1)
        data = load_trial(data_dir)
        wide = wide_frame(data)
        t_base, _ = _timed(lambda: [ancova(wide, "odi_change_12m", "arm", COVARIATES) for _ in range(20)])
        t_base /= 20
        t_mi, _ = _timed(ancova, wide, "odi_change_12m", "arm", COVARIATES, imputations=20, seed=1)
        t_an, _ = _timed(run_analyses, data, imputations=20, seed=1)
        t_rep, path = _timed(render_report, data, Path(tmp) / "report", imputations=20, seed=1)
        print(f"baseline: one complete-case ANCOVA            {t_base * 1000:8.1f} ms")
        print(
            f"primary ANCOVA with MICE (m=20)               {t_mi:8.2f} s   ratio {t_mi / t_base:8.0f}x baseline"
        )
        print(
            f"all analyses (run_analyses, m=20)             {t_an:8.2f} s   ratio {t_an / t_base:8.0f}x baseline"
        )
        print(
            f"full report HTML+PDF (render_report, m=20)    {t_rep:8.2f} s   ratio {t_rep / t_base:8.0f}x baseline"
        )
        print(
            f"target ≤ 60 s: {'met' if t_rep <= 60 else 'NOT met'}  ({path.stat().st_size / 1e6:.2f} MB html)"
        )


if __name__ == "__main__":
    main()
