"""Exact path-dependent TreeSHAP in numpy, vectorised over all root-to-leaf paths of an ensemble.

Path-dependent TreeSHAP (Lundberg et al. 2018, Algorithm 2) walks each tree recursively; the
GPUTreeShap formulation (Mitchell et al. 2022) instead splits every tree into its root-to-leaf
paths once. A path is a leaf value plus one *element* per distinct feature split on the way
(repeated splits on a feature are merged): the feature, the interval of values that follow the
path at every one of those splits (plus whether a missing value follows it), and the *zero
fraction*, the product of the cover ratios child/parent of those splits. For a row, the *one
fraction* of an element is 1 if the row's value follows the path there, else 0; Algorithm 2's
EXTEND then builds the path's permutation weights and UNWOUND-SUM gives each element's share:
``phi[feature] += unwound_sum * (one - zero) * leaf_value``. Here every step runs for all paths
(and rows) at once with numpy, so a 100-tree forest costs tens of numpy calls instead of ~10^5
Python operations.

Paths of different lengths are grouped into buckets and padded to the bucket's length with
*dummy* elements (zero = one = 1, any value follows). Padding is harmless: the weights of a
permutation with ``s`` present players among ``M + 1`` obey ``w(s, M + 1) + w(s + 1, M + 1) =
w(s, M)``, so adding a player whose presence changes nothing leaves every other unwound sum
unchanged, and the dummy's own share is multiplied by ``one - zero = 0``. (Algorithm 2's initial
bias element is exactly such a dummy.) Bucket boundaries minimise a simple cost model of numpy
call overhead against padded work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: rows x paths x elements processed per numpy step (bounds the working memory to ~tens of MB)
CHUNK = 1 << 21
#: cost model for bucketing: seconds per numpy step, seconds per element-step
_STEP_COST, _ELEMENT_COST = 30e-6, 6e-9


#: LightGBM's kZeroThreshold (1e-35f): inputs this close to 0 are read as 0.0 before any split
LIGHTGBM_ZERO = float(np.float32(1e-35))


class UnsupportedTreeError(ValueError):
    """The tree uses a split type the compiled paths cannot represent (e.g. categorical splits)."""


@dataclass
class _Bucket:
    """Paths padded to ``D`` elements: arrays (D, P), leaf values (P,) and the row-independent
    factors of EXTEND / UNWOUND-SUM (computed once at load)."""

    feature: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    nan_ok: np.ndarray
    zero: np.ndarray
    value: np.ndarray
    tree: np.ndarray  # (P,) index of the path's tree

    def __post_init__(self) -> None:
        d, _p = self.zero.shape
        length = d + 1
        j = [np.arange(k)[:, None] for k in range(length)]
        # EXTEND with element k: w[j] <- z_k w[j] (k - j)/(k + 1) + o_k w[j - 1] j/(k + 1)
        self.ext_zero = [None] + [self.zero[k - 1] * ((k - j[k]) / (k + 1)) for k in range(1, length)]
        self.ext_one = [None] + [(j[k] + 1) / (k + 1) for k in range(1, length)]
        # UNWOUND-SUM (one fraction 1): n <- w[e] - t z (L - 1 - e)/L, t = n L/(e + 1)
        self.unw_zero = [self.zero * ((length - 1 - e) / length) for e in range(length - 1)]
        # UNWOUND-SUM (one fraction 0) = S / z with S = sum_e w[e] L/(L - 1 - e): times (0 - z) = -S
        self.unw_scale = (length / (length - 1 - np.arange(length - 1)))[:, None]
        self.one_minus_zero = 1.0 - self.zero


Path = tuple[dict[int, list[Any]], float]  # {feature: [lower, upper, nan_follows, zero]}, leaf value


class TreePaths:
    """All root-to-leaf paths of an ensemble, ready for :meth:`shap_values` and :meth:`predict`.

    ``strict_left``: the left branch is ``x < threshold`` (XGBoost) rather than ``x <= threshold``
    (scikit-learn, LightGBM); ``input_dtype``: inputs are rounded to it first, as the library does
    (scikit-learn and XGBoost compare float32 values). ``base`` is added to the output (a constant
    such as XGBoost's base margin); ``bias`` is the expected output (path-dependent);
    ``zero_below``: inputs with ``|x| <=`` it count as 0.0 (LightGBM drops them as zeros).
    """

    def __init__(
        self,
        paths: list[Path],
        n_features: int,
        *,
        strict_left: bool = False,
        input_dtype: Any = np.float64,
        base: float = 0.0,
        bias: float | None = None,
        buckets: str = "auto",
        trees: list[int] | None = None,
        zero_below: float = 0.0,
    ) -> None:
        self.n_features = n_features
        self.zero_below = zero_below
        self.strict_left = strict_left
        self.input_dtype = input_dtype
        self.base = float(base)
        self.n_paths = len(paths)
        lengths = np.array([len(c) for c, _v in paths], dtype=int)
        self.max_length = int(lengths.max()) if len(lengths) else 0
        tree_ids = np.asarray(trees if trees is not None else np.zeros(len(paths)), dtype=np.intp)
        self.n_trees = int(tree_ids.max()) + 1 if len(tree_ids) else 0
        self.buckets = []
        for sel, d in self._plan(lengths, buckets):
            idx = np.flatnonzero(sel)
            self.buckets.append(self._pack([paths[i] for i in idx], d, tree_ids[idx]))
        if bias is None:
            bias = sum(v * math.prod(e[3] for e in c.values()) for c, v in paths)
        self.bias = float(bias) + self.base

    # ------------------------------------------------------------------------------- building
    @staticmethod
    def _plan(lengths: np.ndarray, mode: str) -> list[tuple[np.ndarray, int]]:
        """Buckets as (path mask, padded length): one per length ("exact"), one for all ("pad"),
        or the partition of the sorted lengths with the least modelled cost ("auto")."""
        if not len(lengths):
            return []
        ls, counts = np.unique(lengths, return_counts=True)
        if mode == "exact":
            groups = [[i] for i in range(len(ls))]
        elif mode == "pad":
            groups = [list(range(len(ls)))]
        elif mode == "auto":
            best = [0.0] + [math.inf] * len(ls)  # best[j]: cost of lengths ls[:j]
            cut = [0] * (len(ls) + 1)
            for j in range(1, len(ls) + 1):
                for i in range(j):
                    d = max(int(ls[j - 1]), 1)
                    c = best[i] + 2 * d * _STEP_COST + _ELEMENT_COST * counts[i:j].sum() * d * (d + 1)
                    if c < best[j]:
                        best[j], cut[j] = c, i
            groups, j = [], len(ls)
            while j > 0:
                groups.append(list(range(cut[j], j)))
                j = cut[j]
        else:
            raise ValueError(f"buckets must be auto, exact or pad, not {mode!r}")
        return [(np.isin(lengths, ls[g]), max(int(ls[g[-1]]), 1)) for g in groups]

    @staticmethod
    def _pack(paths: list[Path], d: int, trees: np.ndarray) -> _Bucket:
        """Arrays of one bucket; missing elements are dummies (feature 0, (-inf, inf), zero 1)."""
        p = len(paths)
        feature = np.zeros((p, d), dtype=np.intp)
        lower = np.full((p, d), -np.inf)
        upper = np.full((p, d), np.inf)
        nan_ok = np.ones((p, d), dtype=bool)
        zero = np.ones((p, d))
        value = np.empty(p)
        for r, (conds, v) in enumerate(paths):
            for k, (f, (lo, hi, nan, z)) in enumerate(conds.items()):
                feature[r, k], lower[r, k], upper[r, k], nan_ok[r, k], zero[r, k] = f, lo, hi, nan, z
            value[r] = v
        return _Bucket(
            feature.T.copy(), lower.T.copy(), upper.T.copy(), nan_ok.T.copy(), zero.T.copy(), value, trees
        )

    # ------------------------------------------------------------------------------- runtime
    def _follows(self, X: np.ndarray, b: _Bucket) -> np.ndarray:
        """(n, D, P) True where the row's value follows the path at that element (one fraction 1)."""
        xf = X[:, b.feature]
        strict = self.strict_left
        inside = (xf >= b.lower) & (xf < b.upper) if strict else (xf > b.lower) & (xf <= b.upper)
        if not np.isnan(X).any():  # the common case (the bundle's imputer leaves no NaN)
            return inside
        return inside | (np.isnan(xf) & b.nan_ok)

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} model-space columns, got {X.shape[1]}")
        X = X.astype(self.input_dtype).astype(float)
        if self.zero_below > 0:
            X = np.where(np.abs(X) <= self.zero_below, 0.0, X)
        return X

    def leaf_values(self, X: np.ndarray) -> np.ndarray:
        """(n, n_trees) value of the leaf each row reaches in each tree (the one path all of whose
        elements it follows), for summing in the library's own order."""
        X = self._prepare(X)
        out = np.zeros((X.shape[0], self.n_trees))
        for b in self.buckets:
            for rows in self._row_chunks(X.shape[0], b):
                r, q = np.nonzero(self._follows(X[rows], b).all(axis=1))
                out[r + rows.start, b.tree[q]] = b.value[q]
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Model output (n,): ``base`` plus the reached leaf values of every tree."""
        return self.base + self.leaf_values(X).sum(axis=1)

    def _row_chunks(self, n: int, b: _Bucket) -> list[slice]:
        step = max(1, CHUNK // max(1, b.zero.size * 2))
        return [slice(i, min(i + step, n)) for i in range(0, n, step)]

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """(n, n_features + 1) path-dependent SHAP values, expected output (bias) last."""
        X = self._prepare(X)
        n, p = X.shape
        phi = np.zeros(n * (p + 1))
        for b in self.buckets:
            for rows in self._row_chunks(n, b):
                self._bucket_shap(X[rows], b, phi, rows.start, p + 1)
        phi = phi.reshape(n, p + 1)
        phi[:, -1] = self.bias
        return phi

    def _bucket_shap(self, X: np.ndarray, b: _Bucket, phi: np.ndarray, row0: int, width: int) -> None:
        """EXTEND all elements of every path, then UNWOUND-SUM every element, for rows ``X``.

        Layout (rows, elements, paths): the path axis is the long, contiguous one."""
        follows = self._follows(X, b)
        o = follows.astype(float)  # (n, D, P) one fractions
        n, d, n_paths = o.shape
        length = d + 1  # with Algorithm 2's initial (bias) element
        w = np.zeros((n, length, n_paths))
        w[:, 0] = 1.0
        for k in range(1, length):  # EXTEND with element k (stored row k - 1)
            up = w[:, :k] * b.ext_one[k]
            up *= o[:, k - 1, None]
            w[:, :k] *= b.ext_zero[k]
            w[:, 1 : k + 1] += up
        # UNWOUND-SUM of each element i >= 1 (all at once): two cases, one fraction 1 or 0.
        total = np.zeros((n, d, n_paths))
        nxt = np.broadcast_to(w[:, length - 1, None], total.shape)
        for e in range(length - 2, -1, -1):
            t = nxt * (length / (e + 1))
            total += t
            t *= b.unw_zero[e]
            nxt = np.subtract(w[:, e, None], t, out=t)
        total *= b.one_minus_zero  # one fraction 1: unwound sum * (1 - z)
        s0 = (w[:, : length - 1] * b.unw_scale).sum(axis=1)  # (n, P)
        np.copyto(total, -s0[:, None], where=~follows)  # one fraction 0: (S / z) * (0 - z) = -S
        total *= b.value
        idx = (np.arange(n)[:, None, None] + row0) * width + b.feature[None]
        phi += np.bincount(idx.ravel(), weights=total.ravel(), minlength=phi.size)


# ------------------------------------------------------------------------------------ compilers
def _walk(
    n_nodes: int,
    root: int,
    children: Any,
    leaf_value: Any,
) -> list[Path]:
    """Depth-first decomposition; ``children(j)`` gives None for a leaf, else (feature, threshold,
    [(child, goes_left, nan_follows, cover_ratio)] for both children)."""
    paths: list[Path] = []
    stack: list[tuple[int, dict[int, list[Any]]]] = [(root, {})]
    while stack:
        j, conds = stack.pop()
        split = children(j)
        if split is None:
            paths.append((conds, leaf_value(j)))
            continue
        f, thr, kids = split
        for child, goes_left, nan_follows, ratio in kids:
            c = dict(conds)
            lo, hi, nan, z = c.get(f, (-math.inf, math.inf, True, 1.0))
            if goes_left:
                hi = min(hi, thr)
            else:
                lo = max(lo, thr)
            c[f] = [lo, hi, nan and nan_follows, z * ratio]
            stack.append((child, c))
    return paths


def sklearn_tree_paths(tree: Any, class_index: int = 1, scale: float = 1.0) -> list[Path]:
    """Paths of a fitted scikit-learn decision tree classifier, leaf value = class proportion
    (times ``scale``); a missing value follows ``missing_go_to_left`` as in ``predict``."""
    t = tree.tree_
    left, right, feat, thr = t.children_left, t.children_right, t.feature, t.threshold
    cover = t.weighted_n_node_samples
    vals = t.value[:, 0, :]
    v = vals[:, class_index] / vals.sum(axis=1)
    mgl = np.asarray(getattr(t, "missing_go_to_left", np.zeros(t.node_count)), dtype=bool)

    def children(j: int) -> Any:
        if left[j] == -1:
            return None
        lj, rj = int(left[j]), int(right[j])
        return (
            int(feat[j]),
            float(thr[j]),
            [
                (lj, True, bool(mgl[j]), cover[lj] / cover[j]),
                (rj, False, not mgl[j], cover[rj] / cover[j]),
            ],
        )

    return _walk(t.node_count, 0, children, lambda j: float(v[j] * scale))


def from_sklearn_forest(forest: Any, class_index: int = 1, buckets: str = "auto") -> TreePaths:
    """TreePaths of a RandomForestClassifier for P(class ``class_index``) (mean over trees)."""
    ests = list(forest.estimators_)
    scale = 1.0 / len(ests)
    paths: list[Path] = []
    trees: list[int] = []
    bias = 0.0
    for i, est in enumerate(ests):
        tree_paths = sklearn_tree_paths(est, class_index, scale)
        paths += tree_paths
        trees += [i] * len(tree_paths)
        t = est.tree_
        vals = t.value[:, 0, :]
        v = vals[:, class_index] / vals.sum(axis=1)
        leaves = t.children_left == -1
        w = t.weighted_n_node_samples
        bias += float(np.sum(w[leaves] * v[leaves]) / w[0])
    return TreePaths(
        paths,
        int(forest.n_features_in_),
        input_dtype=np.float32,
        bias=bias / len(ests),
        buckets=buckets,
        trees=trees,
    )


# ------------------------------------------------------------------------------------ boosters
def lightgbm_tree_paths(model: Any) -> tuple[list[Path], list[int]]:
    """Paths (raw-score leaf values) and tree ids of a binary LightGBM model from ``dump_model()``.

    Numerical splits ``x <= threshold``; a missing value goes the ``default_left`` way when the
    split's missing type is NaN, and is compared as 0.0 when it is None (LightGBM's own rule); zero
    as missing, categorical splits, linear trees and averaged outputs are not supported. Covers
    are the node data counts, as LightGBM's TreeSHAP uses."""
    booster = getattr(model, "booster_", model)
    d = booster.dump_model()
    if d.get("num_tree_per_iteration", 1) != 1 or d.get("average_output") or d.get("num_class", 1) != 1:
        raise UnsupportedTreeError("LightGBM model is not a single-output boosted binary model")
    paths: list[Path] = []
    trees: list[int] = []

    def count(node: dict) -> float:
        return float(node["internal_count"] if "split_feature" in node else node["leaf_count"])

    for t, info in enumerate(d["tree_info"]):
        nodes: list[dict] = []

        def index(node: dict, nodes: list[dict] = nodes) -> int:
            nodes.append(node)
            return len(nodes) - 1

        index(info["tree_structure"])

        def children(j: int, nodes: list[dict] = nodes) -> Any:
            node = nodes[j]
            if "split_feature" not in node:
                return None
            if node.get("decision_type") != "<=" or node.get("missing_type") not in ("None", "NaN"):
                raise UnsupportedTreeError(
                    f"LightGBM split {node.get('decision_type')} with missing type {node.get('missing_type')}"
                )
            thr = float(node["threshold"])
            nan_left = (
                bool(node["default_left"]) if node["missing_type"] == "NaN" else thr >= 0.0
            )  # None: NaN is compared as 0.0
            left, right = node["left_child"], node["right_child"]
            c = count(node)
            return (
                int(node["split_feature"]),
                thr,
                [
                    (index(left), True, nan_left, count(left) / c),
                    (index(right), False, not nan_left, count(right) / c),
                ],
            )

        tree_paths = _walk(0, 0, children, lambda j, nodes=nodes: float(nodes[j]["leaf_value"]))
        paths += tree_paths
        trees += [t] * len(tree_paths)
    return paths, trees


