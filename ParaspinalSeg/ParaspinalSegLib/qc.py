"""Per-case QC of a segmentation: facts for the cohort's flags and one outline image per level.

:func:`case_facts` records what one case alone can tell (label voxels on the in-plane image
border, seeds that do not lie in their own label); :func:`render_case` draws each level's middle
slice with every structure's outline and the level's seeds (matplotlib, Agg, no display). The
cohort flags and the contact sheet that uses both are in ``qc_page.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ParaspinalLBPCore.structures import BY_NAME
from ParaspinalSegLib.levels import point_to_index
from ParaspinalSegLib.markups import MarkupPoint

PNG_WIDTH_PX = 320  # thumbnails: readable side by side, small enough for hundreds on a page
CROP_MARGIN_MM = 15.0  # image shown around the muscles' bounding box on the slice


def border_voxels(labels: np.ndarray, names: Mapping[int, str]) -> dict[str, int]:
    """Voxels of each label on the first/last row or column of any slice (k, j, i array)."""
    edge = np.zeros(labels.shape[1:], bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    ring = labels[:, edge]
    return {name: int(n) for value, name in names.items() if (n := np.count_nonzero(ring == value))}


def seeds_outside(labels: sitk.Image, names: Mapping[int, str], seeds: Sequence[MarkupPoint]) -> list[dict]:
    """Seeds of a segmented structure whose voxel carries another label (or none)."""
    arr = sitk.GetArrayViewFromImage(labels)
    value_of = {name: value for value, name in names.items()}
    out = []
    for p in seeds:
        name = p.label.strip()
        if name not in value_of:
            continue
        k, j, i = point_to_index(labels, p.position_lps)
        inside = all(0 <= c < n for c, n in zip((k, j, i), arr.shape, strict=True))
        found = int(arr[k, j, i]) if inside else -1
        if found != value_of[name]:
            out.append(
                {
                    "structure": name,
                    "level": p.description.strip().upper(),
                    "kji": [k, j, i],
                    "found": names.get(found, "outside the image" if found < 0 else "background"),
                }
            )
    return out


def case_facts(
    labels: sitk.Image,
    names: Mapping[int, str],
    levels: Mapping[str, tuple[int, int]],
    seeds: Sequence[MarkupPoint],
) -> dict:
    """JSON-able QC facts of one case (``qc.json``)."""
    arr = sitk.GetArrayViewFromImage(labels)
    return {
        "shape_kji": list(arr.shape),
        "levels": {lv: [int(a), int(b)] for lv, (a, b) in levels.items()},
        "border_voxels": border_voxels(arr, names),
        "seeds_outside": seeds_outside(labels, names, seeds),
        "n_seeds": len(seeds),
    }


def _crop(masks: np.ndarray, spacing_ji: tuple[float, float], shape: tuple[int, int]) -> tuple[slice, slice]:
    """In-plane crop around ``masks`` (any label on the slice) plus CROP_MARGIN_MM; whole slice if empty."""
    if not masks.any():
        return slice(0, shape[0]), slice(0, shape[1])
    jj, ii = np.nonzero(masks)
    mj, mi = (int(np.ceil(CROP_MARGIN_MM / s)) for s in spacing_ji)
    return (
        slice(max(0, jj.min() - mj), min(shape[0], jj.max() + mj + 1)),
        slice(max(0, ii.min() - mi), min(shape[1], ii.max() + mi + 1)),
    )


def _outline(mask: np.ndarray) -> list[np.ndarray]:
    """Iso-0.5 contour lines of a 2D mask as (x, y) vertex arrays (contourpy: matplotlib's own engine,
    without the cost of a ContourSet per structure)."""
    import contourpy

    padded = np.pad(mask.astype(np.float32), 1)
    lines = contourpy.contour_generator(z=padded, line_type="Separate").lines(0.5)
    return [line - 1.0 for line in lines]


def level_slices(levels: Mapping[str, tuple[int, int]], labels: np.ndarray) -> dict[str, int]:
    """Slice drawn per level (its middle slice); ``all`` = middle of the labelled slices without levels."""
    if levels:
        return {lv: (int(a) + int(b)) // 2 for lv, (a, b) in levels.items()}
    ks = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))
    return {"all": int((ks[0] + ks[-1]) // 2) if ks.size else labels.shape[0] // 2}


def render_case(
    image: sitk.Image,
    labels: sitk.Image,
    names: Mapping[int, str],
    levels: Mapping[str, tuple[int, int]],
    seeds: Sequence[MarkupPoint],
    out_dir: str | Path,
) -> list[Path]:
    """Write ``<level>.png`` per level: the middle slice, outlines in the structures' colours, the
    level's seeds (+; a red x where a seed is not in its own label). Radiological view (patient's
    right on the left, anterior up) for LPS-ordered arrays, as the segmenter's grid is."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    img = sitk.GetArrayViewFromImage(image)
    lab = sitk.GetArrayViewFromImage(labels)
    sx, sy = labels.GetSpacing()[:2]
    bad = {(s["structure"], tuple(s["kji"])) for s in seeds_outside(labels, names, seeds)}
    points = [(p.label.strip(), point_to_index(labels, p.position_lps)) for p in seeds]
    written = []
    for level, k in level_slices(levels, lab).items():
        k0, k1 = levels.get(level, (0, lab.shape[0] - 1))
        rows, cols = _crop(np.isin(lab[k], list(names)), (sy, sx), lab.shape[1:])
        sl = np.asarray(img[k][rows, cols], dtype=float)
        lo, hi = np.percentile(sl, [1, 99.5]) if sl.size else (0.0, 1.0)
        h_mm, w_mm = sl.shape[0] * sy, sl.shape[1] * sx
        fig = Figure(figsize=(PNG_WIDTH_PX / 100, PNG_WIDTH_PX / 100 * h_mm / max(w_mm, 1e-6)), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(sl, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-6), aspect=sy / sx, interpolation="nearest")
        for value, name in sorted(names.items()):
            mask = lab[k][rows, cols] == value
            if mask.any():
                s = BY_NAME.get(name)
                color = tuple(c / 255 for c in s.color) if s else (0.5, 0.5, 0.5)
                ax.add_collection(LineCollection(_outline(mask), colors=[color], linewidths=1.2))
        for name, (kk, j, i) in points:
            if not (k0 <= kk <= k1 and rows.start <= j < rows.stop and cols.start <= i < cols.stop):
                continue
            x, y = i - cols.start, j - rows.start
            if (name, (kk, j, i)) in bad:
                ax.plot(x, y, "x", color="red", markersize=9, markeredgewidth=2.5)
            else:
                ax.plot(x, y, "+", color="yellow", markersize=6, markeredgewidth=1.2)
        ax.set_xlim(-0.5, sl.shape[1] - 0.5)
        ax.set_ylim(sl.shape[0] - 0.5, -0.5)
        ax.axis("off")
        path = out / f"{level}.png"
        fig.savefig(path, dpi=100)
        written.append(path)
    return written
