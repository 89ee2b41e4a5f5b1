"""Quantify a label map: CSA, lean CSA, intramuscular fat, volume, fat fraction, Goutallier grade, asymmetry.

Works for any segmentation (the project's own or a manual one). The output is the measurement
table of contract C4 (``MEASUREMENT_COLUMNS``, each column's unit and meaning in ``COLUMN_DOCS``): one
row per structure × level (``all`` = the whole volume) and one per structure × axial slice
(``slice`` = k index, numpy axis 0).

Two fat measures, because they differ (see ../shared/notes/methods.md and docs/segmentation.md):
- ``fat_fraction_pct`` is the *signal* fat fraction F/(F+W) of magnitude images (``ff_type`` "signal"):
  not a proton-density fat fraction, and larger than the volume of fat it stands for, since pure fat
  gives 2–3× the signal of lean muscle. "t1_local" estimates the same signal fraction from one
  fat-bright image; the legacy "t1_linear" gives a linear two-reference fraction (``ff_type`` "volume").
- ``fat_volume_fraction_pct`` is the adipose-tissue share of the compartment: two-compartment unmixing
  against the case's own pure-fat and lean-muscle signals (fat.dixon_volume_fraction; on one image the
  linear fraction of fat.local_linear_ff). ``lean_csa_cm2`` and ``imat_cm2`` split the CSA by it.
Both are means over the mask eroded ``ff_erode_px`` voxels in-plane (partial volume with the
surrounding fat); erosion never empties a slice (that slice keeps its voxels). CSA and volume always
use the whole mask: the compartment, intramuscular fat included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalSegLib import fat as fatmod
from ParaspinalSegLib.contrast import require_supported
from ParaspinalSegLib.geometry import check_same_grid
from ParaspinalSegLib.io import MAX_OBLIQUE_DEG

#: column → (unit, meaning); README's data-format table and the Slicer table's column descriptions use it.
COLUMN_DOCS: dict[str, tuple[str, str]] = {
    "case_id": ("", "case identifier given to the measurement"),
    "structure": ("", "canonical muscle name (structures.py), e.g. multifidus_left"),
    "side": ("", "left / right (empty for unpaired structures)"),
    "level": ("", "vertebral level L1–L5 of the row's slices, 'all' = every slice of the volume"),
    "slice": ("", "axial slice index k (numpy axis 0) on per-slice rows; empty on level and 'all' rows"),
    "n_voxels": ("voxels", "voxels of the structure in the row's slices"),
    "csa_cm2": (
        "cm²",
        "cross-sectional area of the compartment: mean in-slice area over the slices where it is present",
    ),
    "fcsa_cm2": (
        "cm²",
        "functional CSA by the signal FF (the common definition in the literature): csa × (1 − fat_fraction_pct/100); "
        "smaller than the fat-free area wherever signal FF exceeds the volume fraction (see lean_csa_cm2)",
    ),
    "volume_cm3": ("cm³", "voxels × voxel volume"),
    "mean_intensity": (
        "image units",
        "mean of the measured image (else of water + fat) inside the structure",
    ),
    "fat_fraction_pct": (
        "%",
        "mean voxel fat fraction inside the mask eroded ff_erode_px voxels; its kind is ff_type",
    ),
    "fat_method": (
        "",
        "dixon = F/(F+W); t1_local = bias-corrected signal model on one fat-bright image; "
        "t1_linear = single-reference linear model; none = no fat contrast used",
    ),
    "goutallier_grade": (
        "grade 0–4",
        "Goutallier grade from fat_fraction_pct by the configurable thresholds "
        "GOUTALLIER_FF_THRESHOLDS (a project convention, docs/segmentation.md)",
    ),
    "asymmetry_index": (
        "fraction",
        "abs(L − R) / mean(L, R) of csa_cm2 for the same muscle, level and slice",
    ),
    "ff_type": (
        "",
        "signal = F/(F+W) of magnitude images (not PDFF); volume = a linear volume fraction (t1_linear)",
    ),
    "ff_erode_px": (
        "voxels",
        "in-plane erosion of the mask before fat_fraction_pct and fat_volume_fraction_pct",
    ),
    "fat_volume_fraction_pct": (
        "%",
        "adipose-tissue volume fraction of the (eroded) compartment, by unmixing against "
        "the case's own pure-fat and lean-muscle signals",
    ),
    "lean_csa_cm2": ("cm²", "fat-free (lean) CSA: csa × (1 − fat_volume_fraction_pct/100)"),
    "imat_cm2": (
        "cm²",
        "intramuscular adipose tissue area inside the compartment: csa × fat_volume_fraction_pct/100",
    ),
}
MEASUREMENT_COLUMNS: tuple[str, ...] = tuple(COLUMN_DOCS)

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
        raise BadInputError(
            f"goutallier thresholds must be 4 increasing FF percentages, got {list(thresholds)}"
        )
    return float(np.searchsorted(np.asarray(thresholds, dtype=float), ff_pct, side="right"))


def check_axial(image: sitk.Image, what: str = "image", max_tilt_deg: float = MAX_OBLIQUE_DEG) -> None:
    """Raise ValueError unless slices (numpy axis 0) are axial or axial-oblique.

    Lumbar protocols angle axial slices parallel to the discs, so a tilt of the slice normal from
    the S axis up to ``max_tilt_deg`` is accepted (areas are measured in the slice plane);
    sagittal or coronal stacks are refused.
    """
    if image.GetDimension() != 3:
        raise BadInputError(f"{what}: expected a 3D volume, got {image.GetDimension()}D")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    k_axis = direction[:, 2]
    tilt = float(np.degrees(np.arccos(min(1.0, abs(k_axis[2])))))
    if tilt > max_tilt_deg:
        raise BadInputError(
            f"{what}: slices are not axial (slice normal {np.round(k_axis, 3).tolist()} in LPS, "
            f"{tilt:.0f} degrees from S); reorient/resample the volume to axial first "
            "(Slicer: Volumes > Orient Scalar Volume, or sitk.DICOMOrient for flipped/permuted axes)"
        )


def _side(name: str) -> str:
    for side in ("left", "right"):
        if name.endswith("_" + side):
            return side
    return ""


@dataclass
class FatMaps:
    """Voxel fat maps of one measurement (0–1, NaN = unusable) and how they were made."""

    method: str = "none"  # dixon | t1_local | t1_linear | none
    ff: np.ndarray | None = None  # fat fraction of kind ``ff_type``
    volume: np.ndarray | None = None  # adipose volume fraction
    ff_type: str = ""  # signal | volume
    refs: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _single_image_maps(source: np.ndarray, lab: np.ndarray, label_names: Mapping[int, str], method: str,
                       spacing_ji: tuple[float, float]) -> FatMaps:  # fmt: skip
    """t1_local (or, where no bias field can be fitted and ``method`` is auto, t1_linear) on one image."""

    values = [int(v) for v in label_names]
    if method in ("t1_local", "auto"):
        try:
            ff, vol, refs = fatmod.local_linear_ff(source, lab, values, spacing_ji)
            return FatMaps("t1_local", ff, vol, "signal", refs)
        except ValueError:
            if method != "auto":
                raise
    muscle = np.isin(lab, values)
    try:
        lean, fat_ref = fatmod.linear_references(source, muscle, spacing_ji=spacing_ji)
    except ValueError:
        if method == "auto":  # an image without usable fat contrast gives no FF
            return FatMaps(notes=["no fat reference around the muscles: no fat fraction"])
        raise
    # one lean reference for all muscles: per-muscle modes were tried and agree worse with Dixon on TUM01
    # (a homogeneous muscle's own mode reads as 0 % fat)
    linear = np.where(muscle, fatmod.linear_ff(source, lean, fat_ref), np.nan).astype(np.float32)
    return FatMaps("t1_linear", linear, linear, "volume", {"lean_ref": lean, "fat_ref": fat_ref})


def _fat_maps(lab: np.ndarray, label_names: Mapping[int, str], water: np.ndarray | None, fat: np.ndarray | None,
              img: np.ndarray | None, method: str, spacing_ji: tuple[float, float],
              noise_floor: float | None) -> FatMaps:  # fmt: skip
    """Voxel signal-FF and volume-fraction maps by the requested method ('none' when not possible)."""

    known = ("auto", "dixon", "t1_local", "t1_linear", "none")
    if method not in known:
        raise BadInputError(f"unknown fat_method {method!r}; expected {', '.join(known)}")
    dixon = water is not None and fat is not None
    if method == "none" or (method == "auto" and not dixon and img is None):
        return FatMaps()
    if method == "dixon" or (method == "auto" and dixon):
        if not dixon:
            raise BadInputError("fat_method 'dixon' needs both water and fat images")
        s = np.clip(water, 0, None) + np.clip(fat, 0, None)
        floor = fatmod.noise_floor(s) if noise_floor is None else noise_floor
        maps = FatMaps("dixon", fatmod.dixon_ff(water, fat, floor), None, "signal")
        try:
            maps.volume, maps.refs = fatmod.dixon_volume_fraction(
                water, fat, np.isin(lab, list(label_names)), spacing_ji, floor
            )
        except ValueError as exc:
            maps.notes.append(f"no fat volume fraction: {exc}")
        return maps
    source = img if img is not None else (water + fat if dixon else None)
    if source is None:
        raise BadInputError(f"fat_method {method!r} needs an image")
    return _single_image_maps(source, lab, label_names, method, spacing_ji)


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


@dataclass
class _Sums:
    """Per-slice sums of one structure: voxel counts, intensity, and FF / volume fraction over the eroded core."""

    counts: np.ndarray
    intensity: np.ndarray | None
    ff: tuple[np.ndarray, np.ndarray] | None  # (sum, count)
    volume: tuple[np.ndarray, np.ndarray] | None


def _per_slice_sums(mask: np.ndarray, intensity: np.ndarray | None, maps: FatMaps, erode_px: int) -> _Sums:
    n = mask.shape[0]
    counts = mask.reshape(n, -1).sum(axis=1)
    sums = np.where(mask, intensity, 0.0).reshape(n, -1).sum(axis=1) if intensity is not None else None
    core = _eroded_core(mask, erode_px) if (maps.ff is not None or maps.volume is not None) else mask
    fat_sums = []
    for fmap in (maps.ff, maps.volume):
        if fmap is None:
            fat_sums.append(None)
            continue
        valid = core & np.isfinite(fmap)
        fat_sums.append(
            (np.where(valid, fmap, 0.0).reshape(n, -1).sum(axis=1), valid.reshape(n, -1).sum(axis=1))
        )
    return _Sums(counts, sums, fat_sums[0], fat_sums[1])


def _mean_pct(sums: tuple[np.ndarray, np.ndarray] | None, sel: np.ndarray) -> float:
    if sums is None:
        return np.nan
    n = sums[1][sel].sum()
    return float(100.0 * sums[0][sel].sum() / n) if n > 0 else np.nan


def _row(ctx: dict, sums: _Sums, level: str, k: int | None, sel: np.ndarray) -> dict:
    """One measurement row for the slices selected by ``sel``."""
    n = int(sums.counts[sel].sum())
    present = sel & (sums.counts > 0)
    csa = float(sums.counts[present].mean() * ctx["area_cm2"]) if present.any() else 0.0
    ff = _mean_pct(sums.ff, sel)
    vf = _mean_pct(sums.volume, sel)
    return {
        "case_id": ctx["case_id"],
        "structure": ctx["name"],
        "side": _side(ctx["name"]),
        "level": level,
        "slice": k,
        "n_voxels": n,
        "csa_cm2": csa,
        "fcsa_cm2": csa * (1.0 - ff / 100.0),
        "volume_cm3": n * ctx["vox_cm3"],
        "mean_intensity": float(sums.intensity[sel].sum() / n)
        if (n and sums.intensity is not None)
        else np.nan,
        "fat_fraction_pct": ff,
        "fat_method": ctx["fat_method"],
        "goutallier_grade": goutallier_grade(ff, ctx["thresholds"]),
        "ff_type": ctx["ff_type"],
        "ff_erode_px": ctx["erode_px"],
        "fat_volume_fraction_pct": vf,
        "lean_csa_cm2": csa * (1.0 - vf / 100.0),
        "imat_cm2": csa * vf / 100.0,
    }


def _structure_rows(ctx: dict, sums: _Sums, slice_level: np.ndarray, per_slice: bool) -> list[dict]:
    """Whole-volume row, one row per level, and (``per_slice``) one per slice where the structure is."""
    n_slices = slice_level.size
    rows = [_row(ctx, sums, "all", None, np.ones(n_slices, dtype=bool))]
    for level in dict.fromkeys(lv for lv in slice_level if lv):
        rows.append(_row(ctx, sums, level, None, slice_level == level))
    if per_slice:
        for k in np.flatnonzero(sums.counts):
            sel = np.zeros(n_slices, dtype=bool)
            sel[k] = True
            rows.append(_row(ctx, sums, str(slice_level[k]) or "all", int(k), sel))
    return rows


def _slice_levels(levels: Mapping[str, tuple[int, int]] | None, n_slices: int) -> np.ndarray:
    """Level name of every slice ('' where none)."""
    slice_level = np.full(n_slices, "", dtype=object)
    for level, (k0, k1) in (levels or {}).items():
        if not (0 <= k0 <= k1 < n_slices):
            raise BadInputError(
                f"level {level}: slice range [{k0}, {k1}] outside the volume's 0..{n_slices - 1}"
            )
        slice_level[k0 : k1 + 1] = level
    return slice_level


def _input_arrays(labels: sitk.Image, image: sitk.Image | None, water: sitk.Image | None,
                  fat: sitk.Image | None) -> tuple[np.ndarray, ...]:  # fmt: skip
    """Checked arrays (labels as integers, images as floats) on the label map's grid."""
    check_axial(labels, "label map")
    for other, nm in ((image, "image"), (water, "water image"), (fat, "fat image")):
        if other is not None:
            check_same_grid(other, labels, nm, "label map")
    if (water is None) != (fat is None):
        raise BadInputError("Dixon fat fraction needs both water and fat images (got only one)")
    lab = sitk.GetArrayViewFromImage(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raw = sitk.GetArrayFromImage(labels)
        if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
            raise BadInputError(
                "label map: values must be integers (is this an image rather than a label map?)"
            )
        lab = raw.astype(np.int32)
    img = sitk.GetArrayViewFromImage(image).astype(np.float64) if image is not None else None
    w = sitk.GetArrayFromImage(water).astype(np.float32) if water is not None else None
    f = sitk.GetArrayFromImage(fat).astype(np.float32) if fat is not None else None
    for arr, nm in ((img, "image"), (w, "water image"), (f, "fat image")):
        if arr is not None and np.isnan(arr).any():
            raise BadInputError(f"{nm}: contains NaN voxels; fill or mask them before measuring")
    return lab, img, w, f


def _check_fat_contrast(method: str, img, w, f, spacing_ji: tuple[float, float]) -> None:
    """Refuse inputs whose fat contrast the requested fat method cannot use (contrast.py)."""

    if method == "none":
        return
    hint = " (to measure areas and volumes only, use fat_method='none' / --fat-method none)"
    if w is not None and f is not None and (method in ("auto", "dixon") or img is None):
        require_supported(water=w, fat=f, spacing_ji=spacing_ji, what="water/fat images", hint=hint)
    elif img is not None:
        require_supported(img, spacing_ji=spacing_ji, what="image", hint=hint)


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

    ``fat_method`` "auto" = Dixon when ``water`` and ``fat`` are given, else t1_local on ``image``;
    "none" measures areas and volumes only (any contrast). Inputs whose fat contrast the method cannot
    use (fat-suppressed or water-only single image, swapped water/fat) raise
    :class:`contrast.UnsupportedContrastError`. ``mean_intensity`` is the mean of ``image`` (else of
    water + fat). Columns and their meaning: ``COLUMN_DOCS``.
    """
    lab, img, w, f = _input_arrays(labels, image, water, fat)
    sx, sy, sz = labels.GetSpacing()
    _check_fat_contrast(fat_method, img, w, f, (sy, sx))
    intensity = img if img is not None else ((w + f).astype(np.float64) if w is not None else None)
    slice_level = _slice_levels(levels, lab.shape[0])
    maps = _fat_maps(lab, label_names, w, f, img, fat_method, (sy, sx), noise_floor)
    ctx = {
        "case_id": case_id,
        "area_cm2": sx * sy / 100.0,
        "vox_cm3": sx * sy * sz / 1000.0,
        "fat_method": maps.method,
        "ff_type": maps.ff_type,
        "erode_px": int(erode_px) if maps.ff is not None else np.nan,
        "thresholds": goutallier_thresholds,
    }
    rows: list[dict] = []
    for value, name in sorted(label_names.items()):
        sums = _per_slice_sums(lab == int(value), intensity, maps, erode_px)
        rows.extend(_structure_rows({**ctx, "name": name}, sums, slice_level, per_slice))
    table = pd.DataFrame(rows)
    for col in MEASUREMENT_COLUMNS:
        if col not in table:
            table[col] = np.nan
    table["fat_method"] = table["fat_method"].astype(object).where(table["fat_method"].notna(), "none")
    table["slice"] = table["slice"].astype("Int64")
    table["ff_erode_px"] = table["ff_erode_px"].astype("Int64")
    table["asymmetry_index"] = _asymmetry(table).astype(float) if len(table) else np.nan
    table.attrs["fat_references"] = maps.refs
    table.attrs["notes"] = maps.notes
    return table[list(MEASUREMENT_COLUMNS)]