def from_lightgbm(model: Any, buckets: str = "auto") -> TreePaths:
    """TreePaths of a binary LGBMClassifier on the raw (log-odds) scale, like ``pred_contrib``."""
    paths, trees = lightgbm_tree_paths(model)
    return TreePaths(paths, int(model.n_features_in_), buckets=buckets, trees=trees, zero_below=LIGHTGBM_ZERO)


def libm_float(name: str) -> Any:
    """A float32 function of the C math library (``expf``, ``logf``), which XGBoost calls: numpy's
    float32 versions differ from it in the last bit for a share of inputs (XGBoost's probabilities
    and base margin would then differ by 1 ulp)."""
    import ctypes
    import ctypes.util

    path = ctypes.util.find_library("m")
    if path is None:
        raise UnsupportedTreeError("no C math library for XGBoost's float32 arithmetic")
    fn = getattr(ctypes.CDLL(path), name)
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


def xgboost_base_margin(model: Any) -> np.float32:
    """The base margin XGBoost adds for binary:logistic: logit of ``base_score``, in float32."""
    import json

    booster = model.get_booster() if hasattr(model, "get_booster") else model
    cfg = json.loads(booster.save_config())["learner"]
    if cfg["objective"]["name"] != "binary:logistic":
        raise UnsupportedTreeError(f"XGBoost objective {cfg['objective']['name']}")
    raw = str(cfg["learner_model_param"]["base_score"]).strip("[]").split(",")
    if len(raw) != 1:
        raise UnsupportedTreeError("XGBoost model with several targets")
    b = np.float32(float(raw[0]))
    one = np.float32(1.0)
    return np.float32(-libm_float("logf")(float(one / b - one)))  # numpy's float32 log differs at times


