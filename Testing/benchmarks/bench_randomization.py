"""Latency of central randomisation under the issue's load: 20 concurrent investigators randomise 314
participants across 10 strata against the real server (uvicorn, one worker) on loopback.

Each request is a distinct participant (a fixed-body load generator such as hey would only hit the
duplicate refusal), so the clients are Python threads with one keep-alive httpx client each; they share
the 2 cores with the server, so the same clients also measure the baseline ``GET /healthz`` (no database)
with the same concurrency and count, and the ratio is reported. SQLite always; PostgreSQL when its
server binaries are installed (a throwaway cluster). Every allocation is checked afterwards.

    .venv/bin/python Testing/benchmarks/bench_randomization.py [--participants 314 --clients 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "TrialAnalysis" / "Testing"))

from randomization_support import (  # noqa: E402
    Client,
    cohort,
    running_server,
    setup_trial,
    start_postgres,
    write_list,
)

from TrialAnalysisLib.randomization_server.audit import verify_database  # noqa: E402


def timed_load(base: str, users: list[str], jobs: dict[str, list[dict | None]]) -> np.ndarray:
    """Run every user's job list concurrently (all logged in first); per-request latencies in seconds.
    A job is a randomisation body, or None for ``GET /healthz``."""
    latencies: list[float] = []
    ready = threading.Barrier(len(users))
    lock = threading.Lock()

    def worker(user: str) -> None:
        client = Client(base, user)
        ready.wait()
        mine = []
        for body in jobs[user]:
            t0 = time.perf_counter()
            r = client.post("/api/randomize", body) if body is not None else client.get("/healthz")
            mine.append(time.perf_counter() - t0)
            if r.status_code not in (200, 201):
                raise RuntimeError(f"{user}: HTTP {r.status_code}: {r.text[:200]}")
        client.close()
        with lock:
            latencies.extend(mine)

    with ThreadPoolExecutor(len(users)) as pool:
        for f in [pool.submit(worker, u) for u in users]:
            f.result()
    return np.asarray(latencies)


def bench(url: str, label: str, n: int, clients: int) -> dict:
    """Set up a trial on ``url``, run the baseline and the randomisation load; return the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-rand-"))
    list_path = write_list(tmp, per_stratum=50)
    with running_server(url, ("--no-access-log",)) as server:
        setup = setup_trial(url, server.url, list_path, per_site=clients // 5)
        users = [u for us in setup.investigators.values() for u in us]
        work: dict[str, list] = {u: [] for u in users}
        for p in cohort(n, seed=31):
            site_users = setup.investigators[p["centre"]]
            work[site_users[sum(len(work[u]) for u in site_users) % len(site_users)]].append(p)
        per = [len(work[u]) for u in users]
        base = timed_load(server.url, users, {u: [None] * k for u, k in zip(users, per, strict=True)})
        t0 = time.perf_counter()
        lat = timed_load(server.url, users, work)
        wall = time.perf_counter() - t0
    res = verify_database(url)
    if not res.ok:
        raise RuntimeError(res.summary())
    return {"label": label, "n": len(lat), "p50": 1000 * np.percentile(lat, 50), "p99": 1000 * np.percentile(lat, 99),
            "base50": 1000 * np.percentile(base, 50), "base99": 1000 * np.percentile(base, 99), "rps": len(lat) / wall}  # fmt: skip


def main() -> None:
    """Benchmark SQLite (and PostgreSQL when available) and print one line per backend."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=314)
    parser.add_argument(
        "--clients", type=int, default=20, help="a multiple of 5 (investigators per site x 5)"
    )
    args = parser.parse_args()
    rows = [
        bench(
            str(Path(tempfile.mkdtemp(prefix="bench-rand-")) / "r.db"),
            "sqlite",
            args.participants,
            args.clients,
        )
    ]
    os.environ.pop("CI", None)  # a missing PostgreSQL is reported, not fatal, in a benchmark
    try:
        cluster = start_postgres()
    except BaseException as exc:  # pytest's skip outcome when the binaries are absent
        print(f"PostgreSQL not benchmarked: {exc}")
    else:
        try:
            rows.append(
                bench(cluster.create_database("bench"), "postgresql", args.participants, args.clients)
            )
        finally:
            cluster.stop()
    print(f"randomisation under load: {args.clients} concurrent investigators, {args.participants} participants, "
          f"10 strata; baseline GET /healthz with the same clients; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'backend':<11}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'healthz p50':>13}{'healthz p99':>13}"
          f"{'p50 ratio':>11}{'p99 ratio':>11}{'req/s':>8}")  # fmt: skip
    for r in rows:
        print(f"{r['label']:<11}{r['n']:>9}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['base50']:>13.1f}{r['base99']:>13.1f}"
              f"{r['p50'] / r['base50']:>11.1f}{r['p99'] / r['base99']:>11.1f}{r['rps']:>8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
