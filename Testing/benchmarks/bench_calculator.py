"""Bounded load benchmark of the web risk calculator on loopback.

Starts the real server (``serve`` command, uvicorn, ``--workers N``) on the synthetic test bundle
(or ``--model BUNDLE_DIR``) and sends a fixed number of requests from C concurrent keep-alive
clients to ``POST /api/predict`` (validation + prediction + SHAP contributions + bootstrap
interval: explanation always on) and, as the baseline under identical load, to ``GET /healthz``;
a one-client run gives the bare service time. The load generator is a compiled one so that it
does not compete with the server for the 2 cores: ``hey`` (Debian package; fixed request count,
per-request latencies via ``-o csv``), else ``wrk`` (a Lua script stops each thread after its
share of the requests), else a Python client (httpx, same process: it takes a large CPU
share and inflates the latencies). Every line reports the client's CPU share, the server's CPU
time per request and the 1-minute load average (other jobs on the machine add noise).

    .venv/bin/python Testing/benchmarks/bench_calculator.py [--clients 20 --requests 2000 --workers 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LBPRiskModel" / "Testing"))

from test_webapp_support import build_bundle, running_server  # noqa: E402

from LBPRiskModelLib import explain  # noqa: E402
from LBPRiskModelLib.bundle import load_bundle  # noqa: E402

PAYLOAD = {"age": 70, "sex": "M", "odi_baseline": 40, "bmi": 26.5, "mean_ff_pct": 20}
TICK = os.sysconf("SC_CLK_TCK")

WRK_SCRIPT = """
local per_thread = tonumber(os.getenv("BENCH_PER_THREAD"))
local body_file = os.getenv("BENCH_BODY")
if body_file ~= nil and body_file ~= "" then
  local f = io.open(body_file, "r"); wrk.body = f:read("*a"); f:close()
  wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
end
local done_here = 0
function response(status, headers, body)
  if status ~= 200 then print("HTTP " .. status) end
  done_here = done_here + 1
  if done_here == per_thread then io.stderr:write("THREAD_DONE\\n"); io.stderr:flush(); wrk.thread:stop() end
end
function done(summary, latency, requests)
  io.write(string.format("BENCH %d %.3f %.3f %d\\n", summary.requests, latency:percentile(50),
    latency:percentile(99), summary.duration))
