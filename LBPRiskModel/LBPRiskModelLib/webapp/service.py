"""The calculator's bridge to one loaded bundle: check inputs, ask the bundle, shape the prediction.

Checking runs in two layers: ``fields.check_values`` parses form/JSON values with localised
messages, then ``Bundle.validate`` (the authority) adds anything it finds; only then is
``Bundle.predict_one`` called. Nothing here keeps or logs the values it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sklearn

from LBPRiskModelLib.webapp.fields import check_values, fmt_number, spec_dict, spec_get, to_json
from LBPRiskModelLib.webapp.i18n import strings, translate

MAX_PLOT_FEATURES = 8


@dataclass
class Evaluation:
    """Outcome of one submission: the values used, messages, and the prediction when valid."""

    values: dict[str, Any]
    errors: dict[str, str]
    warnings: dict[str, str]
    prediction: dict[str, Any] | None = None
    contributions: list[dict[str, Any]] = field(default_factory=list)


def _as_dict(obj: Any) -> dict[str, Any]:
    """Metadata given as a dict, dataclass or object → dict."""
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def _contribution_triple(item: Any) -> tuple[str, Any, float]:
    """(feature, value, contribution) from a tuple/list or an object/dict with those names."""
    if isinstance(item, list | tuple):
        feature, value, contribution = item[0], item[1], item[2]
    else:
        feature, value, contribution = (spec_get(item, k) for k in ("feature", "value", "contribution"))
    return str(feature), to_json(value), float(contribution)


class Calculator:
    """Wraps a verified Bundle for the web app (schema, metadata texts, evaluation)."""

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        self.schema: list[Any] = list(bundle.schema)
        self.metadata: dict[str, Any] = _as_dict(getattr(bundle, "metadata", None))
        self.by_name = {str(spec_get(s, "name")): s for s in self.schema}

    # ------------------------------------------------------------------ identity and texts
    def identity(self) -> dict[str, str]:
        """Model name, version and bundle hash for /healthz (taken from a reference prediction-free source)."""
        meta = self.metadata
        return {
            "model_name": str(meta.get("model_name") or getattr(self.bundle, "model_name", "") or ""),
            "model_version": str(
                meta.get("model_version") or getattr(self.bundle, "model_version", "") or ""
            ),
            "bundle_hash": str(getattr(self.bundle, "bundle_hash", "") or meta.get("bundle_hash") or ""),
        }

    def meta_text(self, key: str, lang: str) -> str:
        """A metadata text in ``lang``: ``{key: {en, zh}}``, ``key_zh``/``key_en`` or a plain ``key``."""
        meta = self.metadata
        value = meta.get(key)
        if isinstance(value, dict):
            if lang in value or "en" in value:
                return str(value.get(lang) or value.get("en") or "")
            return "; ".join(f"{k}: {fmt_number(v) if isinstance(v, float) else v}" for k, v in value.items())
        for candidate in (f"{key}_{lang}", f"{key}_en"):
            if meta.get(candidate):
                return str(meta[candidate])
        if isinstance(value, list):
            return ", ".join(fmt_number(v) for v in value)
        return "" if value is None else str(value)

    def label(self, feature: str, lang: str) -> str:
        """Display label of an input field (falls back to the raw feature name)."""
        spec = self.by_name.get(feature)
        if spec is None:
            return feature
        return str(spec_get(spec, f"label_{lang}") or spec_get(spec, "label_en") or feature)

    def group_label(self, group: str, lang: str) -> str:
        """Translated risk group ("high" → "高风险") when the locale knows it."""
        key = f"group_{group.strip().lower()}"
        return translate(lang, key) if key in strings(lang) else group

    def model_card_path(self) -> Path | None:
        """The bundle's model card: its Markdown version when present (rendered safely), else the HTML one."""
        base = getattr(self.bundle, "path", None)
        if base is not None and (Path(base) / "model_card.md").is_file():
            return Path(base) / "model_card.md"
        path = getattr(self.bundle, "model_card_path", None)
        return Path(path) if path and Path(path).is_file() else None

    def cutoffs_text(self, lang: str) -> str:
        """Risk-group cut-offs as "low < 20 % ≤ intermediate < 40 % ≤ high" in ``lang``."""
        groups = self.metadata.get("risk_groups")
        if not isinstance(groups, dict) or not groups.get("names"):
            return self.meta_text("cutoffs", lang)
        names = [self.group_label(str(n), lang) for n in groups["names"]]
        cuts = [f"{100 * float(c):.4g} %" for c in groups.get("cutoffs", [])]
        parts = [names[0]]
        for cut, name in zip(cuts, names[1:], strict=False):
            parts += [f"< {cut} ≤", name]
        return " ".join(parts)

    def schema_document(self) -> dict[str, Any]:
        """Body of ``GET /api/schema``: the input fields and the model's metadata."""
        return {
            **self.identity(),
            "fields": [spec_dict(s) for s in self.schema],
            "metadata": to_json(_json_safe(self.metadata)),
        }

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, raw: dict[str, Any], lang: str) -> Evaluation:
        """Check ``raw`` (localised messages + the bundle's own validation) and predict when valid."""
        checked = check_values(self.schema, raw, lang)
        errors, warnings = dict(checked.errors), dict(checked.warnings)
        if errors:
            return Evaluation(checked.values, errors, warnings)
        record = {k: v for k, v in checked.values.items() if v is not None}
        result = self.bundle.validate(record)
        for name, message in (spec_get(result, "errors") or {}).items():
            errors.setdefault(str(name), str(message))
        for name, message in (spec_get(result, "warnings") or {}).items():
            warnings.setdefault(str(name), str(message))
        if errors:
            return Evaluation(checked.values, errors, warnings)
        # Values are already checked finite and in range: skip scikit-learn's repeated input
        # validation (same numbers, less work per prediction; bench_calculator.py measures it).
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            prediction = self.bundle.predict_one(record)
        return self._shape(prediction, checked.values, warnings)

    def _shape(self, prediction: Any, values: dict[str, Any], warnings: dict[str, str]) -> Evaluation:
        """Prediction object → JSON-ready dict plus the contributions to plot (largest first)."""
        triples = [_contribution_triple(c) for c in (spec_get(prediction, "contributions") or [])]
        triples.sort(key=lambda t: -abs(t[2]))
        top = [str(f) for f in (spec_get(prediction, "top_features") or [t[0] for t in triples])]
        risk = float(spec_get(prediction, "risk"))
        identity = self.identity()
        out = {
            "risk": risk,
            "risk_percent": round(100 * risk, 1),
            "ci_low": _maybe_float(spec_get(prediction, "ci_low")),
            "ci_high": _maybe_float(spec_get(prediction, "ci_high")),
            "risk_group": str(spec_get(prediction, "risk_group")),
            "contributions": [{"feature": f, "value": v, "contribution": c} for f, v, c in triples],
            "top_features": top,
            "contribution_unit": str(
                spec_get(prediction, "contribution_unit")
                or self.metadata.get("contribution_unit")
                or "log-odds"
            ),
            "base_value": _maybe_float(spec_get(prediction, "base_value")),
            "warnings": warnings,
            "model_name": str(spec_get(prediction, "model_name") or identity["model_name"]),
            "model_version": str(spec_get(prediction, "model_version") or identity["model_version"]),
            "bundle_hash": str(spec_get(prediction, "bundle_hash") or identity["bundle_hash"]),
        }
        return Evaluation(values, {}, warnings, out, out["contributions"][:MAX_PLOT_FEATURES])


def _maybe_float(value: Any) -> float | None:
    """Float or None (NaN/absent → None)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _json_safe(value: Any) -> Any:
    """Drop values JSON cannot carry (paths → str, other objects → str)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)
