"""Descriptive trial tables from a :class:`~TrialAnalysisLib.schema.TrialData`: analysis frames,
Table 1 by arm, adverse-event tables, compliance summary, NASS satisfaction comparison, subgroups.

All functions take and return pandas DataFrames with the columns of contract C6 (schema.py). In a coded
dataset (arm_coding.csv) the analysis frame's arms are the printed labels ``Arm A``/``Arm B``, so every
table made from it is labelled by code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ParaspinalLBPCore.structures import SIDES, muscle_name
from TrialAnalysisLib.ancova import ancova
from TrialAnalysisLib.schema import arm_coding

FOLLOW_UP = ("eoi_6w", "m1", "m3", "m6", "m12")
ARM_ORDER = ("exercise", "control")


def _float(df: pd.DataFrame) -> pd.DataFrame:
    """Nullable numeric/boolean extension columns → float64/object so numpy sees NaN, not pd.NA."""
    out = df.copy()
    for c in out.columns:
        dt = out[c].dtype
        if pd.api.types.is_bool_dtype(dt) and not isinstance(dt, np.dtype):
            out[c] = out[c].astype(object).where(out[c].notna(), np.nan)
        elif pd.api.types.is_numeric_dtype(dt) and not isinstance(dt, np.dtype):
            out[c] = out[c].astype("float64")
    return out


def wide_frame(data: Any, scores: Sequence[str] = ("odi", "vas", "joa")) -> pd.DataFrame:
    """One row per participant: participants.csv + ``{score}_{visit}`` columns + 12-month ODI change.

    Adds ``odi_change_12m`` (m12 − baseline; negative = improvement), ``mf_ff_l45`` (multifidus
    L4–L5 FF when phenotype.csv is present) and ``ff_tertile`` (of ``mean_ff_pct``). ``arm`` is a
    categorical with the reference arm first; in a coded dataset its values are ``Arm A``/``Arm B``.
    """
    p = _float(data.participants)
    v = _float(data.visits)
    for s in scores:
        fu = v[v["visit"] != "baseline"]  # baseline scores come from participants.csv
        w = fu.pivot_table(index="participant_id", columns="visit", values=s, aggfunc="first")
        w.columns = [f"{s}_{c}" for c in w.columns]
        p = p.merge(w, left_on="participant_id", right_index=True, how="left")
    for s in scores:
        for vis in FOLLOW_UP:
            if f"{s}_{vis}" not in p.columns:
                p[f"{s}_{vis}"] = np.nan
    if "nass" in v.columns:
        nass = v[v["visit"] == "m12"].set_index("participant_id")["nass"]
        p["nass_m12"] = p["participant_id"].map(nass)
    p["odi_change_12m"] = p["odi_m12"] - p["odi_baseline"]
    if getattr(data, "phenotype", None) is not None:
        ph = data.phenotype
        sel = ph[
            ph["structure"].isin([muscle_name("multifidus", side) for side in SIDES])
            & ph["level"].isin(["L4", "L5"])
        ]
        p["mf_ff_l45"] = p["participant_id"].map(sel.groupby("participant_id")["fat_fraction_pct"].mean())
    p["ff_tertile"] = pd.qcut(p["mean_ff_pct"], 3, labels=["T1 (low)", "T2", "T3 (high)"]).astype(str)
    coding = arm_coding(data)
    arm = p["arm"].map(coding.label) if coding.coded else p["arm"]
    p["arm"] = pd.Categorical(arm, categories=[a for a in coding.labels[::-1] if a in set(arm)])
    return p


def long_frame(wide: pd.DataFrame, score: str) -> pd.DataFrame:
    """Follow-up visits in long format with the score's baseline as a covariate (for mixed models)."""
    cols = [f"{score}_{v}" for v in FOLLOW_UP]
    keep = ["participant_id", "arm", "sex", "centre", f"{score}_baseline"]
    long = wide[keep + cols].melt(id_vars=keep, value_vars=cols, var_name="visit", value_name=score)
    long["visit"] = pd.Categorical(
        long["visit"].str.replace(f"{score}_", "", regex=False), categories=list(FOLLOW_UP)
    )
    long["arm"] = long["arm"].astype(str)
    return long.dropna(subset=[score]).reset_index(drop=True)


def _arms(df: pd.DataFrame) -> list[str]:
    present = [str(a) for a in pd.unique(df["arm"].astype(str))]
    return [a for a in ARM_ORDER if a in present] + sorted(a for a in present if a not in ARM_ORDER)


