"""The protocol's eligibility checklist, answered by the investigator before a participant is randomised.

Inclusion: age ≥ 60, low-back pain for more than 3 months, ODI 20–60, Goutallier grade ≥ 2 (multifidus
L4–L5); exclusion: NSAID contraindication, prior spine surgery, specific spinal pathology; written
consent. The codes are the screening log's exclusion reasons (``schema.EXCLUSION_CODES``), plus
``lbp_duration_le_3_months`` which the simulated screening log does not record. Every failed
criterion is reported, in protocol order.
"""

from __future__ import annotations

from typing import Any

# (code, field, test, English text of the criterion) in protocol order
CRITERIA: tuple[tuple[str, str, Any, str], ...] = (
    ("age_lt_60", "age", lambda v: v >= 60, "age ≥ 60 years"),
    (
        "lbp_duration_le_3_months",
        "lbp_duration_months",
        lambda v: v > 3,
        "low-back pain for more than 3 months",
    ),
    ("odi_out_of_range", "odi", lambda v: 20 <= v <= 60, "Oswestry Disability Index 20–60"),
    ("goutallier_lt_2", "goutallier_grade", lambda v: v >= 2, "Goutallier grade ≥ 2 (multifidus L4–L5)"),
    ("nsaid_contraindication", "nsaid_contraindication", lambda v: not v, "no contraindication to NSAIDs"),
    ("prior_spine_surgery", "prior_spine_surgery", lambda v: not v, "no prior spine surgery"),
    (
        "specific_pathology",
        "specific_pathology",
        lambda v: not v,
        "no specific spinal pathology (fracture, tumour, infection, inflammatory disease, cauda equina)",
    ),
    ("declined_consent", "consent", lambda v: bool(v), "written informed consent given"),
)
FIELDS = tuple(c[1] for c in CRITERIA)


def failed_criteria(answers: dict[str, Any]) -> list[dict[str, str]]:
    """The criteria ``answers`` fail, in protocol order: ``[{"code", "field", "criterion"}]``."""
    return [
        {"code": code, "field": field, "criterion": text}
        for code, field, test, text in CRITERIA
        if not test(answers[field])
    ]
