"""The model bundle: a verified, pickle-free directory that the calculator and Slicer load.

Layout of ``BUNDLE_DIR`` (written by :func:`save_bundle`, read by :func:`load_bundle`):

- ``model.skops`` — the fitted scikit-learn Pipeline (harmonise → prep → select → model), skops
  format, loaded only with the fixed trust list :data:`TRUSTED_TYPES` (no arbitrary unpickling);
- ``ci_models.skops`` — bootstrap refits of the final estimator (same preprocessing and selected
  features) whose 2.5/97.5 percentiles give each prediction's uncertainty interval;
- ``schema.json`` — input fields (:class:`FieldSpec`), ``metadata.json`` — outcome definition,
  threshold, risk-group cut-offs, intended use, disclaimers (en/zh), library versions, created;
- ``explain.json`` — background summary for explanations (model-space mean + small sample) and the
  map from model columns to input fields; ``metrics.json`` — test metrics per model family and the
  selection rationale; ``model_card.md`` / ``model_card.html``; ``report/`` — report assets;
- ``MANIFEST.sha256`` — ``<sha256>  <relative path>`` of every other file; ``bundle_hash`` — SHA-256
  of the manifest. Any changed, missing or extra file makes :func:`load_bundle` raise
  :class:`BundleError` naming the file.

The directory is replaced whole through ``ParaspinalLBPCore.staging`` (staged, committed, swapped): a
save stopped at any moment leaves the earlier bundle or the complete new one once
``staging.recover`` has run, which :func:`verify_bundle` does first.

Contributions are in the unit given by ``Prediction.contribution_unit`` (log-odds, or probability
for random forests); they sum with the base value to the model output (see :mod:`explain`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from LBPRiskModelLib import explain, fastpath
from ParaspinalLBPCore.atomic import atomic_dir
from ParaspinalLBPCore.errors import BadInputError, UserError
from ParaspinalLBPCore.staging import recover

_LOG = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
MANIFEST = "MANIFEST.sha256"
HASH_FILE = "bundle_hash"

#: types skops may instantiate when loading a bundle (fixed in code, never read from the bundle).
TRUSTED_TYPES = [
    "LBPRiskModelLib.preprocess.ComBatHarmonizer",
    "LBPRiskModelLib.preprocess.StabilitySelector",
    "sklearn.pipeline.Pipeline",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.preprocessing._label.LabelBinarizer",
    "xgboost.sklearn.XGBClassifier",
    "xgboost.core.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.basic.Booster",
    "collections.OrderedDict",
    "collections.defaultdict",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.float64",
    "numpy.int64",
    "numpy.bool_",
    "numpy.random.mtrand.RandomState",
    "numpy.random._mt19937.MT19937",
    "builtins.slice",
    "builtins.object",
    "builtins.type",
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.list",
    "builtins.dict",
    "builtins.tuple",
    "builtins.NoneType",
]

#: class of the final estimator of each model family (checked after loading).
FAMILY_CLASSES = {
    "logistic_regression": "sklearn.linear_model._logistic.LogisticRegression",
    "random_forest": "sklearn.ensemble._forest.RandomForestClassifier",
    "xgboost": "xgboost.sklearn.XGBClassifier",
    "lightgbm": "lightgbm.sklearn.LGBMClassifier",
    "mlp": "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
}

#: libraries whose major.minor must match between training and loading (model formats).
COMPAT_LIBS = ("scikit-learn", "xgboost", "lightgbm", "skops", "numpy")

DISCLAIMER_EN = (
    "Research tool for the METNLBP trial. The predicted risk supports, but does not replace, clinical "
    "judgement; it has not been validated outside the development cohort and is not a certified medical device."
)
DISCLAIMER_ZH = "本工具为METNLBP试验的研究工具。预测风险仅供临床决策参考，不能替代临床判断；尚未在开发队列以外验证，并非经认证的医疗器械。"


class BundleError(UserError):
    """A bundle is tampered, incomplete or incompatible; the message names the file."""


@dataclass
class FieldSpec:
    """One input field of the model (drives the calculator form and input validation)."""

    name: str
    label_en: str
    label_zh: str
    type: str  # "number" | "category"
    unit: str = ""
    min: float | None = None  # training-data range
    max: float | None = None
    hard_min: float | None = None  # physically valid range: outside is always an error
    hard_max: float | None = None
    categories: list[str] = field(default_factory=list)
    help_en: str = ""
    help_zh: str = ""
    required: bool = False
    out_of_range: str = "warn"  # "error" | "warn" (outside the training range)
    missing: str = "impute"  # "impute" (training median/mode, with a warning) | "error"
    group: str = "clinical"  # clinical | measurement | radiomics


@dataclass
class ValidationResult:
    """Parsed values plus per-field errors (block prediction) and warnings (shown with it)."""

    values: dict[str, Any]
    errors: dict[str, str]
    warnings: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Prediction:
    """One patient's prediction with uncertainty interval and explanation."""

    risk: float
    ci_low: float
    ci_high: float
    risk_group: str
    contributions: list[tuple[str, Any, float]]
    top_features: list[str]
    model_name: str
    model_version: str
    bundle_hash: str
    base_value: float = 0.0
    contribution_unit: str = "log-odds"
    warnings: dict[str, str] = field(default_factory=dict)