def table1(
    wide: pd.DataFrame, numeric: Sequence[str] | None = None, categorical: Sequence[str] | None = None
) -> pd.DataFrame:
    """Baseline characteristics by arm: mean (SD) / median [IQR] for numbers, n (%) for categories."""
    numeric = list(
        numeric
        or [
            "age",
            "bmi",
            "odi_baseline",
            "vas_baseline",
            "joa_baseline",
            "mean_ff_pct",
            "biering_sorensen_s",
            "semg_mf_slope",
            "hb_g_l",
            "creatinine_umol_l",
            "alt_u_l",
        ]
    )
    categorical = list(categorical or ["sex", "centre", "goutallier_grade"])
    arms = _arms(wide)
    rows = [
        {
            "characteristic": "N",
            **{a: str(int((wide["arm"].astype(str) == a).sum())) for a in arms},
            "Total": str(len(wide)),
        }
    ]
    groups = {a: wide[wide["arm"].astype(str) == a] for a in arms} | {"Total": wide}
    for c in numeric:
        if c not in wide.columns:
            continue
        rows.append(
            {
                "characteristic": f"{c}, mean (SD)",
                **{a: f"{g[c].mean():.1f} ({g[c].std():.1f})" for a, g in groups.items()},
            }
        )
    for c in categorical:
        if c not in wide.columns:
            continue
        rows.append({"characteristic": f"{c}, n (%)", **dict.fromkeys(groups, "")})
        for lv in sorted(wide[c].dropna().unique(), key=str):
            name = f"{lv:g}" if isinstance(lv, (float, np.floating)) else str(lv)
            rows.append(
                {
                    "characteristic": f"  {name}",
                    **{
                        a: f"{int((g[c] == lv).sum())} ({100 * (g[c] == lv).mean():.1f})"
                        for a, g in groups.items()
                    },
                }
            )
    return pd.DataFrame(rows)


