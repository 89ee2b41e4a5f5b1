"""R-like design matrices: numeric columns as-is, string/category/bool columns in treatment coding.

Shared by ``ancova`` and ``mixed_model`` so both code factors the way R's ``contr.treatment`` does
(reference = first level: category order if categorical, else sorted) and build emmeans-style
reference rows (numeric covariates at their mean, factor covariates averaged over their levels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ParaspinalLBPCore.errors import BadInputError, MissingKeyError


def is_categorical(s: pd.Series) -> bool:
    """True for string/object/category/bool columns (coded as factors)."""
    return bool(
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(s)
        or pd.api.types.is_string_dtype(s)
        or pd.api.types.is_bool_dtype(s)
    )


def levels_of(s: pd.Series, reference: object | None = None) -> list:
    """Factor levels in R's order (category order or sorted), ``reference`` moved first."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        levs = [lv for lv in s.cat.categories if (s == lv).any()]
    else:
        levs = sorted(pd.unique(s.dropna()), key=lambda v: (str(type(v)), v))
    if reference is not None:
        if reference not in levs:
            raise BadInputError(
                f"reference level {reference!r} not found in column {s.name!r}; levels: {levs}"
            )
        levs = [reference] + [lv for lv in levs if lv != reference]
    return levs


@dataclass
class Term:
    """One model term: its name, whether it is a factor, its levels and its design columns."""

    name: str
    factor: bool
    levels: list = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    mean: float = 0.0


@dataclass
class Design:
    """Design of an additive model ``1 + term + term + ...`` (optionally one two-factor interaction)."""

    terms: list[Term]
    interaction: tuple[str, str] | None = None
    columns: list[str] = field(default_factory=list)

    def term(self, name: str) -> Term:
        """The term called ``name``."""
        for t in self.terms:
            if t.name == name:
                return t
        raise MissingKeyError(f"no term {name!r} in design; terms: {[t.name for t in self.terms]}")

    def term_columns(self, name: str) -> list[int]:
        """Indices of the design columns belonging to term ``name`` (``a:b`` for the interaction)."""
        if self.interaction and name == ":".join(self.interaction):
            return [i for i, c in enumerate(self.columns) if c.startswith(name + "[")]
        return [self.columns.index(c) for c in self.term(name).columns]

    def reference_row(self, fixed: dict[str, object]) -> np.ndarray:
        """emmeans-style row: ``fixed`` factors at given levels, other factors averaged, numerics at mean."""
        row = np.zeros(len(self.columns))
        row[0] = 1.0
        for t in self.terms:
            if t.factor:
                if t.name in fixed:
                    lv = fixed[t.name]
                    if lv not in t.levels:
                        raise BadInputError(f"level {lv!r} not in factor {t.name!r}; levels: {t.levels}")
                    w = {lv: 1.0}
                else:
                    w = {lv: 1.0 / len(t.levels) for lv in t.levels}
                for lv, wt in w.items():
                    if lv != t.levels[0]:
                        row[self.columns.index(f"{t.name}[T.{lv}]")] = wt
            else:
                row[self.columns.index(t.name)] = float(fixed.get(t.name, t.mean))
        if self.interaction:
            a, b = (self.term(n) for n in self.interaction)
            wa = _weights(a, fixed)
            wb = _weights(b, fixed)
            for la, xa in wa.items():
                for lb, xb in wb.items():
                    col = f"{a.name}:{b.name}[{la}:{lb}]"
                    if col in self.columns:
                        row[self.columns.index(col)] = xa * xb
        return row


def _weights(t: Term, fixed: dict[str, object]) -> dict:
    if t.name in fixed:
        return {fixed[t.name]: 1.0}
    return {lv: 1.0 / len(t.levels) for lv in t.levels}


def build_design(
    df: pd.DataFrame,
    terms: list[str],
    *,
    references: dict[str, object] | None = None,
    factors: tuple[str, ...] = (),
    interaction: tuple[str, str] | None = None,
) -> tuple[np.ndarray, Design]:
    """Design matrix (intercept first) for ``terms`` of ``df``; ``factors`` forces factor coding.

    The optional ``interaction`` (two factor terms) adds their non-reference × non-reference cells,
    as R's ``a*b`` does with treatment contrasts.
    """
    references = references or {}
    cols: list[np.ndarray] = [np.ones(len(df))]
    names = ["Intercept"]
    tlist: list[Term] = []
    for name in terms:
        if name not in df.columns:
            raise MissingKeyError(f"column {name!r} not in data; columns: {list(df.columns)}")
        s = df[name]
        if name in factors or is_categorical(s):
            levs = levels_of(s, references.get(name))
            if len(levs) < 2:
                raise BadInputError(f"factor {name!r} has fewer than 2 levels in the analysed data: {levs}")
            t = Term(name, True, levs)
            for lv in levs[1:]:
                cols.append((s == lv).to_numpy(dtype=float))
                t.columns.append(f"{name}[T.{lv}]")
        else:
            x = pd.to_numeric(s, errors="raise").to_numpy(dtype=float)
            t = Term(name, False, columns=[name], mean=float(np.mean(x)))
            cols.append(x)
        names += t.columns
        tlist.append(t)
    design = Design(tlist, interaction)
    if interaction:
        a, b = (design.term(n) for n in interaction)
        if not (a.factor and b.factor):
            raise BadInputError(f"interaction {interaction} needs two factor terms")
        for la in a.levels[1:]:
            for lb in b.levels[1:]:
                cols.append(((df[a.name] == la) & (df[b.name] == lb)).to_numpy(dtype=float))
                names.append(f"{a.name}:{b.name}[{la}:{lb}]")
    design.columns = names
    return np.column_stack(cols), design
