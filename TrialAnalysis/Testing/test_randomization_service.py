"""The randomisation service over real HTTP (uvicorn on loopback, SQLite): roles, refusals and their audit
entries, list upload with checksum, eligibility, slots in list order, blinding, unblinding, exports."""

from __future__ import annotations

import io
import json
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from randomization_support import ELIGIBLE, PASSWORD, Client, Server, running_server, setup_trial, write_list

from TrialAnalysisLib.randomization_server.service import check_code


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, Path]]:
    """A server on a fresh SQLite database: sites C1–C5, one investigator per site, list of 8 per stratum."""
    tmp = tmp_path_factory.mktemp("rand")
    db = str(tmp / "trial.db")
    list_path = write_list(tmp, per_stratum=8)
    with running_server(db, ("--outbox", str(tmp / "outbox"))) as server:
        setup_trial(db, server.url, list_path)
        yield server, Path(db), list_path


def audit_rows(db: Path, **where: str) -> list[dict]:
    """Audit entries matching column values (read directly from the SQLite file)."""
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    q = "SELECT * FROM audit_log" + (" WHERE " + " AND ".join(f"{k} = ?" for k in where) if where else "")
    rows = [dict(r) for r in con.execute(q + " ORDER BY seq", tuple(where.values()))]
    con.close()
    return rows


def body(sid: str, centre: str = "C1", sex: str = "F", **changes: object) -> dict:
    """A randomisation request of an eligible participant, with ``changes``."""
    return {"screening_id": sid, "centre": centre, "sex": sex, **ELIGIBLE, **changes}


def list_table(list_path: Path) -> pd.DataFrame:
    return pd.read_csv(list_path, dtype={"stratum": str, "block_id": str, "arm": str})


def test_randomise_in_list_order_and_roles_see_what_they_may(trial: tuple) -> None:
    server, db, list_path = trial
    table = list_table(list_path).set_index(["stratum", "sequence_in_stratum"])
    inv = Client(server.url, "inv-C2-0")
    got = [inv.post("/api/randomize", body(f"S2{i:04d}", "C2", "M")) for i in range(3)]
    assert [r.status_code for r in got] == [201, 201, 201]
    for k, r in enumerate(got, start=1):
        j = r.json()
        assert (j["stratum"], j["sequence_in_stratum"]) == ("C2-M", k)  # next free slot, in list order
        assert (
            j["arm"] == table.loc[("C2-M", k), "arm"] and j["block_id"] == table.loc[("C2-M", k), "block_id"]
        )
        assert j["participant_id"].startswith("P") and len(j["participant_id"]) == 5
    pid = got[0].json()["participant_id"]
    # the investigator sees the arm (delivers the intervention); the monitor sees only a letter code
    assert inv.get(f"/api/participants/{pid}").json()["arm"] == got[0].json()["arm"]
    mon = Client(server.url, "monitor")
    view = mon.get(f"/api/participants/{pid}").json()
    assert view["arm"] is None and view["arm_code"] in ("A", "B")
    stat = Client(server.url, "stat")
    codes = stat.get("/api/dashboard").json()["list"]["arm_codes"]
    assert codes[got[0].json()["arm"]] == view["arm_code"] and sorted(codes.values()) == ["A", "B"]
    board = mon.get("/api/dashboard").json()
    assert "arm_codes" not in board["list"] and set(board["arms"]) <= {"A", "B"}
    assert next(s for s in board["strata"] if s["stratum"] == "C2-M")["used"] == 3
    # the audit log records the arm by its code only (so exporting it to blinded staff reveals nothing)
    entry = audit_rows(db, action="randomize", target=pid, outcome="ok")[0]
    assert (
        json.loads(entry["after"])["arm_code"] == view["arm_code"]
        and got[0].json()["arm"] not in entry["after"]
    )


def test_ineligible_blocked_with_every_reason_and_logged(trial: tuple) -> None:
    server, db, _ = trial
    inv = Client(server.url, "inv-C1-0")
    cases = {
        "age_lt_60": {"age": 59}, "lbp_duration_le_3_months": {"lbp_duration_months": 3},
        "odi_out_of_range": {"odi": 61}, "goutallier_lt_2": {"goutallier_grade": 1},
        "nsaid_contraindication": {"nsaid_contraindication": True}, "prior_spine_surgery": {"prior_spine_surgery": True},
        "specific_pathology": {"specific_pathology": True}, "declined_consent": {"consent": False},
    }  # fmt: skip
    for k, (code, change) in enumerate(cases.items()):
        r = inv.post("/api/randomize", body(f"S1{k:04d}", **change))
        assert r.status_code == 422 and r.json()["code"] == "ineligible"
        assert [f["code"] for f in r.json()["failed"]] == [code]
        logged = audit_rows(db, action="randomize", target=f"S1{k:04d}")
        assert [e["outcome"] for e in logged] == ["refused"] and json.loads(logged[0]["after"])["failed"] == [
            code
        ]
    r = inv.post(
        "/api/randomize", body("S19999", age=59, odi=19, consent=False)
    )  # all failures, protocol order
    assert [f["code"] for f in r.json()["failed"]] == ["age_lt_60", "odi_out_of_range", "declined_consent"]
    assert inv.post("/api/randomize", body("S19998", odi=20)).status_code == 201  # boundaries are inclusive
    assert inv.post("/api/randomize", body("S19997", odi=60, age=60)).status_code == 201


