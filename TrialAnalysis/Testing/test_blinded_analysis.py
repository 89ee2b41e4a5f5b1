"""The randomisation service's coded export as a trial dataset (issue 17, Export).

A simulated trial is randomised through the service (its own functions, as an investigator), exported
coded (monitor) and unblinded (statistician), and merged into the clinical data with
``merge-allocation``. ``validate`` accepts the coded dataset and refuses mixed, unknown or undeclared
codes and declarations that do not fit. Both code assignments are tested: the service draws the letters
at random at upload, so the list is uploaded until the wanted one comes up.
"""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from randomization_support import ELIGIBLE

from TrialAnalysisLib.allocation_merge import merge_allocation
from TrialAnalysisLib.cli import main
from TrialAnalysisLib.randomization_server import accounts, db, exports, lists, service
from TrialAnalysisLib.randomization_server.audit import Actor
from TrialAnalysisLib.schema_validation import validate_trial
from TrialAnalysisLib.simulate import simulate_trial

ADMIN = Actor("admin", "admin", None, "10.0.0.1")
STAT = Actor("stat", "statistician", None, "10.0.0.2")
MONITOR = Actor("dsmb", "monitor", None, "10.0.0.3")
N = 150


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_trial(tmp_path_factory.mktemp("blinded") / "clinical", n=N, seed=17)


def randomise_and_export(trial: Path, work: Path, arm_coded_a: str) -> dict[str, bytes]:
    """The trial's participants randomised in their order through the service, whose random letter codes
    give ``arm_coded_a`` the code A; returns the coded (monitor) and unblinded (statistician) exports."""
    parts = pd.read_csv(trial / "participants.csv", dtype=str)
    screen = pd.read_csv(trial / "screening.csv", dtype=str, keep_default_na=False)
    sid = dict(zip(screen["participant_id"], screen["screening_id"], strict=True))
    db.migrate(str(work / "rand.db"))
    database = db.Database(str(work / "rand.db"))
    for c in sorted(parts["centre"].unique()):
        accounts.create_site(database, ADMIN, c, f"Hospital {c}")
    alloc = trial / "allocation.csv"
    for _ in range(64):  # the codes are drawn at random per upload; re-uploading is allowed before use
        lists.upload_list(
            database, STAT, alloc.read_bytes(), alloc.with_suffix(".sha256").read_text(), alloc.name
        )
        with database.read() as conn:
            if lists.active_list(conn)["arm_codes"][arm_coded_a] == "A":
                break
    for p in parts.itertuples():
        inv = Actor(f"inv-{p.centre}", "investigator", p.centre, "10.0.0.9")
        req = {**ELIGIBLE, "screening_id": sid[p.participant_id], "centre": p.centre, "sex": p.sex,
               "age": int(p.age), "odi": float(p.odi_baseline), "goutallier_grade": int(p.goutallier_grade)}  # fmt: skip
        assert service.randomize(database, inv, req)["participant_id"] == p.participant_id
    coded, manifest = exports.allocation_export(database, MONITOR)
    unblinded, _ = exports.allocation_export(database, STAT)
    database.dispose()
    assert manifest["mode"] == "coded"
    return {"coded": coded, "unblinded": unblinded}


