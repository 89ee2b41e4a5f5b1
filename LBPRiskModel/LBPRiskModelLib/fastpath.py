"""Numpy fast path for one-row predictions of a loaded bundle (the web calculator's hot path).

Running a fitted scikit-learn Pipeline on a 1-row DataFrame costs milliseconds of input checking
and DataFrame handling for a few microseconds of arithmetic; the 20 bootstrap models of the
uncertainty interval repeat part of that 20 times. :func:`compile_fast_path` reads the fitted
parameters once (ComBat location/scale, imputer statistics, scaler mean/scale, one-hot categories,
stability-selection support, logistic coefficients stacked over the bootstrap models) and applies
the same floating-point operations in the same order with plain numpy.

Supported: the project's pipeline (:func:`LBPRiskModelLib.preprocess.make_pipeline`: optional
``ComBatHarmonizer`` → ``ColumnTransformer`` of [SimpleImputer] → [StandardScaler] blocks for
numbers and [SimpleImputer] → OneHotEncoder blocks for categories → optional
``StabilitySelector``) and any final estimator (binary logistic regression is evaluated as one
matrix product for the model and all bootstrap models; other families through
``explain.fast_proba`` on the fast model-space row). Anything else raises :class:`UnsupportedError`
and the caller keeps the scikit-learn path. :meth:`Bundle` checks the compiled path against
scikit-learn on probe rows at load time and disables it on any difference above 1e-12.

Tree models are also explained from compiled arrays: :mod:`treeshap` turns the final model into
root-to-leaf paths, and :func:`check_explanations` (called by the bundle once :func:`max_difference`
passed) compares its TreeSHAP values with the reference on the probe rows (a forest: the recursive ``explain.forest_shap``;
XGBoost / LightGBM: their own ``pred_contribs`` / ``pred_contrib``); only when they agree is it
switched on for the bundle's explanations (``explain.use_compiled_paths``). Binary XGBoost and
LightGBM models and their bootstrap refits are also *predicted* from one set of compiled paths
(:class:`_StackedBoosters`), summed and transformed exactly as the libraries do.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from LBPRiskModelLib import explain, treeshap

#: agreement required between the fast path and scikit-learn (absolute, model space and probability)
TOLERANCE = 1e-12
#: probe rows on which a forest's compiled TreeSHAP is compared with the recursive one (the slow reference,
#: so fewer rows than the prediction check)
EXPLAIN_PROBES = 12
#: XGBoost computes its SHAP values in float32: the compiled (float64) ones agree to ~1e-6
XGBOOST_CONTRIB_TOLERANCE = 2e-5
_LOG = logging.getLogger(__name__)


class UnsupportedError(Exception):
    """The pipeline contains a step (or step option) the fast path does not reproduce."""


def _cls(obj: Any) -> str:
    return type(obj).__name__


def _to_number(v: Any) -> float:
    """One value as ``pd.to_numeric(..., errors="coerce")`` would give it for the model's number columns."""
    if v is None:
        return math.nan
    if isinstance(v, float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _to_category(v: Any) -> Any:
    """One value as ``Bundle._frame`` gives it for category columns (None stays None, else str)."""
    return None if v is None else str(v)


# ------------------------------------------------------------------------------------ steps
def _compile_combat(step: Any, num_index: dict[str, int], cat_cols: list[str]) -> Callable | None:
    """ComBatHarmonizer.transform on the numeric input block (None when the step is inactive)."""
    if not getattr(step, "active_", False) or not step.columns_:
        return None
    cols = list(step.columns_)
    if any(c not in num_index for c in cols) or step.batch_col not in cat_cols + list(num_index):
        raise UnsupportedError(f"ComBat columns/batch column {step.batch_col!r} not in the numeric inputs")
    idx = np.array([num_index[c] for c in cols])
    mean = np.array([step.mean_[c] for c in cols])
    sd = np.array([step.sd_[c] for c in cols])
    shift = {b: (np.array(g), np.sqrt(np.array(step.delta_[b]))) for b, g in step.gamma_.items()}
    batch_col = step.batch_col

    def run(num: np.ndarray, raw_batch: list[Any]) -> np.ndarray:
        num = num.copy()
        S = (num[:, idx] - mean) / sd
        for r, b in enumerate(raw_batch):
            key = str(b)  # DataFrame.astype(str): None -> "None", 1.0 -> "1.0"
            if key in shift:
                g, root_d = shift[key]
                S[r] = (S[r] - g) / root_d
        num[:, idx] = S * sd + mean
        return num

    as_frame = _to_category if batch_col in cat_cols else _to_number
    run.batch = lambda r: as_frame(r.get(batch_col))  # type: ignore[attr-defined]
    return run


def _block_steps(trans: Any) -> list[Any]:
    """The estimators of one ColumnTransformer block (a Pipeline or a bare estimator)."""
    if _cls(trans) == "Pipeline":
        return [s for _n, s in trans.steps if s is not None and s != "passthrough"]
    if trans == "passthrough":
        return []
    return [trans]


def _check_imputer(imp: Any) -> np.ndarray:
    missing = imp.missing_values
    if getattr(imp, "add_indicator", False) or not (isinstance(missing, float) and math.isnan(missing)):
        raise UnsupportedError("SimpleImputer with an indicator or a non-NaN missing marker")
    return np.asarray(imp.statistics_)


def _compile_numeric(steps: list[Any]) -> Callable[[np.ndarray], np.ndarray]:
    """[SimpleImputer] → [StandardScaler] on a float block, same operations as scikit-learn."""
    ops: list[Callable[[np.ndarray], np.ndarray]] = []
    for s in steps:
        if _cls(s) == "SimpleImputer":
            stats = _check_imputer(s).astype(float)

            def impute(A: np.ndarray, stats: np.ndarray = stats) -> np.ndarray:
                return np.where(np.isnan(A), stats, A)

            ops.append(impute)
        elif _cls(s) == "StandardScaler":
            mean = None if s.mean_ is None or not s.with_mean else np.asarray(s.mean_, dtype=float)
            scale = None if s.scale_ is None or not s.with_std else np.asarray(s.scale_, dtype=float)

            def standardise(A: np.ndarray, mean: Any = mean, scale: Any = scale) -> np.ndarray:
                if mean is not None:
                    A = A - mean
                if scale is not None:
                    A = A / scale
                return A

            ops.append(standardise)
        else:
            raise UnsupportedError(f"numeric block step {_cls(s)}")

    def run(A: np.ndarray) -> np.ndarray:
        for op in ops:
            A = op(A)
        return A

    return run


def _compile_categorical(
    steps: list[Any], n_cols: int
) -> tuple[Callable[[list[list[Any]]], np.ndarray], int]:
    """[SimpleImputer] → OneHotEncoder on object values (None is a category, like scikit-learn's)."""
    stats: np.ndarray | None = None
    if steps and _cls(steps[0]) == "SimpleImputer":
        stats = _check_imputer(steps[0])
        steps = steps[1:]
    if len(steps) != 1 or _cls(steps[0]) != "OneHotEncoder":
        raise UnsupportedError("categorical block is not [SimpleImputer] → OneHotEncoder")
    enc = steps[0]
    if enc.drop is not None or getattr(enc, "_infrequent_enabled", False):
        raise UnsupportedError("OneHotEncoder with drop or infrequent categories")
    cats = [list(c) for c in enc.categories_]
    if len(cats) != n_cols:
        raise UnsupportedError("OneHotEncoder categories do not match its columns")
    width = sum(len(c) for c in cats)
    lookup = [{v: i for i, v in enumerate(c)} for c in cats]  # dict lookup, as sklearn's _encode
    offsets = np.cumsum([0] + [len(c) for c in cats])[:-1].tolist()
    strict = enc.handle_unknown == "error"

    def run(rows: list[list[Any]]) -> np.ndarray:
        out = np.zeros((len(rows), width))
        for r, row in enumerate(rows):
            for j, v in enumerate(row):
                if isinstance(v, float) and math.isnan(v) and stats is not None:
                    v = stats[j]
                k = lookup[j].get(v)
                if k is not None:
                    out[r, offsets[j] + k] = 1.0
                elif strict:
                    raise ValueError(f"Found unknown categories [{v!r}] in column {j} during transform")
        return out

    return run, width


class _StackedForests:
    """All trees of the model's and the bootstrap models' random forests as flat node arrays, walked
    for every tree at once (one numpy step per depth level instead of one call per tree)."""

    def __init__(self, left, right, feature, threshold, value, roots, starts, counts, depth) -> None:  # type: ignore[no-untyped-def]
        self.left, self.right, self.feature, self.threshold = left, right, feature, threshold
        self.value, self.roots, self.starts, self.counts, self.depth = value, roots, starts, counts, depth

    @classmethod
    def build(cls, models: list[Any]) -> _StackedForests | None:
        """None unless every model is a binary RandomForestClassifier."""
        if not all(_cls(m) == "RandomForestClassifier" and m.n_classes_ == 2 for m in models):
            return None
        left, right, feature, threshold, value, roots, counts = [], [], [], [], [], [], []
        offset, depth = 0, 0
        for m in models:
            counts.append(len(m.estimators_))
            for est in m.estimators_:
                t = est.tree_
                nodes = np.arange(t.node_count)
                leaf = t.children_left == -1
                left.append(np.where(leaf, nodes, t.children_left) + offset)  # leaves point to themselves
                right.append(np.where(leaf, nodes, t.children_right) + offset)
                feature.append(np.where(leaf, 0, t.feature))
                threshold.append(t.threshold)
                value.append(t.value[:, 0, 1])  # what tree_.predict returns for class 1
                roots.append(offset)
                offset += t.node_count
                depth = max(depth, int(t.max_depth))
        counts_a = np.array(counts)
        starts = np.concatenate([[0], np.cumsum(counts_a)[:-1]])
        cat = np.concatenate
        return cls(
            cat(left),
            cat(right),
            cat(feature),
            cat(threshold),
            cat(value),
            np.array(roots),
            starts,
            counts_a,
            depth,
        )

    def proba(self, Z: np.ndarray) -> np.ndarray:
        """(n, k) P(class 1) of every forest, like ``explain.fast_proba`` (float32 inputs, as sklearn)."""
        X = np.ascontiguousarray(Z, dtype=np.float32).astype(float)
        out = np.empty((X.shape[0], len(self.counts)))
        for r, x in enumerate(X):
            node = self.roots
            for _ in range(self.depth):
                node = np.where(
                    x[self.feature[node]] <= self.threshold[node], self.left[node], self.right[node]
                )
            out[r] = np.add.reduceat(self.value[node], self.starts) / self.counts
        return out


class _StackedBoosters:
    """The trees of the model's and the bootstrap models' XGBoost or LightGBM boosters as one set of
    compiled paths; each model's output is summed the way the library sums it (LightGBM: float64 in
    tree order; XGBoost: float32 in tree order from its base margin) and turned into P(class 1) with
    the library's sigmoid, so the probabilities equal ``predict_proba`` within ``TOLERANCE`` (to the last
    bit where numpy's SIMD exp agrees with the C library's; 1 ulp apart on some CPUs)."""

    def __init__(self, kind: str, paths: treeshap.TreePaths, bounds: list[int], bases: list[Any]) -> None:
        self.kind, self.paths, self.bounds, self.bases = kind, paths, bounds, bases
        self.expf = treeshap.libm_float("expf") if kind == "XGBClassifier" else None

    @classmethod
    def build(cls, models: list[Any]) -> _StackedBoosters | None:
        """None unless every model is a binary LGBMClassifier, or every one a binary XGBClassifier."""
        kind = _cls(models[0])
        if kind not in ("LGBMClassifier", "XGBClassifier"):
            return None
        if any(_cls(m) != kind or len(getattr(m, "classes_", ())) != 2 for m in models):
            return None
        try:
            compile_one = (
                treeshap.lightgbm_tree_paths if kind == "LGBMClassifier" else treeshap.xgboost_tree_paths
            )
            paths: list[treeshap.Path] = []
            trees: list[int] = []
            bounds = [0]
            bases: list[Any] = []
            for m in models:
                p, t = compile_one(m)
                paths += p
                trees += [bounds[-1] + i for i in t]
                bounds.append(bounds[-1] + (max(t) + 1 if t else 0))
                bases.append(treeshap.xgboost_base_margin(m) if kind == "XGBClassifier" else 0.0)
            stacked = treeshap.TreePaths(
                paths,
                int(models[0].n_features_in_),
                strict_left=kind == "XGBClassifier",
                input_dtype=np.float32 if kind == "XGBClassifier" else np.float64,
                trees=trees,
                zero_below=0.0 if kind == "XGBClassifier" else treeshap.LIGHTGBM_ZERO,
            )
            return cls(kind, stacked, bounds, bases)
        except treeshap.UnsupportedTreeError as exc:
            raise UnsupportedError(str(exc)) from exc

    def proba(self, Z: np.ndarray) -> np.ndarray:
        """(n, k) P(class 1) of every model."""
        leaves = self.paths.leaf_values(Z)
        out = np.empty((Z.shape[0], len(self.bases)))
        for g, base in enumerate(self.bases):
            block = leaves[:, self.bounds[g] : self.bounds[g + 1]]
            if self.expf is None:  # LightGBM: double sum in tree order, 1 / (1 + exp(-raw))
                raw = np.cumsum(block, axis=1)[:, -1] if block.shape[1] else np.zeros(len(Z))
                out[:, g] = 1.0 / (1.0 + np.exp(-raw))
            else:  # XGBoost: float32 sum from the base margin, float32 sigmoid with C expf
                acc = np.column_stack([np.full(len(Z), base, dtype=np.float32), block.astype(np.float32)])
                margin = np.cumsum(acc, axis=1, dtype=np.float32)[:, -1]
                one = np.float32(1.0)
                out[:, g] = [one / (np.float32(self.expf(min(-float(m), 88.7))) + one) for m in margin]
        return out


class FastPath:
    """Compiled records → model space → P(class 1) for the main model and the bootstrap models."""

    def __init__(self, pipeline: Any, ci_models: Sequence[Any], input_columns: dict[str, str]) -> None:
        steps = [s for _n, s in pipeline.steps]
        pre, final = steps[:-1], steps[-1]
        self.num_cols = [c for c, k in input_columns.items() if k != "category"]
        self.cat_cols = [c for c, k in input_columns.items() if k == "category"]
        num_index = {c: i for i, c in enumerate(self.num_cols)}
        cat_index = {c: i for i, c in enumerate(self.cat_cols)}
        self.combat: list[Callable] = []
        while pre and _cls(pre[0]) == "ComBatHarmonizer":
            run = _compile_combat(pre.pop(0), num_index, self.cat_cols)
            if run is not None:
                self.combat.append(run)
        if not pre or _cls(pre[0]) != "ColumnTransformer":
            raise UnsupportedError("the pipeline has no ColumnTransformer where expected")
        self.blocks = self._compile_columns(pre.pop(0), num_index, cat_index)
        self.support: list[np.ndarray] = []
        for s in pre:
            if _cls(s) != "StabilitySelector":
                raise UnsupportedError(f"pipeline step {_cls(s)}")
            self.support.append(np.asarray(s.support_, dtype=bool))
        self.final = final
        self.ci_models = list(ci_models)
        self.linear = self._stack_linear([final, *self.ci_models])
        models = [final, *self.ci_models]
        self.forests = None if self.linear is not None else _StackedForests.build(models)
        self.boosters: _StackedBoosters | None = None
        if self.linear is None and self.forests is None:
            try:
                self.boosters = _StackedBoosters.build(models)
            except UnsupportedError as exc:  # keep the library's predict for this booster
                _LOG.info("boosted trees not compiled (%s); library predict used", exc)
        #: compiled TreeSHAP of the final tree model (switched on by :func:`check_explanations` if it agrees)
        self.tree_paths: treeshap.TreePaths | None = None
        if self.forests is not None:
            self.tree_paths = treeshap.from_sklearn_forest(final)
        elif self.boosters is not None:
            lgbm = self.boosters.kind == "LGBMClassifier"
            self.tree_paths = treeshap.from_lightgbm(final) if lgbm else treeshap.from_xgboost(final)

    def _compile_columns(self, ct: Any, num_index: dict[str, int], cat_index: dict[str, int]) -> list:
        if getattr(ct, "sparse_output_", False):
            raise UnsupportedError("sparse ColumnTransformer output")
        blocks = []
        for name, trans, cols in ct.transformers_:
            if name == "remainder" and trans == "drop":
                continue
            if trans == "drop" or len(cols) == 0:
                continue
            if not all(isinstance(c, str) for c in cols):
                raise UnsupportedError("ColumnTransformer columns must be given by name")
            steps = _block_steps(trans)
            if any(_cls(s) == "OneHotEncoder" for s in steps):
                if any(c not in cat_index for c in cols):
                    raise UnsupportedError(f"one-hot block {name!r} uses non-category inputs")
                fn, _w = _compile_categorical(steps, len(cols))
                blocks.append(("cat", np.array([cat_index[c] for c in cols]), fn))
            else:
                if any(c not in num_index for c in cols):
                    raise UnsupportedError(f"numeric block {name!r} uses non-number inputs")
                blocks.append(("num", np.array([num_index[c] for c in cols]), _compile_numeric(steps)))
        return blocks

    @staticmethod
    def _stack_linear(models: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
        """Coefficients (p, k) and intercepts (k,) when every model is a binary LogisticRegression."""
        if not all(_cls(m) == "LogisticRegression" and len(m.classes_) == 2 for m in models):
            return None
        coef = np.column_stack([np.asarray(m.coef_, dtype=float).ravel() for m in models])
        intercept = np.array([float(np.asarray(m.intercept_).ravel()[0]) for m in models])
        return coef, intercept

    # -------------------------------------------------------------------------------- runtime
    def model_space(self, records: list[dict[str, Any]]) -> np.ndarray:
        """Rows in the final estimator's input space (what ``Bundle._model_space`` returns)."""
        num = np.array([[_to_number(r.get(c)) for c in self.num_cols] for r in records], dtype=float)
        num = num.reshape(len(records), len(self.num_cols))
        cat = [[_to_category(r.get(c)) for c in self.cat_cols] for r in records]
        for run in self.combat:
            num = run(num, [run.batch(r) for r in records])
        parts = []
        for kind, idx, fn in self.blocks:
            if kind == "num":
                parts.append(fn(num[:, idx]))
            else:
                parts.append(fn([[row[i] for i in idx] for row in cat]))
        Z = np.hstack(parts) if parts else np.zeros((len(records), 0))
        for mask in self.support:
            Z = Z[:, mask]
        return Z

    def probabilities(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(class 1) of the main model (n,) and of every bootstrap model (n, k)."""
        if self.linear is not None:
            coef, intercept = self.linear
            p = expit(Z @ coef + intercept)
            return p[:, 0], p[:, 1:]
        if self.forests is not None and not np.isnan(Z).any():
            p = self.forests.proba(Z)
            return p[:, 0], p[:, 1:]
        if self.boosters is not None:
            p = self.boosters.proba(Z)
            return p[:, 0], p[:, 1:]
        risk = explain.fast_proba(self.final, Z)
        boot = np.column_stack([explain.fast_proba(m, Z) for m in self.ci_models]) if self.ci_models else None
        return risk, (boot if boot is not None else np.zeros((len(Z), 0)))


def compile_fast_path(pipeline: Any, ci_models: Sequence[Any], input_columns: dict[str, str]) -> FastPath:
    """Compile a fitted bundle pipeline; raises :class:`UnsupportedError` for steps it cannot reproduce."""
    if _cls(pipeline) != "Pipeline" or len(pipeline.steps) < 2:
        raise UnsupportedError("not a Pipeline with preprocessing and a final estimator")
    return FastPath(pipeline, ci_models, input_columns)


def probe_records(
    schema: Sequence[Any], input_columns: dict[str, str], n: int = 48, seed: int = 0
) -> list[dict]:
    """Deterministic check rows: every field at its limits, inside its range, missing, and every
    category (plus an unknown one); input columns outside the schema random or missing."""
    rng = np.random.default_rng(seed)
    specs = {s.name: s for s in schema}
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {}
        for col, kind in input_columns.items():
            s = specs.get(col)
            if i % 7 == 3:  # some rows with everything missing
                row[col] = None
                continue
            if kind == "category":
                cats = list(getattr(s, "categories", None) or []) if s else []
                choices = [*cats, None] if cats else [None, "x"]
                row[col] = choices[rng.integers(len(choices))]
                continue
            lo = next(
                (v for v in (getattr(s, "min", None), getattr(s, "hard_min", None)) if v is not None), -3.0
            )
            hi = next(
                (v for v in (getattr(s, "max", None), getattr(s, "hard_max", None)) if v is not None), 3.0
            )
            pick = rng.integers(6)
            row[col] = (lo, hi, None, float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)), (lo + hi) / 2)[
                pick
            ]
        rows.append(row)
    return rows


def max_difference(fast: FastPath, reference: Callable[[list[dict]], tuple], records: list[dict]) -> float:
    """Largest absolute difference of model space, risk and bootstrap risks between the fast path
    and ``reference(records) -> (Z, risk, boot)`` (the scikit-learn / library path)."""
    Z = fast.model_space(records)
    risk, boot = fast.probabilities(Z)
    Zr, rr, br = reference(records)
    if Z.shape != Zr.shape or boot.shape != br.shape:
        return math.inf
    diffs = [np.abs(Z - Zr), np.abs(risk - rr), np.abs(boot - br)]
    return float(max((d.max() if d.size else 0.0) for d in diffs))


def _reference_contributions(model: Any, Z: np.ndarray) -> tuple[np.ndarray, float]:
    """The reference TreeSHAP values of ``model`` (recursive for forests, the library's own for
    boosters) and the agreement required of the compiled ones."""
    if _cls(model) == "RandomForestClassifier":
        return explain.forest_shap(model, Z[:EXPLAIN_PROBES]), TOLERANCE
    if _cls(model) == "LGBMClassifier":
        return np.asarray(model.predict(Z, pred_contrib=True)), TOLERANCE
    import xgboost as xgb

    ref = model.get_booster().predict(xgb.DMatrix(Z), pred_contribs=True)
    return np.asarray(ref, dtype=float), XGBOOST_CONTRIB_TOLERANCE


def check_explanations(fast: FastPath, Z: np.ndarray, predictions_agree: bool = True) -> float:
    """Compare the compiled TreeSHAP of the final model with its reference on model-space rows ``Z``
    and use it for the model's explanations only if it agrees (and the predictions did); returns the
    largest difference. A disagreement is logged as a warning and keeps the reference path."""
    ref, tol = _reference_contributions(fast.final, Z)
    mine = fast.tree_paths.shap_values(Z[: len(ref)]) if fast.tree_paths is not None else None
    diff = float(np.abs(mine - ref).max()) if mine is not None and mine.shape == ref.shape else math.inf
    if not diff <= tol:
        _LOG.warning("compiled TreeSHAP differs from the reference by %.3g; not used", diff)
    ok = diff <= tol and predictions_agree
    explain.use_compiled_paths(fast.final, fast.tree_paths if ok else None)
    return diff


def percentiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    """``[np.percentile(values, q) for q in qs]`` (linear method) from one sort, without numpy's
    per-call overhead (which is a sizeable part of a one-row prediction)."""
    a = np.sort(np.asarray(values, dtype=float).ravel())
    n = a.size
    if n == 0 or np.isnan(a[-1]):
        return [float(np.percentile(values, q)) for q in qs]
    out = []
    for q in qs:
        vi = (n - 1) * (q / 100)  # numpy's 'linear' virtual index
        lo = min(max(math.floor(vi), 0), n - 1)
        hi = min(lo + 1, n - 1)
        g = vi - lo
        x, y = float(a[lo]), float(a[hi])
        d = y - x
        out.append(y - d * (1 - g) if g >= 0.5 else x + d * g)  # numpy's _lerp
    return out
