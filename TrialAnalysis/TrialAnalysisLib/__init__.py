"""TrialAnalysisLib: the METNLBP trial's statistical analysis plan on pandas DataFrames.

Public API (each returns an :class:`~TrialAnalysisLib.results.AnalysisResult` with a tidy
``.table`` and ``summary()``): ``ancova``, ``mixed_model``, ``kaplan_meier``, ``logrank``, ``cox``,
``cox_zph``, ``sample_size``, ``block_randomization`` (from ``randomization``) and
``render_report`` (HTML/PDF report of a trial dataset).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

#: Public name -> the module defining it. Imported on first use (PEP 562), so that ``import
#: TrialAnalysisLib`` (e.g. for ``trial-analysis --help``) does not load statsmodels, lifelines or matplotlib.
_EXPORTS = {
    "AnalysisResult": "TrialAnalysisLib.results",
    "ancova": "TrialAnalysisLib.ancova",
    "block_randomization": "TrialAnalysisLib.randomization",
    "cox": "TrialAnalysisLib.survival",
    "cox_zph": "TrialAnalysisLib.survival",
    "kaplan_meier": "TrialAnalysisLib.survival",
    "logrank": "TrialAnalysisLib.survival",
    "mice": "TrialAnalysisLib.imputation",
    "mixed_model": "TrialAnalysisLib.mixed",
    "render_report": "TrialAnalysisLib.report",
    "rubin": "TrialAnalysisLib.imputation",
    "sample_size": "TrialAnalysisLib.sample_size",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The public API, imported from its module when first used."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'TrialAnalysisLib' has no attribute {name!r}")


class _Package(types.ModuleType):
    """``ancova`` and ``sample_size`` are functions and modules of the same name: importing the module
    binds the package attribute to it, which would shadow the lazy function. Keep the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
