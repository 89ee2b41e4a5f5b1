"""Make docs/figures/fatty_validation.png: the fatty validation set at a glance.

Top row: the real Dixon case TUM01 infiltrated inside its manual outlines (green) to Goutallier grade 3
(Dixon FF 50 % per muscle and level) with each fat pattern; fat image of one slice. Bottom row: the phantom
at Goutallier grades 0-4 with each preset's default pattern (fat image, level L4). Cases come from
``ParaspinalSegLib.validation.fatty_cases``, as in the tests and the benchmark.

Usage (≈30 s; needs ../shared/data/myosegmentum_tum01)::

    .venv/bin/python Testing/tools/make_fatty_figure.py [--out docs/figures/fatty_validation.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk

from ParaspinalSegLib.phantom_params import GOUTALLIER_GRADES, goutallier_params
from ParaspinalSegLib.validation import fatty_cases

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
TUM01_SLICE = 18
PHANTOM_SLICE = 8  # L4's middle slice (L5 = slices 0-5)


def _crop(lab: np.ndarray, margin: tuple[int, int]) -> tuple[slice, slice]:
    ys, xs = np.nonzero(lab > 0)
    return slice(ys.min() - margin[0], ys.max() + margin[0]), slice(
        xs.min() - margin[1], xs.max() + margin[1]
    )


def _panel(ax, fat: np.ndarray, lab: np.ndarray, crop, vmax: float, title: str) -> None:
    ax.imshow(fat[crop], cmap="gray", vmin=0, vmax=vmax)
    ax.contour(lab[crop] > 0, [0.5], colors="lime", linewidths=0.6)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def main(argv: list[str] | None = None) -> int:
    """Build the cases and draw the two rows."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "figures" / "fatty_validation.png"))
    args = p.parse_args(argv)
    fig, axs = plt.subplots(2, 5, figsize=(17, 4.6))
    tum = fatty_cases(DATA, sources=("tum01",), grades=(3,), contrasts=("dixon",))
    for ax, case in zip(axs[0], tum, strict=True):
        lab = sitk.GetArrayFromImage(case.labels)[TUM01_SLICE]
        fat = sitk.GetArrayFromImage(case.inputs["fat"])[TUM01_SLICE]
        ff = np.mean([case.truth[n][lv]["ff_pct"] for n in case.truth for lv in case.levels])
        vf = np.mean([case.truth[n][lv]["volume_fraction_pct"] for n in case.truth for lv in case.levels])
        _panel(
            ax,
            fat,
            lab,
            _crop(lab, (12, 12)),
            1500,
            f"TUM01 {case.pattern}: FF {ff:.0f} %, fat volume {vf:.0f} %",
        )
    for ax, grade in zip(axs[1], GOUTALLIER_GRADES, strict=True):
        pattern = goutallier_params(grade).pattern("multifidus_left")
        (case,) = fatty_cases(
            sources=("phantom",), grades=(grade,), patterns=(pattern,), contrasts=("dixon",)
        )
        lab = sitk.GetArrayFromImage(case.labels)[PHANTOM_SLICE]
        fat = sitk.GetArrayFromImage(case.inputs["fat"])[PHANTOM_SLICE]
        ff = case.truth["multifidus_left"]["L4"]["fat_fraction_pct"]
        _panel(
            ax,
            fat,
            lab,
            _crop(lab, (10, 10)),
            1500,
            f"phantom grade {grade} ({pattern}): MF L4 FF {ff:.0f} %",
        )
    fig.suptitle(
        "Fatty validation set (fat images; green = true outline). Top: real TUM01, fat infiltrated inside the manual "
        "outlines to Goutallier grade 3. Bottom: phantom at grades 0-4",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
