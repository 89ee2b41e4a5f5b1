"""Make docs/figures/tum01_result.png: the segmenter on the real MyoSegmenTUM Dixon case.

Seeds are the validation's one click per muscle per level (``tum01_seeds`` of
ParaspinalSeg/Testing/test_segment_realdata.py: the most interior point of each manual label on
the middle slice of 4 equal slabs). Draws two slices of the water image with the manual outlines
(dashed) and the result (solid), the clicked seeds, and the Dice per muscle in the title.

Usage (≈10 s; needs ../shared/data/myosegmentum_tum01)::

    .venv/bin/python Testing/tools/make_tum01_figure.py [--out docs/figures/tum01_result.png]
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
from matplotlib.lines import Line2D

from ParaspinalLBPCore.structures import BY_NAME, TUM01_LABEL_NAMES
from ParaspinalSegLib.segment import segment

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "ParaspinalSeg" / "Testing"), str(REPO / "Testing")]
from test_segment_realdata import dice_per_structure, tum01_seeds  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "myosegmentum_tum01"


def seed_slices(seeds, ref: sitk.Image) -> list[int]:
    """Sorted slice indices of ``ref`` that hold a click."""
    return sorted(
        {
            round(ref.TransformPhysicalPointToContinuousIndex([float(c) for c in s.position_lps])[2])
            for s in seeds
        }
    )


def draw_slice(
    ax, image: np.ndarray, truth: np.ndarray, truth_values, out: np.ndarray, k: int, seeds, ref
) -> None:
    """Slice ``k`` of ``image`` cropped around the truth, with the truth outlines dashed (``truth_values``:
    structure name -> its value in ``truth``), our labels solid and the clicks on that slice."""
    ys, xs = np.nonzero(truth[k] > 0)
    y0, y1, x0, x1 = ys.min() - 25, ys.max() + 25, xs.min() - 40, xs.max() + 40
    ax.imshow(image[k, y0:y1, x0:x1], cmap="gray", vmax=np.percentile(image[k], 99.5))
    for name, v in truth_values.items():
        color = np.array(BY_NAME[name].color) / 255.0
        ax.contour(truth[k, y0:y1, x0:x1] == v, [0.5], colors=[color], linestyles="--", linewidths=1.2)
        ax.contour(out[k, y0:y1, x0:x1] == BY_NAME[name].value, [0.5], colors=[color], linewidths=1.6)
    for s in seeds:
        i, j, kk = ref.TransformPhysicalPointToContinuousIndex([float(c) for c in s.position_lps])
        if round(kk) == k:
            ax.plot(i - x0, j - y0, "+", color="yellow", ms=10, mew=2)
    ax.axis("off")


def save_with_legend(fig, path: str, manual_label: str, top: float) -> None:
    """Legend (manual dashed, ours solid, clicks) under the panels, then write the PNG."""
    legend = [
        Line2D([], [], color="w", ls="--", label=manual_label),
        Line2D([], [], color="w", label="ParaspinalSeg"),
        Line2D([], [], color="yellow", marker="+", ls="", label="click"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=3, facecolor="0.2", labelcolor="w")
    fig.tight_layout(rect=(0, 0.07, 1, top))
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """Segment TUM01 from the reference clicks and draw the figure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "figures" / "tum01_result.png"))
    p.add_argument("--data", default=str(DATA), help="folder with water/fat/labels .nii.gz")
    args = p.parse_args(argv)
    data = Path(args.data)
    water, fat, labels = (sitk.ReadImage(str(data / f"{n}.nii.gz")) for n in ("water", "fat", "labels"))
    truth = sitk.GetArrayFromImage(labels)
    seeds = tum01_seeds(truth, fat)
    result = segment({"water": water, "fat": fat}, seeds, assume_same_grid=True)
    out = sitk.GetArrayFromImage(result.labels)
    dice = dice_per_structure(out, truth)
    w = sitk.GetArrayFromImage(water).astype(float)
    seed_k = seed_slices(seeds, fat)
    slices = [seed_k[1], (seed_k[2] + seed_k[3]) // 2]  # one seed slice, one between seed slices

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    truth_values = {name: v for v, name in TUM01_LABEL_NAMES.items()}
    for ax, k in zip(axes, slices, strict=True):
        draw_slice(ax, w, truth, truth_values, out, k, seeds, fat)
        kind = "seed slice" if k in seed_k else "between seed slices"
        ax.set_title(f"slice {k} ({kind})")
    short = {"multifidus": "MF", "erector_spinae": "ES"}
    text = ", ".join(
        f"{short[n.rsplit('_', 1)[0]]} {n.rsplit('_', 1)[1][0].upper()} {d:.3f}"
        for n, d in sorted(dice.items())
    )
    fig.suptitle(
        f"MyoSegmenTUM TUM01 (real Dixon, water image), one click per muscle per level\nDice vs manual: {text}"
    )
    save_with_legend(fig, args.out, "manual", 0.93)
    print(f"wrote {args.out}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
