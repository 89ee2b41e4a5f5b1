"""CONSORT flow diagram drawn from screening.csv, participants.csv and visits.csv (matplotlib).

``consort_counts(data)`` returns the numbers in each box (so tests can check them against the
data); ``plot_consort(counts, path)`` draws the standard four-stage diagram (enrolment,
allocation, follow-up, analysis) with exclusion reasons. Arms are keyed by their printed label:
the arm name, or ``Arm A``/``Arm B`` in a coded dataset. The per-protocol rule differs by arm
(diary compliance vs a completed course), so a coded dataset's per-protocol counts are given for
both arms pooled only: per arm they would tell which code is the intervention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from TrialAnalysisLib.schema import arm_coding


def _truthy(s: pd.Series) -> pd.Series:
    return s.astype(str).str.lower().isin(["true", "1", "yes"])


def consort_counts(data: Any, primary_visit: str = "m12", primary_score: str = "odi") -> dict[str, Any]:
    """Counts for every CONSORT box (screened, excluded by reason, randomised, per arm follow-up, analysed;
    coded arms: per protocol pooled in ``per_protocol_pooled``)."""
    p = data.participants
    out: dict[str, Any] = {"randomised": len(p)}
    scr = data.screening
    if scr is not None:
        enrolled = _truthy(scr["enrolled"])
        eligible = _truthy(scr["eligible"])
        out["screened"] = len(scr)
        out["excluded"] = int((~enrolled).sum())
        reasons = scr.loc[~enrolled, "exclusion_reason"].fillna("").astype(str)
        reasons = reasons.where(reasons != "", "eligible, not enrolled")
        reasons = reasons.where(
            ~(eligible[~enrolled] & (reasons == "eligible, not enrolled")), "eligible, not enrolled"
        )
        out["exclusion_reasons"] = reasons.value_counts().to_dict()
    v = data.visits
    obs = v[(v["visit"] == primary_visit) & v[primary_score].notna()]["participant_id"]
    arms = {}
    coding = arm_coding(data)
    for arm in [a for a in coding.values if a in set(p["arm"])]:
        pa = p[p["arm"] == arm]
        withdrew = int(_truthy(pa["withdrew"]).sum())
        not_pp = int((~_truthy(pa["per_protocol"])).sum())
        arms[coding.label(arm)] = {
            "allocated": len(pa),
            "withdrew": withdrew,
            "not_per_protocol": not_pp,
            "primary_observed": int(pa["participant_id"].isin(obs).sum()),
            "primary_missing": int((~pa["participant_id"].isin(obs)).sum()),
            "analysed_itt": len(pa),
            "analysed_pp": len(pa) - not_pp,
        }
    out["arms"] = arms
    if coding.coded:
        pooled = {k: sum(box.pop(k) for box in arms.values()) for k in ("not_per_protocol", "analysed_pp")}
        out["per_protocol_pooled"] = pooled
    return out


def plot_consort(counts: dict[str, Any], path: str | Path) -> None:
    """Draw the CONSORT diagram to ``path`` (PNG/SVG/PDF by extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 10))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.axis("off")
    box = {"boxstyle": "round,pad=0.5", "fc": "white", "ec": "0.3"}

    def text(x: float, y: float, s: str, **kw: Any) -> None:
        ax.text(x, y, s, ha="center", va="center", fontsize=8.5, bbox=box, **kw)

    def arrow(x0: float, y0: float, x1: float, y1: float) -> None:
        ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": "0.3"})

    if "screened" in counts:
        text(50, 95, f"Assessed for eligibility (n = {counts['screened']})")
        reasons = "\n".join(
            f"  {k.replace('_', ' ')} (n = {v})"
            for k, v in sorted(counts["exclusion_reasons"].items(), key=lambda kv: -kv[1])
        )
        ax.text(
            78,
            84,
            f"Excluded (n = {counts['excluded']})\n{reasons}",
            ha="center",
            va="center",
            fontsize=7.5,
            bbox=box,
        )
        arrow(50, 93, 50, 79)
        ax.plot([50, 62], [86, 86], color="0.3", lw=0.8)
    text(50, 76, f"Randomised (n = {counts['randomised']})")
    arms = counts["arms"]
    xs = {a: x for a, x in zip(arms, (25, 75), strict=False)}
    for arm, c in arms.items():
        x = xs[arm]
        arrow(50, 74, x, 66)
        text(x, 62, f"Allocated to {arm}\n(n = {c['allocated']})")
        arrow(x, 59, x, 49)
        follow = [
            f"Withdrew before 12 months (n = {c['withdrew']})",
            f"12-month ODI missing (n = {c['primary_missing']})",
        ]
        analysed = [
            f"Analysed, ITT with MI (n = {c['analysed_itt']})",
            f"Complete cases (n = {c['primary_observed']})",
        ]
        if "analysed_pp" in c:
            follow.append(f"Not per protocol (n = {c['not_per_protocol']})")
            analysed.append(f"Per protocol (n = {c['analysed_pp']})")
        text(x, 44, "\n".join(follow))
        arrow(x, 39, x, 28)
        text(x, 22, "\n".join(analysed))
    if "per_protocol_pooled" in counts:
        pp = counts["per_protocol_pooled"]
        text(
            50,
            8,
            f"Per protocol, arms pooled (n = {pp['analysed_pp']}; not per protocol n = {pp['not_per_protocol']})",
        )
    for y, label in ((95, "Enrolment"), (62, "Allocation"), (44, "Follow-up"), (22, "Analysis")):
        ax.text(1, y, label, fontsize=9, weight="bold", va="center", color="0.25")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
