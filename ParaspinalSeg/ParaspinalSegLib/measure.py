"""Quantify a label map: cross-sectional area, volume and intensity per structure, level and slice.

Works for any segmentation (the project's own or a manual one). The output is the measurement
table of contract C4 (see ``MEASUREMENT_COLUMNS``): one row per structure × level (``all`` = the
whole volume) and one per structure × axial slice (``slice`` = k index, numpy axis 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import SimpleITK as sitk

MEASUREMENT_COLUMNS: tuple[str, ...] = (
    "case_id",
    "structure",
    "side",
    "level",
    "slice",
    "n_voxels",
    "csa_cm2",
    "fcsa_cm2",
    "volume_cm3",
    "mean_intensity",
    "fat_fraction_pct",
    "fat_method",
    "goutallier_grade",
    "asymmetry_index",
)


def check_axial(image: sitk.Image, what: str = "image", max_tilt_deg: float = 40.0) -> None:
    """Raise ValueError unless slices (numpy axis 0) are axial or axial-oblique.

    Lumbar protocols angle axial slices parallel to the discs, so a tilt of the slice normal from
    the S axis up to ``max_tilt_deg`` is accepted (areas are measured in the slice plane);
    sagittal or coronal stacks are refused.
    """
    if image.GetDimension() != 3:
        raise ValueError(f"{what}: expected a 3D volume, got {image.GetDimension()}D")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    k_axis = direction[:, 2]
    tilt = float(np.degrees(np.arccos(min(1.0, abs(k_axis[2])))))
    if tilt > max_tilt_deg:
        raise ValueError(
            f"{what}: slices are not axial (slice normal {np.round(k_axis, 3).tolist()} in LPS, "
            f"{tilt:.0f} degrees from S); reorient/resample the volume to axial first "
            "(Slicer: Volumes > Orient Scalar Volume, or sitk.DICOMOrient for flipped/permuted axes)"
        )


def check_same_grid(a: sitk.Image, b: sitk.Image, name_a: str, name_b: str, tol: float = 1e-3) -> None:
    """Raise ValueError naming both inputs when size, spacing, origin or direction differ."""
    problems = []
    if a.GetSize() != b.GetSize():
        problems.append(f"size {a.GetSize()} vs {b.GetSize()}")
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol):
        problems.append(
            f"spacing {np.round(a.GetSpacing(), 4).tolist()} vs {np.round(b.GetSpacing(), 4).tolist()}"
        )
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=max(tol, 1e-3 * min(a.GetSpacing()))):
        problems.append(
            f"origin {np.round(a.GetOrigin(), 3).tolist()} vs {np.round(b.GetOrigin(), 3).tolist()}"
        )
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4):
        problems.append("direction differs")
    if problems:
        raise ValueError(f"{name_a} and {name_b} are not on the same voxel grid: " + "; ".join(problems))


def _side(name: str) -> str:
    for side in ("left", "right"):
        if name.endswith("_" + side):
            return side
    return ""


def _row(ctx: dict, level: str, k: int | None, sel: np.ndarray) -> dict:
    """One measurement row for the slices selected by ``sel``."""
    counts, sums = ctx["counts"], ctx["sums"]
    n = int(counts[sel].sum())
    present = sel & (counts > 0)
    return {
        "case_id": ctx["case_id"],
        "structure": ctx["name"],
        "side": _side(ctx["name"]),
        "level": level,
        "slice": k,
        "n_voxels": n,
        "csa_cm2": float(counts[present].mean() * ctx["area_cm2"]) if present.any() else 0.0,
        "volume_cm3": n * ctx["vox_cm3"],
        "mean_intensity": float(sums[sel].sum() / n) if (n and sums is not None) else np.nan,
    }


def measure_labels(
    labels: sitk.Image,
    label_names: Mapping[int, str],
    image: sitk.Image | None = None,
    levels: Mapping[str, tuple[int, int]] | None = None,
    case_id: str = "",
    per_slice: bool = True,
) -> pd.DataFrame:
    """Measure every named label: per slice, per level (if ``levels`` given) and for the whole volume.

    ``csa_cm2`` of a level (or ``all``) is the mean area over the slices where the structure is
    present; ``volume_cm3`` is the voxel count × voxel volume; ``mean_intensity`` is the mean of
    ``image`` inside the structure (NaN without an image).
    """
    check_axial(labels, "label map")
    if image is not None:
        check_same_grid(image, labels, "image", "label map")
    lab = sitk.GetArrayViewFromImage(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raw = sitk.GetArrayFromImage(labels)
        if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
            raise ValueError("label map: values must be integers (is this an image rather than a label map?)")
        lab = raw.astype(np.int32)
    img = sitk.GetArrayViewFromImage(image).astype(np.float64) if image is not None else None
    if img is not None and np.isnan(img).any():
        raise ValueError("image: contains NaN voxels; fill or mask them before measuring")
    sx, sy, sz = labels.GetSpacing()
    area_cm2 = sx * sy / 100.0
    vox_cm3 = sx * sy * sz / 1000.0
    n_slices = lab.shape[0]
    slice_level = np.full(n_slices, "", dtype=object)
    for level, (k0, k1) in (levels or {}).items():
        if not (0 <= k0 <= k1 < n_slices):
            raise ValueError(
                f"level {level}: slice range [{k0}, {k1}] outside the volume's 0..{n_slices - 1}"
            )
        slice_level[k0 : k1 + 1] = level

    rows: list[dict] = []
    for value, name in sorted(label_names.items()):
        mask = lab == int(value)
        counts = mask.reshape(n_slices, -1).sum(axis=1)
        sums = (
            np.where(mask, img, 0.0).reshape(n_slices, -1).sum(axis=1)
            if img is not None
            else np.zeros(n_slices)
        )

        ctx = {
            "case_id": case_id,
            "name": name,
            "counts": counts,
            "sums": sums if img is not None else None,
            "area_cm2": area_cm2,
            "vox_cm3": vox_cm3,
        }
        all_slices = np.ones(n_slices, dtype=bool)
        rows.append(_row(ctx, "all", None, all_slices))
        for level in dict.fromkeys(lv for lv in slice_level if lv):
            rows.append(_row(ctx, level, None, slice_level == level))
        if per_slice:
            for k in np.flatnonzero(counts):
                sel = np.zeros(n_slices, dtype=bool)
                sel[k] = True
                rows.append(_row(ctx, str(slice_level[k]) or "all", int(k), sel))

    table = pd.DataFrame(rows)
    for col in MEASUREMENT_COLUMNS:
        if col not in table:
            table[col] = np.nan
    table["fat_method"] = table["fat_method"].astype(object).where(table["fat_method"].notna(), "none")
    table["slice"] = table["slice"].astype("Int64")
    return table[list(MEASUREMENT_COLUMNS)]
