"""Digital-twin trial, part 2: follow-up scores, missingness, recurrence, adverse events, compliance.

ODI change from baseline at visit t (latent, before rounding/clipping):
  change = control_mean_t + profile_t · (effect + ff_modification · (FF_mf_L45 − 29)/10) · exercise
           + centre_effect + ff_coef · (FF_mf_L45 − 29) + csa_coef · (CSA ratio_mf_L45 − 1)
           + age_coef · (age − 70) + baseline_coef · (ODI0 − 40) + b_i + e_it,
with b_i ~ N(0, random_intercept_sd²) and e_it AR(1) over visits (rho, residual_sd).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from TrialAnalysisLib.schema import INTERVENTION_WEEKS, RECURRENCE_MAX_DAYS, VISIT_DAY, VISIT_WINDOW, VISITS

FOLLOW_UP = VISITS[1:]
FF_REFERENCE_PCT = 29.0  # ≈ mean multifidus L4–L5 FF of the enrolled population: effects are centred here
CONTROL_PROFILE = np.array([0.75, 0.875, 1.0, 1.0, 1.0])  # fraction of the 12-month control change
EFFECT_PROFILE = np.array([0.6, 0.8, 1.0, 1.0, 1.0])  # fraction of the 12-month treatment effect
SESSIONS_PER_WEEK = 5

# term: (rate per participant exercise, rate control, onset window days, relatedness choices, severity probs)
AE_MODEL: dict[str, tuple[float, float, tuple[int, int], tuple[str, ...], tuple[float, float, float]]] = {
    "dyspepsia": (0.15, 0.15, (1, 42), ("possibly", "probably"), (0.7, 0.25, 0.05)),
    "gastrointestinal_bleeding": (0.01, 0.01, (1, 42), ("probably",), (0.0, 0.2, 0.8)),
    "nausea": (0.06, 0.06, (1, 42), ("possibly",), (0.8, 0.2, 0.0)),
    "muscle_soreness": (0.35, 0.0, (1, 42), ("probably", "definitely"), (0.75, 0.23, 0.02)),
    "back_pain_flare": (0.08, 0.05, (1, 407), ("unrelated", "possibly"), (0.5, 0.4, 0.1)),
    "hypertension": (0.04, 0.04, (1, 60), ("possibly",), (0.6, 0.35, 0.05)),
    "oedema": (0.03, 0.03, (1, 60), ("possibly",), (0.8, 0.2, 0.0)),
    "dizziness": (0.04, 0.04, (1, 407), ("unrelated", "possibly"), (0.8, 0.2, 0.0)),
    "headache": (0.05, 0.05, (1, 407), ("unrelated", "possibly"), (0.85, 0.15, 0.0)),
    "fall": (0.04, 0.04, (1, 407), ("unrelated",), (0.5, 0.35, 0.15)),
    "upper_respiratory_infection": (0.08, 0.08, (1, 407), ("unrelated",), (0.7, 0.28, 0.02)),
}


@dataclass
class TruthParams:
    """Planted truth of the simulation (all written to truth.json)."""

    effect_odi_12m: float = (
        -5.0
    )  # exercise − control difference in 12-month ODI change (points; < 0 favours exercise)
    recurrence_hr: float = 0.6  # exercise vs control hazard ratio of recurrence
    ff_effect_modification: float = 1.5  # added to the effect per +10 %-points multifidus L4–L5 FF above 29 %
    control_change_12m: float = -8.0  # mean 12-month ODI change in control at the reference covariates
    centre_effects: dict[str, float] = field(
        default_factory=lambda: {"C1": 0.0, "C2": 1.5, "C3": -1.0, "C4": 2.0, "C5": -2.5}
    )
    ff_coef: float = 0.35  # ODI change per %-point multifidus L4–L5 FF (higher fat → less improvement)
    csa_coef: float = (
        -15.0
    )  # ODI change per unit multifidus L4–L5 CSA ratio (bigger muscle → more improvement)
    age_coef: float = 0.1
    baseline_coef: float = -0.25  # regression to the mean on baseline ODI
    random_intercept_sd: float = 6.0
    residual_sd: float = 6.0
    ar1_rho: float = 0.6
    recurrence_control_12m: float = 0.45  # cumulative incidence at 365 d in control at FF 29 %
    recurrence_ff_hr_per_10pct: float = 1.25
    dropout_per_visit: float = 0.012  # baseline probability of dropping out before each follow-up visit
    dropout_odi_logit_coef: float = 0.04  # per ODI point above 35 at the last observed visit (MAR)
    intermittent_missing: float = 0.025
    intermittent_vas_logit_coef: float = 0.2  # per VAS cm above 5 at the last observed visit (MAR)


def _ar1(rng: np.random.Generator, n: int, k: int, rho: float, sd: float) -> np.ndarray:
    e = np.empty((n, k))
    e[:, 0] = rng.normal(0, sd, n)
    innov = sd * np.sqrt(1 - rho**2)
    for j in range(1, k):
        e[:, j] = rho * e[:, j - 1] + rng.normal(0, innov, n)
    return e


def simulate_scores(
    base: pd.DataFrame,
    ff_l45: np.ndarray,
    csa_ratio: np.ndarray,
    truth: TruthParams,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Complete (no missingness) ODI/VAS/JOA at the follow-up visits, arrays [n, 5]."""
    n = len(base)
    ex = (base["arm"] == "exercise").to_numpy(float)[:, None]
    centre = base["centre"].map(truth.centre_effects).to_numpy(float)[:, None]
    odi0 = base["odi_baseline"].to_numpy(float)[:, None]
    effect_i = truth.effect_odi_12m + truth.ff_effect_modification * (ff_l45 - FF_REFERENCE_PCT) / 10
    prog = (
        truth.ff_coef * (ff_l45 - FF_REFERENCE_PCT)
        + truth.csa_coef * (csa_ratio - 1)
        + truth.age_coef * (base["age"].to_numpy(float) - 70)
    )[:, None]
    mean = (
        truth.control_change_12m * CONTROL_PROFILE[None]
        + EFFECT_PROFILE[None] * effect_i[:, None] * ex
        + centre
        + prog
        + truth.baseline_coef * (odi0 - 40)
    )
    b = rng.normal(0, truth.random_intercept_sd, (n, 1))
    change = mean + b + _ar1(rng, n, 5, truth.ar1_rho, truth.residual_sd)
    odi = np.clip(np.round(odi0 + change), 0, 100)
    vas0 = base["vas_baseline"].to_numpy(float)[:, None]
    vas = np.clip(
        np.round(vas0 + 0.08 * (odi - odi0) + rng.normal(0, 0.6, (n, 1)) + rng.normal(0, 0.8, (n, 5)), 1),
        0,
        10,
    )
    joa0 = base["joa_baseline"].to_numpy(float)[:, None]
    joa = np.clip(np.round(joa0 - 0.12 * (odi - odi0) + rng.normal(0, 1.5, (n, 5))), 0, 29)
    latent = (odi[:, -1] - odi0[:, 0]) / 8 + rng.normal(0, 0.8, n)
    nass = 1 + np.searchsorted(np.array([-1.5, -0.5, 0.5]), latent)
    return {"odi": odi, "vas": vas, "joa": joa, "nass": nass.astype(float), "odi_change_latent": change}