@pytest.fixture(scope="module", params=["exercise", "control"], ids=["A=exercise", "A=control"])
def datasets(request: pytest.FixtureRequest, trial: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Coded and unblinded datasets merged from the service's exports; the arm that got code A."""
    work = tmp_path_factory.mktemp("service")  # no arm name in the paths: the report prints its data folder
    zips = randomise_and_export(trial, work, request.param)
    out = {"arm_a": request.param, "work": work}
    for mode, data in zips.items():
        (work / f"{mode}.zip").write_bytes(data)
        result = merge_allocation(trial, work / f"{mode}.zip", work / mode)
        assert result.mode == mode and result.n_participants == N
        out[mode] = work / mode
    return out


def test_coded_export_declares_its_codes_and_validates(datasets: dict) -> None:
    coded = zipfile.ZipFile(datasets["work"] / "coded.zip")
    coding = pd.read_csv(io.BytesIO(coded.read("arm_coding.csv")), dtype=str, keep_default_na=False)
    assert coding.to_dict("records") == [{"state": "coded", "codes": "A|B",
                                          "allocation_sha256": coded.read("allocation.sha256").decode().split()[0]}]  # fmt: skip
    p = pd.read_csv(datasets["coded"] / "participants.csv", dtype=str)
    assert set(p["arm"]) == {"A", "B"}
    assert (
        not (datasets["coded"] / "truth.json").exists()
        and not (datasets["coded"] / "allocation.json").exists()
    )
    report = validate_trial(datasets["coded"])
    assert report.ok, report.summary()
    # the one warning: exercise-diary compliance is recorded for one code only
    assert [(i.check, i.file, i.column) for i in report.warnings] == [
        ("blinding", "participants.csv", "compliance_pct")
    ]
    assert main(["validate", "--data", str(datasets["coded"])]) == 0
    unblinded = validate_trial(datasets["unblinded"])
    assert unblinded.ok and not unblinded.warnings, unblinded.summary()


def _edited(src: Path, dst: Path, file: str, row: int | None = None, **values: str) -> Path:
    """A copy of dataset ``src`` whose ``file`` has the columns of ``values`` set in ``row`` (0-based; all rows
    when None)."""
    shutil.copytree(src, dst)
    df = pd.read_csv(dst / file, dtype=str, keep_default_na=False)
    for column, value in values.items():
        df.loc[df.index if row is None else row, column] = value
    df.to_csv(dst / file, index=False, lineterminator="\n")
    return dst


def _errors(path: Path, check: str, file: str, column: str) -> list:
    report = validate_trial(path)
    hits = [i for i in report.errors if (i.check, i.file, i.column) == (check, file, column)]
    assert hits, report.summary()
    return hits


def test_mixed_unknown_and_missing_codes_are_refused(datasets: dict, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    coded = datasets["coded"]
    names = {"A": datasets["arm_a"], "B": "control" if datasets["arm_a"] == "exercise" else "exercise"}
    code = pd.read_csv(coded / "participants.csv", dtype=str)["arm"][2]
    mixed = _edited(coded, tmp_path / "mixed", "participants.csv", row=2, arm=names[code])  # one arm decoded
    hit = _errors(mixed, "blinding", "participants.csv", "arm")[0]
    assert hit.line == 4 and hit.participant_id == "P0003"
    assert hit.message.startswith("participants.csv line 4 (participant P0003), column 'arm': arm name")
    assert (
        "declared coded (arm_coding.csv: codes A, B): coded and unblinded arms cannot be mixed" in hit.message
    )
    assert main(["analyze", "--data", str(mixed), "--out", str(tmp_path / "rep"), "--no-pdf"]) == 2
    err = capsys.readouterr().err
    assert "participants.csv" in err and "participant P0003" in err and "cannot be mixed" in err
    unknown = _edited(coded, tmp_path / "unknown", "participants.csv", row=5, arm="C")
    hit = _errors(unknown, "code", "participants.csv", "arm")[0]
    assert (
        hit.message
        == "participants.csv line 7 (participant P0006), column 'arm': unknown code 'C' (allowed in this coded dataset: A, B)"
    )
    one_code = _edited(coded, tmp_path / "one", "participants.csv", arm="A")
    assert "only code(s) A used" in _errors(one_code, "blinding", "participants.csv", "arm")[-1].message


def test_coded_dataset_cannot_claim_to_be_unblinded(datasets: dict, tmp_path: Path) -> None:
    coded = datasets["coded"]
    claims = _edited(coded, tmp_path / "claims", "arm_coding.csv", state="unblinded", codes="")
    hits = _errors(claims, "blinding", "participants.csv", "arm")
    assert (
        "yet arm_coding.csv declares the dataset unblinded: coded arms cannot pass as unblinded"
        in hits[0].message
    )
    assert _errors(claims, "blinding", "allocation.csv", "arm")  # the coded list too
    undeclared = tmp_path / "undeclared"
    shutil.copytree(coded, undeclared)
    (undeclared / "arm_coding.csv").unlink()
    hit = _errors(undeclared, "code", "participants.csv", "arm")[0]
    assert re.search(r"unknown code '[AB]' \(allowed: exercise, control; a coded dataset declares its codes in "
                     r"arm_coding.csv", hit.message)  # fmt: skip
    # the unblinded dataset declared coded: its arm names are refused
    lying = _edited(datasets["unblinded"], tmp_path / "lying", "arm_coding.csv", state="coded", codes="A|B")
    assert "arm name" in _errors(lying, "blinding", "participants.csv", "arm")[0].message


@pytest.mark.parametrize(
    ("state", "codes", "message"),
    [
        ("coded", "A|A", "must be two distinct codes separated by '|'"),
        ("coded", "A|B|C", "must be two distinct codes separated by '|'"),
        ("coded", "exercise|B", "none of them an arm name"),
        ("coded", "", "must be two distinct codes"),
        ("unblinded", "A|B", "given for an unblinded dataset"),
        ("secret", "A|B", "column 'state': unknown code 'secret' (allowed: unblinded, coded)"),
    ],
)
def test_bad_arm_coding_declarations(
    datasets: dict, tmp_path: Path, state: str, codes: str, message: str
) -> None:
    bad = _edited(datasets["coded"], tmp_path / "bad", "arm_coding.csv", state=state, codes=codes)
    report = validate_trial(bad)
    hits = [i for i in report.errors if i.file == "arm_coding.csv"]
    assert hits and any(message in i.message and i.message.startswith("arm_coding.csv") for i in hits), (
        report.summary()
    )
    assert not report.has("blinding") and not report.has("code", "participants.csv")  # the cause only


def test_declaration_must_belong_to_the_allocation(datasets: dict, trial: Path, tmp_path: Path) -> None:
    other = _edited(datasets["coded"], tmp_path / "other", "arm_coding.csv", allocation_sha256="0" * 64)
    hit = _errors(other, "arm_coding", "arm_coding.csv", "allocation_sha256")[0]
    assert "000000000000… is not the SHA-256 of allocation.csv" in hit.message
    two_rows = tmp_path / "two"
    shutil.copytree(datasets["coded"], two_rows)
    text = (two_rows / "arm_coding.csv").read_text()
    (two_rows / "arm_coding.csv").write_text(text + text.splitlines()[1] + "\n")
    assert "expected exactly one row" in _errors(two_rows, "arm_coding", "arm_coding.csv", "")[0].message
    leaky = tmp_path / "leaky"  # the simulator's truth names the arms: a warning, not an error
    shutil.copytree(datasets["coded"], leaky)
    shutil.copy(trial / "truth.json", leaky / "truth.json")
    report = validate_trial(leaky)
    assert report.ok and report.has("blinding", "truth.json"), report.summary()


def test_merge_refuses_what_does_not_fit(datasets: dict, trial: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    z = zipfile.ZipFile(datasets["work"] / "coded.zip")
    old = tmp_path / "old.zip"  # an export without its arm coding
    with zipfile.ZipFile(old, "w") as zf:
        for n in z.namelist():
            if n != "arm_coding.csv":
                zf.writestr(n, z.read(n))
    with pytest.raises(KeyError, match=r"old.zip: the export lacks arm_coding.csv"):
        merge_allocation(trial, old, tmp_path / "m1")
    moved = _edited(trial, tmp_path / "moved", "participants.csv", row=0, centre="C9")
    with pytest.raises(
        ValueError,
        match=r"participants.csv line 2 \(participant P0001\), column 'centre': 'C9' but the randomisation recorded",
    ):
        merge_allocation(moved, datasets["work"] / "coded.zip", tmp_path / "m2")
    extra = _edited(trial, tmp_path / "extra", "participants.csv", row=1, participant_id="P9999")
    with pytest.raises(ValueError, match=r"participant\(s\) P9999 are not in the export's randomized.csv"):
        merge_allocation(extra, datasets["work"] / "coded.zip", tmp_path / "m3")
    assert (
        main(
            [
                "merge-allocation",
                "--data",
                str(trial),
                "--export",
                str(datasets["work"] / "coded.zip"),
                "--out",
                str(trial),
            ]
        )
        == 2
    )
    assert "must go to another folder than --data" in capsys.readouterr().err
    # the command line gives the same dataset as the function
    assert (
        main(
            [
                "merge-allocation",
                "--data",
                str(trial),
                "--export",
                str(datasets["work"] / "coded.zip"),
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    assert "coded allocation merged for 150 participants" in capsys.readouterr().out
    for f in sorted(p.name for p in datasets["coded"].iterdir()):
        assert (tmp_path / "cli" / f).read_bytes() == (datasets["coded"] / f).read_bytes(), f