def test_role_bypass_attempts_are_refused_and_logged(trial: tuple) -> None:
    server, db, _ = trial
    inv1, inv3 = Client(server.url, "inv-C1-0"), Client(server.url, "inv-C3-0")
    pid = inv3.post("/api/randomize", body("S30001", "C3")).json()["participant_id"]
    n0 = len(audit_rows(db, outcome="refused"))
    checks = [
        (inv1.get(f"/api/participants/{pid}"), 403, "wrong_site"),  # IDOR on another site's participant
        (inv1.post("/api/randomize", body("S30002", "C3")), 403, "wrong_site"),  # randomise for another site
        (Client(server.url).post("/api/randomize", body("S30003")), 401, "no_session"),  # no session at all
        (Client(server.url).get("/api/participants"), 401, "no_session"),
        (inv1.post("/api/randomize", body("S30004"), csrf=inv3.csrf), 403, "csrf"),  # another session's token
        (inv1.post("/api/randomize", body("S30005"), csrf=""), 403, "csrf"),
        (Client(server.url, "monitor").post("/api/randomize", body("S30006")), 403, "forbidden_role"),
        (inv1.post("/api/list", {"csv": "x", "sha256": "0" * 64}), 403, "forbidden_role"),
        (inv1.get("/api/export/allocation"), 403, "forbidden_role"),
        (Client(server.url, "stat").post("/api/participants/P0001/unblind", {"reason": "curious statistician"}), 403,
         "forbidden_role"),
    ]  # fmt: skip
    for r, status, code in checks:
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
    refused = audit_rows(db, outcome="refused")[n0:]
    assert len(refused) == len(checks)  # every refusal is in the audit log, with who and from where
    assert {e["actor"] for e in refused} >= {"inv-C1-0", "anonymous", "monitor", "stat"}
    assert all(e["ip"] == "127.0.0.1" for e in refused)
    # a token replayed after logout (and the dead session's cookie) is refused
    old_cookie, old_csrf = inv1.http.cookies.get("rsid"), inv1.csrf
    assert inv1.post("/api/logout").status_code == 200
    replay = Client(server.url)
    replay.http.cookies.set("rsid", old_cookie)
    assert replay.post("/api/randomize", body("S30007"), csrf=old_csrf).status_code == 401
    fresh = Client(server.url, "inv-C1-0")
    r = fresh.post("/api/randomize", body("S30008"), csrf=old_csrf)
    assert (r.status_code, r.json()["code"]) == (403, "csrf")


def test_login_is_rate_limited_and_failures_logged(trial: tuple) -> None:
    server, db, _ = trial
    admin = Client(server.url, "admin")
    assert (
        admin.post("/api/users", {"username": "dsmb2", "password": PASSWORD, "role": "monitor"}).status_code
        == 201
    )
    c = Client(server.url)
    codes = [c.login("dsmb2", "wrong password!!").status_code for _ in range(5)]
    assert codes == [401] * 5
    assert c.login("dsmb2", PASSWORD).status_code == 429  # locked even with the right password
    assert len(audit_rows(db, action="login", target="dsmb2", outcome="refused")) == 6
    assert Client(server.url).login("stat").status_code == 200  # other accounts are unaffected


def test_list_upload_checks_checksum_form_and_use(trial: tuple, tmp_path: Path) -> None:
    server, _, list_path = trial
    stat = Client(server.url, "stat")
    text, sha = list_path.read_text(), list_path.with_suffix(".sha256").read_text()
    tampered = text.replace("exercise", "control", 1)
    r = stat.post("/api/list", {"csv": tampered, "sha256": sha})
    assert (r.status_code, r.json()["code"]) == (422, "checksum_mismatch")
    other = write_list(tmp_path, per_stratum=4, seed=9)
    r = stat.post("/api/list", {"csv": other.read_text(), "sha256": other.with_suffix(".sha256").read_text()})
    assert (r.status_code, r.json()["code"]) == (409, "list_in_use")  # participants are already randomised
    assert stat.get("/api/dashboard").json()["list"]["sha256"] == sha.split()[0]


def test_exhausted_stratum_and_duplicate_screening_refused(trial: tuple) -> None:
    server, _, list_path = trial
    n = int((list_table(list_path)["stratum"] == "C5-F").sum())
    inv = Client(server.url, "inv-C5-0")
    assert [inv.post("/api/randomize", body(f"S5{i:04d}", "C5")).status_code for i in range(n)] == [201] * n
    r = inv.post("/api/randomize", body("S59999", "C5"))
    assert (r.status_code, r.json()["code"]) == (409, "list_exhausted")
    assert (
        inv.post("/api/randomize", body("S59999", "C5", "M")).status_code == 201
    )  # other stratum still open
    r = inv.post("/api/randomize", body("S50000", "C5"))
    assert (r.status_code, r.json()["code"]) == (409, "already_randomized") and r.json()["participant_id"]


