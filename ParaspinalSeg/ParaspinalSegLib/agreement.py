"""Agreement between two segmentations of the same cases: two raters, or one rater twice.

Each rater folder holds one sub-folder per case with ``labels.nii.gz`` (+ ``labels.json``: names and
level slice ranges) — a ``paraspinal-seg batch`` folder (its ``cases/``) or the same layout written
by hand. Cases are matched by folder name; muscles by structure name (the label values may differ).
Both raters' label maps of a case must lie on one voxel grid.

Per case × muscle × level (``all`` = the whole volume): Dice, ASSD and HD95 (surface.py) and both
raters' measurements (CSA, FF, and fat volume fraction / lean CSA / IMAT when the measurement table has
them), measured identically: the same images, level slice ranges and erosion. Per muscle × level:
ICC(2,1) and ICC(3,1) with 95 % CIs (Shrout & Fleiss 1979; the project's shared ICC code) and
Bland–Altman bias and limits of agreement with CIs (bland_altman.py) of each measurement.

Images (for FF): from ``manifest`` (the batch manifest) when given, else from rater A's batch
markers (``done.json`` records the inputs); without either, FF and intensity measures are left out.
Levels: the manifest's level landmarks, else rater A's ``labels.json``, else rater B's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ParaspinalLBPCore.agreement import icc_from_matrix
from ParaspinalLBPCore.errors import BadInputError, MissingInputError
from ParaspinalLBPCore.structures import LEVELS, MUSCLE_NAMES
from ParaspinalSegLib.batch import SERIES_COLUMNS, read_manifest, read_marker
from ParaspinalSegLib.bland_altman import bland_altman
from ParaspinalSegLib.image_inputs import load_image_inputs
from ParaspinalSegLib.io import match_grid, read_labels_json, same_grid_problems, to_axial
from ParaspinalSegLib.levels import levels_from_landmarks
from ParaspinalSegLib.markups import read_points
from ParaspinalSegLib.measure import measure_labels
from ParaspinalSegLib.surface import compare_masks

log = logging.getLogger(__name__)

#: Measurements compared when both raters' tables have them (column → label in the report).
MEASURES: dict[str, str] = {
    "csa_cm2": "CSA (cm²)",
    "fat_fraction_pct": "FF (%)",
    "fat_volume_fraction_pct": "fat volume fraction (%)",
    "lean_csa_cm2": "lean CSA (cm²)",
    "imat_cm2": "IMAT (cm²)",
}
KEYS = ["case_id", "structure", "level"]


@dataclass
class RaterCase:
    """One case of one rater: its folder, label map, names and level ranges, batch marker if any."""

    case_id: str
    folder: Path
    names: dict[int, str]
    levels: dict[str, tuple[int, int]]
    marker: dict | None = None

    @property
    def labels(self) -> Path:
        """The label map file."""
        return self.folder / "labels.nii.gz"


def rater_cases(folder: str | Path, option: str) -> dict[str, RaterCase]:
    """The cases of a rater folder (a batch folder or ``<case_id>/labels.nii.gz`` folders)."""
    from ParaspinalLBPCore.structures import default_label_names

    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"{option}: folder not found: {folder}")
    root = folder / "cases" if (folder / "cases").is_dir() else folder
    cases = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (sub / "labels.nii.gz").is_file():
            continue
        names, levels = (
            read_labels_json(sub / "labels.json")
            if (sub / "labels.json").is_file()
            else (default_label_names(), {})
        )
        cases[sub.name] = RaterCase(sub.name, sub, names, levels, read_marker(sub))
    if not cases:
        raise BadInputError(
            f"{option} {folder}: no case folder with a labels.nii.gz (expected <case_id>/labels.nii.gz "
            "beside its labels.json, or a paraspinal-seg batch folder)"
        )
    return cases


@dataclass
class AgreementResult:
    """Per-case rows, the per muscle × level summary, and notes for the report."""

    cases: pd.DataFrame
    summary: pd.DataFrame
    measures: list[str]
    notes: list[str] = field(default_factory=list)


def _image_source(case_id: str, a: RaterCase, manifest: Mapping[str, Any] | None) -> SimpleNamespace | None:
    """Image options (as the CLIs take them) of a case: the manifest row, else rater A's batch marker."""
    import dataclasses

    if manifest is not None:
        spec = manifest.get(case_id)
        return None if spec is None else SimpleNamespace(**dataclasses.asdict(spec))
    if a.marker and a.marker.get("inputs"):
        inputs, selectors = a.marker["inputs"], a.marker.get("selectors") or {}
        values = {c: inputs.get(c) for c in ("image", "water", "fat", "dicom", "levels")}
        return SimpleNamespace(**values, **{c: selectors.get(c) for c in SERIES_COLUMNS})
    return None


