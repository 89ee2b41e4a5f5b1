"""Bounded load benchmark of the web risk calculator on loopback.

Starts the real server (``serve`` command, uvicorn, one process) on a synthetic test bundle (or
``--model BUNDLE_DIR``), then sends a fixed number of requests from N concurrent clients
(httpx.AsyncClient, keep-alive) to ``POST /api/predict`` (validation + prediction + SHAP
contributions + bootstrap interval, i.e. explanation always on) and, as the same-process
baseline under identical load, to ``GET /healthz``; a one-client run gives the bare service time. Prints p50/p99 latency and throughput, and
the ratios predict/healthz and predict/in-process ``predict_one``. Goal: predict p99 < 100 ms.

    .venv/bin/python Testing/benchmarks/bench_calculator.py [--clients 20 --requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LBPRiskModel" / "Testing"))

from test_webapp_support import build_bundle, running_server  # noqa: E402

from LBPRiskModelLib.bundle import load_bundle  # noqa: E402

PAYLOAD = {"age": 70, "sex": "M", "odi_baseline": 40, "bmi": 26.5, "mean_ff_pct": 20}


async def load(
    url: str, method: str, body: dict | None, clients: int, total: int
) -> tuple[np.ndarray, float]:
    """``total`` requests split over ``clients`` concurrent keep-alive clients; latencies (s) and wall time."""
    latencies: list[float] = []
    per_client = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]

    async def client_loop(n: int) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(n):
                t0 = time.perf_counter()
                r = await client.request(method, url, json=body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"{method} {url}: HTTP {r.status_code}: {r.text[:200]}")

    start = time.perf_counter()
    await asyncio.gather(*(client_loop(n) for n in per_client))
    return np.asarray(latencies), time.perf_counter() - start


def summary(name: str, lat: np.ndarray, wall: float) -> dict[str, float]:
    """p50/p99 in ms and throughput in requests/s, printed as one line."""
    p50, p99 = np.percentile(lat, 50) * 1000, np.percentile(lat, 99) * 1000
    rps = len(lat) / wall
    print(f"{name:<22} n={len(lat):5d}  p50={p50:7.2f} ms  p99={p99:7.2f} ms  throughput={rps:7.1f} req/s")
    return {"p50": p50, "p99": p99, "rps": rps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, help="bundle directory (default: build the synthetic test bundle)"
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="server processes (serve --workers)")
    args = parser.parse_args(argv)
    bundle_dir = args.model or build_bundle(Path(tempfile.mkdtemp(prefix="bench-calc-")) / "bundle")

    bundle = load_bundle(bundle_dir)
    bundle.predict_one(PAYLOAD)
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        bundle.predict_one(PAYLOAD)
        times.append(time.perf_counter() - t0)
    inproc_ms = statistics.median(times) * 1000
    print(
        f"bundle {bundle_dir} ({bundle.family}); {args.clients} clients, {args.requests} requests per endpoint"
    )
    print(f"{'in-process predict_one':<22} median={inproc_ms:.2f} ms (no HTTP)")

    with running_server(bundle_dir, extra_args=("--workers", str(args.workers))) as server:
        asyncio.run(load(server.url + "/api/predict", "POST", PAYLOAD, args.clients, 100))  # warm-up
        health = summary(
            "GET /healthz",
            *asyncio.run(load(server.url + "/healthz", "GET", None, args.clients, args.requests)),
        )
        single = summary(
            "POST /api/predict 1cl",
            *asyncio.run(load(server.url + "/api/predict", "POST", PAYLOAD, 1, max(50, args.requests // 10))),
        )
        pred = summary(
            "POST /api/predict",
            *asyncio.run(load(server.url + "/api/predict", "POST", PAYLOAD, args.clients, args.requests)),
        )
    print(
        f"ratios: predict/healthz p50 {pred['p50'] / health['p50']:.2f}x, p99 {pred['p99'] / health['p99']:.2f}x, "
        f"throughput {pred['rps'] / health['rps']:.2f}x; one-client predict p50 / in-process predict_one "
        f"{single['p50'] / inproc_ms:.2f}x (HTTP + validation + JSON overhead)"
    )
    print(
        f"queueing: one client sees p50 {single['p50']:.1f} ms (service time); {args.clients} clients on "
        f"{args.workers} worker(s) wait for each other: Little's law predicts ~{args.clients / (single['rps'] * args.workers) * 1000:.0f} ms (if the cores are free)"
    )
    print(f"goal p99 < 100 ms: {'met' if pred['p99'] < 100 else 'NOT met'} ({pred['p99']:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