def _range(lo: float | None, hi: float | None, fmt: str) -> str:
    """'lo–hi', '≥ lo' or '≤ hi' for a possibly one-sided range."""
    if lo is not None and hi is not None:
        return f"{lo:{fmt}}–{hi:{fmt}}"
    return f"≥ {lo:{fmt}}" if lo is not None else f"≤ {hi:{fmt}}"


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of every library the bundle depends on (recorded at save, checked at load)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
        "xgboost",
        "lightgbm",
        "skops",
        "shap",
        "lime",
        "matplotlib",
    ):
        for dist in (name, f"{name}-cpu"):
            try:
                out[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    import platform

    out["python"] = platform.python_version()
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_json(path: Path, obj: Any) -> None:
    """JSON with numpy types converted and NaN written as null."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    Path(path).write_text(
        json.dumps(clean(obj), indent=2, ensure_ascii=False, default=_json_default), encoding="utf-8"
    )


def save_bundle(
    out_dir: str | Path,
    *,
    pipeline: Any,
    family: str,
    ci_models: list[Any],
    schema: list[FieldSpec],
    metadata: dict[str, Any],
    metrics: dict[str, Any],
    explain_info: dict[str, Any],
    model_card_md: str,
    model_card_html: str,
    extra_files: dict[str, str | Path] | None = None,
) -> str:
    """Write the bundle atomically (staged, then swapped in whole) and return its bundle hash.

    ``explain_info`` holds ``columns_to_fields`` (input field of each model-space column),
    ``background_mean``, ``background_sample`` (model space) and ``input_columns`` with kinds.
    ``extra_files`` maps relative paths (e.g. ``report/roc.png``) to files to copy in.
    """
    import skops.io as sio

    with atomic_dir(out_dir) as tmp:  # a complete bundle or the previous one, never a half-written one
        sio.dump(pipeline, tmp / "model.skops")
        sio.dump(list(ci_models), tmp / "ci_models.skops")
        meta = dict(metadata)
        meta.update(
            bundle_format=BUNDLE_FORMAT,
            model_name=family,
            created=meta.get("created") or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            versions=library_versions(),
            disclaimer_en=meta.get("disclaimer_en", DISCLAIMER_EN),
            disclaimer_zh=meta.get("disclaimer_zh", DISCLAIMER_ZH),
            contribution_unit=explain.CONTRIBUTION_UNITS[family],
        )
        write_json(tmp / "metadata.json", meta)
        write_json(tmp / "schema.json", {"fields": [asdict(f) for f in schema]})
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "explain.json", explain_info)
        (tmp / "model_card.md").write_text(model_card_md, encoding="utf-8")
        (tmp / "model_card.html").write_text(model_card_html, encoding="utf-8")
        for rel, src in (extra_files or {}).items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = "".join(f"{_sha256(p)}  {p.relative_to(tmp).as_posix()}\n" for p in files)
        (tmp / MANIFEST).write_text(manifest, encoding="utf-8")
        bundle_hash = hashlib.sha256(manifest.encode()).hexdigest()
        (tmp / HASH_FILE).write_text(bundle_hash + "\n", encoding="utf-8")
    return bundle_hash


def verify_bundle(path: str | Path) -> str:
    """Check bundle hash, manifest and every file; return the bundle hash or raise BundleError.

    An interrupted save of this or another bundle beside it is finished (or undone) first.
    """
    path = Path(path)
    recover(path.parent)
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory")
    man, hf = path / MANIFEST, path / HASH_FILE
    for f in (man, hf):
        if not f.is_file():
            raise BundleError(f"{f}: missing")
    text = man.read_bytes()
    bundle_hash = hashlib.sha256(text).hexdigest()
    if hf.read_text(encoding="utf-8", errors="replace").strip() != bundle_hash:
        raise BundleError(f"{hf}: bundle hash does not match {MANIFEST} (manifest or hash file modified)")
    listed: dict[str, str] = {}
    for line in text.decode("utf-8", errors="replace").splitlines():
        digest, _, rel = line.partition("  ")
        listed[rel] = digest
    for rel, digest in listed.items():
        f = path / rel
        if not f.is_file():
            raise BundleError(f"{f}: listed in {MANIFEST} but missing")
        if _sha256(f) != digest:
            raise BundleError(f"{f}: SHA-256 mismatch (file modified after the bundle was written)")
    for f in path.rglob("*"):
        rel = f.relative_to(path).as_posix()
        if f.is_file() and rel not in listed and rel not in (MANIFEST, HASH_FILE):
            raise BundleError(f"{f}: file not listed in {MANIFEST}")
    return bundle_hash


def _check_versions(path: Path, versions: dict[str, str]) -> None:
    now = library_versions()
    for lib in COMPAT_LIBS:
        saved, cur = versions.get(lib), now.get(lib)
        if saved and cur and saved.split(".")[:2] != cur.split(".")[:2]:
            raise BundleError(
                f"{path / 'metadata.json'}: bundle made with {lib} {saved}, installed {cur} (incompatible major.minor)"
            )


class Bundle:
    """A verified, loaded model bundle (see the module docstring for the layout)."""

    def __init__(self, path: Path, bundle_hash: str):
        import skops.io as sio

        self.path = path
        self.bundle_hash = bundle_hash
        try:
            self.metadata: dict[str, Any] = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
            schema = json.loads((path / "schema.json").read_text(encoding="utf-8"))
            self.explain_info: dict[str, Any] = json.loads(
                (path / "explain.json").read_text(encoding="utf-8")
            )
            self.metrics: dict[str, Any] = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: unreadable bundle JSON ({exc})") from exc
        if self.metadata.get("bundle_format") != BUNDLE_FORMAT:
            raise BundleError(
                f"{path / 'metadata.json'}: unsupported bundle_format {self.metadata.get('bundle_format')}"
            )
        _check_versions(path, self.metadata.get("versions", {}))
        self.schema = [FieldSpec(**f) for f in schema["fields"]]
        self._spec = {f.name: f for f in self.schema}
        for name in ("model.skops", "ci_models.skops"):
            untrusted = [t for t in sio.get_untrusted_types(file=path / name) if t not in TRUSTED_TYPES]
            if untrusted:
                raise BundleError(
                    f"{path / name}: contains types outside the trust list: {', '.join(untrusted)}"
                )
        self.pipeline = sio.load(path / "model.skops", trusted=TRUSTED_TYPES)
        self.ci_models = sio.load(path / "ci_models.skops", trusted=TRUSTED_TYPES)
        from sklearn.pipeline import Pipeline

        expected = FAMILY_CLASSES.get(self.metadata.get("model_name", ""))
        final = self.pipeline.steps[-1][1] if isinstance(self.pipeline, Pipeline) else None
        if final is None or f"{type(final).__module__}.{type(final).__name__}" != expected:
            raise BundleError(
                f"{path / 'model.skops'}: unexpected object (expected a Pipeline ending in {expected})"
            )
        if not isinstance(self.ci_models, list) or any(type(m) is not type(final) for m in self.ci_models):
            raise BundleError(
                f"{path / 'ci_models.skops'}: unexpected object (expected a list of {expected})"
            )
        self.family: str = self.metadata["model_name"]
        self.input_columns: dict[str, str] = self.explain_info["input_columns"]
        self._bg_sample = np.asarray(self.explain_info["background_sample"], dtype=float)
        self._bg_mean = np.asarray(self.explain_info["background_mean"], dtype=float)
        self._bg = self._bg_mean[None, :] if self.family == "logistic_regression" else self._bg_sample
        self._fields_order = [f.name for f in self.schema]
        self._fast = self._compile_fast_path()

    def _compile_fast_path(self) -> fastpath.FastPath | None:
        """The numpy one-row path, only if it equals the scikit-learn path on probe rows (else None)."""
        try:
            fast = fastpath.compile_fast_path(self.pipeline, self.ci_models, self.input_columns)
            probes = fastpath.probe_records(self.schema, self.input_columns)
            diff = fastpath.max_difference(fast, self._reference_parts, probes)
        except (
            fastpath.UnsupportedError,
            ValueError,
            TypeError,
            KeyError,
            IndexError,
            AttributeError,
        ) as exc:
            _LOG.info("%s: numpy fast path not used (%s: %s)", self.path, type(exc).__name__, exc)
            return None
        if not diff <= fastpath.TOLERANCE:
            _LOG.warning("%s: numpy fast path differs from scikit-learn by %.3g; not used", self.path, diff)
            return None
        # compiled TreeSHAP: used only if it equals the reference on the probe rows
        if fast.tree_paths is not None:
            fastpath.check_explanations(fast, fast.model_space(probes))
        return fast

    def _reference_parts(self, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model space, risk and bootstrap risks (n, k) through the fitted scikit-learn objects."""
        Z = self._model_space(self._frame(rows))
        model = self.pipeline.steps[-1][1]
        boot = [explain.fast_proba(m, Z) for m in self.ci_models]
        return Z, explain.fast_proba(model, Z), np.column_stack(boot) if boot else np.zeros((len(Z), 0))

    def _parts(self, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_reference_parts`, computed by the verified numpy fast path when there is one."""
        if self._fast is None:
            return self._reference_parts(rows)
        Z = self._fast.model_space(rows)
        risk, boot = self._fast.probabilities(Z)
        return Z, risk, boot

    @property
    def model_card_path(self) -> Path:
        return self.path / "model_card.html"

    # -- validation ---------------------------------------------------------------------------
    def validate(self, record: dict[str, Any]) -> ValidationResult:
        """Parse and check one record against the schema (types, categories, ranges, missing)."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        warnings: dict[str, str] = {}
        for f in self.schema:
            raw = record.get(f.name)
            missing = (
                raw is None
                or (isinstance(raw, str) and raw.strip() == "")
                or (isinstance(raw, float) and math.isnan(raw))
            )
            if missing:
                if f.required or f.missing == "error":
                    errors[f.name] = "required value is missing"
                else:
                    warnings[f.name] = "missing: imputed with the training-set median/mode"
                values[f.name] = None
                continue
            if f.type == "category":
                v = str(raw).strip()
                if f.categories and v not in f.categories:
                    errors[f.name] = f"must be one of {', '.join(f.categories)}"
                values[f.name] = v
                continue
            try:
                v = float(raw)
            except (TypeError, ValueError):
                errors[f.name] = "must be a number"
                values[f.name] = None
                continue
            if not math.isfinite(v):
                errors[f.name] = "must be a finite number"
            elif (f.hard_min is not None and v < f.hard_min) or (f.hard_max is not None and v > f.hard_max):
                errors[f.name] = (
                    f"outside the valid range {_range(f.hard_min, f.hard_max, 'g')} {f.unit}".rstrip()
                )
            elif (f.min is not None and v < f.min) or (f.max is not None and v > f.max):
                msg = f"outside the training range {_range(f.min, f.max, '.4g')} {f.unit}".rstrip()
                if f.out_of_range == "error":
                    errors[f.name] = msg
                else:
                    warnings[f.name] = msg + " (extrapolation)"
            values[f.name] = v
        return ValidationResult(values, errors, warnings)

    # -- prediction ---------------------------------------------------------------------------
    def _frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """DataFrame with every training input column (absent ones NaN → imputed; never selected)."""
        data = {}
        for col, kind in self.input_columns.items():
            vals = [r.get(col) for r in rows]
            if kind == "category":
                data[col] = pd.Series([None if v is None else str(v) for v in vals], dtype=object)
            else:
                data[col] = pd.to_numeric(pd.Series(vals, dtype=object), errors="coerce").astype(float)
        return pd.DataFrame(data)

    def _model_space(self, X: pd.DataFrame) -> np.ndarray:
        Z = X
        for _name, step in self.pipeline.steps[:-1]:
            Z = step.transform(Z)
        return np.asarray(Z, dtype=float)

    def risk_group(self, risk: float) -> str:
        """Risk group from the bundle's cut-offs (``metadata['risk_groups']``: names + cut-offs)."""
        rg = self.metadata["risk_groups"]
        for name, cut in zip(rg["names"], rg["cutoffs"], strict=False):
            if risk < cut:
                return name
        return rg["names"][-1]

    def _explain(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = self.pipeline.steps[-1][1]
        phi = explain.model_contributions(self.family, model, Z, self._bg)
        fields = self._fields_order
        cols = self.explain_info["columns_to_fields"]
        return explain.to_input_fields(phi[:, :-1], cols, fields), phi[:, -1]

    def predict_one(self, record: dict[str, Any]) -> Prediction:
        """Validate, predict and explain one patient; raises ValueError listing field errors."""
        res = self.validate(record)
        if res.errors:
            raise BadInputError("; ".join(f"{k}: {v}" for k, v in res.errors.items()))
        Z, risks, boots = self._parts([res.values])
        risk = float(risks[0])
        boot = boots[0] if boots.shape[1] else np.array([risk])
        contrib, base = self._explain(Z)
        items = [
            (f, res.values.get(f), float(c)) for f, c in zip(self._fields_order, contrib[0], strict=True)
        ]
        items.sort(key=lambda t: -abs(t[2]))
        k = int(self.metadata.get("n_top_features", 5))
        lo, hi = fastpath.percentiles(boot, (2.5, 97.5))  # == np.percentile, bit for bit (tested)
        return Prediction(
            risk=risk,
            ci_low=float(min(lo, risk)),
            ci_high=float(max(hi, risk)),
            risk_group=self.risk_group(risk),
            contributions=items,
            top_features=[t[0] for t in items[:k]],
            model_name=self.family,
            model_version=str(self.metadata.get("model_version", "")),
            bundle_hash=self.bundle_hash,
            base_value=float(base[0]),
            contribution_unit=self.metadata.get("contribution_unit", "log-odds"),
            warnings=res.warnings,
        )

    def predict(self, df: pd.DataFrame, n_top: int = 3, id_col: str | None = None) -> pd.DataFrame:
        """Batch prediction: risk, ci_low, ci_high, risk_group, top-n features with contributions, warnings."""
        records = df.to_dict(orient="records")
        parsed = []
        warn_col = []
        for i, rec in enumerate(records):
            res = self.validate(rec)
            if res.errors:
                who = rec.get(id_col) if id_col else f"row {i + 1}"
                raise BadInputError(f"{who}: " + "; ".join(f"{k}: {v}" for k, v in res.errors.items()))
            parsed.append(res.values)
            warn_col.append("; ".join(f"{k}: {v}" for k, v in res.warnings.items()))
        X = self._frame(parsed)
        Z = self._model_space(X)
        model = self.pipeline.steps[-1][1]
        risk = explain.fast_proba(model, Z)
        out = pd.DataFrame(index=df.index)
        if id_col and id_col in df.columns:
            out[id_col] = df[id_col].to_numpy()
        out["risk"] = risk
        if self.ci_models:
            boot = np.column_stack([explain.fast_proba(m, Z) for m in self.ci_models])
            out["ci_low"] = np.minimum(np.percentile(boot, 2.5, axis=1), risk)
            out["ci_high"] = np.maximum(np.percentile(boot, 97.5, axis=1), risk)
        out["risk_group"] = [self.risk_group(r) for r in risk]
        contrib, _ = self._explain(Z)
        order = np.argsort(-np.abs(contrib), axis=1, kind="stable")
        for k in range(min(n_top, contrib.shape[1])):
            out[f"top{k + 1}_feature"] = [self._fields_order[j] for j in order[:, k]]
            out[f"top{k + 1}_contribution"] = contrib[np.arange(len(Z)), order[:, k]]
        out["warnings"] = warn_col
        return out


def load_bundle(path: str | Path) -> Bundle:
    """Verify every hash and library compatibility, then load; raises BundleError naming the file."""
    path = Path(path)
    bundle_hash = verify_bundle(path)
    return Bundle(path, bundle_hash)
