"""Benchmark: ParaspinalRadiomicsLib cohort batch vs a straightforward pyradiomics loop (execute per mask).

Cohort: digital phantom cases (``python -m ParaspinalSegLib phantom``, cached in --workdir), 6 muscles x
(whole structure + 5 level slabs) per case, protocol-mri preset on the T1-weighted image. The baseline
loads each case once and calls ``RadiomicsFeatureExtractor.execute(image, mask, label=v)`` per mask; the
batch must produce identical values (checked here) and be >= 2x faster in the same single process.
Prints the ratio and cases/minute (also for --jobs local processes).

    .venv/bin/python Testing/benchmarks/bench_radiomics.py [--cases 20] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from radiomics import featureextractor

from ParaspinalRadiomicsLib.batch import Batch
from ParaspinalRadiomicsLib.extraction import load_params
from ParaspinalRadiomicsLib.tables import read_features

MUSCLES = [
    "multifidus_left",
    "multifidus_right",
    "erector_spinae_left",
    "erector_spinae_right",
    "psoas_left",
    "psoas_right",
]


def make_phantoms(workdir: Path, n: int, seed0: int) -> list[Path]:
    """Phantom cases (generated once, then reused)."""

    def one(i: int) -> Path:
        out = workdir / f"case{i:02d}"
        if not (out / "labels.json").is_file():
            cmd = [
                sys.executable,
                "-m",
                "ParaspinalSegLib",
                "phantom",
                "--out",
                str(out),
                "--seed",
                str(seed0 + i),
            ]
            subprocess.run(cmd, check=True, capture_output=True)
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        cases = list(pool.map(one, range(n)))
    print(f"phantoms ready: {n} cases in {workdir} ({time.perf_counter() - t0:.0f} s)")
    return cases


def baseline(
    cases: list[Path], params: str, additional_info: bool | None = None
) -> tuple[pd.DataFrame, float]:
    """The straightforward loop: one execute() per structure x level mask."""
    t0 = time.perf_counter()
    ex = featureextractor.RadiomicsFeatureExtractor(params)
    if additional_info is not None:
        ex.settings["additionalInfo"] = additional_info
    rows = []
    for case in cases:
        meta = json.loads((case / "labels.json").read_text())
        values = {name: int(v) for v, name in meta["labels"].items()}
        image = sitk.ReadImage(str(case / "t1w.nii.gz"))
        labels = sitk.ReadImage(str(case / "labels.nii.gz"))
        arr = sitk.GetArrayFromImage(labels)
        masks = {"all": labels}
        for lev, (k0, k1) in meta["levels"].items():
            slab = np.zeros_like(arr)
            slab[k0 : k1 + 1] = arr[k0 : k1 + 1]
            img = sitk.GetImageFromArray(slab)
            img.CopyInformation(labels)
            masks[lev] = img
        for lev, mask in masks.items():
            for name in MUSCLES:
                out = ex.execute(image, mask, label=values[name])
                feats = {k: float(v) for k, v in out.items() if not k.startswith("diagnostics_")}
                rows.append({"case_id": case.name, "structure": name, "level": lev, **feats})
    return pd.DataFrame(rows), time.perf_counter() - t0


def run_batch(cases: list[Path], params: str, jobs: int, tmp: Path) -> tuple[pd.DataFrame, float]:
    """The project's batch (fresh output, so nothing is resumed)."""
    manifest = tmp / f"cohort_{jobs}.csv"
    pd.DataFrame(
        {
            "case_id": [c.name for c in cases],
            "image": [str(c / "t1w.nii.gz") for c in cases],
            "labels": [str(c / "labels.nii.gz") for c in cases],
        }
    ).to_csv(manifest, index=False)
    out = tmp / f"features_{jobs}.csv"
    t0 = time.perf_counter()
    res = Batch(manifest, params, out, per_level=True, structures=MUSCLES).run(jobs=jobs, show_progress=False)
    seconds = time.perf_counter() - t0
    assert res.n_failed == 0, "batch had failing cases"
    return read_features(out), seconds


def compare(ref: pd.DataFrame, got: pd.DataFrame) -> tuple[int, float]:
    """(number of values not bit-identical, largest relative difference); NaN == NaN."""
    keys = ["case_id", "structure", "level"]
    merged = ref.merge(got, on=keys, suffixes=("_ref", "_got"))
    assert len(merged) == len(ref) == len(got), (len(merged), len(ref), len(got))
    feats = [c for c in ref.columns if c not in keys]
    a = merged[[f"{f}_ref" for f in feats]].to_numpy(float)
    b = merged[[f"{f}_got" for f in feats]].to_numpy(float)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(same, 0.0, np.abs(a - b) / np.maximum(np.abs(a), np.abs(b)))
    return int(np.count_nonzero(~same)), float(np.nanmax(rel)) if rel.size else 0.0


def main() -> int:
    """Run the benchmark and print ratios and absolute numbers."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2, help="also time the batch with this many processes")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "paraspinal_bench_radiomics"))
    ap.add_argument("--seed0", type=int, default=100)
    ap.add_argument("--params", default="protocol-mri")
    ap.add_argument(
        "--no-provenance-baseline",
        action="store_true",
        help="also time the loop with additionalInfo off (how much of the gain is provenance)",
    )
    args = ap.parse_args()
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    params = load_params(args.params).source
    cases = make_phantoms(Path(args.workdir), args.cases, args.seed0)
    n_masks = len(cases) * len(MUSCLES) * 6
    print(
        f"cohort: {len(cases)} cases x {len(MUSCLES)} muscles x (all + 5 levels) = {n_masks} masks, "
        f"params {args.params}"
    )
    ref, t_ref = baseline(cases, params)
    print(
        f"baseline loop (execute per mask): {t_ref:.1f} s, {len(cases) / t_ref * 60:.2f} cases/min, "
        f"{t_ref / n_masks * 1000:.0f} ms/mask"
    )
    with tempfile.TemporaryDirectory() as tmp:
        got, t_b = run_batch(cases, params, 1, Path(tmp))
        diff, rel = compare(ref, got)
        print(
            f"batch, 1 process:  {t_b:.1f} s, {len(cases) / t_b * 60:.2f} cases/min; "
            f"speed-up {t_ref / t_b:.2f}x; values not bit-identical: {diff} of "
            f"{ref.shape[0] * (ref.shape[1] - 3)} (max relative difference {rel:.1e})"
        )
        if args.jobs > 1:
            got_j, t_j = run_batch(cases, params, args.jobs, Path(tmp))
            diff_j, rel_j = compare(ref, got_j)
            print(
                f"batch, {args.jobs} processes: {t_j:.1f} s, {len(cases) / t_j * 60:.2f} cases/min; "
                f"speed-up {t_ref / t_j:.2f}x vs the 1-process loop; not bit-identical {diff_j} (max rel {rel_j:.1e})"
            )
    if args.no_provenance_baseline:
        _, t_np = baseline(cases, params, additional_info=False)
        print(f"loop with additionalInfo off: {t_np:.1f} s; batch speed-up over it {t_np / t_b:.2f}x")
    # pyradiomics' own normalisation (multi-threaded sitk.Normalize) is not bit-deterministic from run to run,
    # while the Lib normalises single-threaded: values that are not bit-identical must be within 1e-12.
    ok = rel <= 1e-12 and t_ref / t_b >= 2.0
    print(
        "RESULT:",
        "PASS" if ok else "FAIL",
        f"(bit-identical: {diff == 0}; max relative difference {rel:.1e} <= 1e-12; speed-up >= 2: {t_ref / t_b >= 2})",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
