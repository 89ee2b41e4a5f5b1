"""Feature reproducibility: ICC(1,1)/(2,1)/(3,1) with 95 % CIs, and mask-perturbation robustness.

The ICC itself (Shrout & Fleiss forms with McGraw & Wong confidence intervals, validated on their
published numbers) is ``ParaspinalLBPCore.agreement.icc_from_matrix``, shared with ParaspinalSeg's
measurement agreement; this module applies it per feature across C5 tables.

Robust-feature list (contract C5, ``robust_features.json``):
``{"threshold": 0.75, "method": "ICC(2,1)", "features": [...], "icc": {name: value}}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from ParaspinalLBPCore.agreement import ICC_FORMS, icc_from_matrix
from ParaspinalLBPCore.atomic import atomic_write_text
from ParaspinalLBPCore.errors import BadInputError
from ParaspinalRadiomicsLib.extraction import (
    MaskSpec,
    Progress,
    RadiomicsParams,
    build_mask_specs,
    extract_specs,
    load_params,
    prepare_image,
)
from ParaspinalRadiomicsLib.inputs import Levels, as_label_map, match_mask_geometry
from ParaspinalRadiomicsLib.tables import feature_columns

KEYS = ["case_id", "structure", "level"]
METHODS = ICC_FORMS


def icc(
    *tables: pd.DataFrame,
    threshold: float = 0.75,
    alpha: float = 0.05,
    method: str = "ICC(2,1)",
    keys: list[str] | None = None,
) -> pd.DataFrame:
    """Per-feature ICCs across C5 tables of the same targets (raters, sessions or perturbations).

    Targets are matched on ``keys`` (case_id, structure, level); only rows with status ok in every table
    are used, and per feature only targets finite in every table. ``flagged`` = ICC (``method``) below
    ``threshold`` or undefined (e.g. a constant feature).
    """
    if len(tables) < 2:
        raise BadInputError("icc needs at least two feature tables")
    if method not in METHODS:
        raise BadInputError(f"unknown ICC method {method!r}; choose from {', '.join(METHODS)}")
    keys = keys or KEYS
    feats = [c for c in feature_columns(tables[0]) if all(c in t.columns for t in tables[1:])]
    if not feats:
        raise BadInputError("the feature tables have no feature column in common")
    merged = None
    for i, t in enumerate(tables):
        ok = t[t["status"] == "ok"] if "status" in t.columns else t
        if ok.duplicated(keys).any():
            dup = ok[ok.duplicated(keys)].iloc[0]
            raise BadInputError(
                f"table {i + 1} has duplicate rows for {', '.join(str(dup[c]) for c in keys)}"
            )
        part = ok[keys + feats].rename(columns={f: f"{f}\t{i}" for f in feats})
        merged = part if merged is None else merged.merge(part, on=keys, how="inner")
    rows = []
    for f in feats:
        y = merged[[f"{f}\t{i}" for i in range(len(tables))]].to_numpy(float)
        y = y[np.isfinite(y).all(axis=1)]
        res: dict = {"feature": f, "n": len(y), "k": len(tables)}
        if len(y) >= 2:
            res |= {k: v for k, v in icc_from_matrix(y, alpha).items() if k not in ("n", "k")}
        value = res.get(method, np.nan)
        res["flagged"] = bool(not np.isfinite(value) or value < threshold)
        rows.append(res)
    out = pd.DataFrame(rows)
    out.attrs.update(threshold=threshold, method=method, alpha=alpha)
    return out


def robust_features(
    icc_table: pd.DataFrame, threshold: float | None = None, method: str | None = None
) -> dict:
    """The C5 robust-feature list from an ICC table: features with ICC >= threshold."""
    threshold = icc_table.attrs.get("threshold", 0.75) if threshold is None else threshold
    method = method or icc_table.attrs.get("method", "ICC(2,1)")
    values = dict(
        zip(
            icc_table["feature"], icc_table.get(method, pd.Series(np.nan, index=icc_table.index)), strict=True
        )
    )
    keep = [f for f, v in values.items() if np.isfinite(v) and v >= threshold]
    return {
        "threshold": float(threshold),
        "method": method,
        "features": keep,
        "icc": {f: (float(v) if np.isfinite(v) else None) for f, v in values.items()},
    }


def write_robust_features(data: dict, path: str | Path) -> None:
    """Write robust_features.json atomically."""
    atomic_write_text(path, json.dumps(data, indent=1))


# ----------------------------------------------------------------------------------------------------
# Perturbation robustness
_INPLANE = np.zeros((3, 3, 3), bool)
_INPLANE[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # 4-connected cross within the axial slice (numpy axis 0)


def perturb_mask(mask: np.ndarray, kind: str) -> np.ndarray:
    """One perturbation of a boolean (z, y, x) mask: erode/dilate by 1 voxel in-plane, or shift by 1 voxel."""
    if kind == "original":
        return mask.copy()
    if kind == "erode":
        return ndimage.binary_erosion(mask, _INPLANE)
    if kind == "dilate":
        return ndimage.binary_dilation(mask, _INPLANE)
    if kind.startswith("shift_"):
        axis = {"x": 2, "y": 1}[kind[6]]
        step = 1 if kind.endswith("+1") else -1
        out = np.zeros_like(mask)
        src = [slice(None)] * 3
        dst = [slice(None)] * 3
        src[axis] = slice(0, -1) if step > 0 else slice(1, None)
        dst[axis] = slice(1, None) if step > 0 else slice(0, -1)
        out[tuple(dst)] = mask[tuple(src)]
        return out
    raise BadInputError(f"unknown perturbation {kind!r}")


PERTURBATIONS = ("original", "erode", "dilate", "shift_x+1", "shift_x-1", "shift_y+1", "shift_y-1")


def perturbation_features(
    image: sitk.Image,
    labels: sitk.Image,
    label_names: dict[int, str] | None,
    params: str | Path | dict | RadiomicsParams,
    levels: Levels | None = None,
    per_level: bool = False,
    per_side: bool = True,
    case_id: str = "case",
    perturbations: tuple[str, ...] = PERTURBATIONS,
    resample_mask: bool = False,
    structures: list[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, pd.DataFrame]:
    """C5 tables of one case, one per mask perturbation (the image is prepared once for all)."""
    rp = load_params(params)
    labels = match_mask_geometry(
        image, as_label_map(labels), resample_mask, rp.settings.get("geometryTolerance")
    )
    specs, _ = build_mask_specs(labels, label_names, levels, per_level, per_side, structures)
    prep = prepare_image(image, rp)
    base = [(s, sitk.GetArrayViewFromImage(s.mask) == s.label) for s in specs]
    tables: dict[str, pd.DataFrame] = {}
    total = len(perturbations) * len(base)
    for j, kind in enumerate(perturbations):
        pspecs = []
        for s, arr in base:
            m = perturb_mask(arr, kind)
            img = sitk.GetImageFromArray(m.astype(np.uint32))
            img.CopyInformation(s.mask)
            n = int(m.sum())
            bbox = ndimage.find_objects(m.astype(np.uint8))[0] if n else None
            pspecs.append(MaskSpec(s.structure, s.level, img, 1, n, bbox))
        cb = (
            None
            if progress is None
            else (lambda d, t, w, j=j, kind=kind: progress(j * len(base) + d, total, f"{kind}: {w}"))
        )
        tables[kind] = extract_specs(rp, prep, pspecs, case_id, progress=cb)
    return tables


def perturbation_icc(
    tables: dict[str, pd.DataFrame], threshold: float = 0.75, method: str = "ICC(2,1)", alpha: float = 0.05
) -> pd.DataFrame:
    """Per-feature ICC across perturbations (raters = perturbations, targets = case x structure x level)."""
    return icc(*tables.values(), threshold=threshold, method=method, alpha=alpha)
