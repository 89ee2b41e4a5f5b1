"""Make docs/figures/fatty_result.png: the segmenter on fat-infiltrated muscle, the trial's population.

TUM01 (real Dixon, manual outlines) infiltrated inside its outlines to Goutallier grade 3 (Dixon FF 50 %)
with streaky and with confluent fat (``validation.fatty_cases``, the validation set's own cases and clicks),
drawn on the fat image: manual outline dashed, result solid, clicks yellow; the title of each panel gives
Dice and the Dixon FF error per muscle (``validation.score_case``, 1-voxel erosion as the CLIs report).

Usage (≈1 min; needs ../shared/data/myosegmentum_tum01)::

    .venv/bin/python Testing/tools/make_fatty_result_figure.py [--out docs/figures/fatty_result.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk

from ParaspinalLBPCore.structures import BY_NAME
from ParaspinalSegLib.segment import segment
from ParaspinalSegLib.validation import fatty_cases, score_case

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Testing" / "tools"))
from make_tum01_figure import draw_slice, save_with_legend, seed_slices  # noqa: E402

DATA = REPO.parent / "shared" / "data"
PATTERNS = ("streaky", "confluent")
GRADE = 3


def _short(name: str) -> str:
    return ("MF" if name.startswith("multifidus") else "ES") + " " + name.rsplit("_", 1)[1][0].upper()


def main(argv: list[str] | None = None) -> int:
    """Segment two infiltrated TUM01 cases from the validation clicks and draw one slice of each."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "figures" / "fatty_result.png"))
    p.add_argument("--data", default=str(DATA), help="the shared data folder")
    args = p.parse_args(argv)
    cases = list(
        fatty_cases(args.data, sources=["tum01"], grades=[GRADE], patterns=PATTERNS, contrasts=["dixon"])
    )
    fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4.2))
    for ax, case in zip(np.atleast_1d(axes), cases, strict=True):
        result = segment(case.inputs, case.seeds, levels=case.levels, assume_same_grid=True)
        whole = score_case(case, result.labels).query("level == 'all'").set_index("structure")
        out, truth = sitk.GetArrayFromImage(result.labels), sitk.GetArrayFromImage(case.labels)
        fat = case.inputs["fat"]
        seed_k = seed_slices(case.seeds, fat)
        k = seed_k[len(seed_k) // 2]
        image = sitk.GetArrayFromImage(fat).astype(float)
        draw_slice(ax, image, truth, {n: BY_NAME[n].value for n in whole.index}, out, k, case.seeds, fat)
        scores = ", ".join(
            f"{_short(n)} {whole.dice[n]:.2f}/{whole.ff_err_pp[n]:+.1f}" for n in sorted(whole.index)
        )
        ax.set_title(
            f"{case.pattern} fat, true FF {whole.ff_true_pct.mean():.0f} %, slice {k}\n"
            f"Dice / FF error pp: {scores}",
            fontsize=9,
        )
    fig.suptitle(
        f"Fat-infiltrated muscle: real TUM01 Dixon with fat put inside its manual outlines "
        f"(Goutallier {GRADE}), fat image"
    )
    save_with_legend(fig, args.out, "manual outline (truth)", 0.94)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