def test_emergency_unblinding_logged_notified_and_offline_code(trial: tuple, tmp_path: Path) -> None:
    server, db, _ = trial
    inv = Client(server.url, "inv-C4-0")
    rnd = inv.post("/api/randomize", body("S40001", "C4")).json()
    mon = Client(server.url, "monitor")
    r = mon.post(f"/api/participants/{rnd['participant_id']}/unblind", {"reason": "short"})
    assert r.status_code == 422  # a reason is required
    r = mon.post(
        f"/api/participants/{rnd['participant_id']}/unblind",
        {"reason": "SAE: GI bleeding, treating team asks"},
    )
    assert (
        r.status_code == 200
        and r.json()["arm"] == rnd["arm"]
        and set(r.json()["notified"]) == {"admin", "stat"}
    )
    assert mon.get(f"/api/participants/{rnd['participant_id']}").json()["arm"] == rnd["arm"]
    outbox = [json.loads(x) for x in (db.parent / "outbox" / "notifications.jsonl").read_text().splitlines()]
    assert outbox[-1]["subject"] == f"emergency unblinding of {rnd['participant_id']} by monitor"
    notes = Client(server.url, "stat").get("/api/notifications").json()
    assert notes[0]["kind"] == "emergency_unblinding"
    # offline list: the statistician prints it; the check code of an opened envelope is recorded later
    stat = Client(server.url, "stat")
    page = stat.get("/api/emergency-list")
    assert (
        page.status_code == 200
        and rnd["participant_id"] in page.text
        and "sandbox" in page.headers["content-security-policy"]
    )
    salt = sqlite3.connect(db).execute("SELECT code_salt FROM allocation_lists").fetchone()[0]
    code = check_code(salt, rnd["participant_id"], rnd["arm"])
    assert code in page.text
    wrong = check_code(salt, rnd["participant_id"], "other")
    bad = mon.post(f"/api/participants/{rnd['participant_id']}/offline-unblinding",
                   {"reason": "server down during SAE", "check_code": wrong})  # fmt: skip
    assert (bad.status_code, bad.json()["code"]) == (422, "bad_code")
    ok = mon.post(f"/api/participants/{rnd['participant_id']}/offline-unblinding",
                  {"reason": "server down during SAE", "check_code": code})  # fmt: skip
    assert ok.status_code == 200 and ok.json()["kind"] == "offline"
    assert len(audit_rows(db, action="unblind", outcome="ok")) == 1


def test_exports_coded_and_unblinded(trial: tuple) -> None:
    server, _, list_path = trial
    stat, mon = Client(server.url, "stat"), Client(server.url, "monitor")
    z = zipfile.ZipFile(io.BytesIO(stat.get("/api/export/allocation").content))
    assert z.read("allocation.csv") == list_path.read_bytes()  # byte for byte: same checksum as uploaded
    assert z.read("allocation.sha256").decode() == list_path.with_suffix(".sha256").read_text()
    rand = pd.read_csv(io.BytesIO(z.read("randomized.csv")))
    coded = zipfile.ZipFile(io.BytesIO(mon.get("/api/export/allocation").content))
    crand = pd.read_csv(io.BytesIO(coded.read("randomized.csv")))
    assert set(crand["arm"]) <= {"A", "B"} and json.loads(coded.read("export.json"))["mode"] == "coded"
    calloc = pd.read_csv(io.BytesIO(coded.read("allocation.csv")))
    assert len(calloc) == len(rand)  # coded: only used slots (future allocations stay concealed)
    assert (crand["participant_id"] == rand["participant_id"]).all()
    # the code is a consistent relabelling of the arms
    assert rand.groupby("arm")["participant_id"].count().sort_values().tolist() == sorted(
        crand.groupby("arm")["participant_id"].count().tolist()
    )
    assert crand.groupby(rand["arm"])["arm"].nunique().max() == 1
    # each export declares its arm coding, tied to its allocation.csv by the checksum
    for zf, state, codes in ((z, "unblinded", ""), (coded, "coded", "A|B")):
        decl = pd.read_csv(io.BytesIO(zf.read("arm_coding.csv")), dtype=str, keep_default_na=False)
        digest = zf.read("allocation.sha256").decode().split()[0]
        assert decl.to_dict("records") == [{"state": state, "codes": codes, "allocation_sha256": digest}]


def test_html_pages_in_both_languages(trial: tuple) -> None:
    server, _, _ = trial
    c = Client(server.url)
    assert c.get("/login?lang=zh").text.count("登录") >= 2
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = c.get("/randomize?lang=en")
    assert r.status_code == 401 and "Please log in." in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
