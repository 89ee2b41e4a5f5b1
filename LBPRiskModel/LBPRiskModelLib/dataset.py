"""Dataset assembly: feature table (C5) + measurement table (C4) + clinical data (C6) → one row per case.

Imaging columns are named ``<feature>__<structure>__<level>`` (e.g.
``original_glcm_Contrast__multifidus_left__L4``, ``fat_fraction_pct__multifidus_left__all``);
clinical columns keep their C6 names. The case id is ``case_id`` (= C6 ``participant_id``).
Outcomes are derived here (never used as predictors): ``responder_<visit>`` (ODI improvement from
baseline ≥ MCID at the visit; cases without that visit are excluded) and ``recurrence_<N>m``
(event within N months; cases censored earlier are excluded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ParaspinalLBPCore.errors import BadInputError, MissingInputError, MissingKeyError

FEATURE_META = {
    "case_id",
    "structure",
    "level",
    "n_voxels",
    "status",
    "reason",
    "settings_hash",
    "pyradiomics_version",
    "side",
    "slice",
}
MEASURES = ("csa_cm2", "fcsa_cm2", "volume_cm3", "fat_fraction_pct", "goutallier_grade", "asymmetry_index")
#: C6 columns never used as predictors: identifiers, post-baseline or administrative information.
NON_PREDICTORS = {
    "participant_id",
    "case_id",
    "randomization_date",
    "stratum",
    "block_id",
    "mri_dir",
    "has_mri",
    "compliance_pct",
    "per_protocol",
    "withdrew",
}
DAYS_PER_MONTH = 30.4375


def _read_csv(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} not found")
    return pd.read_csv(path)


def pivot_features(features: pd.DataFrame, robust: list[str] | None = None) -> pd.DataFrame:
    """C5 long-wide table → one row per case, columns ``<feature>__<structure>__<level>``."""
    for col in ("case_id", "structure", "level"):
        if col not in features.columns:
            raise MissingKeyError(f"feature table: missing column {col!r}")
    df = features
    if "status" in df.columns:
        df = df[df["status"].astype(str) == "ok"]
    feats = [c for c in df.columns if c not in FEATURE_META and not c.startswith("diagnostics_")]
    if robust is not None:
        unknown = sorted(set(robust) - set(feats))
        if unknown:
            raise MissingKeyError(
                f"robust-feature list: features not in the feature table: {', '.join(unknown[:5])}"
            )
        feats = [c for c in feats if c in set(robust)]
    df = df.assign(case_id=df["case_id"].astype(str))
    wide = df.pivot_table(index="case_id", columns=["structure", "level"], values=feats, aggfunc="first")
    wide.columns = [f"{f}__{s}__{lv}" for f, s, lv in wide.columns]
    return wide


def pivot_measurements(meas: pd.DataFrame) -> pd.DataFrame:
    """C4 measurement table (structure × level rows, per-slice rows dropped) → one row per case."""
    if "case_id" not in meas.columns and "participant_id" in meas.columns:  # C6 phenotype.csv
        meas = meas.rename(columns={"participant_id": "case_id"})
    for col in ("case_id", "structure", "level"):
        if col not in meas.columns:
            raise MissingKeyError(f"measurement table: missing column {col!r}")
    df = meas
    if "slice" in df.columns:
        df = df[df["slice"].isna() | (df["slice"].astype(str) == "")]
    cols = [m for m in MEASURES if m in df.columns]
    df = df.assign(case_id=df["case_id"].astype(str))
    wide = df.pivot_table(index="case_id", columns=["structure", "level"], values=cols, aggfunc="first")
    wide.columns = [f"{f}__{s}__{lv}" for f, s, lv in wide.columns]
    return wide


def derive_outcome(clinical_dir: str | Path, spec: dict[str, Any]) -> pd.Series:
    """Binary outcome per participant from C6 visits/recurrence; NaN where it cannot be determined."""
    d = Path(clinical_dir)
    kind = spec.get("type", "responder")
    if kind == "responder":
        visit, mcid = spec.get("visit", "m12"), float(spec.get("mcid", 10))
        visits = _read_csv(d / "visits.csv", "visits table")
        for col in ("participant_id", "visit", "odi"):
            if col not in visits.columns:
                raise MissingKeyError(f"{d / 'visits.csv'}: missing column {col!r}")
        odi = visits.pivot_table(index="participant_id", columns="visit", values="odi", aggfunc="first")
        if visit not in odi.columns or "baseline" not in odi.columns:
            raise MissingKeyError(f"{d / 'visits.csv'}: no ODI at visit {visit!r} or 'baseline'")
        improvement = odi["baseline"] - odi[visit]
        out = (improvement >= mcid).astype(float).where(improvement.notna())
        out.name = spec.get("name", f"responder_{visit}")
    elif kind == "recurrence":
        months = float(spec.get("months", 12))
        rec = _read_csv(d / "recurrence.csv", "recurrence table").set_index("participant_id")
        horizon = months * DAYS_PER_MONTH
        event = (rec["event"] == 1) & (rec["time_days"] <= horizon)
        known = event | (rec["time_days"] >= min(horizon, 365))
        out = event.astype(float).where(known)
        out.name = spec.get("name", f"recurrence_{int(months)}m")
    else:
        raise BadInputError(f"outcome type {kind!r}: expected 'responder' or 'recurrence'")
    out.index = out.index.astype(str)
    return out


def assemble(
    clinical_dir: str | Path | None = None,
    features: str | Path | None = None,
    measurements: str | Path | None = None,
    robust: str | Path | None = None,
    outcome: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, str | None]:
    """Join the available sources by case id; returns (table with ``case_id`` first, outcome column name)."""
    parts: list[pd.DataFrame] = []
    if clinical_dir is not None:
        p = _read_csv(Path(clinical_dir) / "participants.csv", "participants table")
        if "participant_id" not in p.columns:
            raise MissingKeyError(
                f"{Path(clinical_dir) / 'participants.csv'}: missing column 'participant_id'"
            )
        p = p.assign(case_id=p["participant_id"].astype(str)).set_index("case_id")
        parts.append(p.drop(columns=[c for c in p.columns if c in NON_PREDICTORS]))
    if features is not None:
        robust_list = None
        if robust is not None:
            robust_list = json.loads(Path(robust).read_text(encoding="utf-8"))["features"]
        parts.append(pivot_features(_read_csv(features, "feature table"), robust_list))
    if measurements is not None:
        parts.append(pivot_measurements(_read_csv(measurements, "measurement table")))
    if not parts:
        raise BadInputError("nothing to assemble: give clinical data, a feature table or a measurement table")
    table = parts[0]
    for other in parts[1:]:
        table = table.join(other, how="inner")
    out_name = None
    if outcome and clinical_dir is not None:
        y = derive_outcome(clinical_dir, outcome)
        out_name = str(y.name)
        table = table.join(y, how="left")
    table.index.name = "case_id"
    return table.reset_index(), out_name


def feature_roles(columns: list[str], clinical: list[str] | None = None) -> dict[str, str]:
    """Role of each predictor: ``radiomics``, ``measurement`` (``<measure>__…``) or ``clinical``."""
    roles = {}
    for c in columns:
        if clinical is not None and c in clinical:
            roles[c] = "clinical"
        elif "__" in c:
            roles[c] = "measurement" if c.split("__")[0] in MEASURES else "radiomics"
        else:
            roles[c] = "clinical"
    return roles


def data_report(df: pd.DataFrame, outcome: str, predictors: list[str]) -> dict[str, Any]:
    """Class balance, missingness and events per variable of the modelling table."""
    y = df[outcome]
    n_events = int((y == 1).sum())
    n_nonevents = int((y == 0).sum())
    miss = df[predictors].isna().mean().sort_values(ascending=False)
    return {
        "n_rows": len(df),
        "n_outcome_missing": int(y.isna().sum()),
        "n_events": n_events,
        "n_nonevents": n_nonevents,
        "prevalence": float(n_events / max(1, n_events + n_nonevents)),
        "n_candidate_predictors": len(predictors),
        "events_per_variable": float(min(n_events, n_nonevents) / max(1, len(predictors))),
        "n_predictors_with_missing": int((miss > 0).sum()),
        "overall_missing_fraction": float(df[predictors].isna().to_numpy().mean()) if predictors else 0.0,
        "top_missing": {k: float(v) for k, v in miss.head(15).items() if v > 0},
    }


def split_manifest(case_ids: np.ndarray, y: np.ndarray, test_size: float, seed: int) -> pd.DataFrame:
    """Stratified train/test split as a manifest (case_id, set)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    sets = np.empty(len(y), dtype=object)
    sets[tr] = "train"
    sets[te] = "test"
    return pd.DataFrame({"case_id": np.asarray(case_ids).astype(str), "set": sets})