def ae_tables(ae: pd.DataFrame | None, wide: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """AE summary by arm: events and patients (n, %) overall, by term, by severity, by relatedness, serious."""
    arms = _arms(wide)
    n_arm = {a: int((wide["arm"].astype(str) == a).sum()) for a in arms}
    if ae is None or ae.empty:
        return {
            "overview": pd.DataFrame(
                {"category": ["any AE"], **{a: ["0 events, 0 patients (0.0%)"] for a in arms}}
            )
        }
    arm_of = wide.set_index("participant_id")["arm"].astype(str)
    a = ae.copy()
    a["arm"] = a["participant_id"].map(arm_of)

    def by(col: str | None) -> pd.DataFrame:
        rows = []
        cats = [("any", a)] if col is None else [(str(k), g) for k, g in a.groupby(col, sort=True)]
        for k, g in cats:
            row = {"category": k}
            for arm in arms:
                ga = g[g["arm"] == arm]
                pts = ga["participant_id"].nunique()
                row[f"{arm} events"] = len(ga)
                row[f"{arm} patients"] = f"{pts} ({100 * pts / max(n_arm[arm], 1):.1f}%)"
            rows.append(row)
        return pd.DataFrame(rows)

    out = {
        "overview": by(None),
        "by_term": by("term"),
        "by_severity": by("severity"),
        "by_relatedness": by("relatedness"),
    }
    a["serious_flag"] = a["serious"].astype(str).str.lower().map({"true": "serious", "false": "non-serious"})
    out["serious"] = by("serious_flag")
    return out


def compliance_summary(
    wide: pd.DataFrame,
    compliance: pd.DataFrame | None = None,
    threshold: float = 75.0,
    diary_arm: str | None = "exercise",
) -> pd.DataFrame:
    """Diary compliance of ``diary_arm`` (sessions done/planned per week, the ≥ 75 % rule) and the
    per-protocol set by arm. ``diary_arm=None`` (coded data: the diary is kept in one arm only and the
    per-protocol rule differs by arm, so either would tell which code is the intervention) gives the
    per-protocol set of both arms pooled."""
    if diary_arm is None:
        return pd.DataFrame(
            [
                {
                    "measure": "per-protocol set, arms pooled",
                    "value": str(int(wide["per_protocol"].eq(True).sum())),
                }
            ]
        )
    rows = _diary_rows(wide, compliance, threshold, diary_arm)
    pp = wide.groupby(wide["arm"].astype(str))["per_protocol"].apply(lambda s: int(s.eq(True).sum()))
    for arm, n in pp.items():
        rows.append({"measure": f"per-protocol set, {arm}", "value": str(n)})
    return pd.DataFrame(rows)


def _diary_rows(
    wide: pd.DataFrame, compliance: pd.DataFrame | None, threshold: float, diary_arm: str
) -> list[dict[str, str]]:
    """Compliance rows of the arm that keeps the exercise diary."""
    rows = []
    ex = wide[wide["arm"].astype(str) == diary_arm]
    pct = ex["compliance_pct"].dropna()
    rows.append({"measure": f"participants ({diary_arm} arm)", "value": f"{len(ex)}"})
    rows.append(
        {
            "measure": "compliance %, median [IQR]",
            "value": f"{pct.median():.1f} [{pct.quantile(0.25):.1f}, {pct.quantile(0.75):.1f}]",
        }
    )
    rows.append(
        {
            "measure": f"compliant (≥ {threshold:g} %)",
            "value": f"{int((pct >= threshold).sum())} ({100 * (pct >= threshold).mean():.1f}%)",
        }
    )
    if compliance is not None and not compliance.empty:
        c = _float(compliance)
        wk = c.groupby("week")[["sessions_planned", "sessions_done"]].sum()
        for w, r in wk.iterrows():
            rows.append(
                {
                    "measure": f"week {int(w)} sessions done / planned",
                    "value": f"{int(r['sessions_done'])} / {int(r['sessions_planned'])} "
                    f"({100 * r['sessions_done'] / max(r['sessions_planned'], 1):.1f}%)",
                }
            )
    return rows


def nass_comparison(wide: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """NASS satisfaction (1 best – 4 worst) at 12 months by arm, with Mann–Whitney and χ² tests."""
    d = wide.dropna(subset=["nass_m12"])
    arms = _arms(d)
    tab = pd.crosstab(d["nass_m12"].astype(int), d["arm"].astype(str)).reindex(columns=arms, fill_value=0)
    pct = 100 * tab / tab.sum()
    out = pd.DataFrame({"NASS": tab.index})
    for a in arms:
        out[a] = [f"{int(n)} ({p:.1f}%)" for n, p in zip(tab[a], pct[a], strict=True)]
    tests: dict[str, float] = {}
    if len(arms) == 2:
        x = d.loc[d["arm"].astype(str) == arms[0], "nass_m12"].astype(float)
        y = d.loc[d["arm"].astype(str) == arms[1], "nass_m12"].astype(float)
        mw = stats.mannwhitneyu(x, y, alternative="two-sided")
        chi = stats.chi2_contingency(tab.to_numpy())
        sat = {a: float((d.loc[d["arm"].astype(str) == a, "nass_m12"] <= 2).mean()) for a in arms}
        tests = {
            "mann_whitney_p": float(mw.pvalue),
            "chi2": float(chi.statistic),
            "chi2_p": float(chi.pvalue),
            **{f"satisfied_{a}": v for a, v in sat.items()},
        }
    return out, tests


def subgroup_effects(
    wide: pd.DataFrame,
    outcome: str = "odi_change_12m",
    covariates: Sequence[str] = ("odi_baseline", "sex", "centre"),
    subgroups: Sequence[str] = ("sex", "centre", "ff_tertile"),
    reference: str = "control",
) -> pd.DataFrame:
    """Adjusted difference from the ``reference`` arm within each subgroup level (complete cases) + interaction p."""
    rows = []
    for sg in subgroups:
        if sg not in wide.columns:
            continue
        covs = [c for c in covariates if c != sg]
        for lv in sorted(wide[sg].dropna().unique(), key=str):
            sub = wide[wide[sg] == lv].dropna(subset=[outcome])
            if sub["arm"].astype(str).nunique() < 2 or len(sub) < len(covs) + 6:
                continue
            try:
                r = ancova(
                    sub, outcome, "arm", [c for c in covs if sub[c].nunique() > 1], reference=reference
                )
            except ValueError:
                continue
            dr = r.tables["difference"].iloc[0]
            rows.append(
                {
                    "subgroup": sg,
                    "level": str(lv),
                    "n": int(r.info["n_analysed"]),
                    "estimate": dr["estimate"],
                    "ci_low": dr["ci_low"],
                    "ci_high": dr["ci_high"],
                    "p": dr["p"],
                }
            )
        # interaction test: does the arm effect differ across levels of sg?
        d = wide.dropna(subset=[outcome, sg]).copy()
        d["_arm_x_sg"] = d["arm"].astype(str) + ":" + d[sg].astype(str)
        try:
            full = ancova(d, outcome, "_arm_x_sg", [c for c in covariates if c != sg])
            red = ancova(d, outcome, "arm", [c for c in covariates if c != sg] + [sg])
            rss_f, rss_r = full.info["rss"], red.info["rss"]
            k = d["_arm_x_sg"].nunique() - 1 - (d[sg].nunique() - 1) - 1
            f = ((rss_r - rss_f) / k) / (rss_f / full.info["df_resid"]) if k > 0 else np.nan
            p_int = float(stats.f.sf(f, k, full.info["df_resid"])) if k > 0 else np.nan
        except ValueError:
            p_int = np.nan
        for r_ in rows:
            if r_["subgroup"] == sg:
                r_["p_interaction"] = p_int
    return pd.DataFrame(rows)