def xgboost_tree_paths(model: Any) -> tuple[list[Path], list[int]]:
    """Paths (margin leaf values) and tree ids of a binary XGBoost model from its JSON dump.

    Splits ``x < split_condition`` (float32, as XGBoost compares); a missing value goes to the
    ``missing`` child; covers are the dumped hessian sums, as XGBoost's TreeSHAP uses."""
    import json

    booster = model.get_booster() if hasattr(model, "get_booster") else model
    names = booster.feature_names
    lookup = {n: i for i, n in enumerate(names)} if names else None
    paths: list[Path] = []
    trees: list[int] = []
    for t, text in enumerate(booster.get_dump(dump_format="json", with_stats=True)):
        nodes: dict[int, dict] = {}
        stack = [json.loads(text)]
        while stack:
            node = stack.pop()
            nodes[int(node["nodeid"])] = node
            stack += node.get("children", [])

        def feature(name: str) -> int:
            if lookup is not None:
                return lookup[name]
            if not name.startswith("f"):
                raise UnsupportedTreeError(f"XGBoost split on unknown feature {name!r}")
            return int(name[1:])

        def children(j: int, nodes: dict[int, dict] = nodes) -> Any:
            node = nodes[j]
            if "leaf" in node:
                return None
            if "split_condition" not in node:
                raise UnsupportedTreeError("XGBoost categorical split")
            yes, no, missing = int(node["yes"]), int(node["no"]), int(node["missing"])
            c = float(node["cover"])
            return (
                feature(node["split"]),
                float(np.float32(node["split_condition"])),
                [
                    (yes, True, missing == yes, float(nodes[yes]["cover"]) / c),
                    (no, False, missing == no, float(nodes[no]["cover"]) / c),
                ],
            )

        tree_paths = _walk(0, 0, children, lambda j, nodes=nodes: float(np.float32(nodes[j]["leaf"])))
        paths += tree_paths
        trees += [t] * len(tree_paths)
    return paths, trees


def from_xgboost(model: Any, buckets: str = "auto") -> TreePaths:
    """TreePaths of a binary XGBClassifier on the margin (log-odds) scale, like ``pred_contribs``
    (computed in float64; XGBoost itself works in float32, so they agree to ~1e-6)."""
    paths, trees = xgboost_tree_paths(model)
    return TreePaths(
        paths,
        int(model.n_features_in_),
        strict_left=True,
        input_dtype=np.float32,
        base=float(xgboost_base_margin(model)),
        buckets=buckets,
        trees=trees,
    )
