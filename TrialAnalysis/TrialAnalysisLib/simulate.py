"""Digital-twin METNLBP trial simulator: writes a complete trial dataset (contract C6) with known truth.

``simulate_trial(out, n=314, seed=1, with_mri=0, effect_odi_12m=-5, recurrence_hr=0.6, ...)`` writes
participants, phenotype, visits, recurrence, adverse_events, compliance, screening, allocation (+ .sha256,
.json), arm_coding (unblinded), data_dictionary.csv and truth.json. Same seed and parameters → byte-identical files.
Planted signal (see truth.json "planted_predictors"): 12-month ODI change depends on arm, multifidus
L4–L5 FF (also modifies the treatment effect), multifidus L4–L5 CSA ratio, age, baseline ODI and centre;
recurrence on arm and multifidus L4–L5 FF.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ParaspinalLBPCore.atomic import atomic_write_text
from ParaspinalLBPCore.errors import BadInputError, MissingKeyError
from ParaspinalLBPCore.structures import SIDES, muscle_name
from TrialAnalysisLib import simulate_outcomes as so
from TrialAnalysisLib import simulate_population as sp
from TrialAnalysisLib.randomization import block_randomization, stratum_code
from TrialAnalysisLib.schema import (
    CENTRES,
    SEXES,
    VISIT_DAY,
    arm_coding_table,
    write_data_dictionary,
    write_table,
)
from TrialAnalysisLib.simulate_mri import render_cohort
from TrialAnalysisLib.simulate_outcomes import TruthParams
from TrialAnalysisLib.simulate_population import derived_seed

STREAMS = (
    "screening",
    "phenotype",
    "baseline",
    "scores",
    "missing",
    "visits",
    "recurrence",
    "ae",
    "compliance",
)


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    return {name: np.random.default_rng(derived_seed(seed, name)) for name in STREAMS}


def _allocate(enrolled: pd.DataFrame, n: int, seed: int) -> tuple[pd.DataFrame, Any]:
    """Generate the allocation list (capacity fixed before the trial) and assign participants in order."""
    codes = [stratum_code(c, s) for c in CENTRES for s in SEXES]
    strata_of = [stratum_code(c, s) for c, s in zip(enrolled["centre"], enrolled["sex"], strict=True)]
    counts = pd.Series(strata_of).value_counts()
    capacity = max(math.ceil(2.5 * n / len(codes)), int(counts.max()))
    rand_seed = derived_seed(seed, "randomization")
    result = block_randomization(capacity, seed=rand_seed)
    lists = {c: g.reset_index(drop=True) for c, g in result.table.groupby("stratum", sort=False)}
    used = dict.fromkeys(codes, 0)
    arms, blocks = [], []
    for s in strata_of:  # enrolled is in randomization order
        row = lists[s].iloc[used[s]]
        used[s] += 1
        arms.append(row["arm"])
        blocks.append(row["block_id"])
    assigned = pd.DataFrame({"stratum": strata_of, "block_id": blocks, "arm": arms}, index=enrolled.index)
    return assigned, result


def simulate_trial(
    out: str | Path,
    n: int = 314,
    seed: int = 1,
    with_mri: int = 0,
    truth: TruthParams | None = None,
    progress: bool = False,
    mri_workers: int = 1,
    mri_dicom: bool = False,
    **overrides: Any,
) -> Path:
    """Simulate the trial into directory ``out``; ``overrides`` set TruthParams fields (e.g. effect_odi_12m=-5)."""
    if n < 10:
        raise BadInputError(f"n={n}: simulate at least 10 participants")
    if not 0 <= with_mri <= n:
        raise BadInputError(f"with_mri={with_mri}: must be between 0 and n={n}")
    truth = dataclasses.replace(truth or TruthParams(), **overrides)
    unknown = set(truth.centre_effects) ^ set(CENTRES)
    if unknown:
        raise MissingKeyError(
            f"centre_effects: must give exactly the centres {CENTRES}, got {sorted(truth.centre_effects)}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = _rngs(seed)

    screening, enrolled = sp.simulate_screening(n, rng["screening"])
    phenotype, ff, csa = sp.simulate_phenotype(enrolled, rng["phenotype"])
    base = sp.simulate_baseline(enrolled, ff, rng["baseline"])
    assigned, allocation = _allocate(enrolled, n, seed)
    base = pd.concat([base, assigned], axis=1)
    ff_l45 = sp.mf_l45(ff)
    csa_ratio = sp.csa_ratio_mf_l45(csa, base["sex"].to_numpy())

    scores = so.simulate_scores(base, ff_l45, csa_ratio, truth, rng["scores"])
    observed, withdraw_day = so.simulate_missingness(scores, base, truth, rng["missing"])
    visits = so.visits_table(base, scores, observed, rng["visits"])
    recurrence = so.simulate_recurrence(base, ff_l45, withdraw_day, truth, rng["recurrence"])
    ae = so.simulate_adverse_events(base, withdraw_day, rng["ae"])
    compliance, pct = so.simulate_compliance(base, withdraw_day, rng["compliance"])

    ex = (base["arm"] == "exercise").to_numpy()
    base["compliance_pct"] = np.round(pct, 1)
    base["per_protocol"] = np.where(ex, base["compliance_pct"] >= 75, withdraw_day > VISIT_DAY["eoi_6w"])
    base["withdrew"] = np.isfinite(withdraw_day)
    mri_ids = _imaging_cohort(base["participant_id"], with_mri, seed)
    base["has_mri"] = base["participant_id"].isin(mri_ids)
    base["mri_dir"] = np.where(base["has_mri"], "mri/" + base["participant_id"], "")

    for name, df in (("participants", base), ("phenotype", phenotype), ("visits", visits), ("recurrence", recurrence),
                     ("adverse_events", ae), ("compliance", compliance), ("screening", screening)):  # fmt: skip
        write_table(df, name, out)
    allocation.to_csv(out / "allocation.csv")
    write_table(arm_coding_table(allocation.checksum), "arm_coding", out)
    write_data_dictionary(out)
    _write_truth(out, truth, n, seed, allocation, scores, base, observed, ff_l45)
    if with_mri:
        render_cohort(
            out, base, phenotype, mri_ids, seed, progress=progress, workers=mri_workers, dicom=mri_dicom
        )
    return out


def _imaging_cohort(pids: pd.Series, k: int, seed: int) -> list[str]:
    """K participants chosen at random (deterministically from the seed), sorted by id."""
    if k == 0:
        return []
    rng = np.random.default_rng(derived_seed(seed, "imaging_cohort"))
    return sorted(rng.choice(pids.to_numpy(), size=k, replace=False).tolist())


def _mf_ref(sex: str) -> float:
    return float(
        np.mean(
            [
                sp.reference_csa(m, lv, sex)
                for m in (muscle_name("multifidus", side) for side in SIDES)
                for lv in ("L4", "L5")
            ]
        )
    )


def _write_truth(out: Path, truth: TruthParams, n: int, seed: int, allocation: Any, scores: dict, base: pd.DataFrame,
                 observed: np.ndarray, ff_l45: np.ndarray) -> None:  # fmt: skip
    ex = (base["arm"] == "exercise").to_numpy()
    change = scores["odi"][:, -1] - base["odi_baseline"].to_numpy(float)
    sd_total = math.sqrt(truth.random_intercept_sd**2 + truth.residual_sd**2)
    corr = {f"lag{k}": round((truth.random_intercept_sd**2 + truth.residual_sd**2 * truth.ar1_rho**k) / sd_total**2, 4)
            for k in range(1, 5)}  # fmt: skip
    doc = {
        "generator": "TrialAnalysisLib.simulate",
        "seed": seed,
        "n": n,
        "randomization_seed": allocation.seed,
        "allocation_sha256": allocation.checksum,
        "arms": {"treatment": "exercise", "reference": "control"},
        "primary_outcome": "12-month ODI change (m12 − baseline); negative = improvement",
        "treatment_effect_odi_12m": truth.effect_odi_12m,
        "treatment_effect_definition": "exercise − control mean 12-month ODI change at multifidus L4–L5 FF 29 % (≈ the enrolled mean, so also ≈ the average effect)"
        " (reference of the effect modification); conditional on covariates, before rounding/clipping",
        "recurrence_hr": truth.recurrence_hr,
        "recurrence_definition": "first new episode ≥ 24 h with VAS > 2; days from end of intervention (day 42),"
        " censored at 365 d or withdrawal; exponential hazard",
        "recurrence_control_12m_incidence": truth.recurrence_control_12m,
        "recurrence_ff_hr_per_10pct": truth.recurrence_ff_hr_per_10pct,
        "ff_effect_modification": {"per_10pct_ff_above_29": truth.ff_effect_modification,
                                   "variable": "multifidus L4–L5 FF % (mean of left/right, L4 and L5 in phenotype.csv)"},
        "ff_reference_pct": so.FF_REFERENCE_PCT,
        "centre_effects": truth.centre_effects,
        "visit_correlation": {"model": "random intercept + AR(1) residual over follow-up visits on the ODI change",
                              "random_intercept_sd": truth.random_intercept_sd, "residual_sd": truth.residual_sd,
                              "ar1_rho": truth.ar1_rho, "implied_correlation_by_lag": corr},
        "odi_change_model": {"control_change_12m": truth.control_change_12m,
                             "control_profile": dict(zip(so.FOLLOW_UP, so.CONTROL_PROFILE.tolist(), strict=True)),
                             "effect_profile": dict(zip(so.FOLLOW_UP, so.EFFECT_PROFILE.tolist(), strict=True)),
                             "baseline_coef": truth.baseline_coef, "age_coef_per_year_above_70": truth.age_coef},
        "secondary_outcomes": {"vas": "vas0 + 0.08·(ODI − ODI0) + noise", "joa": "joa0 − 0.12·(ODI − ODI0) + noise",
                               "implied_vas_effect_12m": round(0.08 * truth.effect_odi_12m, 3),
                               "implied_joa_effect_12m": round(-0.12 * truth.effect_odi_12m, 3)},
        "response_definition": "12-month ODI improvement ≥ 10 points (odi_baseline − odi at m12 ≥ 10)",
        "planted_predictors": {
            "response": [
                {"variable": "arm", "coef_odi_change": truth.effect_odi_12m, "direction": "exercise → more improvement"},
                {"variable": "multifidus_l45_ff_pct", "coef_odi_change_per_pct": truth.ff_coef,
                 "direction": "more fat → less improvement (and smaller exercise benefit)",
                 "how": "mean fat_fraction_pct of multifidus_left/right at L4, L5 (phenotype.csv)"},
                {"variable": "multifidus_l45_csa_ratio", "coef_odi_change_per_unit": truth.csa_coef,
                 "direction": "larger multifidus → more improvement",
                 "how": "mean csa_cm2 of multifidus_left/right at L4, L5 / sex reference"
                f" (F {_mf_ref('F'):.3f}, M {_mf_ref('M'):.3f} cm²)"},
                {"variable": "age", "coef_odi_change_per_year": truth.age_coef},
                {"variable": "odi_baseline", "coef_odi_change_per_point": truth.baseline_coef},
                {"variable": "centre", "effects": truth.centre_effects},
            ],
            "recurrence": [
                {"variable": "arm", "hazard_ratio": truth.recurrence_hr},
                {"variable": "multifidus_l45_ff_pct", "hazard_ratio_per_10pct": truth.recurrence_ff_hr_per_10pct},
            ],
            "no_direct_signal": ["bmi", "labs", "psoas", "quadratus_lumborum", "biering_sorensen_s (via FF only)",
                                 "semg_mf_slope (via FF only)"],
        },
        "missingness": {"mechanism": "MAR: dropout depends on the last observed ODI, intermittent misses on the last"
                        " observed VAS", "dropout_per_visit": truth.dropout_per_visit,
                        "intermittent_missing": truth.intermittent_missing,
                        "realised_missing_m12": round(float(1 - observed[:, -1].mean()), 4)},
        "goutallier_ff_thresholds_pct": list(sp.GOUTALLIER_FF_THRESHOLDS),
        "visit_day_nominal": VISIT_DAY,
        "realised": {"mean_odi_change_12m_exercise": round(float(np.mean(change[base["arm"] == "exercise"])), 3),
                     "mean_odi_change_12m_control": round(float(np.mean(change[base["arm"] == "control"])), 3),
                     "difference_odi_change_12m": round(float(np.mean(change[ex]) - np.mean(change[~ex])), 3),
                     "mean_multifidus_l45_ff_pct": round(float(np.mean(ff_l45)), 3),
                     "average_planted_effect": round(truth.effect_odi_12m + truth.ff_effect_modification
                                                     * (float(np.mean(ff_l45)) - so.FF_REFERENCE_PCT) / 10, 3),
                     "note": "complete-data (before missingness) after rounding/clipping ODI to 0–100; "
                             "average_planted_effect = effect averaged over this sample's FF"},
        "truth_params": dataclasses.asdict(truth),
    }  # fmt: skip
    atomic_write_text(out / "truth.json", json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