end
"""


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its child processes (uvicorn workers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def run_hey(url: str, body: Path | None, clients: int, total: int, pin: str | None) -> dict:
    """Fixed-count load with hey; per-request latencies (s) from its CSV output and the wall time."""
    cmd = ["hey", "-n", str(total), "-c", str(clients), "-o", "csv"]
    if body is not None:
        cmd += ["-m", "POST", "-T", "application/json", "-D", str(body)]
    cmd = (["taskset", "-c", pin] if pin else []) + [*cmd, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = [line.split(",") for line in out.splitlines()[1:] if line.strip()]
    bad = [r[6] for r in rows if r[6] != "200"]
    if bad or len(rows) != total:
        raise RuntimeError(f"hey {url}: {len(rows)} responses of {total}, non-200: {sorted(set(bad))}")
    lat = np.array([float(r[0]) for r in rows])
    offsets = np.array([float(r[7]) for r in rows])
    return stats(lat, float(np.max(offsets + lat)))  # first request → last response (no start-up)


def run_wrk(url: str, body: Path | None, clients: int, total: int, pin: str | None) -> dict:
    """Fixed-count load with wrk: each thread stops after its share, then wrk is interrupted (SIGINT
    makes it print its statistics early); wrk reports percentiles, not per-request latencies."""
    threads = min(2, clients)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT)
    env = {**os.environ, "BENCH_PER_THREAD": str(total // threads), "BENCH_BODY": str(body or "")}
    cmd = ["wrk", "-t", str(threads), "-c", str(clients), "-d", "300s", "-s", fh.name, url]
    cmd = (["taskset", "-c", pin] if pin else []) + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    finished = 0
    for line in proc.stderr:  # type: ignore[union-attr]
        finished += line.startswith("THREAD_DONE")
        if finished == threads:
            proc.send_signal(signal.SIGINT)
            break
    out = proc.communicate()[0]
    os.unlink(fh.name)
    if "HTTP " in out.replace("HTTP/", "") or "BENCH " not in out:
        raise RuntimeError(f"wrk {url}: failed or non-200 responses:\n{out[-500:]}")
    n, p50, p99, dur = out.split("BENCH ", 1)[1].split()[:4]  # wrk reports percentiles in µs
    return {"p50": float(p50) / 1000, "p99": float(p99) / 1000, "rps": int(n) / (int(dur) / 1e6)}


def run_python(url: str, body: Path | None, clients: int, total: int, pin: str | None) -> dict:
    """Fallback: httpx.AsyncClient in this process (competes with the server for the CPU)."""
    import httpx

    payload = json.loads(body.read_text()) if body is not None else None
    method = "POST" if body is not None else "GET"
    latencies: list[float] = []
    per_client = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]

    async def client_loop(n: int) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(n):
                t0 = time.perf_counter()
                r = await client.request(method, url, json=payload)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"{method} {url}: HTTP {r.status_code}: {r.text[:200]}")

    async def all_clients() -> None:
        await asyncio.gather(*(client_loop(n) for n in per_client))

    start = time.perf_counter()
    asyncio.run(all_clients())
    return stats(np.asarray(latencies), time.perf_counter() - start)


def stats(lat: np.ndarray, wall: float) -> dict:
    """p50/p99 (ms) and throughput (requests/s) of per-request latencies (s)."""
    return {
        "p50": float(np.percentile(lat, 50) * 1000),
        "p99": float(np.percentile(lat, 99) * 1000),
        "rps": len(lat) / wall,
    }


TOOLS = {"hey": run_hey, "wrk": run_wrk, "python": run_python}


def measure(
    tool: str, server, path: str, body: Path | None, clients: int, total: int, pin: str | None
) -> dict:
    """One fixed-count run: latencies, throughput, client CPU share, server CPU per request, load average."""
    own0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv0 = process_cpu(server.process.pid)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = TOOLS[tool](server.url + path, body, clients, total, pin)
    elapsed = time.perf_counter() - t0
    own1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (
        (kids1.ru_utime - kids0.ru_utime + kids1.ru_stime - kids0.ru_stime)
        if tool != "python"
        else (own1.ru_utime - own0.ru_utime + own1.ru_stime - own0.ru_stime)
    )
    srv_cpu = process_cpu(server.process.pid) - srv0
    return {
        **result,
        "client_cpu_pct": 100 * client_cpu / elapsed,
        "server_ms_per_req": 1000 * srv_cpu / total,
        "load": (load0 + os.getloadavg()[0]) / 2,
    }


def show(name: str, r: dict) -> None:
    print(
        f"  {name:<24} p50={r['p50']:7.2f} ms  p99={r['p99']:7.2f} ms  {r['rps']:7.1f} req/s  "
        f"client CPU {r['client_cpu_pct']:4.0f}% of a core  server CPU {r['server_ms_per_req']:.2f} ms/req  "
        f"load {r['load']:.1f}"
    )


def run_workers(tool: str, bundle_dir: Path, body: Path, workers: int, args: argparse.Namespace) -> bool:
    """One server with ``workers`` processes: /healthz, one client, then the C-client predict runs."""
    ok = True
    with running_server(bundle_dir, extra_args=("--workers", str(workers))) as server:
        measure(
            tool, server, "/api/predict", body, args.clients, max(200, args.requests // 10), args.pin_client
        )
        health = measure(tool, server, "/healthz", None, args.clients, args.requests, args.pin_client)
        show("GET /healthz", health)
        single = measure(
            tool, server, "/api/predict", body, 1, max(200, args.requests // 10), args.pin_client
        )
        show("POST /api/predict 1 cl.", single)
        for _ in range(args.repeat):
            pred = measure(tool, server, "/api/predict", body, args.clients, args.requests, args.pin_client)
            show(f"POST /api/predict {args.clients} cl.", pred)
            print(
                f"    ratios predict/healthz: p50 {pred['p50'] / health['p50']:.2f}x, p99 "
                f"{pred['p99'] / health['p99']:.2f}x, throughput {pred['rps'] / health['rps']:.2f}x; "
                f"goal p99 < 100 ms: {'met' if pred['p99'] < 100 else 'NOT met'}"
            )
            ok &= pred["p99"] < 100
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, help="bundle directory (default: build the synthetic test bundle)"
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--workers", default="1,2", help="comma list of server process counts (serve --workers)"
    )
    parser.add_argument("--tool", choices=["auto", *TOOLS], default="auto", help="load generator")
    parser.add_argument("--pin-client", metavar="CPUS", help="taskset CPU list for hey/wrk (e.g. 1)")
    parser.add_argument("--repeat", type=int, default=1, help="repeat the 20-client predict run")
    args = parser.parse_args(argv)
    tool = args.tool
    if tool == "auto":
        tool = next((t for t in ("hey", "wrk") if shutil.which(t)), "python")
    work = Path(tempfile.mkdtemp(prefix="bench-calc-"))
    bundle_dir = args.model or build_bundle(work / "bundle")
    body = work / "body.json"
    body.write_text(json.dumps(PAYLOAD))

    bundle = load_bundle(bundle_dir)

    def median_ms(n: int = 300) -> float:
        bundle.predict_one(PAYLOAD)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            bundle.predict_one(PAYLOAD)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000

    fast_ms = median_ms() if bundle._fast is not None else float("nan")
    fast, bundle._fast = bundle._fast, None
    sk_ms = median_ms(100)
    bundle._fast = fast
    compiled = explain.compiled_paths(bundle.pipeline.steps[-1][1]) is not None
    print(
        f"bundle {bundle_dir} ({bundle.family}{', compiled TreeSHAP' if compiled else ''}); tool {tool}; "
        f"{args.clients} clients, {args.requests} requests"
    )
    print(
        f"in-process predict_one: numpy fast path {fast_ms:.3f} ms, scikit-learn path {sk_ms:.2f} ms "
        f"({sk_ms / fast_ms:.0f}x); load {os.getloadavg()[0]:.1f}"
    )
    ok = True
    for workers in [int(w) for w in args.workers.split(",")]:
        print(f"serve --workers {workers}:")
        try:
            ok &= run_workers(tool, bundle_dir, body, workers, args)
        except RuntimeError as exc:  # e.g. a large tree bundle loading slower than the start timeout
            print(f"  not measured: {str(exc).splitlines()[0]}")
            ok = False
    print(
        f"goal p99 < 100 ms with {args.clients} clients: {'met in every run' if ok else 'NOT met in every run'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
