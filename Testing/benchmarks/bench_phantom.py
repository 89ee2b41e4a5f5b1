"""Benchmark of the digital phantom: a 5-level 320×320×30 case (target ≤ 2 s to render on this machine).

Prints absolute times and ratios against baselines measured in the same process: (a) plain numpy
generation of the six noisy magnitude volumes of the same size (12 Gaussian fields + magnitudes,
the floor of any noisy phantom) and (b) writing the files. Run:
``.venv/bin/python Testing/benchmarks/bench_phantom.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from ParaspinalSegLib.phantom import PhantomParams, make_phantom, write_phantom


def baseline_noise(shape: tuple[int, int, int], seed: int = 0) -> tuple[float, float]:
    """Wall and CPU seconds to make six Rician magnitude volumes from scratch with numpy."""
    t, c = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(seed)
    for _ in range(6):
        re = rng.standard_normal(shape, dtype=np.float32)
        im = rng.standard_normal(shape, dtype=np.float32)
        np.sqrt(re * re + im * im)
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    """Time render and write of the default case; print medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    params = PhantomParams()  # L1–L5, 320×320, 6 slices per level = 30 slices
    make_phantom(params, seed=0)  # warm-up (imports, caches)
    render, cpu, base, base_cpu, write, stages = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            b_wall, b_cpu = baseline_noise((30, 320, 320), seed=r)
            base.append(b_wall)
            base_cpu.append(b_cpu)
            t, c = time.perf_counter(), time.process_time()
            ph = make_phantom(params, seed=r)
            render.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            stages.append(ph.timings)
            t = time.perf_counter()
            write_phantom(ph, tmp)
            write.append(time.perf_counter() - t)
    med = {k: float(np.median([s[k] for s in stages])) for k in stages[0]}
    r, b, w = np.median(render), np.median(base), np.median(write)
    print(f"phantom 5 levels 320x320x30: render median {r:.3f} s (min {min(render):.3f}, target <= 2 s)")
    c, bc = np.median(cpu), np.median(base_cpu)
    print(f"  CPU time of the process: median {c:.3f} s (wall time also counts waiting for the")
    print("  CPU while other jobs run; on an idle machine wall ~ CPU time)")
    print("  stages (median CPU s): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
    print(f"baseline numpy noise (6 Rician volumes): median {b:.3f} s wall, {bc:.3f} s CPU")
    print(f"  -> render / baseline = {r / b:.2f} (wall), {c / bc:.2f} (CPU)")
    print(f"write 9 NIfTI + json/markups: median {w:.3f} s -> render / write = {r / w:.2f}")


if __name__ == "__main__":
    main()
