"""Digital-twin trial simulator: determinism, protocol rules, ranges, planted truth recovered."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ParaspinalLBPCore.cli import run_cli
from TrialAnalysisLib.randomization import running_imbalance
from TrialAnalysisLib.schema import LEVELS, MUSCLE_NAMES, TABLES, load_trial
from TrialAnalysisLib.schema_validation import validate_trial
from TrialAnalysisLib.simulate import simulate_trial
from TrialAnalysisLib.simulate_mri import phantom_params
from TrialAnalysisLib.simulate_population import reference_csa


def _hashes(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def default(tmp_path_factory) -> Path:
    return simulate_trial(tmp_path_factory.mktemp("default") / "trial", n=314, seed=1)


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    d = simulate_trial(tmp_path_factory.mktemp("large") / "trial", n=2000, seed=5)
    return load_trial(d)


def _m12_change(data) -> pd.DataFrame:
    p = data.participants.set_index("participant_id")
    m12 = data.visits[data.visits["visit"] == "m12"].set_index("participant_id")
    return pd.DataFrame(
        {"change": m12["odi"] - p["odi_baseline"], "arm": p["arm"], "odi0": p["odi_baseline"]}
    )


def test_determinism(default, tmp_path):
    again = simulate_trial(tmp_path / "again", n=314, seed=1)
    assert _hashes(again) == _hashes(default)
    other = simulate_trial(tmp_path / "other", n=314, seed=2)
    h1, h2 = _hashes(default), _hashes(other)
    assert h1["participants.csv"] != h2["participants.csv"] and h1["visits.csv"] != h2["visits.csv"]


def test_dataset_is_valid_and_complete(default):
    report = validate_trial(default)
    assert report.ok and not report.warnings, report.summary()
    data = load_trial(default)
    p = data.participants
    assert len(p) == 314 and p["participant_id"].is_unique
    assert set(p["centre"]) == {"C1", "C2", "C3", "C4", "C5"} and set(p["sex"]) == {"F", "M"}
    for name in TABLES:
        assert getattr(data, name) is not None and len(getattr(data, name)) > 0, name
    ph = data.phenotype
    assert len(ph) == 314 * 40
    assert set(ph["structure"]) == set(MUSCLE_NAMES) and set(ph["level"]) == set(LEVELS)
    assert (data.visits.groupby("participant_id").size() == 6).all()
    assert data.visits.loc[data.visits["visit"] != "m12", "nass"].isna().all()
    assert data.visits.loc[data.visits["visit"] == "m12", "nass"].dropna().between(1, 4).all()


def test_inclusion_criteria_hold_for_every_enrolled_participant(default):
    data = load_trial(default)
    p = data.participants
    assert (p["age"] >= 60).all()
    assert p["odi_baseline"].between(20, 60).all()
    assert (p["goutallier_grade"] >= 2).all()
    s = data.screening
    assert len(s) > len(p)  # more screened than enrolled
    assert s["enrolled"].sum() == len(p)
    assert set(s.loc[s["enrolled"], "participant_id"]) == set(p["participant_id"])
    excluded = s[~s["enrolled"]]
    assert (excluded["exclusion_reason"] != "").all()
    for code in (
        "age_lt_60",
        "odi_out_of_range",
        "goutallier_lt_2",
        "nsaid_contraindication",
        "declined_consent",
    ):
        assert (excluded["exclusion_reason"] == code).sum() > 0, code
    assert not s.loc[s["exclusion_reason"] == "age_lt_60", "eligible"].any()
    assert s.loc[s["exclusion_reason"] == "declined_consent", "eligible"].all()


def test_staggered_recruitment_and_randomization(default):
    data = load_trial(default)
    p = data.participants
    first = p.groupby("centre")["randomization_date"].min()
    assert (first.diff().dropna().dt.days > 20).all()  # C1 opens first, then C2 … C5
    assert (p["stratum"] == p["centre"] + "-" + p["sex"]).all()
    ordered = p.sort_values(["randomization_date", "participant_id"])
    for _stratum, g in ordered.groupby("stratum"):
        assert np.abs(running_imbalance(g["arm"].tolist(), "exercise", "control")).max() <= 3
    assert abs((p["arm"] == "exercise").sum() - (p["arm"] == "control").sum()) <= 15


def test_conduct_tables(default):
    data = load_trial(default)
    p = data.participants.set_index("participant_id")
    ae = data.adverse_events
    ae_arm = ae["participant_id"].map(p["arm"])
    assert set(ae_arm[ae["term"] == "muscle_soreness"]) == {"exercise"}
    assert set(ae_arm[ae["term"] == "dyspepsia"]) == {"exercise", "control"}
    assert ae.loc[ae["term"] == "gastrointestinal_bleeding", "serious"].all()
    c = data.compliance
    assert set(c["participant_id"].map(p["arm"])) == {"exercise"} and sorted(set(c["week"])) == list(
        range(1, 7)
    )
    pct = (
        c.groupby("participant_id")["sessions_done"].sum()
        / c.groupby("participant_id")["sessions_planned"].sum()
    )
    ex = p[p["arm"] == "exercise"]
    np.testing.assert_allclose(ex["compliance_pct"], (100 * pct[ex.index]).round(1))
    assert (ex["per_protocol"] == (ex["compliance_pct"] >= 75)).all()
    assert 0.4 < ex["per_protocol"].mean() < 0.9
    assert p.loc[p["arm"] == "control", "compliance_pct"].isna().all()
    r = data.recurrence
    assert r["time_days"].between(1, 365).all() and set(r["event"]) == {0, 1}


def test_missingness_about_ten_percent_and_mar(default, large):
    for data in (load_trial(default), large):
        m12 = data.visits[data.visits["visit"] == "m12"]
        assert 0.05 <= m12["odi"].isna().mean() <= 0.15
    v = large.visits.pivot(index="participant_id", columns="visit", values="odi")
    # MAR: participants missing at m12 had worse (higher) observed ODI at m6 than completers
    obs6 = v["m6"].notna()
    assert v.loc[obs6 & v["m12"].isna(), "m6"].mean() > v.loc[obs6 & v["m12"].notna(), "m6"].mean() + 2
    withdrew = large.participants.set_index("participant_id")["withdrew"]
    assert v.loc[withdrew[withdrew].index, "m12"].isna().all()


def test_planted_treatment_effect_and_hazard_ratio_recovered(large):
    from lifelines import CoxPHFitter

    truth = large.truth
    d = _m12_change(large).dropna()
    diff = d.loc[d["arm"] == "exercise", "change"].mean() - d.loc[d["arm"] == "control", "change"].mean()
    assert abs(diff - truth["treatment_effect_odi_12m"]) < 1.5
    r = large.recurrence.merge(large.participants[["participant_id", "arm"]])
    r["exercise"] = (r["arm"] == "exercise").astype(int)
    cph = CoxPHFitter().fit(r[["time_days", "event", "exercise"]], "time_days", "event")
    hr = float(np.exp(cph.params_["exercise"]))
    assert abs(hr - truth["recurrence_hr"]) < 0.15


def test_response_depends_on_planted_phenotype(large):
    import statsmodels.api as sm

    ph = large.phenotype
    mf = ph[ph["structure"].str.startswith("multifidus") & ph["level"].isin(["L4", "L5"])]
    agg = mf.groupby("participant_id")[["fat_fraction_pct", "csa_cm2"]].mean()
    p = large.participants.set_index("participant_id")
    ref = p["sex"].map({s: np.mean([reference_csa(m, lv, s) for m in MUSCLE_NAMES[:2] for lv in ("L4", "L5")])
                        for s in ("F", "M")})  # fmt: skip
    d = _m12_change(large).join(agg).assign(csa_ratio=agg["csa_cm2"] / ref).dropna()
    d["response"] = (d["change"] <= -10).astype(int)
    d["exercise"] = (d["arm"] == "exercise").astype(int)
    X = sm.add_constant(d[["fat_fraction_pct", "csa_ratio", "exercise", "odi0"]])
    fit = sm.Logit(d["response"], X).fit(disp=0)
    assert fit.params["fat_fraction_pct"] < 0 and fit.pvalues["fat_fraction_pct"] < 1e-4
    assert fit.params["csa_ratio"] > 0 and fit.pvalues["csa_ratio"] < 1e-3
    assert fit.params["exercise"] > 0 and fit.pvalues["exercise"] < 1e-4
    planted = {x["variable"] for x in large.truth["planted_predictors"]["response"]}
    assert {"multifidus_l45_ff_pct", "multifidus_l45_csa_ratio", "arm"} <= planted


def test_truth_overrides_and_cli(tmp_path):
    cmds = {"simulate": "TrialAnalysisLib.simulate_cli:add_cli"}
    out = tmp_path / "cli"
    rc = run_cli("trial-analysis", "", cmds,
                 ["simulate", "--out", str(out), "--n", "60", "--seed", "4", "--effect", "-8", "--hr", "0.5"])  # fmt: skip
    assert rc == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["treatment_effect_odi_12m"] == -8 and truth["recurrence_hr"] == 0.5
    assert truth["n"] == 60 and truth["seed"] == 4 and len(pd.read_csv(out / "participants.csv")) == 60
    assert truth["allocation_sha256"] == (out / "allocation.sha256").read_text().split()[0]
    assert (
        run_cli("trial-analysis", "", cmds, ["simulate", "--out", str(out), "--n", "60", "--hr", "-1"]) == 2
    )
    with pytest.raises(TypeError):
        simulate_trial(tmp_path / "x", n=20, not_a_parameter=1)


def test_phantom_yaml_from_phenotype(default):
    data = load_trial(default)
    pid = "P0003"
    sex = data.participants.set_index("participant_id").at[pid, "sex"]
    params = phantom_params(data.phenotype, pid, sex)
    assert params["sex"] == {"F": "female", "M": "male"}[sex] and params["levels"] == list(LEVELS)
    assert set(params["muscles"]) == set(MUSCLE_NAMES)
    row = data.phenotype.query(
        "participant_id == @pid and structure == 'psoas_right' and level == 'L4'"
    ).iloc[0]
    m = params["muscles"]["psoas_right"]
    assert m["fat_fraction"]["L4"] == pytest.approx(row["fat_fraction_pct"] / 100, abs=1e-4)
    assert m["atrophy"]["L4"] == pytest.approx(
        row["csa_cm2"] / reference_csa("psoas_right", "L4", sex), abs=1e-4
    )
    assert all(0 <= v <= 0.70 for mm in params["muscles"].values() for v in mm["fat_fraction"].values())
    assert yaml.safe_load(yaml.safe_dump(params)) == params
    with pytest.raises(KeyError, match="P9999"):
        phantom_params(data.phenotype, "P9999", "F")


@pytest.mark.skipif(importlib.util.find_spec("ParaspinalSegLib.phantom_cli") is None,
                    reason="ParaspinalSegLib phantom CLI not available yet")  # fmt: skip
def test_with_mri_renders_phenotype_and_resumes(tmp_path):
    out = simulate_trial(tmp_path / "mri", n=20, seed=3, with_mri=2, mri_workers=2)
    p = pd.read_csv(out / "participants.csv", keep_default_na=False)
    cohort = p[p["has_mri"]]
    assert len(cohort) == 2 and (cohort["mri_dir"] == "mri/" + cohort["participant_id"]).all()
    assert (p.loc[~p["has_mri"], "mri_dir"] == "").all()
    pid, mri_dir = cohort["participant_id"].iloc[0], out / cohort["mri_dir"].iloc[0]
    assert (mri_dir / "labels.nii.gz").exists() and (mri_dir / "ff.nii.gz").exists()
    truth = json.loads((mri_dir / "truth.json").read_text())["structures"]
    ph = pd.read_csv(out / "phenotype.csv")
    ph = ph[ph["participant_id"] == pid]
    for _, r in ph.iterrows():  # the rendered phantom carries the participant's phenotype (C3 truth)
        t = truth[r["structure"]][r["level"]]
        assert t["fat_fraction_pct"] == pytest.approx(min(r["fat_fraction_pct"], 70.0), abs=0.5)
        assert t["csa_cm2"] == pytest.approx(r["csa_cm2"], rel=0.15), (r["structure"], r["level"])
    stamp = (mri_dir / "ff.nii.gz").stat().st_mtime_ns
    assert all((out / r).joinpath("labels.json").exists() for r in cohort["mri_dir"])
    simulate_trial(tmp_path / "mri", n=20, seed=3, with_mri=2)  # resume: the complete case is not re-rendered
    assert (mri_dir / "ff.nii.gz").stat().st_mtime_ns == stamp


@pytest.mark.skipif(importlib.util.find_spec("ParaspinalSegLib.phantom_cli") is None,
                    reason="ParaspinalSegLib phantom CLI not available yet")  # fmt: skip
def test_phantom_failure_is_reported_with_participant(tmp_path):
    from TrialAnalysisLib.simulate_mri import render_one, write_phantom_yaml

    bad = write_phantom_yaml(tmp_path / "P0042.yaml", {"muscles": {"nope_left": {"fat_fraction": 0.1}}})
    with pytest.raises(ChildProcessError, match=r"phantom rendering failed for P0042 .*nope_left"):
        render_one(bad, tmp_path / "mri" / "P0042", seed=1)
    assert not (tmp_path / "mri" / "P0042").exists()
