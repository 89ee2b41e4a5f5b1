"""TrialAnalysisLib: the METNLBP trial's statistical analysis plan on pandas DataFrames.

Public API (each returns an :class:`~TrialAnalysisLib.results.AnalysisResult` with a tidy
``.table`` and ``summary()``): ``ancova``, ``mixed_model``, ``kaplan_meier``, ``logrank``, ``cox``,
``cox_zph``, ``sample_size``, ``block_randomization`` (from ``randomization``) and
``render_report`` (HTML/PDF report of a trial dataset).
"""

from __future__ import annotations

from typing import Any

from TrialAnalysisLib.ancova import ancova
from TrialAnalysisLib.imputation import mice, rubin
from TrialAnalysisLib.mixed import mixed_model
from TrialAnalysisLib.results import AnalysisResult
from TrialAnalysisLib.sample_size import sample_size
from TrialAnalysisLib.survival import cox, cox_zph, kaplan_meier, logrank

__all__ = [
    "AnalysisResult",
    "ancova",
    "block_randomization",
    "cox",
    "cox_zph",
    "kaplan_meier",
    "logrank",
    "mice",
    "mixed_model",
    "render_report",
    "rubin",
    "sample_size",
]


def __getattr__(name: str) -> Any:
    """Lazy exports: the randomizer (another engineer's module) and the report (imports matplotlib)."""
    if name == "block_randomization":
        from TrialAnalysisLib.randomization import block_randomization

        return block_randomization
    if name == "render_report":
        from TrialAnalysisLib.report import render_report

        return render_report
    raise AttributeError(f"module 'TrialAnalysisLib' has no attribute {name!r}")
