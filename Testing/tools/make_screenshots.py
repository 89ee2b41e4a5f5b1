"""Make the README's figure set in docs/figures/ from real outputs of the project's own tools.

Generates the example case (``python -m ParaspinalSegLib phantom --seed 1 --levels L1-L5``, the
Sample Data case), segments it from its seed points with ``python -m ParaspinalSegLib segment``
exactly as a user would, and draws from those files:

- ``segmentation_overlay.png``: Dixon slices at L2 and L4 with the segmentation outlines (solid)
  over the phantom's ground truth (dashed) and the clicked seeds;
- ``dixon_ff.png``: water, fat and fat-fraction images of one slice with the outlines;
- ``measurements_bar.png``: CSA and fat fraction per muscle × level from ``measurements.csv``,
  ground truth marked;
- ``measured_vs_truth.png``: measured vs true CSA and FF of every muscle × level.

Usage (≈1 min)::

    .venv/bin/python Testing/tools/make_screenshots.py [--work-dir /tmp/shots] [--out docs/figures]

Figures other tools make in docs/figures (phantom_vs_real.png, calculator.png, tum01_result.png —
the last by Testing/tools/make_tum01_figure.py)
are never touched.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.lines import Line2D

from ParaspinalLBPCore import structures
from ParaspinalSegLib.markups import read_points

REPO = Path(__file__).resolve().parents[2]
OURS = ("segmentation_overlay.png", "dixon_ff.png", "measurements_bar.png", "measured_vs_truth.png")
PROTECTED = {"phantom_vs_real.png", "calculator.png", "tum01_result.png"}
LEVELS = ["L1", "L2", "L3", "L4", "L5"]
SHORT = {"multifidus": "MF", "erector_spinae": "ES", "psoas": "PS", "quadratus_lumborum": "QL"}


def _run(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "ParaspinalSegLib", *args], check=True, capture_output=True, text=True
    )


def make_case(work: Path) -> tuple[Path, Path]:
    """Phantom + segmentation (reused when already in ``work``); returns (phantom dir, segment dir)."""
    ph, seg = work / "phantom", work / "segment"
    if not (ph / "truth.json").exists():
        _run("phantom", "--out", str(ph), "--seed", "1", "--levels", "L1-L5")
    if not (seg / "measurements.csv").exists():
        _run(
            "segment", "--water", str(ph / "water.nii.gz"), "--fat", str(ph / "fat.nii.gz"),
            "--seeds", str(ph / "seeds.mrk.json"), "--levels", str(ph / "levels.mrk.json"),
            "--case-id", "phantom", "--out-dir", str(seg),
        )  # fmt: skip
    return ph, seg


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _colour(value: int) -> tuple[float, float, float]:
    info = next(s for s in structures.MUSCLES if s.value == value)
    return tuple(c / 255.0 for c in info.color)


def _crop(grey: np.ndarray, margin: int = 6) -> tuple[slice, slice]:
    body = np.argwhere(grey > 0.1 * np.percentile(grey, 99))
    (r0, c0), (r1, c1) = body.min(axis=0), body.max(axis=0) + 1
    return slice(max(r0 - margin, 0), r1 + margin), slice(max(c0 - margin, 0), c1 + margin)


def _outlines(ax, labels: np.ndarray, style: str = "solid", width: float = 1.2) -> None:
    for info in structures.MUSCLES:
        mask = (labels == info.value).astype(float)
        if mask.any():
            ax.contour(mask, levels=[0.5], colors=[_colour(info.value)], linewidths=width, linestyles=style)


def _legend_handles() -> list[Line2D]:
    handles = [
        Line2D([], [], color=_colour(s.value), lw=2, label=s.name.replace("_", " "))
        for s in structures.MUSCLES
    ]
    handles += [
        Line2D([], [], color="white", lw=1.2, label="segmentation (seeded)"),
        Line2D([], [], color="white", lw=1.0, ls="--", label="ground truth"),
        Line2D([], [], color="yellow", marker="+", lw=0, ms=8, label="seed click"),
    ]
    return handles


def _seed_kji(ph: Path, ref: sitk.Image) -> list[tuple[str, int, float, float]]:
    """(label, slice k, row j, column i) of every seed point."""
    out = []
    for p in read_points(ph / "seeds.mrk.json"):
        i, j, k = ref.TransformPhysicalPointToContinuousIndex([float(v) for v in p.position_lps])
        out.append((p.label, int(np.rint(k)), j, i))
    return out


def segmentation_overlay(ph: Path, seg: Path, out: Path) -> Path:
    """Two Dixon slices (mid-L2, mid-L4) with segmentation and truth outlines and the seeds."""
    levels = json.loads((ph / "labels.json").read_text())["levels"]
    ref = sitk.ReadImage(str(ph / "water.nii.gz"))
    grey = _array(ph / "water.nii.gz") + _array(ph / "fat.nii.gz")
    truth, labels = _array(ph / "labels.nii.gz"), _array(seg / "labels.nii.gz")
    seeds = _seed_kji(ph, ref)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.2), facecolor="black")
    for ax, level in zip(axes, ("L2", "L4"), strict=True):
        in_level = [ks for _, ks, _, _ in seeds if levels[level][0] <= ks <= levels[level][1]]
        k = max(set(in_level), key=in_level.count) if in_level else sum(levels[level]) // 2  # clicked slice
        rows, cols = _crop(grey[k])
        ax.imshow(grey[k][rows, cols], cmap="gray", vmax=np.percentile(grey[k], 99.5))
        _outlines(ax, truth[k][rows, cols], "dashed", 0.9)
        _outlines(ax, labels[k][rows, cols], "solid", 1.4)
        for _, ks, j, i in seeds:
            if ks == k:
                ax.plot(i - cols.start, j - rows.start, "+", color="yellow", ms=9, mew=1.6)
        ax.set_title(f"{level} (slice {k}): seeded segmentation vs truth", color="white", fontsize=10)
        ax.set_axis_off()
    fig.legend(
        handles=_legend_handles(), loc="lower center", ncol=4, fontsize=8, frameon=False, labelcolor="white"
    )
    fig.suptitle("ParaspinalSeg on the example phantom (Dixon water + fat; radiological view)", color="white")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.17, wspace=0.03)
    return _save(fig, out)


def dixon_ff(ph: Path, seg: Path, out: Path) -> Path:
    """Water, fat and fat fraction of the mid-L4 slice with the segmentation outlines."""
    levels = json.loads((ph / "labels.json").read_text())["levels"]
    k = (levels["L4"][0] + levels["L4"][1]) // 2
    water, fat = _array(ph / "water.nii.gz")[k], _array(ph / "fat.nii.gz")[k]
    labels = _array(seg / "labels.nii.gz")[k]
    ff = np.where(
        water + fat > 0.05 * np.percentile(water + fat, 99), fat / np.maximum(water + fat, 1e-6), 0.0
    )
    rows, cols = _crop(water + fat)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    panels = [
        ("water", water, "gray", None),
        ("fat", fat, "gray", None),
        ("fat fraction fat/(water+fat)", ff, "magma", (0, 1)),
    ]
    for ax, (title, img, cmap, lim) in zip(axes, panels, strict=True):
        vmin, vmax = lim or (0, np.percentile(img, 99.5))
        im = ax.imshow(img[rows, cols], cmap=cmap, vmin=vmin, vmax=vmax)
        _outlines(ax, labels[rows, cols], "solid", 0.9)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    fig.colorbar(im, ax=axes[2], fraction=0.04, pad=0.02, label="FF")
    fig.suptitle(f"Dixon images of the example phantom, L4 slice {k}, with the segmentation", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.95, top=0.86, bottom=0.02, wspace=0.04)
    return _save(fig, out)


def _whole(seg: Path) -> pd.DataFrame:
    df = pd.read_csv(seg / "measurements.csv")
    return df[df["slice"].isna() & df["level"].isin(LEVELS)]


def measurements_bar(ph: Path, seg: Path, out: Path) -> Path:
    """Grouped bars: CSA and FF of each muscle per level (measured), truth as black ticks."""
    df, truth = _whole(seg), json.loads((ph / "truth.json").read_text())["structures"]
    names = [s.name for s in structures.MUSCLES]
    fig, axes = plt.subplots(2, 1, figsize=(11, 6.6), sharex=True)
    width = 0.8 / len(LEVELS)
    cmap = plt.get_cmap("viridis", len(LEVELS))
    x = np.arange(len(names))
    for ax, col, unit in zip(
        axes, ("csa_cm2", "fat_fraction_pct"), ("CSA (cm²)", "fat fraction (%)"), strict=True
    ):
        for n, level in enumerate(LEVELS):
            sub = df[df["level"] == level].set_index("structure").reindex(names)
            pos = x - 0.4 + width * (n + 0.5)
            ax.bar(pos, sub[col], width, color=cmap(n), label=level)
            true = [truth[s][level][col] if level in truth.get(s, {}) else np.nan for s in names]
            ax.plot(pos, true, "_", color="black", ms=7, mew=1.5, label="truth" if n == 0 else None)
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=6, fontsize=8, loc="upper left")
    axes[1].set_xticks(x, [_short(s) for s in names])
    fig.suptitle("measurements.csv of the example phantom: CSA and Dixon fat fraction per muscle × level")
    fig.tight_layout()
    return _save(fig, out)


def _short(name: str) -> str:
    for long, short in SHORT.items():
        if name.startswith(long):
            return f"{short} {name.rsplit('_', 1)[1][0].upper()}"
    return name


def measured_vs_truth(ph: Path, seg: Path, out: Path) -> Path:
    """Scatter of measured vs true CSA and FF for every muscle × level, identity line."""
    df, truth = _whole(seg), json.loads((ph / "truth.json").read_text())["structures"]
    df = df.assign(
        true_csa=[truth[s][lv]["csa_cm2"] for s, lv in zip(df["structure"], df["level"], strict=True)],
        true_ff=[
            truth[s][lv]["fat_fraction_pct"] for s, lv in zip(df["structure"], df["level"], strict=True)
        ],
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, (meas, true, unit) in zip(
        axes,
        (("csa_cm2", "true_csa", "CSA (cm²)"), ("fat_fraction_pct", "true_ff", "fat fraction (%)")),
        strict=True,
    ):
        for prefix, short in SHORT.items():
            sub = df[df["structure"].str.startswith(prefix)]
            colour = _colour(structures.structure(f"{prefix}_left").value)
            ax.scatter(sub[true], sub[meas], s=22, color=colour, edgecolor="black", lw=0.4, label=short)
        lim = [0, 1.08 * max(df[true].max(), df[meas].max())]
        ax.plot(lim, lim, color="grey", lw=1)
        ax.set(xlim=lim, ylim=lim, xlabel=f"true {unit}", ylabel=f"measured {unit}")
        bias = float((df[meas] - df[true]).mean())
        ax.set_title(f"{unit}: mean bias {bias:+.2f}, n = {len(df)}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Seeded segmentation + measurement vs the phantom's ground truth (all muscles × L1–L5)")
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    if out.name in PROTECTED:
        raise ValueError(f"{out.name} is made by another tool; not overwriting it")
    out.parent.mkdir(parents=True, exist_ok=True)
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, facecolor=fig.get_facecolor(), format="png")
    plt.close(fig)
    # 256-colour palette: a third of the size of RGBA for these grey images with coloured outlines
    image = Image.open(buffer).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    tmp = out.with_name(f".{out.name}.tmp.png")
    image.save(tmp, optimize=True)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Make the case (or reuse --work-dir) and write every figure; prints each path and size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", help="keep phantom and segmentation here (reused when present)")
    parser.add_argument("--out", default=str(REPO / "docs" / "figures"), help="figure folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir) if args.work_dir else Path(tmp)
        ph, seg = make_case(work)
        out = Path(args.out)
        makers = (segmentation_overlay, dixon_ff, measurements_bar, measured_vs_truth)
        for name, maker in zip(OURS, makers, strict=True):
            path = maker(ph, seg, out / name)
            print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