def _images(
    source: SimpleNamespace | None, labels: sitk.Image, assume_same_grid: bool
) -> dict[str, sitk.Image]:
    """The measure_labels image arguments on the label grid ({} without a source)."""

    if source is None:
        return {}
    source.assume_same_grid = assume_same_grid
    src = load_image_inputs(source)
    roles = {"image": src.image} if src.image is not None else {"water": src.water, "fat": src.fat}
    return {
        role: match_grid(img, labels, f"{role} image", "label map", assume_same_grid)
        for role, img in roles.items()
    }


def _levels(
    source: SimpleNamespace | None, a: RaterCase, b: RaterCase, labels: sitk.Image, notes: list[str]
) -> dict[str, tuple[int, int]]:
    """Level slice ranges both raters are compared on (see the module docstring)."""

    if source is not None and getattr(source, "levels", None):
        return levels_from_landmarks(read_points(source.levels), labels, source=source.levels)
    if a.levels and b.levels and a.levels != b.levels:
        notes.append(f"{a.case_id}: the raters' level ranges differ; rater A's are used for both")
    return dict(a.levels or b.levels)


def _masks(arr: np.ndarray, names: Mapping[int, str]) -> dict[str, np.ndarray]:
    return {name: arr == value for value, name in names.items() if name in MUSCLE_NAMES}