def simulate_missingness(
    scores: dict[str, np.ndarray], base: pd.DataFrame, truth: TruthParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """MAR dropout and intermittent missingness: returns (observed mask [n, 5], withdrawal day or inf)."""
    n = len(base)
    observed = np.ones((n, 5), bool)
    dropped = np.zeros(n, bool)
    withdraw_day = np.full(n, np.inf)
    last_odi = base["odi_baseline"].to_numpy(float).copy()
    last_vas = base["vas_baseline"].to_numpy(float).copy()
    prev_day = 0
    for j, visit in enumerate(FOLLOW_UP):
        p_drop = expit(logit(truth.dropout_per_visit) + truth.dropout_odi_logit_coef * (last_odi - 35))
        new = ~dropped & (rng.random(n) < p_drop)
        withdraw_day[new] = rng.integers(prev_day + 1, VISIT_DAY[visit], n)[new]
        dropped |= new
        p_miss = expit(logit(truth.intermittent_missing) + truth.intermittent_vas_logit_coef * (last_vas - 5))
        miss = rng.random(n) < p_miss
        observed[:, j] = ~dropped & ~miss
        last_odi = np.where(observed[:, j], scores["odi"][:, j], last_odi)
        last_vas = np.where(observed[:, j], scores["vas"][:, j], last_vas)
        prev_day = VISIT_DAY[visit]
    return observed, withdraw_day


def visits_table(
    base: pd.DataFrame, scores: dict[str, np.ndarray], observed: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    """Long visits table (baseline + follow-up), missed visits with empty values."""
    n = len(base)
    frames = [pd.DataFrame({
        "participant_id": base["participant_id"], "visit": "baseline", "visit_day": 0,
        "odi": base["odi_baseline"], "vas": base["vas_baseline"], "joa": base["joa_baseline"], "nass": np.nan,
    })]  # fmt: skip
    for j, visit in enumerate(FOLLOW_UP):
        lo, hi = VISIT_WINDOW[visit]
        sd = (hi - lo) / 6
        day = np.clip(np.round(VISIT_DAY[visit] + rng.normal(0, sd, n)), lo, hi)
        obs = observed[:, j]
        frames.append(pd.DataFrame({
            "participant_id": base["participant_id"], "visit": visit,
            "visit_day": np.where(obs, day, np.nan),
            "odi": np.where(obs, scores["odi"][:, j], np.nan), "vas": np.where(obs, scores["vas"][:, j], np.nan),
            "joa": np.where(obs, scores["joa"][:, j], np.nan),
            "nass": np.where(obs, scores["nass"], np.nan) if visit == "m12" else np.nan,
        }))  # fmt: skip
    out = pd.concat(frames, ignore_index=True)
    out["_v"] = out["visit"].map({v: i for i, v in enumerate(VISITS)})
    return out.sort_values(["participant_id", "_v"], kind="stable").drop(columns="_v").reset_index(drop=True)


def simulate_recurrence(
    base: pd.DataFrame,
    ff_l45: np.ndarray,
    withdraw_day: np.ndarray,
    truth: TruthParams,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Exponential time to first recurrence from the end of the intervention (day 42), censored at 365 d or withdrawal."""
    n = len(base)
    lam0 = -np.log(1 - truth.recurrence_control_12m) / RECURRENCE_MAX_DAYS
    ex = (base["arm"] == "exercise").to_numpy()
    lam = (
        lam0
        * np.where(ex, truth.recurrence_hr, 1.0)
        * truth.recurrence_ff_hr_per_10pct ** ((ff_l45 - FF_REFERENCE_PCT) / 10)
    )
    t = rng.exponential(1 / lam, n)
    censor = np.minimum(RECURRENCE_MAX_DAYS, withdraw_day - VISIT_DAY["eoi_6w"])
    event = t <= censor
    time = np.clip(np.ceil(np.where(event, t, censor)), 1, RECURRENCE_MAX_DAYS)
    return pd.DataFrame(
        {"participant_id": base["participant_id"], "time_days": time, "event": event.astype(int)}
    )


def simulate_adverse_events(
    base: pd.DataFrame, withdraw_day: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    """Adverse events by arm-dependent Poisson rates; only events before withdrawal are recorded."""
    ex = (base["arm"] == "exercise").to_numpy()
    rows = []
    for term, (r_ex, r_ctl, (lo, hi), related, sev_p) in AE_MODEL.items():
        counts = rng.poisson(np.where(ex, r_ex, r_ctl))
        for i in np.flatnonzero(counts):
            for _ in range(counts[i]):
                day = int(rng.integers(lo, hi + 1))
                severity = ("mild", "moderate", "severe")[int(rng.choice(3, p=sev_p))]
                rel = related[int(rng.integers(len(related)))]
                serious = term == "gastrointestinal_bleeding" or (severity == "severe" and rng.random() < 0.5)
                if day < withdraw_day[i]:
                    rows.append((base["participant_id"].iat[i], term, severity, rel, bool(serious), day))
    ae = pd.DataFrame(
        rows, columns=["participant_id", "term", "severity", "relatedness", "serious", "onset_day"]
    )
    ae = ae.sort_values(["participant_id", "onset_day", "term"], kind="stable").reset_index(drop=True)
    ae.insert(1, "ae_id", [f"AE{i + 1:05d}" for i in range(len(ae))])
    return ae


def simulate_compliance(
    base: pd.DataFrame, withdraw_day: np.ndarray, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """Weekly home-exercise diary of the exercise arm (5 sessions/week); returns (table, compliance % or NaN)."""
    n = len(base)
    ex = (base["arm"] == "exercise").to_numpy()
    p = rng.beta(7, 2, n)
    weeks = np.arange(1, INTERVENTION_WEEKS + 1)
    pw = np.clip(p[:, None] * (1 - 0.02 * (weeks[None] - 1)), 0, 1)
    done = rng.binomial(SESSIONS_PER_WEEK, pw)
    done = np.where(withdraw_day[:, None] <= 7 * (weeks[None] - 1), 0, done)
    pct = np.where(ex, 100 * done.sum(axis=1) / (SESSIONS_PER_WEEK * INTERVENTION_WEEKS), np.nan)
    idx = np.flatnonzero(ex)
    table = pd.DataFrame({
        "participant_id": np.repeat(base["participant_id"].to_numpy()[idx], INTERVENTION_WEEKS),
        "week": np.tile(weeks, len(idx)), "sessions_planned": SESSIONS_PER_WEEK, "sessions_done": done[idx].reshape(-1),
    })  # fmt: skip
    return table, pct
