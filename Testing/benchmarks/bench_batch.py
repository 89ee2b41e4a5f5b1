"""Benchmark: cohort throughput (cases/min) of ``paraspinal-seg batch`` against one-case-at-a-time CLI calls.

On N default phantom cases (5 levels, 320 x 320 x 30 Dixon, one click per muscle per level; the make
demo cohort's kind) it times, as subprocesses from a cold start like a user's shell loop:

- ``segment`` per case (writes the segmentation and the measurement table);
- ``segment`` + ``measure`` per case (the issue's baseline: segment, then measure the labels);
- ``batch`` over a manifest of the N cases (``--no-qc-images``, then with the QC page's images);
- ``batch --jobs 2``.

Each configuration runs ``--rounds`` times, interleaved; the fastest run counts (the machine is shared,
the minimum is the least noisy). Prints cases/min and the ratio to the segment + measure baseline.
Run: ``.venv/bin/python Testing/benchmarks/bench_batch.py [--cases 6] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from ParaspinalSegLib.phantom import make_phantom, write_phantom
from ParaspinalSegLib.phantom_params import PhantomParams


def _run(args: list) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ParaspinalSegLib", *map(str, args)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"paraspinal-seg {' '.join(map(str, args))} failed:\n{proc.stderr[-2000:]}")


def make_cases(root: Path, n: int) -> Path:
    """N default phantoms (seeds 1..N) and their manifest."""
    rows = []
    for seed in range(1, n + 1):
        folder = root / f"P{seed:03d}"
        write_phantom(make_phantom(PhantomParams(), seed=seed), folder)
        rows.append({"case_id": folder.name, "water": f"{folder.name}/water.nii.gz", "fat": f"{folder.name}/fat.nii.gz",
                     "seeds": f"{folder.name}/seeds.mrk.json", "levels": f"{folder.name}/levels.mrk.json"})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "cases.csv", index=False)
    return root / "cases.csv"


def one_at_a_time(manifest: Path, out: Path, measure: bool) -> None:
    """The shell loop a user would write: one ``segment`` (+ ``measure``) process per case."""
    for row in pd.read_csv(manifest).itertuples():
        case, src, dest = row.case_id, manifest.parent / row.case_id, out / row.case_id
        _run(["segment", "--water", src / "water.nii.gz", "--fat", src / "fat.nii.gz", "--seeds", src / "seeds.mrk.json",
              "--levels", src / "levels.mrk.json", "--case-id", case, "--out-dir", dest])  # fmt: skip
        if measure:
            _run(["measure", "--water", src / "water.nii.gz", "--fat", src / "fat.nii.gz", "--labels",
                  dest / "labels.nii.gz", "--case-id", case, "--out-dir", dest / "measured"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()
    configs = {
        "segment per case (CLI)": lambda m, o: one_at_a_time(m, o, measure=False),
        "segment + measure per case (CLI)": lambda m, o: one_at_a_time(m, o, measure=True),
        "batch --no-qc-images": lambda m, o: _run(
            ["batch", "--manifest", m, "--out-dir", o, "--no-qc-images"]
        ),
        "batch (with QC images)": lambda m, o: _run(["batch", "--manifest", m, "--out-dir", o]),
        "batch --jobs 2 (with QC images)": lambda m, o: _run(
            ["batch", "--manifest", m, "--out-dir", o, "--jobs", "2"]
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        manifest = make_cases(root / "cases", opts.cases)
        print(f"{opts.cases} phantom cases rendered in {time.perf_counter() - t0:.0f} s")
        best = dict.fromkeys(configs, float("inf"))
        for r in range(opts.rounds):
            for name, run in configs.items():
                out = root / "out"
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                run(manifest, out)
                seconds = time.perf_counter() - t0
                best[name] = min(best[name], seconds)
                print(f"round {r + 1}: {name}: {seconds:.1f} s", flush=True)
    base = best["segment + measure per case (CLI)"]
    print(f"\n{'configuration':36s} {'s/case':>7s} {'cases/min':>10s} {'vs segment+measure':>19s}")
    for name, seconds in best.items():
        per = seconds / opts.cases
        print(f"{name:36s} {per:7.2f} {60 / per:10.1f} {base / seconds:18.2f}x")


if __name__ == "__main__":
    main()
