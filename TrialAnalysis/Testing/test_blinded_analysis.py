"""Blinded analysis of the randomisation service's coded export (issue 17, Export).

A simulated trial is randomised through the service (its own functions, as an investigator), exported
coded (monitor) and unblinded (statistician), and merged into the clinical data with
``merge-allocation``. ``validate`` accepts the coded dataset; ``analyze`` on it gives the unblinded
numbers with the arms relabelled (Arm A − Arm B; sign flipped when A is control, two-sided p), and its
arm-labelled places (tables, headings, headline, figures, PDF text, results.json, CONSORT, Table 1,
data hash) never name an arm. Both code assignments are tested: the service draws the letters at
random at upload, so the list is uploaded until the wanted one comes up.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from randomization_support import ELIGIBLE

from TrialAnalysisLib.allocation_merge import merge_allocation
from TrialAnalysisLib.cli import main
from TrialAnalysisLib.randomization_server import accounts, db, exports, lists, service
from TrialAnalysisLib.randomization_server.audit import Actor
from TrialAnalysisLib.report import data_hash, pdf_text_pages, report_figures, run_analyses
from TrialAnalysisLib.schema import load_trial
from TrialAnalysisLib.schema_validation import validate_trial
from TrialAnalysisLib.simulate import simulate_trial

ADMIN = Actor("admin", "admin", None, "10.0.0.1")
STAT = Actor("stat", "statistician", None, "10.0.0.2")
MONITOR = Actor("dsmb", "monitor", None, "10.0.0.3")
ARM_NAMES = re.compile(r"exercise|control", re.IGNORECASE)
N, IMPUTATIONS = 150, 3


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


@pytest.fixture(scope="module")
def analyses(datasets: dict) -> dict:
    return {
        m: run_analyses(load_trial(datasets[m]), imputations=IMPUTATIONS, seed=4)
        for m in ("coded", "unblinded")
    }


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


def test_blinded_analysis_equals_the_unblinded_one_relabelled(datasets: dict, analyses: dict) -> None:
    """Same numbers, arms relabelled: Arm A − Arm B is exercise − control, or its negative when A is control."""
    c, u = analyses["coded"], analyses["unblinded"]
    name = {"Arm A": datasets["arm_a"], "Arm B": "control" if datasets["arm_a"] == "exercise" else "exercise"}
    sign = 1.0 if datasets["arm_a"] == "exercise" else -1.0
    for key in ("primary_mi", "primary_cc", "primary_pp"):
        dc, du = c[key].tables["difference"].iloc[0], u[key].tables["difference"].iloc[0]
        assert dc["term"] == "Arm A - Arm B" and du["term"] == "exercise - control"
        assert dc["estimate"] == pytest.approx(sign * du["estimate"], rel=1e-9)
        assert (dc["se"], dc["df"]) == pytest.approx((du["se"], du["df"]), rel=1e-9)
        assert sorted([dc["ci_low"], dc["ci_high"]]) == pytest.approx(
            sorted([sign * du["ci_low"], sign * du["ci_high"]])
        )
        # coded: two-sided; unblinded: the protocol's one-sided test of exercise < control
        assert (dc["alternative"], du["alternative"]) == ("two-sided", "less")
        assert dc["p"] == pytest.approx(2 * min(du["p"], 1 - du["p"]), rel=1e-9)
        lc = c[key].tables["lsmeans"].set_index("arm")["estimate"]
        lu = u[key].tables["lsmeans"].set_index("arm")["estimate"]
        assert [lc["Arm A"], lc["Arm B"]] == pytest.approx([lu[name["Arm A"]], lu[name["Arm B"]]], rel=1e-9)
    resp_c = c["primary_mi"].tables["responder"].set_index("term")
    resp_u = u["primary_mi"].tables["responder"].set_index("term")
    assert resp_c.loc["log OR Arm A vs Arm B", "estimate"] == pytest.approx(
        sign * resp_u.loc["log OR exercise vs control", "estimate"], rel=1e-6
    )
    assert resp_c.loc["responders Arm A", "estimate"] == pytest.approx(
        resp_u.loc[f"responders {name['Arm A']}", "estimate"]
    )
    for score in ("odi", "vas", "joa"):
        mc, mu = c["mixed"][score].tables["contrasts"], u["mixed"][score].tables["contrasts"]
        assert mc["term"].str.startswith("Arm A - Arm B at").all()
        np.testing.assert_allclose(mc["estimate"], sign * mu["estimate"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(mc[["se", "df", "p"]], mu[["se", "df", "p"]], rtol=1e-5)
    hc, hu = c["cox"].table.iloc[0], u["cox"].table.iloc[0]
    assert (hc["term"], hu["term"]) == ("arm[T.Arm A]", "arm[T.exercise]")
    assert hc["hr"] == pytest.approx(hu["hr"] ** sign, rel=1e-6) and hc["p"] == pytest.approx(
        hu["p"], rel=1e-6
    )
    assert c["logrank"].info["chisq"] == pytest.approx(u["logrank"].info["chisq"], rel=1e-9)
    sc, su = c["subgroups"], u["subgroups"]
    np.testing.assert_allclose(sc["estimate"], sign * su["estimate"], rtol=1e-9)
    np.testing.assert_allclose(sc["p_interaction"], su["p_interaction"], rtol=1e-9)
    assert c["nass_tests"]["mann_whitney_p"] == pytest.approx(u["nass_tests"]["mann_whitney_p"])
    assert c["nass_tests"]["satisfied_Arm A"] == pytest.approx(u["nass_tests"][f"satisfied_{name['Arm A']}"])
    t1c, t1u = c["table1"].set_index("characteristic"), u["table1"].set_index("characteristic")
    for label in ("Arm A", "Arm B"):
        assert t1c[label].tolist() == t1u[name[label]].tolist()
        assert (
            c["ae"]["by_term"][f"{label} events"].tolist()
            == u["ae"]["by_term"][f"{name[label]} events"].tolist()
        )
    boxes_c, boxes_u = c["consort"]["arms"], u["consort"]["arms"]
    assert list(boxes_c) == ["Arm A", "Arm B"]
    for label in ("Arm A", "Arm B"):
        for k in ("allocated", "withdrew", "primary_observed", "primary_missing", "analysed_itt"):
            assert boxes_c[label][k] == boxes_u[name[label]][k]
        assert "analysed_pp" not in boxes_c[label]  # the per-protocol rule differs by arm: pooled only
    assert c["consort"]["per_protocol_pooled"]["analysed_pp"] == sum(
        b["analysed_pp"] for b in boxes_u.values()
    )


def _html_arm_places(html: str) -> list[str]:
    """Text of the report's arm-labelled places: tables, headings, the headline and the metadata line."""
    blocks = re.findall(
        r"<table.*?</table>|<h[1-3]>.*?</h[1-3]>|<p class=\"(?:headline|meta|blinded)\".*?</p>", html, re.S
    )
    return [re.sub(r"<[^>]+>", " ", b) for b in blocks]


