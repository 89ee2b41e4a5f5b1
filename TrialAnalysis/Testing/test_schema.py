"""Trial dataset schema: data dictionary, loading, and validation catching each class of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ParaspinalLBPCore.cli import run_cli
from TrialAnalysisLib.schema import TABLES, data_dictionary, load_trial
from TrialAnalysisLib.schema_validation import validate_trial
from TrialAnalysisLib.simulate import simulate_trial


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return simulate_trial(tmp_path_factory.mktemp("trial") / "data", n=120, seed=11)


def _corrupt(clean: Path, tmp_path: Path, file: str, edit) -> Path:
    d = tmp_path / "bad"
    shutil.copytree(clean, d)
    df = pd.read_csv(d / file, dtype=str, keep_default_na=False)
    df = edit(df)
    df.to_csv(d / file, index=False, lineterminator="\n")
    return d


def _issue(report, check, file, column):
    hits = [i for i in report.issues if i.check == check and i.file == file and i.column == column]
    assert hits, report.summary()
    return hits[0]


def test_clean_dataset_is_valid_and_matches_dictionary(clean):
    report = validate_trial(clean)
    assert report.ok and not report.warnings, report.summary()
    dd = pd.read_csv(clean / "data_dictionary.csv")
    pd.testing.assert_frame_equal(dd, data_dictionary().pipe(lambda x: pd.read_csv(
        pd.io.common.StringIO(x.to_csv(index=False)))))  # fmt: skip
    for t in TABLES.values():
        header = pd.read_csv(clean / t.filename, nrows=0).columns.tolist()
        assert header == t.column_names, t.filename
        assert set(dd.loc[dd["file"] == t.filename, "column"]) == set(t.column_names)


def test_load_trial_types(clean):
    data = load_trial(clean)
    p = data.participants
    assert str(p["age"].dtype) == "Int64"
    assert p["odi_baseline"].dtype == "float64"
    assert str(p["per_protocol"].dtype) == "boolean"
    assert pd.api.types.is_datetime64_any_dtype(p["randomization_date"])
    assert data.visits["odi"].isna().any()  # missing values are NaN
    assert data.truth["n"] == 120 and data.load_issues == []
    assert len(data.phenotype) == 120 * 40


@pytest.mark.parametrize(
    ("file", "column", "value", "check", "text"),
    [
        ("visits.csv", "odi", "130", "range", "value 130 outside the allowed range 0–100"),
        ("participants.csv", "vas_baseline", "11.5", "range", "outside the allowed range 0–10"),
        ("visits.csv", "joa", "30", "range", "outside the allowed range 0–29"),
        ("participants.csv", "sex", "X", "code", "unknown code 'X'"),
        ("visits.csv", "visit", "m24", "code", "unknown code 'm24'"),
        ("adverse_events.csv", "severity", "fatal", "code", "unknown code 'fatal'"),
        ("visits.csv", "odi", "abc", "type", "'abc' is not a number"),
        ("participants.csv", "withdrew", "maybe", "type", "not a boolean"),
        ("participants.csv", "centre", "", "missing_value", "value missing"),
    ],
)
def test_bad_value_is_named(clean, tmp_path, file, column, value, check, text):
    row = 3 if file != "visits.csv" else 7  # visits line 9 = participant P0002, visit m1

    def edit(df):
        df.loc[row, column] = value
        return df

    report = validate_trial(_corrupt(clean, tmp_path, file, edit))
    issue = _issue(report, check, file, column)
    assert not report.ok and issue.level == "error"
    assert text in issue.message and file in issue.message and column in issue.message
    expected_pid = pd.read_csv(clean / file, dtype=str)["participant_id"].iloc[row]
    assert issue.participant_id == expected_pid and expected_pid in issue.message
    assert issue.line == row + 2


def test_duplicate_ids(clean, tmp_path):
    d = _corrupt(
        clean, tmp_path, "participants.csv", lambda df: pd.concat([df, df.iloc[[4]]], ignore_index=True)
    )
    issue = _issue(validate_trial(d), "duplicate", "participants.csv", "participant_id")
    assert "duplicate id (participant_id=P0005)" in issue.message


def test_visit_out_of_window(clean, tmp_path):
    def edit(df):
        i = df.index[(df["visit"] == "m3") & (df["visit_day"] != "")][0]
        df.loc[i, "visit_day"] = "200"
        return df

    issue = _issue(
        validate_trial(_corrupt(clean, tmp_path, "visits.csv", edit)),
        "visit_window",
        "visits.csv",
        "visit_day",
    )
    assert (
        "outside the window of m3 (119 to 147 days)" in issue.message
        and issue.participant_id in issue.message
    )


def test_randomization_contradicting_allocation_list(clean, tmp_path):
    def edit(df):
        df.loc[10, "arm"] = "control" if df.loc[10, "arm"] == "exercise" else "exercise"
        return df

    d = _corrupt(clean, tmp_path, "participants.csv", edit)
    report = validate_trial(d)
    issue = _issue(report, "randomization", "participants.csv", "arm")
    assert issue.participant_id == "P0011"
    assert "contradicts allocation.csv stratum" in issue.message
    assert len([i for i in report.errors if i.check == "randomization"]) == 1


def test_altered_allocation_list_fails_checksum(clean, tmp_path):
    def edit(df):
        last = df.index[-1]  # an unused tail entry: only the checksum can notice
        df.loc[last, "arm"] = "control" if df.loc[last, "arm"] == "exercise" else "exercise"
        return df

    report = validate_trial(_corrupt(clean, tmp_path, "allocation.csv", edit))
    assert _issue(report, "checksum", "allocation.csv", "").level == "error"


def test_stratum_inconsistent_with_centre_sex(clean, tmp_path):
    def edit(df):
        df.loc[0, "stratum"] = "C5-M" if df.loc[0, "stratum"] != "C5-M" else "C1-F"
        return df

    issue = _issue(validate_trial(_corrupt(clean, tmp_path, "participants.csv", edit)), "randomization",
                   "participants.csv", "stratum")  # fmt: skip
    assert "does not match centre-sex" in issue.message and issue.participant_id == "P0001"


def test_missing_column_names_file_and_column(clean, tmp_path):
    report = validate_trial(_corrupt(clean, tmp_path, "visits.csv", lambda df: df.drop(columns=["odi"])))
    issue = _issue(report, "missing_column", "visits.csv", "odi")
    assert "visits.csv: missing column 'odi'" in issue.message


def test_unknown_participant_and_missing_file(clean, tmp_path):
    def edit(df):
        df.loc[0, "participant_id"] = "P9999"
        return df

    d = _corrupt(clean, tmp_path, "recurrence.csv", edit)
    issue = _issue(validate_trial(d), "reference", "recurrence.csv", "participant_id")
    assert "P9999" in issue.message and "not in participants.csv" in issue.message
    (d / "participants.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"participants\.csv"):
        load_trial(d)


def test_inclusion_violation_is_a_warning(clean, tmp_path):
    def edit(df):
        df.loc[2, "age"] = "55"
        return df

    report = validate_trial(_corrupt(clean, tmp_path, "participants.csv", edit))
    issue = _issue(report, "inclusion", "participants.csv", "age")
    assert issue.level == "warning" and "age ≥ 60" in issue.message and report.ok


def test_validate_cli_exit_codes(clean, tmp_path, capsys):
    cmds = {"validate": "TrialAnalysisLib.validate_cli:add_cli"}
    assert run_cli("trial-analysis", "", cmds, ["validate", "--data", str(clean)]) == 0
    assert "0 error(s)" in capsys.readouterr().out

    def edit(df):
        df.loc[0, "odi"] = "101"
        return df

    bad = _corrupt(clean, tmp_path, "visits.csv", edit)
    out_csv = tmp_path / "issues.csv"
    assert run_cli("trial-analysis", "", cmds, ["validate", "--data", str(bad), "--out", str(out_csv)]) == 1
    assert "visits.csv line 2 (participant P0001, visit baseline)" in capsys.readouterr().out
    assert pd.read_csv(out_csv)["check"].tolist() == ["range"]
    assert run_cli("trial-analysis", "", cmds, ["validate", "--data", str(tmp_path / "nope")]) == 2


def test_export_mapping(clean, tmp_path):
    d = tmp_path / "export"
    shutil.copytree(clean, d)
    p = pd.read_csv(d / "participants.csv", dtype=str, keep_default_na=False)
    p = p.rename(columns={"participant_id": "pid"}).assign(sex=p["sex"].map({"M": "1", "F": "2"}))
    (d / "participants.csv").unlink()
    p.to_csv(d / "baseline_export.csv", index=False)
    mapping = {"participants": {"file": "baseline_export.csv", "rename": {"pid": "participant_id"},
                                "recode": {"sex": {"1": "M", "2": "F"}}}}  # fmt: skip
    data = load_trial(d, mapping)
    ref = load_trial(clean)
    pd.testing.assert_frame_equal(data.participants, ref.participants)
    (d / "map.yaml").write_text(yaml.safe_dump(mapping))
    assert validate_trial(d, d / "map.yaml").ok
    with pytest.raises(FileNotFoundError, match=r"participants\.csv"):
        load_trial(d)
    with pytest.raises(KeyError, match="unknown table 'patients'"):
        load_trial(d, {"patients": {}})
    with pytest.raises(KeyError, match=r"baseline_export\.csv: mapping renames column\(s\) \['id'\]"):
        load_trial(d, {"participants": {"file": "baseline_export.csv", "rename": {"id": "participant_id"}}})
