"""Schemathesis fuzzing of the randomisation API against a real server (SQLite, list uploaded): zero
server errors, inside an investigator's session (cookie + CSRF header) so that bodies reach the handlers
(randomise: real allocations, eligibility refusals, other sites' participants), and — slow set — as
statistician and admin (list uploads, user and site creation) and without a session."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from randomization_support import Client, running_server, setup_trial, write_list

from TrialAnalysisLib.randomization_server.audit import verify_database


def schemathesis(url: str, headers: list[str], cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("schemathesis")
    cmd = [str(exe), "run", url + "/openapi.json", "--checks", "not_a_server_error", "--max-examples", "15",
           "--seed", "1", "--no-color", "--workers", "1", "--exclude-path", "/api/logout",
           "--exclude-path", "/api/password"]  # fmt: skip
    for h in headers:
        cmd += ["-H", h]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "SCHEMATHESIS_HOOKS": ""})  # fmt: skip


@pytest.mark.parametrize(
    "who",
    ["investigator", *(pytest.param(w, marks=pytest.mark.slow) for w in ("stat", "admin", "anonymous"))],
)
def test_api_fuzzing_finds_no_server_error(who: str, tmp_path: Path) -> None:
    db = str(tmp_path / "fuzz.db")
    with running_server(db) as server:
        setup_trial(db, server.url, write_list(tmp_path, per_stratum=8))
        headers: list[str] = []
        if who != "anonymous":
            inv = Client(server.url, "inv-C1-0" if who == "investigator" else who)
            headers = [f"Cookie: rsid={inv.http.cookies['rsid']}", f"X-CSRF-Token: {inv.csrf}"]
        proc = schemathesis(server.url, headers, tmp_path)
        log = server.log_text()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    m = re.search(r"(\d+) generated, (\d+) passed", proc.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) > 300, proc.stdout[-2000:]
    assert "Traceback" not in log and " 500 " not in log
    n_ops = int(proc.stdout.split("Selected: ")[1].split("/")[0])
    assert n_ops >= 20
    if who == "investigator":  # past authentication: the schema's example randomised, fuzzed bodies refused
        assert log.count("POST /api/randomize 201") >= 1 and log.count("POST /api/randomize 422") > 5
    elif who == "anonymous":
        assert log.count(" 401 ") > 20
    res = verify_database(db)  # thousands of fuzzed requests later, the audit chain is intact
    assert res.ok, res.summary()
