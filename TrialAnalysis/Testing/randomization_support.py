"""Helpers of the randomisation-service tests: a real server on loopback, a throwaway PostgreSQL cluster,
an HTTP client that carries the session's CSRF token, and a trial set-up (sites, users, list).

PostgreSQL comes from Debian's ``postgresql`` package (``make postgres`` installs it when root):
``initdb`` + ``pg_ctl`` on a temporary directory and a free port, run as the ``postgres`` user when
the tests run as root (the server refuses to run as root). Where it cannot start the tests skip with
the reason; in CI (``CI=true``) they fail.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from TrialAnalysisLib.randomization import block_randomization
from TrialAnalysisLib.randomization_server.accounts import bootstrap_admin
from TrialAnalysisLib.randomization_server.db import migrate

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SERVER_CMD = [sys.executable, "-m", "TrialAnalysisLib", "randomization-server"]
CENTRES = ("C1", "C2", "C3", "C4", "C5")
PASSWORD = "correct horse battery"
ELIGIBLE = {"age": 68, "lbp_duration_months": 14, "odi": 38, "goutallier_grade": 2,
            "nsaid_contraindication": False, "prior_spine_surgery": False, "specific_pathology": False,
            "consent": True}  # fmt: skip


def skip_or_fail(message: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running randomisation server: base URL, log file, process."""

    url: str
    log_path: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no flush) and reap it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def start_server(db: str, extra_args: tuple[str, ...] = (), timeout: float = 90.0) -> Server:
    """Start ``trial-analysis randomization-server`` on a free port; wait for /healthz."""
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="rand-serve-")) / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*SERVER_CMD, "--db", db, "--port", str(port), *extra_args], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", log_path, proc)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(server.url + "/healthz", timeout=2.0).status_code == 200:
                return server
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not come up within {timeout} s:\n{server.log_text()}")
        time.sleep(0.2)


@contextlib.contextmanager
def running_server(db: str, extra_args: tuple[str, ...] = ()) -> Iterator[Server]:
    """A server for the duration of the block."""
    server = start_server(db, extra_args)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.terminate()
            try:
                server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


class Client:
    """httpx client of one user: logs in, then sends the session's CSRF token with every POST."""

    def __init__(self, base: str, username: str | None = None, password: str = PASSWORD) -> None:
        self.http = httpx.Client(base_url=base, timeout=60.0)
        self.csrf = ""
        if username:
            r = self.login(username, password)
            assert r.status_code == 200, r.text

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        """POST /api/login; keeps the cookie and the CSRF token."""
        r = self.http.post("/api/login", json={"username": username, "password": password})
        if r.status_code == 200:
            self.csrf = r.json()["csrf_token"]
        return r

    def get(self, path: str, **kw: object) -> httpx.Response:
        """GET with the session cookie."""
        return self.http.get(path, **kw)

    def post(self, path: str, body: object = None, csrf: str | None = None) -> httpx.Response:
        """POST JSON with the session's (or the given) CSRF token."""
        return self.http.post(path, json=body, headers={"x-csrf-token": self.csrf if csrf is None else csrf})

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


@dataclass
class TrialSetup:
    """Users and list of a set-up trial: usernames by role, the list table and its file."""

    investigators: dict[str, list[str]] = field(default_factory=dict)  # site -> usernames
    list_path: Path | None = None
    table: object = None


def write_list(
    directory: Path, per_stratum: int, seed: int = 2026, centres: tuple[str, ...] = CENTRES
) -> Path:
    """A list made by the project's generator (``randomize``'s code), with its .sha256 beside it."""
    result = block_randomization(per_stratum, strata={"centre": centres, "sex": ("F", "M")}, seed=seed)
    return result.to_csv(directory / "allocation.csv")


def setup_trial(db: str, base: str, list_path: Path | None, per_site: int = 1,
                centres: tuple[str, ...] = CENTRES) -> TrialSetup:  # fmt: skip
    """Migrate, bootstrap 'admin', create sites, 'stat', 'monitor', investigators inv-<site>-<k>; upload."""
    migrate(db)
    bootstrap_admin(db, "admin", PASSWORD)
    admin = Client(base, "admin")
    out = TrialSetup()
    for c in centres:
        assert admin.post("/api/sites", {"code": c, "name": f"Hospital {c}"}).status_code == 201
        out.investigators[c] = []
        for k in range(per_site):
            name = f"inv-{c}-{k}"
            r = admin.post(
                "/api/users", {"username": name, "password": PASSWORD, "role": "investigator", "site": c}
            )
            assert r.status_code == 201, r.text
            out.investigators[c].append(name)
    for name, role in (("stat", "statistician"), ("monitor", "monitor")):
        assert (
            admin.post("/api/users", {"username": name, "password": PASSWORD, "role": role}).status_code
            == 201
        )
    admin.close()
    if list_path is not None:
        stat = Client(base, "stat")
        r = stat.post(
            "/api/list",
            {"csv": list_path.read_text(), "sha256": list_path.with_suffix(".sha256").read_text()},
        )
        assert r.status_code == 201, r.text
        stat.close()
        out.list_path = list_path
    return out


def cohort(n: int, seed: int, centres: tuple[str, ...] = CENTRES) -> list[dict]:
    """``n`` eligible screened participants with a centre and a sex (58 % women), S00001…"""
    rng = np.random.default_rng(seed)
    return [{"screening_id": f"S{i + 1:05d}", "centre": str(rng.choice(centres)),
             "sex": "F" if rng.random() < 0.58 else "M", **ELIGIBLE} for i in range(n)]  # fmt: skip


# --- PostgreSQL ---------------------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    return Path(dirs[-1]) if dirs and (Path(dirs[-1]) / "initdb").exists() else None


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1:port (trust authentication, user postgres)."""

    bindir: Path
    datadir: Path
    port: int
    run_as: list[str]

    def url(self, dbname: str) -> str:
        """URL of a database of this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create a fresh database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and delete its files."""
        subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def start_postgres() -> PostgresCluster:
    """initdb + pg_ctl start on a temporary directory and free port (skip/fail with the reason)."""
    bindir = _pg_bindir()
    if bindir is None:
        skip_or_fail("PostgreSQL server missing: install Debian's `postgresql` package (make postgres)")
    root = Path(tempfile.mkdtemp(prefix="rand-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            skip_or_fail("running as root and there is no 'postgres' user to run PostgreSQL as")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        os.chmod(root, 0o700)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    steps = [
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
         "--no-instructions"],
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
         f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start"],
    ]  # fmt: skip
    for cmd in steps:
        proc = subprocess.run([*run_as, *cmd], capture_output=True, text=True, timeout=120, cwd=root)
        if proc.returncode != 0:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            skip_or_fail(f"PostgreSQL did not start ({Path(cmd[0]).name}): {proc.stderr[-800:]}{log[-800:]}")
    return PostgresCluster(bindir, data, port, run_as)
