"""Common result type of the analysis functions: a tidy table, extra tables, scalars and notes.

Every public analysis (``ancova``, ``mixed_model``, ``kaplan_meier``, ``logrank``, ``cox``,
``sample_size``) returns an :class:`AnalysisResult` so statisticians handle them the same way:
``res.table`` (columns such as term, estimate, se, df, statistic, p, ci_low, ci_high),
``res.tables["lsmeans"]`` etc., ``res.info`` (n, method, ...), ``res.summary()`` and ``res.to_dict()``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ParaspinalLBPCore.errors import MissingKeyError

TABLE_COLUMNS = ["term", "estimate", "se", "df", "statistic", "p", "ci_low", "ci_high"]


def tidy(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    """Build a tidy DataFrame from row dicts, with the standard columns first (missing → NaN)."""
    df = pd.DataFrame(rows)
    cols = list(columns or TABLE_COLUMNS)
    for c in cols:
        if c not in df.columns:
            df[c] = np.nan
    extra = [c for c in df.columns if c not in cols]
    return df[cols + extra].reset_index(drop=True)


def _jsonable(x: Any) -> Any:
    """Convert numpy/pandas scalars and containers to plain JSON-able Python objects."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, pd.DataFrame):
        return [_jsonable(r) for r in x.to_dict(orient="records")]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return None if math.isnan(f) else f
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if x is pd.NA or x is None:
        return None
    return x if isinstance(x, (str, int)) else str(x)


def fmt_p(p: float) -> str:
    """Format a p-value the way trial reports do (``<0.001`` below 1e-3)."""
    if p is None or not np.isfinite(p):
        return "NA"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


@dataclass
class AnalysisResult:
    """Result of one analysis: main tidy ``table``, named extra ``tables``, scalar ``info``, ``notes``."""

    name: str
    table: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fit: Any = field(default=None, repr=False)

    def summary(self, digits: int = 4) -> str:
        """Readable plain-text summary: title, scalar info, the main and extra tables, notes."""
        lines = [self.name, "=" * len(self.name)]
        for k, v in self.info.items():
            if isinstance(v, (str, int, float, np.integer, np.floating, bool)):
                lines.append(f"{k}: {v:.{digits}g}" if isinstance(v, (float, np.floating)) else f"{k}: {v}")
        with pd.option_context("display.width", 160, "display.max_columns", 30, "display.precision", digits):
            lines += ["", self.table.dropna(axis=1, how="all").to_string(index=False)]
            for key, tab in self.tables.items():
                lines += ["", f"[{key}]", tab.dropna(axis=1, how="all").to_string(index=False)]
        if self.notes:
            lines += ["", "Notes:"] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of everything (tables as lists of records)."""
        return _jsonable(
            {
                "name": self.name,
                "table": self.table,
                "tables": self.tables,
                "info": self.info,
                "notes": self.notes,
            }
        )

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return self.summary()

    def row(self, term: str) -> pd.Series:
        """The main-table row whose ``term`` equals ``term`` (KeyError naming the known terms)."""
        hit = self.table[self.table["term"] == term]
        if hit.empty:
            raise MissingKeyError(
                f"term {term!r} not in result {self.name!r}; terms: {list(self.table['term'])}"
            )
        return hit.iloc[0]
