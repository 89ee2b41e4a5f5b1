"""Digital-twin trial, part 1: screening log, enrolment and baseline (demographics, scores, phenotype, labs).

Every participant has a latent multifidus L4–L5 fat fraction driven by age, sex and BMI; the
Goutallier grade (inclusion ≥ 2) is a noisy visual read of it and the per-muscle/side/level
phenotype is generated around it, so fat, atrophy, endurance and outcomes are coherent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pandas as pd

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPCore.structures import LEVELS, MUSCLE_NAMES
from TrialAnalysisLib.schema import CENTRES

START_DATE = dt.date(2024, 1, 8)
CENTRE_START_OFFSET_DAYS = (0, 45, 90, 135, 180)  # staggered opening of C1..C5
CENTRE_RATE_PER_DAY = (1.0, 0.85, 0.8, 0.7, 0.6)  # relative screening rates, scaled to n below
GOUTALLIER_FF_THRESHOLDS = (10.0, 20.0, 35.0, 50.0)  # multifidus L4–L5 FF % → grade 0..4 (convention)
GOUTALLIER_READER_SD = 3.0

MUSCLE_FF_FACTOR = {"multifidus": 1.0, "erector_spinae": 0.8, "psoas": 0.35, "quadratus_lumborum": 0.55}
LEVEL_FF_FACTOR = np.array([0.6, 0.7, 0.8, 0.95, 1.05])  # L4/L5 mean = 1: latent FF is the L4–L5 value
# Reference (population-mean) CSA per side in cm² for women; men × MALE_CSA_FACTOR. Same numbers as the
# phantom's defaults (ParaspinalSegLib phantom_anatomy BASE_CSA_CM2, male area × 1.3), so a participant's
# phantom (atrophy = CSA / reference) renders the CSA listed in phenotype.csv.
REFERENCE_CSA_CM2 = {
    "multifidus": (4.0, 5.5, 7.0, 8.5, 10.0),
    "erector_spinae": (21.0, 20.0, 18.0, 15.0, 11.5),
    "psoas": (4.5, 8.0, 12.0, 15.0, 17.0),
    "quadratus_lumborum": (4.0, 5.5, 6.5, 6.5, 4.5),
}
MALE_CSA_FACTOR = {"multifidus": 1.3, "erector_spinae": 1.3, "psoas": 1.3, "quadratus_lumborum": 1.3}


def derived_seed(seed: int, *keys: str | int) -> int:
    """A stable 31-bit seed derived from the trial seed and labels (e.g. randomization, participant id)."""
    h = hashlib.sha256(json.dumps([int(seed), *map(str, keys)]).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def muscle_of(structure: str) -> str:
    """'multifidus_left' -> 'multifidus'."""
    return structure.rsplit("_", 1)[0]


def reference_csa(structure: str, level: str, sex: str) -> float:
    """Population reference CSA (cm²) of one muscle side at a level for a sex ('F'/'M')."""
    m = muscle_of(structure)
    v = REFERENCE_CSA_CM2[m][LEVELS.index(level)]
    return v * (MALE_CSA_FACTOR[m] if sex == "M" else 1.0)


def goutallier_from_ff(ff_pct: np.ndarray) -> np.ndarray:
    """Goutallier grade 0–4 from multifidus FF % with the thresholds of GOUTALLIER_FF_THRESHOLDS."""
    return np.searchsorted(np.array(GOUTALLIER_FF_THRESHOLDS), ff_pct, side="right")


def _candidates(rng: np.random.Generator, m_per_centre: int, rate_scale: float) -> pd.DataFrame:
    frames = []
    for c, (centre, off, rate) in enumerate(
        zip(CENTRES, CENTRE_START_OFFSET_DAYS, CENTRE_RATE_PER_DAY, strict=True)
    ):
        gaps = rng.exponential(1.0 / (rate * rate_scale), m_per_centre)
        day = off + np.floor(np.cumsum(gaps)).astype(int)
        frames.append(
            pd.DataFrame({"centre": centre, "centre_idx": c, "day": day, "k": np.arange(m_per_centre)})
        )
    cand = pd.concat(frames, ignore_index=True).sort_values(["day", "centre_idx", "k"], kind="stable")
    m = len(cand)
    cand["sex"] = np.where(rng.random(m) < 0.58, "F", "M")
    cand["age"] = np.floor(52 + 38 * rng.beta(1.6, 2.6, m)).astype(int)
    female = (cand["sex"] == "F").to_numpy()
    cand["bmi"] = np.clip(rng.normal(27.0, 4.0, m), 17, 45)
    cand["odi0"] = np.clip(np.round(rng.normal(38, 14, m)), 0, 100)
    ff = 20 + 0.5 * (cand["age"] - 65) + 4 * female + 0.4 * (cand["bmi"] - 27) + rng.normal(0, 8, m)
    cand["ff_latent"] = np.clip(ff, 3, 65)
    cand["goutallier_grade"] = goutallier_from_ff(cand["ff_latent"] + rng.normal(0, GOUTALLIER_READER_SD, m))
    cand["nsaid_ci"] = rng.random(m) < 0.08
    cand["prior_surgery"] = rng.random(m) < 0.06
    cand["pathology"] = rng.random(m) < 0.04
    cand["consent"] = rng.random(m) < 0.88
    cand["rand_delay"] = rng.integers(1, 15, m)
    return cand.reset_index(drop=True)


def _exclusion_reason(cand: pd.DataFrame) -> pd.Series:
    """First failed protocol criterion (in protocol order), 'declined_consent', or '' for enrolled."""
    checks = [
        ("age_lt_60", cand["age"] < 60),
        ("odi_out_of_range", (cand["odi0"] < 20) | (cand["odi0"] > 60)),
        ("goutallier_lt_2", cand["goutallier_grade"] < 2),
        ("nsaid_contraindication", cand["nsaid_ci"]),
        ("prior_spine_surgery", cand["prior_surgery"]),
        ("specific_pathology", cand["pathology"]),
        ("declined_consent", ~cand["consent"]),
    ]
    reason = pd.Series("", index=cand.index)
    for code, bad in reversed(checks):
        reason = reason.mask(bad.to_numpy(), code)
    return reason


def simulate_screening(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Screen candidates in date order until ``n`` are enrolled: returns (screening log, enrolled candidates)."""
    rate_scale = n / 314 * 0.9  # ~ 314 enrolled over ~ 12 months at the default size
    m_per_centre = max(50, int(n * 1.2))
    for _ in range(6):
        cand = _candidates(rng, m_per_centre, rate_scale)
        cand["exclusion_reason"] = _exclusion_reason(cand)
        cand["eligible"] = cand["exclusion_reason"].isin(["", "declined_consent"])
        cand["enrolled"] = cand["exclusion_reason"] == ""
        if cand["enrolled"].sum() >= n:
            break
        m_per_centre *= 2
    else:  # pragma: no cover - needs absurd parameters
        raise BadInputError(f"could not enrol n={n} participants")
    last = int(np.flatnonzero(cand["enrolled"].cumsum().to_numpy() == n)[0])
    cand = cand.iloc[: last + 1].copy()
    cand["screening_id"] = [f"S{i + 1:05d}" for i in range(len(cand))]
    cand["screening_date"] = [START_DATE + dt.timedelta(days=int(d)) for d in cand["day"]]
    enrolled = cand[cand["enrolled"]].copy()
    enrolled["randomization_date"] = [
        d + dt.timedelta(days=int(k))
        for d, k in zip(enrolled["screening_date"], enrolled["rand_delay"], strict=True)
    ]
    enrolled = enrolled.sort_values(["randomization_date", "screening_id"], kind="stable").reset_index(
        drop=True
    )
    enrolled["participant_id"] = [f"P{i + 1:04d}" for i in range(len(enrolled))]
    pid = dict(zip(enrolled["screening_id"], enrolled["participant_id"], strict=True))
    screening = pd.DataFrame({
        "screening_id": cand["screening_id"], "centre": cand["centre"], "screening_date": cand["screening_date"],
        "eligible": cand["eligible"], "exclusion_reason": cand["exclusion_reason"], "enrolled": cand["enrolled"],
        "participant_id": cand["screening_id"].map(pid).fillna(""),
    })  # fmt: skip
    return screening, enrolled


