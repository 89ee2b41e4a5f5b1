"""Fat-fraction methods on the real TUM01 case: per muscle × level table (non-Dixon vs Dixon) and timings.

Run: .venv/bin/python Testing/benchmarks/bench_measure_fat.py [--shared ../shared]
Prints Dixon FF, t1_linear (single-reference linear model) and t1_local (bias-corrected, per-muscle lean
reference, signal-fraction model) on the synthesised in-phase image F + W in the manual masks, their
differences from Dixon, and the time of each method as a ratio to the Dixon measurement (same process).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from ParaspinalSegLib.measure import measure_labels
from ParaspinalSegLib.structures import TUM01_LABEL_NAMES

LEVELS = {"L2": (0, 7), "L3": (8, 14), "L4": (15, 21), "L5": (22, 28)}


def main() -> int:
    """Measure, print the table and the timings."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[3] / "shared"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    d = Path(args.shared) / "data" / "myosegmentum_tum01"
    fat = sitk.ReadImage(str(d / "fat.nii.gz"))
    water = sitk.Cast(sitk.ReadImage(str(d / "water.nii.gz")), sitk.sitkFloat64)
    water.CopyInformation(fat)
    labels = sitk.ReadImage(str(d / "labels.nii.gz"))
    inphase = water + sitk.Cast(fat, sitk.sitkFloat64)
    runs = {
        "dixon": {"water": water, "fat": fat},
        "t1_linear": {"image": inphase, "fat_method": "t1_linear"},
        "t1_local": {"image": inphase, "fat_method": "t1_local"},
    }
    ff, secs = {}, {}
    for name, kw in runs.items():
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            table = measure_labels(labels, TUM01_LABEL_NAMES, levels=LEVELS, per_slice=False, **kw)
            best = min(best, time.perf_counter() - t0)
        secs[name] = best
        ff[name] = table.set_index(["structure", "level"])["fat_fraction_pct"]
    out = pd.DataFrame(ff)
    out["linear-dixon"] = out["t1_linear"] - out["dixon"]
    out["local-dixon"] = out["t1_local"] - out["dixon"]
    pd.set_option("display.width", 160)
    print(out.round(2).to_string())
    per_level = out.drop("all", level="level")
    for col in ("linear-dixon", "local-dixon"):
        whole = out.xs("all", level="level")[col].abs()
        print(
            f"{col}: whole muscle max |d| {whole.max():.2f} pp; per level median |d| "
            f"{per_level[col].abs().median():.2f}, max {per_level[col].abs().max():.2f} pp"
        )
    for name, s in secs.items():
        print(f"time {name}: {s:.3f} s ({s / secs['dixon']:.1f}x dixon)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
