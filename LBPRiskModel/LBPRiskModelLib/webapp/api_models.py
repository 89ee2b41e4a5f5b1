"""Pydantic request/response models built at start-up from the bundle's input schema.

The OpenAPI document (``/openapi.json``) then names every input with its label, unit, allowed
range (``minimum``/``maximum`` for "error" fields; ``x-training-range`` for "warn" fields, which
accept out-of-range values with a warning), categories (``enum``) and whether it is required.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from LBPRiskModelLib.webapp.fields import fmt_number, is_required, out_of_range_policy, spec_get


def _description(spec: Any) -> str:
    """English help text plus unit, range and policies, as the OpenAPI description."""
    parts = [str(spec_get(spec, "help_en") or spec_get(spec, "label_en") or "")]
    unit = spec_get(spec, "unit")
    if unit:
        parts.append(f"Unit: {unit}.")
    if spec_get(spec, "hard_min") is not None or spec_get(spec, "hard_max") is not None:
        parts.append(
            f"Valid range {fmt_number(spec_get(spec, 'hard_min'))} to {fmt_number(spec_get(spec, 'hard_max'))}."
        )
    if spec_get(spec, "min") is not None or spec_get(spec, "max") is not None:
        policy = out_of_range_policy(spec)
        parts.append(
            f"Training range {fmt_number(spec_get(spec, 'min'))} to {fmt_number(spec_get(spec, 'max'))}; "
            f"outside it: {'rejected (422)' if policy == 'error' else 'accepted with a warning'}."
        )
    if not is_required(spec):
        parts.append(
            f"Optional: null or absent → missing-value policy '{spec_get(spec, 'missing') or 'impute'}'."
        )
    return " ".join(p for p in parts if p)


def build_request_model(schema: list[Any]) -> type[BaseModel]:
    """``PredictRequest`` with one field per schema entry; unknown fields are forbidden."""
    definitions: dict[str, Any] = {}
    for index, spec in enumerate(schema):
        name = str(spec_get(spec, "name"))
        required = is_required(spec)
        extra: dict[str, Any] = {"x-label-zh": spec_get(spec, "label_zh") or ""}
        kwargs: dict[str, Any] = {
            "alias": name,  # the Python attribute is f<i>: feature names need not be identifiers
            "title": str(spec_get(spec, "label_en") or name),
            "description": _description(spec),
        }
        if str(spec_get(spec, "type", "number")) == "category":
            categories = tuple(spec_get(spec, "categories") or ())
            annotation: Any = Literal[categories] if categories else str  # type: ignore[valid-type]
        else:
            annotation = float
            low, high = spec_get(spec, "min"), spec_get(spec, "max")
            hard_low, hard_high = spec_get(spec, "hard_min"), spec_get(spec, "hard_max")
            if out_of_range_policy(spec) == "error":  # outside the training range is refused
                hard_low = low if hard_low is None or (low is not None and low > hard_low) else hard_low
                hard_high = (
                    high if hard_high is None or (high is not None and high < hard_high) else hard_high
                )
            else:
                extra["x-training-range"] = [low, high]
            if hard_low is not None:
                kwargs["ge"] = float(hard_low)
            if hard_high is not None:
                kwargs["le"] = float(hard_high)
            kwargs["allow_inf_nan"] = False
            if spec_get(spec, "unit"):
                extra["x-unit"] = spec_get(spec, "unit")
        kwargs["json_schema_extra"] = extra
        if required:
            definitions[f"f{index}"] = (annotation, Field(..., **kwargs))
        else:
            definitions[f"f{index}"] = (annotation | None, Field(None, **kwargs))
    return create_model(  # type: ignore[call-overload]
        "PredictRequest", __config__=ConfigDict(extra="forbid", populate_by_name=False), **definitions
    )


class Contribution(BaseModel):
    """One input's SHAP contribution to this prediction."""

    feature: str
    value: Any = None
    contribution: float


class PredictResponse(BaseModel):
    """Risk with its interval and group, explanation, and the identity of the model that made it."""

    model_config = ConfigDict(protected_namespaces=())

    risk: float = Field(description="Predicted probability of the outcome, 0–1.")
    risk_percent: float
    ci_low: float | None = Field(None, description="Lower end of the uncertainty interval (0–1).")
    ci_high: float | None = Field(None, description="Upper end of the uncertainty interval (0–1).")
    risk_group: str
    contributions: list[Contribution]
    top_features: list[str]
    contribution_unit: str = Field("log-odds", description='"log-odds" or "probability" (random forests).')
    base_value: float | None = Field(None, description="Model output before contributions (same unit).")
    warnings: dict[str, str] = Field(
        default_factory=dict, description="Per-field warnings (e.g. out of range)."
    )
    model_name: str
    model_version: str
    bundle_hash: str


class ValidationErrorResponse(BaseModel):
    """422 body: a summary and one message per offending field (``__body__`` for the body itself)."""

    detail: str
    errors: dict[str, str]
    warnings: dict[str, str] = Field(default_factory=dict)


class Health(BaseModel):
    """Liveness plus the identity of the served bundle."""

    model_config = ConfigDict(protected_namespaces=())

    status: Literal["ok"]
    model_name: str
    model_version: str
    bundle_hash: str