def simulate_phenotype(
    enrolled: pd.DataFrame, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Per muscle/side/level FF (%) and CSA (cm²): returns (long table, ff[n, 8, 5], csa[n, 8, 5])."""
    n = len(enrolled)
    p = enrolled["ff_latent"].to_numpy()[:, None, None]
    muscles = [muscle_of(s) for s in MUSCLE_NAMES]
    mfac = np.array([MUSCLE_FF_FACTOR[m] for m in muscles])[None, :, None]
    # random effects: person × muscle (shared by both sides), then side and cell noise
    muscle_idx = np.array([list(MUSCLE_FF_FACTOR).index(m) for m in muscles])
    re_muscle = rng.normal(0, 0.1, (n, 4))[:, muscle_idx][:, :, None]
    ff = p * mfac * LEVEL_FF_FACTOR[None, None, :] * np.exp(re_muscle) + rng.normal(0, 1.5, (n, 8, 5))
    ff = np.clip(ff, 1.0, 75.0)
    male = (enrolled["sex"] == "M").to_numpy()
    ref = np.array([[REFERENCE_CSA_CM2[m][j] for j in range(5)] for m in muscles])[None]
    sexf = np.where(male[:, None], np.array([MALE_CSA_FACTOR[m] for m in muscles])[None], 1.0)[:, :, None]
    log_scale = (
        rng.normal(0, 0.12, (n, 1, 1))
        - 0.006 * (p - 25)
        + rng.normal(0, 0.07, (n, 4))[:, muscle_idx][:, :, None]
        + rng.normal(0, 0.04, (n, 8, 1))
        + rng.normal(0, 0.03, (n, 8, 5))
    )
    csa = ref * sexf * np.exp(log_scale)
    ff, csa = np.round(ff, 2), np.round(csa, 2)
    long = pd.DataFrame({
        "participant_id": np.repeat(enrolled["participant_id"].to_numpy(), 40),
        "structure": np.tile(np.repeat(np.array(MUSCLE_NAMES), 5), n),
        "level": np.tile(np.array(LEVELS), 8 * n),
        "fat_fraction_pct": ff.reshape(-1),
        "csa_cm2": csa.reshape(-1),
    })  # fmt: skip
    return long, ff, csa


def mf_l45(arr: np.ndarray) -> np.ndarray:
    """Mean of the multifidus (both sides) at L4 and L5 of an [n, 8, 5] phenotype array."""
    return arr[:, 0:2, 3:5].mean(axis=(1, 2))


def csa_ratio_mf_l45(csa: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """Multifidus L4–L5 CSA relative to the sex-specific reference (1 = population reference)."""
    ref = np.array([[reference_csa(s, lv, "F") for lv in LEVELS] for s in MUSCLE_NAMES[:2]])[:, 3:5].mean()
    factor = np.where(np.asarray(sex) == "M", MALE_CSA_FACTOR["multifidus"], 1.0)
    return mf_l45(csa) / (ref * factor)


def simulate_baseline(enrolled: pd.DataFrame, ff: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Baseline scores, endurance, sEMG and labs of the enrolled participants."""
    n = len(enrolled)
    female = (enrolled["sex"] == "F").to_numpy()
    odi0 = enrolled["odi0"].to_numpy(float)
    mean_ff = ff[:, 0:4, :].mean(axis=(1, 2))
    age = enrolled["age"].to_numpy(float)
    out = pd.DataFrame({
        "participant_id": enrolled["participant_id"], "centre": enrolled["centre"], "sex": enrolled["sex"],
        "age": enrolled["age"].astype(int), "bmi": np.round(enrolled["bmi"].to_numpy(), 1),
        "randomization_date": enrolled["randomization_date"], "odi_baseline": odi0,
        "vas_baseline": np.round(np.clip(1.5 + 0.09 * odi0 + rng.normal(0, 1.2, n), 0, 10), 1),
        "joa_baseline": np.round(np.clip(25 - 0.22 * odi0 + rng.normal(0, 2.0, n), 0, 29)),
        "goutallier_grade": enrolled["goutallier_grade"].astype(int),
        "biering_sorensen_s": np.round(np.clip(
            100 * np.exp(-0.02 * (mean_ff - 20) - 0.015 * (age - 65) + rng.normal(0, 0.35, n)), 5, 300), 1),
        "semg_mf_slope": np.round(np.clip(-0.4 - 0.012 * (mean_ff - 20) + rng.normal(0, 0.12, n), -3, 1), 3),
        "hb_g_l": np.round(np.where(female, rng.normal(132, 11, n), rng.normal(145, 12, n))),
        "wbc_10e9_l": np.round(np.clip(rng.normal(6.5, 1.6, n), 2.5, 15), 1),
        "plt_10e9_l": np.round(np.clip(rng.normal(250, 55, n), 100, 600)),
        "creatinine_umol_l": np.round(np.clip(np.where(female, rng.normal(70, 15, n), rng.normal(88, 18, n)), 35, 250)),
        "alt_u_l": np.round(np.clip(rng.lognormal(np.log(20), 0.35, n), 5, 300)),
        "ast_u_l": np.round(np.clip(rng.lognormal(np.log(22), 0.3, n), 5, 300)),
        "mean_ff_pct": np.round(mean_ff, 2),
    })  # fmt: skip
    return out
