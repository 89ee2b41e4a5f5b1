"""The full report on a simulated trial: planted effects recovered, tables consistent with the data,
self-contained HTML, PDF, provenance (data hash, seed, versions), CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from TrialAnalysisLib.cli import main
from TrialAnalysisLib.report import data_hash, run_analyses
from TrialAnalysisLib.schema import load_trial
from TrialAnalysisLib.simulate import simulate_trial


@pytest.fixture(scope="module")
def trial_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_trial(tmp_path_factory.mktemp("trial") / "data", n=314, seed=1)


@pytest.fixture(scope="module")
def report_dir(trial_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report as a user makes it: ``python -m TrialAnalysisLib analyze`` (in-process)."""
    out = tmp_path_factory.mktemp("report")
    argv = ["analyze", "--data", str(trial_dir), "--out", str(out), "--imputations", "5", "--seed", "3"]
    assert main(argv) == 0
    return out


def test_primary_analysis_recovers_planted_effect(report_dir: Path, trial_dir: Path) -> None:
    truth = json.loads((trial_dir / "truth.json").read_text())
    res = json.loads((report_dir / "results.json").read_text())
    for key in ("primary_mi", "primary_cc"):
        d = res["primary"][key]["tables"]["difference"][0]
        assert d["term"] == "exercise - control"
        assert d["ci_low"] <= truth["treatment_effect_odi_12m"] <= d["ci_high"]
        assert abs(d["estimate"] - truth["treatment_effect_odi_12m"]) < 2.5 * d["se"]
        assert d["alternative"] == "less" and d["p"] < 0.025
    cox = res["cox"]["table"][0]
    assert cox["term"] == "arm[T.exercise]"
    assert cox["hr_ci_low"] <= truth["recurrence_hr"] <= cox["hr_ci_high"]


def test_report_files_self_contained_with_provenance(report_dir: Path, trial_dir: Path) -> None:
    html = (report_dir / "report.html").read_text()
    assert data_hash(trial_dir) in html and "seed 3" in html and "statsmodels" in html
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)  # no external resources
    assert "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") == 6  # consort, forest, trajectories, km, zph, power
    for section in (
        "CONSORT",
        "Table 1",
        "Primary outcome",
        "Subgroups",
        "mixed models",
        "Recurrence",
        "adverse events",
        "compliance",
        "NASS",
        "Sample size",
        "157",
    ):
        assert section in html
    assert (report_dir / "report.pdf").read_bytes()[:5] == b"%PDF-"
    for png in (
        "consort.png",
        "forest_subgroups.png",
        "trajectories.png",
        "km_recurrence.png",
        "cox_zph.png",
    ):
        assert (report_dir / png).stat().st_size > 10_000


def test_tables_agree_with_the_data(trial_dir: Path) -> None:
    data = load_trial(trial_dir)
    res = run_analyses(data, imputations=2, seed=1)
    c = res["consort"]
    assert c["screened"] == len(data.screening)
    assert c["randomised"] == len(data.participants)
    assert c["excluded"] == c["screened"] - c["randomised"]
    assert sum(c["exclusion_reasons"].values()) == c["excluded"]
    arms = data.participants["arm"].value_counts()
    for arm, box in c["arms"].items():
        assert box["allocated"] == arms[arm]
        m12 = data.visits[(data.visits["visit"] == "m12") & data.visits["odi"].notna()]
        assert (
            box["primary_observed"]
            == m12["participant_id"]
            .isin(data.participants.loc[data.participants["arm"] == arm, "participant_id"])
            .sum()
        )
    t1 = res["table1"].set_index("characteristic")
    assert int(t1.loc["N", "exercise"]) == arms["exercise"] and int(t1.loc["N", "Total"]) == len(
        data.participants
    )
    ov = res["ae"]["overview"].iloc[0]
    assert ov["exercise events"] + ov["control events"] == len(data.adverse_events)
    sev = res["ae"]["by_severity"]
    assert sev["exercise events"].sum() + sev["control events"].sum() == len(data.adverse_events)
    # per-protocol set is the flagged participants with an observed outcome
    pp = res["wide"][res["wide"]["per_protocol"].eq(True)]
    assert res["primary_pp"].info["n_analysed"] == pp["odi_change_12m"].notna().sum()
    # mixed model for ODI covers every follow-up visit; Satterthwaite df are finite and below n obs
    con = res["mixed"]["odi"].tables["contrasts"]
    assert list(con["time"].astype(str)) == ["eoi_6w", "m1", "m3", "m6", "m12"]
    assert ((con["df"] > 100) & (con["df"] < res["mixed"]["odi"].info["n_obs"])).all()
    sub = res["subgroups"]
    assert set(sub["subgroup"]) == {"sex", "centre", "ff_tertile"}
    assert pd.notna(sub["p_interaction"]).all()


def test_analyze_cli_refuses_invalid_data(
    trial_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in trial_dir.iterdir():
        if f.is_file():
            (bad / f.name).write_bytes(f.read_bytes())
    visits = pd.read_csv(bad / "visits.csv", dtype=str, keep_default_na=False)
    visits.loc[visits.index[3], "odi"] = "140"  # ODI is 0–100
    visits.to_csv(bad / "visits.csv", index=False)
    assert main(["analyze", "--data", str(bad), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "visits.csv" in err and "odi" in err


def test_analyze_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "rep")]) == 2
    assert "not found" in capsys.readouterr().err
    assert (
        main(["analyze", "--data", str(tmp_path), "--out", str(tmp_path / "rep"), "--imputations", "0"]) == 2
    )
    assert "imputations" in capsys.readouterr().err