def compare_case(
    a: RaterCase,
    b: RaterCase,
    source: SimpleNamespace | None,
    erode_px: int = 1,
    assume_same_grid: bool = False,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """One row per muscle × level of one case: Dice/ASSD/HD95 and ``<measure>_a``/``<measure>_b``."""

    notes = notes if notes is not None else []
    la = to_axial(sitk.ReadImage(str(a.labels)), f"rater A {a.labels}")
    lb = to_axial(sitk.ReadImage(str(b.labels)), f"rater B {b.labels}")
    problems = same_grid_problems(la, lb)
    if problems:
        raise BadInputError(
            f"case {a.case_id}: the label maps of {a.labels} and {b.labels} are not on one voxel grid: "
            + "; ".join(problems)
        )
    levels = _levels(source, a, b, la, notes)
    images = _images(source, la, assume_same_grid)
    ma, mb = (_masks(sitk.GetArrayFromImage(x), r.names) for x, r in ((la, a), (lb, b)))
    spacing = la.GetSpacing()[::-1]
    rows = []
    for name in [n for n in MUSCLE_NAMES if n in ma or n in mb]:
        empty = np.zeros(la.GetSize()[::-1], bool)
        for level, metrics in compare_masks(
            ma.get(name, empty), mb.get(name, empty), spacing, levels
        ).items():
            rows.append({"case_id": a.case_id, "structure": name, "level": level, **metrics})
    geometry = pd.DataFrame(rows, columns=[*KEYS, "dice", "assd_mm", "hd95_mm", "voxels_a", "voxels_b"])
    tables = []
    for labels, rater, suffix in ((la, a, "_a"), (lb, b, "_b")):
        names = {v: n for v, n in rater.names.items() if n in MUSCLE_NAMES}
        t = measure_labels(labels, names, levels=levels or None, case_id=a.case_id, per_slice=False,
                           erode_px=erode_px, **images)  # fmt: skip
        cols = [c for c in MEASURES if c in t.columns]
        tables.append(t[KEYS + cols].rename(columns={c: c + suffix for c in cols}))
    measured = tables[0].merge(tables[1], on=KEYS, how="outer")
    return geometry.merge(measured, on=KEYS, how="left")


def summarise(cases: pd.DataFrame, measures: list[str], alpha: float = 0.05) -> pd.DataFrame:
    """Per muscle × level: Dice/ASSD/HD95 over the cases, ICC(2,1)/(3,1) and Bland–Altman per measure."""
    rows = []
    for (structure, level), g in cases.groupby(["structure", "level"], sort=False):
        row = {"structure": structure, "level": level, "n_cases": int(g["case_id"].nunique())}
        for metric in ("dice", "assd_mm", "hd95_mm"):
            v = g[metric].astype(float)
            row |= {f"{metric}_mean": v.mean(), f"{metric}_sd": v.std(ddof=1), f"{metric}_min": v.min(),
                    f"{metric}_max": v.max()}  # fmt: skip
        for m in measures:
            pair = g[[f"{m}_a", f"{m}_b"]].astype(float).dropna().to_numpy()
            icc: dict[str, float] = {}
            if len(pair) >= 2:
                icc = icc_from_matrix(pair, alpha)
            for method, tag in (("ICC(2,1)", "icc21"), ("ICC(3,1)", "icc31")):
                for end, suffix in (("", ""), ("_lower", "_lo"), ("_upper", "_hi")):
                    row[f"{m}_{tag}{suffix}"] = icc.get(method + end, np.nan)
            ba = bland_altman(pair[:, 0], pair[:, 1], alpha=alpha) if len(pair) else bland_altman([], [])
            row |= {f"{m}_ba_{k}": v for k, v in ba.items() if k != "n"} | {f"{m}_n": ba["n"]}
        rows.append(row)
    order = {lv: i for i, lv in enumerate(["all", *LEVELS])}
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_s"] = out["structure"].map({n: i for i, n in enumerate(MUSCLE_NAMES)})
    out["_l"] = out["level"].map(lambda lv: order.get(lv, 99))
    return out.sort_values(["_s", "_l"]).drop(columns=["_s", "_l"]).reset_index(drop=True)


def run_agreement(
    folder_a: str | Path,
    folder_b: str | Path,
    manifest: str | Path | None = None,
    erode_px: int = 1,
    assume_same_grid: bool = False,
    alpha: float = 0.05,
    progress: Callable[[int, int, str], None] | None = None,
) -> AgreementResult:
    """Compare the cases both folders hold; see the module docstring."""

    ra, rb = rater_cases(folder_a, "--a"), rater_cases(folder_b, "--b")
    common = [c for c in ra if c in rb]
    notes = []
    for only, where in ((sorted(set(ra) - set(rb)), "A"), (sorted(set(rb) - set(ra)), "B")):
        if only:
            notes.append(
                f"{len(only)} case(s) only in rater {where}'s folder, left out: {', '.join(only[:10])}"
            )
    if len(common) < 2:
        raise BadInputError(
            f"--a {folder_a} and --b {folder_b} have {len(common)} case(s) in common; agreement needs at least 2"
        )
    specs = {s.case_id: s for s in read_manifest(manifest)} if manifest else None
    report = progress or (lambda d, t, s: None)
    frames = []
    for k, case_id in enumerate(common):
        report(k, len(common) + 1, case_id)
        source = _image_source(case_id, ra[case_id], specs)
        if source is None and specs is not None:
            notes.append(f"{case_id}: not in the manifest; compared without images (no FF)")
        frames.append(compare_case(ra[case_id], rb[case_id], source, erode_px, assume_same_grid, notes))
    cases = pd.concat(frames, ignore_index=True)
    measures = [m for m in MEASURES if f"{m}_a" in cases and cases[[f"{m}_a", f"{m}_b"]].notna().any().all()]
    if "fat_fraction_pct" not in measures:
        notes.append(
            "no images for FF: give --manifest (or compare batch folders, whose markers name the images)"
        )
    report(len(common), len(common) + 1, "statistics")
    return AgreementResult(cases, summarise(cases, measures, alpha), measures, notes)