def test_blinded_report_names_no_arm(datasets: dict, analyses: dict, tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = [
        "analyze",
        "--data",
        str(datasets["coded"]),
        "--out",
        str(out),
        "--imputations",
        str(IMPUTATIONS),
        "--seed",
        "4",
    ]
    assert main(argv) == 0
    html = (out / "report.html").read_text()
    places = _html_arm_places(html)
    assert len(places) > 40 and not [p for p in places if ARM_NAMES.search(p)]
    tables = " ".join(re.findall(r"<table.*?</table>", html, re.S))
    for label in ("Arm A", "Arm B", "LS-mean Arm A", "Arm A - Arm B at m12", "Arm A events", "arm[T.Arm A]"):
        assert label in tables, label
    assert 'id="blinded"' in html and "(BLINDED)" in html and "two-sided" in html
    headline = re.search(r'<p class="headline">(.*?)</p>', html, re.S).group(1)
    assert headline.startswith("BLINDED") and "(Arm A − Arm B)" in headline and "two-sided p" in headline
    # the data hash is the coded dataset's own: nothing of the unblinded data or list goes into the report
    assert data_hash(datasets["coded"]) in html and data_hash(datasets["unblinded"]) not in html
    assert "Simulated dataset: planted effect" not in html
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["arm_coding"] == {"state": "coded", "arms": ["A", "B"]}
    assert not ARM_NAMES.search(json.dumps(results))
    assert results["primary"]["primary_mi"]["tables"]["difference"][0]["estimate"] == pytest.approx(
        analyses["coded"]["primary_mi"].tables["difference"].iloc[0]["estimate"], rel=1e-9
    )
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"


def test_blinded_figures_and_pdf_text_name_no_arm(analyses: dict, tmp_path: Path) -> None:
    """The report's figures drawn as SVG with text kept as text, and the PDF's text pages."""
    res = analyses["coded"]
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figs = report_figures(res, tmp_path, fmt="svg")
    texts = {
        name: " ".join(re.findall(r"<text[^>]*>(.*?)</text>", p.read_text(), re.S))
        for name, p in figs.items()
    }
    for name in ("consort", "forest", "trajectories", "km"):
        assert "Arm A" in texts[name] and "Arm B" in texts[name], name
    assert "Allocated to Arm A" in texts["consort"] and "Arm A − Arm B" in texts["forest"]
    assert not {n: t for n, t in texts.items() if ARM_NAMES.search(t)}
    meta = {"data_hash": "0" * 64, "seed": 4, "imputations": IMPUTATIONS, "versions": {}}
    pages = pdf_text_pages(res, meta, "headline")
    assert pages[0][0] == "METNLBP trial report (BLINDED: arms coded)"
    assert all("Arm A" in text for _, text in pages) and not [t for _, t in pages if ARM_NAMES.search(t)]
    # the unblinded report names the arms in the same places (the check above can fail)
    res_u = analyses["unblinded"]
    assert all(ARM_NAMES.search(text) for _, text in pdf_text_pages(res_u, meta, "headline"))


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

    def merge_cli(out: Path) -> int:
        export = str(datasets["work"] / "coded.zip")
        return main(["merge-allocation", "--data", str(trial), "--export", export, "--out", str(out)])

    assert merge_cli(trial) == 2
    assert "must go to another folder than --data" in capsys.readouterr().err
    # the command line gives the same dataset as the function
    assert merge_cli(tmp_path / "cli") == 0
    assert "coded allocation merged for 150 participants" in capsys.readouterr().out
    for f in sorted(p.name for p in datasets["coded"].iterdir()):
        assert (tmp_path / "cli" / f).read_bytes() == (datasets["coded"] / f).read_bytes(), f
