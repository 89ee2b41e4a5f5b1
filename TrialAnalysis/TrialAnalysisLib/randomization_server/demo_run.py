"""``python -m TrialAnalysisLib.randomization_server.demo_run --trial DIR --out DIR``: the demo's central
randomisation step.

Starts ``randomization-server`` on a free loopback port with a new SQLite database, creates the sites and
one account per role (random passwords, written to ``credentials.txt`` for inspecting the demo), uploads
the simulated trial's ``allocation.csv`` with its checksum, has the five site investigators randomise
their enrolled participants concurrently in the screening log's order (plus a few screen failures, which
are refused with their reason), then exports the allocation (unblinded and coded), exports and verifies
the audit log, and writes ``summary.html``. The service's arms must equal the simulated ones: same list,
same order within each stratum.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROLES = {"stat": "statistician", "monitor": "monitor"}
FAILURE_ANSWERS = {
    "age_lt_60": {"age": 57}, "odi_out_of_range": {"odi": 14}, "goutallier_lt_2": {"goutallier_grade": 1},
    "nsaid_contraindication": {"nsaid_contraindication": True}, "prior_spine_surgery": {"prior_spine_surgery": True},
    "specific_pathology": {"specific_pathology": True}, "declined_consent": {"consent": False},
}  # fmt: skip
BASE_ANSWERS = {"lbp_duration_months": 12, "nsaid_contraindication": False, "prior_spine_surgery": False,
                "specific_pathology": False, "consent": True}  # fmt: skip


class Session:
    """One logged-in user's HTTP client (CSRF token sent with every POST)."""

    def __init__(self, base: str, user: str, password: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=60)
        r = self.http.post("/api/login", json={"username": user, "password": password})
        r.raise_for_status()
        self.csrf = r.json()["csrf_token"]

    def post(self, path: str, body: dict) -> httpx.Response:
        """POST JSON with the CSRF header."""
        return self.http.post(path, json=body, headers={"x-csrf-token": self.csrf})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(db: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "TrialAnalysisLib",
        "randomization-server",
        "--db",
        str(db),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"randomization-server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("randomization-server did not start within 60 s")


def requests_of(trial: Path, n_failures: int = 14) -> pd.DataFrame:
    """One randomisation request per enrolled participant (screening order) plus ``n_failures`` screen failures."""
    p = pd.read_csv(trial / "participants.csv", dtype=str)
    s = pd.read_csv(trial / "screening.csv", dtype=str, keep_default_na=False)
    enrolled = s[s["enrolled"] == "True"].merge(p, on=["participant_id", "centre"])
    enrolled = enrolled.sort_values(["randomization_date", "participant_id"])
    rows = [{"screening_id": r.screening_id, "centre": r.centre, "sex": r.sex, "age": int(r.age),
             "odi": float(r.odi_baseline), "goutallier_grade": int(r.goutallier_grade), **BASE_ANSWERS,
             "expect_arm": r.arm, "expect_pid": r.participant_id} for r in enrolled.itertuples()]  # fmt: skip
    fails = s[s["exclusion_reason"].isin(list(FAILURE_ANSWERS))].head(n_failures)
    for r in fails.itertuples():
        rows.append({"screening_id": r.screening_id, "centre": r.centre, "sex": "F", "age": 70, "odi": 40.0,
                     "goutallier_grade": 3, **BASE_ANSWERS, **FAILURE_ANSWERS[r.exclusion_reason],
                     "expect_arm": None, "expect_pid": None})  # fmt: skip
    return pd.DataFrame(rows)


def randomise_all(url: str, reqs: pd.DataFrame, passwords: dict[str, str]) -> pd.DataFrame:
    """Each site's investigator randomises the site's requests in order, the five sites concurrently."""
    out: list[dict] = []
    lock = threading.Lock()

    def site(centre: str) -> None:
        client = Session(url, f"inv-{centre}", passwords[f"inv-{centre}"])
        for r in reqs[reqs["centre"] == centre].to_dict("records"):
            body = {k: v for k, v in r.items() if not k.startswith("expect_")}
            t0 = time.perf_counter()
            resp = client.post("/api/randomize", body)
            rec = {**r, "status": resp.status_code, "ms": 1000 * (time.perf_counter() - t0), **{
                "got_" + k: v for k, v in resp.json().items() if k in ("participant_id", "arm", "code")}}  # fmt: skip
            with lock:
                out.append(rec)

    with ThreadPoolExecutor(5) as pool:
        for f in [pool.submit(site, c) for c in sorted(reqs["centre"].unique())]:
            f.result()
    return pd.DataFrame(out)


def setup(url: str, db: Path, sites: list[str], trial: Path, out: Path) -> dict[str, str]:
    """Administrator (bootstrap command), sites, one user per role; the statistician uploads the list."""
    passwords = {u: secrets.token_urlsafe(12) for u in ["admin", *ROLES, *(f"inv-{c}" for c in sites)]}
    subprocess.run([sys.executable, "-m", "TrialAnalysisLib", "randomization-admin", "--db", str(db), "create-admin",
                    "admin", "--password-stdin"], input=passwords["admin"] + "\n", text=True, check=True,
                   capture_output=True)  # fmt: skip
    admin = Session(url, "admin", passwords["admin"])
    for c in sites:
        admin.post("/api/sites", {"code": c, "name": f"Centre {c}"}).raise_for_status()
        admin.post("/api/users", {"username": f"inv-{c}", "password": passwords[f"inv-{c}"], "role": "investigator",
                                  "site": c}).raise_for_status()  # fmt: skip
    for u, role in ROLES.items():
        admin.post("/api/users", {"username": u, "password": passwords[u], "role": role}).raise_for_status()
    stat = Session(url, "stat", passwords["stat"])
    alloc = trial / "allocation.csv"
    stat.post("/api/list", {"csv": alloc.read_text(), "sha256": alloc.with_suffix(".sha256").read_text(),
                            "filename": alloc.name}).raise_for_status()  # fmt: skip
    (out / "credentials.txt").write_text("".join(f"{u}\t{p}\n" for u, p in passwords.items()))
    return passwords


def exports(url: str, passwords: dict[str, str], db: Path, out: Path) -> str:
    """Unblinded and coded exports, audit export, and both verifications; returns the verification text."""
    stat, monitor = Session(url, "stat", passwords["stat"]), Session(url, "monitor", passwords["monitor"])
    z = stat.http.get("/api/export/allocation")
    z.raise_for_status()
    zipfile.ZipFile(io.BytesIO(z.content)).extractall(out / "export")
    (out / "allocation-coded.zip").write_bytes(monitor.http.get("/api/export/allocation").content)
    (out / "audit.jsonl").write_bytes(monitor.http.get("/api/audit/export").content)
    lines = []
    for args in (["--db", str(db)], ["--file", str(out / "audit.jsonl")]):
        proc = subprocess.run([sys.executable, "-m", "TrialAnalysisLib", "audit-verify", *args],
                              capture_output=True, text=True)  # fmt: skip
        lines.append(
            f"$ trial-analysis audit-verify {' '.join(args)}\n{proc.stdout.strip()}\n(exit {proc.returncode})"
        )
    text = "\n\n".join(lines) + "\n"
    (out / "audit_verify.txt").write_text(text)
    return text


def summary_page(res: pd.DataFrame, verify: str, out: Path, wall: float) -> dict:
    """summary.json + summary.html: counts, arm agreement with the simulation, refusals, latency."""
    ok = res[res["status"] == 201]
    refused = res[res["status"] != 201]
    same = int((ok["got_arm"] == ok["expect_arm"]).sum())
    info = {"randomised": len(ok), "arms_equal_to_simulation": same,
            "refused": refused["got_code"].value_counts().to_dict(),
            "refused_as_expected": int(refused["expect_arm"].isna().sum()),
            "p50_ms": float(np.percentile(ok["ms"], 50)), "p99_ms": float(np.percentile(ok["ms"], 99)),
            "seconds": wall, "audit_verified": "(exit 0)" in verify and "(exit 1)" not in verify}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(info, indent=2) + "\n")
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in info.items()
    )
    links = "".join(f'<li><a href="{h}">{t}</a></li>' for h, t in [
        ("export/randomized.csv", "randomized.csv (unblinded export, one row per participant)"),
        ("export/allocation.csv", "allocation.csv + allocation.sha256 (the uploaded list, trial schema)"),
        ("allocation-coded.zip", "coded export (arms A/B, used slots only) as a monitor receives it"),
        ("audit.jsonl", "audit log export"), ("audit_verify.txt", "audit verification"),
        ("credentials.txt", "demo accounts (random passwords)"), ("server.log", "server log")])  # fmt: skip
    (out / "summary.html").write_text(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Central randomisation</title></head><body>"
        f"<h1>Central randomisation of the simulated cohort</h1><p>Five site investigators randomised their "
        f"participants concurrently through the service (SQLite, loopback).</p><table>{rows}</table><ul>{links}</ul>"
        f"<pre>{html.escape(verify)}</pre></body></html>",
        encoding="utf-8",
    )
    return info


