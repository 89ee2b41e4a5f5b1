"""The bundle's input schema as form fields, and localised server-side checking of submitted values.

The bundle (``Bundle.validate``) stays the authority on what is valid; this module parses what a
form or JSON body sends (strings, numbers, nulls) against the same schema so every message can be
shown next to its field in English or Chinese, and derives the pydantic request model's limits.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from LBPRiskModelLib.webapp.i18n import translate

# Form keys that are not model inputs (language of the page).
CONTROL_KEYS = frozenset({"lang"})
IMPUTING_POLICIES = ("impute", "median", "mean", "mode", "most_frequent", "model")


def spec_get(spec: Any, name: str, default: Any = None) -> Any:
    """Attribute ``name`` of a FieldSpec given as a dataclass/object or a plain dict."""
    if isinstance(spec, dict):
        return spec.get(name, default)
    return getattr(spec, name, default)


def spec_dict(spec: Any) -> dict[str, Any]:
    """FieldSpec as a JSON-ready dict (for ``GET /api/schema``)."""
    if isinstance(spec, dict):
        raw = dict(spec)
    elif dataclasses.is_dataclass(spec):
        raw = dataclasses.asdict(spec)
    elif hasattr(spec, "model_dump"):
        raw = spec.model_dump()
    else:
        raw = {k: v for k, v in vars(spec).items() if not k.startswith("_")}
    return {k: to_json(v) for k, v in raw.items()}


def to_json(value: Any) -> Any:
    """numpy scalars/tuples → plain JSON values; NaN/inf → None."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt_number(value: Any) -> str:
    """Compact display of a limit or value: 60 not 60.0, 3.25 not 3.2500001."""
    if value is None:
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return str(number)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.4g}"


def is_required(spec: Any) -> bool:
    """A field is required when the schema says so or its missing-value policy is "error"."""
    return bool(spec_get(spec, "required", False)) or str(spec_get(spec, "missing", "")).lower() in (
        "error",
        "required",
        "refuse",
    )


def out_of_range_policy(spec: Any) -> str:
    """ "error" (reject) or "warn" (accept with a warning); anything else counts as "error"."""
    policy = str(spec_get(spec, "out_of_range", "error") or "error").lower()
    return "warn" if policy.startswith("warn") else "error"


@dataclass
class FieldView:
    """Everything a template needs to draw one input."""

    name: str
    label: str
    help: str
    type: str
    unit: str
    min: str
    max: str
    hard_min: str
    hard_max: str
    categories: list[str]
    required: bool
    policy: str
    value: str = ""
    error: str = ""
    warning: str = ""


def field_views(
    schema: list[Any],
    lang: str,
    raw: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    warnings: dict[str, str] | None = None,
) -> list[FieldView]:
    """One FieldView per schema field in ``lang``, pre-filled with ``raw`` and annotated with messages."""
    raw, errors, warnings = raw or {}, errors or {}, warnings or {}
    views = []
    for spec in schema:
        name = str(spec_get(spec, "name"))
        value = raw.get(name)
        views.append(
            FieldView(
                name=name,
                label=str(spec_get(spec, f"label_{lang}") or spec_get(spec, "label_en") or name),
                help=str(spec_get(spec, f"help_{lang}") or spec_get(spec, "help_en") or ""),
                type=str(spec_get(spec, "type", "number")),
                unit=str(spec_get(spec, "unit") or ""),
                min=fmt_number(spec_get(spec, "min")),
                max=fmt_number(spec_get(spec, "max")),
                hard_min=fmt_number(spec_get(spec, "hard_min")),
                hard_max=fmt_number(spec_get(spec, "hard_max")),
                categories=[str(c) for c in (spec_get(spec, "categories") or [])],
                required=is_required(spec),
                policy=out_of_range_policy(spec),
                value="" if value is None else str(value),
                error=errors.get(name, ""),
                warning=warnings.get(name, ""),
            )
        )
    return views


def missing_policy_text(schema: list[Any], lang: str) -> list[str]:
    """Sentences stating what happens to empty fields, shown above the form."""
    required = [s for s in schema if is_required(s)]
    optional = [s for s in schema if not is_required(s)]
    lines = []
    if required:
        lines.append(translate(lang, "missing_required"))
    if optional:
        policies = sorted({str(spec_get(s, "missing") or "impute") for s in optional})
        lines.append(translate(lang, "missing_impute", policy=", ".join(policies)))
    else:
        lines.append(translate(lang, "missing_none"))
    return lines


@dataclass
class CheckResult:
    """Parsed values (None = missing) and localised per-field errors and warnings."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)


def _parse_number(value: Any) -> float | None:
    """A finite float from a JSON number or a form string ("3,5" accepted); None if not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", "."))
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def check_values(schema: list[Any], raw: dict[str, Any], lang: str, allow_extra: bool = False) -> CheckResult:
    """Check ``raw`` against the schema: missing required, wrong type, range (error/warn), category, extras."""
    result = CheckResult()
    names = {str(spec_get(s, "name")) for s in schema}
    for spec in schema:
        name = str(spec_get(spec, "name"))
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if is_required(spec):
                result.errors[name] = translate(lang, "err_required")
            else:
                result.warnings[name] = translate(lang, "warn_imputed")
            result.values[name] = None
            continue
        categories = spec_get(spec, "categories") or []
        if str(spec_get(spec, "type", "number")) == "category":
            by_text = {str(c): c for c in categories}
            key = (
                str(value).strip()
                if isinstance(value, str | int | float) and not isinstance(value, bool)
                else None
            )
            if key is None or key not in by_text:
                result.errors[name] = translate(lang, "err_unknown_category", choices=", ".join(by_text))
            else:
                result.values[name] = by_text[key]
            continue
        number = _parse_number(value)
        if number is None:
            result.errors[name] = translate(lang, "err_not_number")
            continue
        result.values[name] = number
        hard_low, hard_high = spec_get(spec, "hard_min"), spec_get(spec, "hard_max")
        low, high = spec_get(spec, "min"), spec_get(spec, "max")
        if (hard_low is not None and number < float(hard_low)) or (
            hard_high is not None and number > float(hard_high)
        ):
            result.errors[name] = translate(
                lang, "err_invalid_range", min=fmt_number(hard_low), max=fmt_number(hard_high)
            )
        elif (low is not None and number < float(low)) or (high is not None and number > float(high)):
            key = "err_out_of_range" if out_of_range_policy(spec) == "error" else "warn_out_of_range"
            message = translate(lang, key, min=fmt_number(low), max=fmt_number(high))
            (result.errors if key.startswith("err") else result.warnings)[name] = message
    if not allow_extra:
        for key in raw:
            if key not in names and key not in CONTROL_KEYS:
                result.errors[str(key)] = translate(lang, "err_unknown_field")
    return result
