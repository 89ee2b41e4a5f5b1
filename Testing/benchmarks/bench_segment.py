"""Benchmark: segmentation of a 5-level 400×400×30 Dixon phantom, and re-running one level.

Prints absolute seconds and ratios to baselines measured in the same process: reading the inputs
(water + fat NIfTI) and a plain marker watershed (scipy ``watershed_ift``) on the same volume with the
same seeds. Targets (issue 4): full case ≤ 3 s, one level ≤ 0.5 s on a 2-core machine.
Run: ``.venv/bin/python Testing/benchmarks/bench_segment.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalSegLib.markups import read_points
from ParaspinalSegLib.phantom import make_phantom, write_phantom
from ParaspinalSegLib.phantom_params import PhantomParams
from ParaspinalSegLib.segment import SegmentParams, SplitParams, segment


def best_of(n: int, fn) -> float:
    """Fastest of ``n`` runs (the machine is shared; the minimum is the least noisy)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        params = PhantomParams.from_dict({"matrix": [400, 400], "slices_per_level": 6})
        write_phantom(make_phantom(params, seed=1), out)
        seeds = read_points(out / "seeds.mrk.json")
        levels = read_points(out / "levels.mrk.json")
        paraspinal = [p for p in seeds if p.label.startswith(("multifidus", "erector"))]

        def read():
            return sitk.ReadImage(str(out / "water.nii.gz")), sitk.ReadImage(str(out / "fat.nii.gz"))

        water, fat = read()
        size = water.GetSize()
        t_read = best_of(3, read)

        w = sitk.GetArrayFromImage(water)
        f = sitk.GetArrayFromImage(fat)
        markers = np.zeros(w.shape, np.int16)
        for n, p in enumerate(paraspinal, start=1):
            i, j, k = water.TransformPhysicalPointToIndex(p.position_lps.tolist())
            markers[k, j - 1 : j + 2, i - 1 : i + 2] = n
        markers[(f / np.maximum(w + f, 1e-6)) > 0.7] = len(paraspinal) + 1
        grad = np.hypot(ndi.sobel(w, 2), ndi.sobel(w, 1))
        grad8 = (255 * grad / grad.max()).astype(np.uint8)
        t_ws = best_of(3, lambda: ndi.watershed_ift(grad8, markers))

        inputs = {"water": water, "fat": fat}
        t_full = best_of(3, lambda: segment(inputs, paraspinal, levels=levels))
        refined = SegmentParams(split=SplitParams(refine_band_mm=0.0))  # MF/ES seam refinement (split.py) off
        t_refined = best_of(3, lambda: segment(inputs, paraspinal, levels=levels, params=refined))
        t_all8 = best_of(2, lambda: segment(inputs, seeds, levels=levels))
        prev = segment(inputs, paraspinal, levels=levels)
        t_level = best_of(
            3, lambda: segment(inputs, paraspinal, levels=levels, only_level="L3", previous=prev.labels)
        )

    print(
        f"case: Dixon phantom {size[0]}x{size[1]}x{size[2]}, 5 levels, {len(paraspinal)} MF/ES seeds (+{len(seeds) - len(paraspinal)} psoas/QL)"
    )
    print(f"baseline read water+fat      {t_read:7.3f} s")
    print(f"baseline scipy watershed_ift {t_ws:7.3f} s")
    rows = [
        ("segment MF+ES, 5 levels", t_full, 3.0),
        ("  with split.refine_band_mm=0 (off)", t_refined, 3.0),
        ("segment all 8 muscles", t_all8, None),
        ("re-run one level (L3)", t_level, 0.5),
    ]
    for name, t, target in rows:
        tgt = f"  target ≤ {target:.1f} s: {'met' if t <= target else 'NOT met'}" if target else ""
        print(f"{name:28s} {t:7.3f} s  = {t / t_read:5.1f}× read, {t / t_ws:5.1f}× watershed{tgt}")


if __name__ == "__main__":
    main()