def run(trial: Path, out: Path) -> dict:
    """The whole step; raises RuntimeError when an allocation differs from the simulation."""
    out.mkdir(parents=True, exist_ok=True)
    db = out / "randomization.db"
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "TrialAnalysisLib", "randomization-admin", "--db", str(db), "migrate"],
                   check=True, capture_output=True)  # fmt: skip
    proc, url = _start(db, out / "server.log")
    try:
        reqs = requests_of(trial)
        passwords = setup(url, db, sorted(reqs["centre"].unique()), trial, out)
        t0 = time.perf_counter()
        res = randomise_all(url, reqs, passwords)
        wall = time.perf_counter() - t0
        verify = exports(url, passwords, db, out)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    res.drop(columns=[c for c in res.columns if c.startswith("expect_pid")]).to_csv(
        out / "requests.csv", index=False
    )
    info = summary_page(res, verify, out, wall)
    enrolled = int(res["expect_arm"].notna().sum())
    if (
        info["randomised"] != enrolled
        or info["arms_equal_to_simulation"] != enrolled
        or not info["audit_verified"]
    ):
        raise RuntimeError(f"central randomisation disagrees with the simulation: {info}")
    return info


def main(argv: list[str] | None = None) -> int:
    """Command-line entry of the demo step."""
    parser = argparse.ArgumentParser(prog="python -m TrialAnalysisLib.randomization_server.demo_run")
    parser.add_argument("--trial", type=Path, required=True, help="simulated trial directory")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    info = run(args.trial, args.out)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
