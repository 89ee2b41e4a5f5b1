"""Quantify a label map: CSA, functional CSA, volume, intensity, fat fraction, Goutallier grade, asymmetry.

Works for any segmentation (the project's own or a manual one). The output is the measurement
table of contract C4 (see ``MEASUREMENT_COLUMNS``): one row per structure × level (``all`` = the
whole volume) and one per structure × axial slice (``slice`` = k index, numpy axis 0).

Definitions (see ../shared/notes/methods.md and docs/segmentation.md):
- ``csa_cm2``: mean in-slice area over the slices where the structure is present.
- ``fat_fraction_pct``: mean voxel FF inside the mask (optionally eroded ``erode_px`` voxels in-plane
  against partial volume), voxels below the noise floor left out. ``fat_method`` "dixon" = F/(F+W);
  "t1_local" = coil-bias-corrected two-reference signal model with per-muscle lean references
  (fat.local_linear_ff; validated against Dixon on TUM01 and the phantom, numbers in fat.py);
  "t1_linear" = the original single-reference linear model (kept for reproducibility); ``auto`` =
  Dixon with a water/fat pair, else t1_local on the image (t1_linear where the bias field cannot be
  fitted); "none" when no image allows it. Erosion never empties a slice:
  where it would, that slice keeps its un-eroded voxels.
- ``fcsa_cm2`` = csa × (1 − FF).
- ``goutallier_grade``: FF mapped by ``GOUTALLIER_FF_THRESHOLDS`` (configurable).
- ``asymmetry_index`` = |L − R| / mean(L, R) of the CSA of the same muscle, level and slice (a fraction;
  same value on the left and right rows; NaN without both sides).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalSegLib.geometry import check_same_grid
from ParaspinalSegLib.io import MAX_OBLIQUE_DEG

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

# FF (%) upper bounds of Goutallier grades 0–3 (grade 4 above the last). A convention, not a standard:
# Goutallier et al. (Clin Orthop 1994) grade visually — 0 normal, 1 some fatty streaks, 2 fat < muscle,
# 3 fat = muscle, 4 fat > muscle (applied to lumbar multifidus by Battaglia et al. 2014). Read
# quantitatively: "fat < muscle" is FF < 50 %, "fat = muscle" ≈ 50 % (here 40–60 %), "fat > muscle" > 60 %,
# and "some streaks" starts where Dixon FF leaves the range of healthy young muscle (≈ 10 %).
GOUTALLIER_FF_THRESHOLDS: tuple[float, float, float, float] = (10.0, 25.0, 40.0, 60.0)


def goutallier_grade(ff_pct: float, thresholds: tuple[float, ...] = GOUTALLIER_FF_THRESHOLDS) -> float:
    """Goutallier grade 0–4 of a fat fraction in percent (NaN in, NaN out)."""
    if ff_pct is None or not np.isfinite(ff_pct):
        return np.nan
    if list(thresholds) != sorted(thresholds) or len(thresholds) != 4:
        raise ValueError(f"goutallier thresholds must be 4 increasing FF percentages, got {list(thresholds)}")
    return float(np.searchsorted(np.asarray(thresholds, dtype=float), ff_pct, side="right"))


def check_axial(image: sitk.Image, what: str = "image", max_tilt_deg: float = MAX_OBLIQUE_DEG) -> None:
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
    csa = float(counts[present].mean() * ctx["area_cm2"]) if present.any() else 0.0
    ff = np.nan
    if ctx["ff_sums"] is not None:
        nff = ctx["ff_counts"][sel].sum()
        ff = float(100.0 * ctx["ff_sums"][sel].sum() / nff) if nff > 0 else np.nan
    return {
        "case_id": ctx["case_id"],
        "structure": ctx["name"],
        "side": _side(ctx["name"]),
        "level": level,
        "slice": k,
        "n_voxels": n,
        "csa_cm2": csa,
        "fcsa_cm2": csa * (1.0 - ff / 100.0) if np.isfinite(ff) else np.nan,
        "volume_cm3": n * ctx["vox_cm3"],
        "mean_intensity": float(sums[sel].sum() / n) if (n and sums is not None) else np.nan,
        "fat_fraction_pct": ff,
        "fat_method": ctx["fat_method"],
        "goutallier_grade": goutallier_grade(ff, ctx["thresholds"]),
    }


def _fat_map(
    lab: np.ndarray,
    label_names: Mapping[int, str],
    water: np.ndarray | None,
    fat: np.ndarray | None,
    img: np.ndarray | None,
    method: str,
    spacing_ji: tuple[float, float],
    noise_floor: float | None,
) -> tuple[np.ndarray | None, str, dict]:
    """Voxel FF map (0–1, NaN = unusable) by the requested method; ('none' when not possible)."""
    from ParaspinalSegLib import fat as fatmod

    if method == "auto":
        method = (
            "dixon"
            if (water is not None and fat is not None)
            else ("auto_t1_local" if img is not None else "none")
        )
    if method == "dixon":
        if water is None or fat is None:
            raise ValueError("fat_method 'dixon' needs both water and fat images")
        return fatmod.dixon_ff(water, fat, noise_floor), "dixon", {}
    if method in ("t1_local", "auto_t1_local"):
        source = img if img is not None else (water + fat if water is not None and fat is not None else None)
        if source is None:
            raise ValueError("fat_method 't1_local' needs an image")
        try:
            ffmap, refs = fatmod.local_linear_ff(source, lab, [int(v) for v in label_names], spacing_ji)
        except ValueError:
            if method != "auto_t1_local":
                raise
            # auto: too little fat/muscle to fit the bias field -> the single-reference model, else no FF
            return _fat_map(lab, label_names, water, fat, img, "auto_t1_linear", spacing_ji, noise_floor)
        return ffmap, "t1_local", refs
    if method == "t1_linear" or (method == "auto_t1_linear"):
        source = img if img is not None else (water + fat if water is not None and fat is not None else None)
        if source is None:
            raise ValueError("fat_method 't1_linear' needs an image")
        muscle = np.isin(lab, list(label_names))
        try:
            lean, fat_ref = fatmod.linear_references(source, muscle, spacing_ji=spacing_ji)
            # one lean reference for all muscles: per-muscle modes were tried and agree worse with
            # Dixon on TUM01 (a homogeneous muscle's own mode reads as 0 % fat)
            ffmap = np.where(muscle, fatmod.linear_ff(source, lean, fat_ref), np.nan).astype(np.float32)
            refs = {"lean_ref": lean, "fat_ref": fat_ref}
        except ValueError:
            if method == "auto_t1_linear":  # auto: an image without usable fat contrast gives no FF
                return None, "none", {}
            raise
        return ffmap, "t1_linear", refs
    if method == "none":
        return None, "none", {}
    raise ValueError(f"unknown fat_method {method!r}; expected auto, dixon, t1_local, t1_linear or none")


def _eroded_core(mask: np.ndarray, erode_px: int) -> np.ndarray:
    """In-plane erosion by ``erode_px`` voxels against partial volume; a slice that erosion would empty
    (a muscle thinner than 2·erode_px + 1 voxels there) keeps its un-eroded voxels, so it still has an FF."""
    if erode_px <= 0:
        return mask
    core = ndi.binary_erosion(mask, np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool), iterations=erode_px)
    emptied = mask.any(axis=(1, 2)) & ~core.any(axis=(1, 2))
    core[emptied] = mask[emptied]
    return core


def _asymmetry(table: pd.DataFrame) -> pd.Series:
    """|L − R| / mean(L, R) of csa_cm2 for rows whose counterpart (other side, same level/slice) exists."""
    if table.empty:
        return pd.Series(dtype=float)
    muscle = table["structure"].str.replace(r"_(left|right)$", "", regex=True)
    key = pd.DataFrame(
        {
            "m": muscle,
            "level": table["level"],
            "slice": table["slice"].astype("Int64").astype(str),
            "side": table["side"],
        }
    )
    csa = table["csa_cm2"].astype(float)
    left = csa.where(key["side"] == "left")
    right = csa.where(key["side"] == "right")
    grp = [key["m"], key["level"], key["slice"]]
    lsum = left.groupby(grp).transform("max")
    rsum = right.groupby(grp).transform("max")
    mean = (lsum + rsum) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        ai = (lsum - rsum).abs() / mean
    return ai.where(mean > 0)


def measure_labels(
    labels: sitk.Image,
    label_names: Mapping[int, str],
    image: sitk.Image | None = None,
    levels: Mapping[str, tuple[int, int]] | None = None,
    case_id: str = "",
    per_slice: bool = True,
    *,
    water: sitk.Image | None = None,
    fat: sitk.Image | None = None,
    fat_method: str = "auto",
    erode_px: int = 0,
    noise_floor: float | None = None,
    goutallier_thresholds: tuple[float, ...] = GOUTALLIER_FF_THRESHOLDS,
) -> pd.DataFrame:
    """Measure every named label: per slice, per level (if ``levels`` given) and for the whole volume.

    ``csa_cm2`` of a level (or ``all``) is the mean area over the slices where the structure is
    present; ``volume_cm3`` is the voxel count × voxel volume; ``mean_intensity`` is the mean of
    ``image`` (else of water + fat) inside the structure. Fat fraction: ``fat_method`` "auto" =
    Dixon when ``water`` and ``fat`` are given, else the linear model on ``image``, else none.
    """
    check_axial(labels, "label map")
    if image is not None:
        check_same_grid(image, labels, "image", "label map")
    for other, nm in ((water, "water image"), (fat, "fat image")):
        if other is not None:
            check_same_grid(other, labels, nm, "label map")
    if (water is None) != (fat is None):
        raise ValueError("Dixon fat fraction needs both water and fat images (got only one)")
    lab = sitk.GetArrayViewFromImage(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raw = sitk.GetArrayFromImage(labels)
        if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
            raise ValueError("label map: values must be integers (is this an image rather than a label map?)")
        lab = raw.astype(np.int32)
    img = sitk.GetArrayViewFromImage(image).astype(np.float64) if image is not None else None
    w = sitk.GetArrayFromImage(water).astype(np.float32) if water is not None else None
    f = sitk.GetArrayFromImage(fat).astype(np.float32) if fat is not None else None
    for arr, nm in ((img, "image"), (w, "water image"), (f, "fat image")):
        if arr is not None and np.isnan(arr).any():
            raise ValueError(f"{nm}: contains NaN voxels; fill or mask them before measuring")
    intensity = img if img is not None else ((w + f).astype(np.float64) if w is not None else None)
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
    ffmap, method, _refs = _fat_map(lab, label_names, w, f, img, fat_method, (sy, sx), noise_floor)

    rows: list[dict] = []
    for value, name in sorted(label_names.items()):
        mask = lab == int(value)
        counts = mask.reshape(n_slices, -1).sum(axis=1)
        sums = (
            np.where(mask, intensity, 0.0).reshape(n_slices, -1).sum(axis=1)
            if intensity is not None
            else None
        )
        ff_sums = ff_counts = None
        if ffmap is not None:
            core = _eroded_core(mask, erode_px)
            valid = core & np.isfinite(ffmap)
            ff_sums = np.where(valid, ffmap, 0.0).reshape(n_slices, -1).sum(axis=1)
            ff_counts = valid.reshape(n_slices, -1).sum(axis=1)
        ctx = {
            "case_id": case_id,
            "name": name,
            "counts": counts,
            "sums": sums,
            "area_cm2": area_cm2,
            "vox_cm3": vox_cm3,
            "ff_sums": ff_sums,
            "ff_counts": ff_counts,
            "fat_method": method,
            "thresholds": goutallier_thresholds,
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
    table["asymmetry_index"] = _asymmetry(table).astype(float) if len(table) else np.nan
    return table[list(MEASUREMENT_COLUMNS)]
