"""Validation set for fatty muscle (issue 14): cases that stand in for the trial's patients, and their score.

API (shared by the tests and ``Testing/benchmarks/bench_segment_accuracy.py``)::

    from ParaspinalSegLib.validation import fatty_cases, score_case, summary_row
    for case in fatty_cases(data_dir, sources=("phantom", "tum01", "musclemap"), grades=(0, 1, 2, 3, 4),
                            patterns=fat_patterns.PATTERNS, contrasts=("dixon", "single"),
                            phantom_overrides=None):    # e.g. {"matrix": [192, 192], ...} for fast tests
        result = segment(case.inputs, case.seeds, levels=case.levels, assume_same_grid=True)
        table = score_case(case, result.labels)   # per structure x level and "all": Dice, volume and FF errors
        row = summary_row(case, table)            # one line of the issue's table

Cases (``ValidationCase``): the phantom per Goutallier grade x pattern (``phantom_params.goutallier_params``;
Dixon = water/fat, single = the T1w-like image); TUM01 (real Dixon, manual labels) infiltrated inside its
outlines per grade x pattern to the grade's Dixon FF (``GRADE_FF``; grade 0 = the lean case as it is; Dixon and
the in-phase image W + F synthesised from the infiltrated pair); MuscleMap sub0001 (single T1-like image,
labels probably a model's output) infiltrated to the grade's fat volume fraction (``GRADE_VOLUME``). Each case
carries its truth labels (project values, the scored muscles only), level slice ranges, one click per muscle
per level (``seeds.points_from_labels``) and the images that define the true FF (Dixon where there is one).

Scoring (``score_case``): Dice; volume error (%) of the label voxel count; FF error (pp) = what
``measure_labels`` reports inside our label minus what it reports inside the true outline, both with the
same in-plane erosion (``ff_err_pp``: default 1 voxel, as the CLIs and the Slicer Logic report) and both
without erosion (``ff_raw_err_pp``; the true outline's raw mean is the FF of the whole compartment, which
the eroded mean misses where fat lines the border). For a single image the
measured FF is the single-image method's and the truth is the Dixon FF of the true outline (phantom, TUM01:
the issue's "within 5 pp of Dixon"); MuscleMap has no Dixon, so there the truth is the single-image method
inside the true outline (segmentation error only).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ParaspinalLBPCore.errors import BadInputError, MissingInputError
from ParaspinalLBPCore.structures import BY_NAME, MUSCLEMAP_LABEL_NAMES, TUM01_LABEL_NAMES
from ParaspinalSegLib.fat_patterns import PATTERNS
from ParaspinalSegLib.infiltrate import infiltrate
from ParaspinalSegLib.markups import MarkupPoint
from ParaspinalSegLib.measure import measure_labels
from ParaspinalSegLib.phantom import make_phantom
from ParaspinalSegLib.phantom_params import GOUTALLIER_GRADES, PARASPINALS, goutallier_params
from ParaspinalSegLib.seeds import points_from_labels

SOURCES = ("phantom", "tum01", "musclemap")
CONTRASTS = ("dixon", "single")
# Real-case severity per Goutallier grade: mean Dixon signal FF inside each outline, the middle of the phantom
# preset's band (project convention, measure.GOUTALLIER_FF_THRESHOLDS); grade 0 = the case as it is.
GRADE_FF = {1: 0.17, 2: 0.32, 3: 0.50, 4: 0.66}
# Single image without Dixon (MuscleMap): the fat volume fraction giving that signal FF in a uniform mixture
# when adipose tissue has 2.9x lean muscle's Dixon signal (TUM01 / phantom): v = FF / (2.9 - 1.9 FF).
GRADE_VOLUME = {g: round(ff / (2.9 - 1.9 * ff), 3) for g, ff in GRADE_FF.items()}


@dataclass
class ValidationCase:
    """One case: what segment() takes, the truth, the clicks, and the images defining the true FF."""

    name: str  # e.g. "tum01 G3 streaky dixon"
    source: str
    grade: int
    pattern: str  # "none" for a lean real case
    contrast: str  # "dixon" or "single"
    inputs: dict[str, sitk.Image] | sitk.Image
    labels: sitk.Image  # truth, project label values (structures.py), scored muscles only
    label_names: dict[int, str]
    levels: dict[str, tuple[int, int]]
    seeds: list[MarkupPoint]
    ff_images: dict[str, sitk.Image]  # {"water", "fat"} (Dixon truth) or {"image"} (no Dixon: MuscleMap)
    truth: dict[str, Any]  # infiltration / phantom truth per structure x level (volume fraction, FF)


def _canonical(lab: np.ndarray, names: Mapping[int, str], keep: Sequence[str]) -> np.ndarray:
    """Label array with the project's values for the structures in ``keep``; everything else 0."""
    out = np.zeros(lab.shape, np.uint8)
    for value, name in names.items():
        if name in keep:
            out[lab == value] = BY_NAME[name].value
    return out


def _clicks(
    lab: np.ndarray, ref: sitk.Image, names: Mapping[int, str], levels: Mapping[str, tuple[int, int]]
):
    """One click per muscle per level: the validation's rule (most interior voxel on each level's middle
    slice, ``seeds.points_from_labels``), tagged with the level holding its slice."""
    points = points_from_labels(lab, ref, names, slabs=len(levels))
    out = []
    for p in points:
        k = ref.TransformPhysicalPointToIndex(tuple(float(v) for v in p.position_lps))[2]
        level = next(lv for lv, (k0, k1) in levels.items() if k0 <= k <= k1)
        out.append(MarkupPoint(p.label, p.position_lps, level))
    return out


def _image(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    return img


def _phantom_cases(grades, patterns, contrasts, structures, overrides, seed) -> Iterator[ValidationCase]:
    """The phantom at each Goutallier grade x pattern (paraspinal muscles), Dixon and T1w-like."""
    for grade in grades:
        for pattern in patterns:
            params = goutallier_params(grade, pattern, **(overrides or {}))
            ph = make_phantom(params, seed=seed + 10 * grade + PATTERNS.index(pattern))
            names = {BY_NAME[n].value: n for n in structures}
            lab = _canonical(ph.arrays["labels"], names, structures)
            labels = _image(lab, ph.images["labels"])
            clicks = _clicks(lab, labels, names, ph.level_slices)
            dixon = {"water": ph.images["water"], "fat": ph.images["fat"]}
            for contrast in contrasts:
                inputs = dixon if contrast == "dixon" else ph.images["t1w"]
                yield ValidationCase(f"phantom G{grade} {pattern} {contrast}", "phantom", grade, pattern, contrast,
                                     inputs, labels, names, dict(ph.level_slices), clicks, dixon,
                                     ph.truth["structures"])  # fmt: skip


def _slab_levels(n_slices: int, first: int) -> dict[str, tuple[int, int]]:
    """Four equal slabs of slices named L<first>… (the real cases carry no level landmarks)."""
    return {
        f"L{i + first}": (int(s[0]), int(s[-1])) for i, s in enumerate(np.array_split(np.arange(n_slices), 4))
    }


def _read(folder: Path, *names: str) -> list[sitk.Image]:
    out = []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise MissingInputError(f"validation data missing: {path} (see ../shared/data/README.md)")
        out.append(sitk.ReadImage(str(path)))
    return out


def _tum01_cases(data_dir, grades, patterns, contrasts, structures, seed) -> Iterator[ValidationCase]:
    """TUM01 infiltrated to each grade's Dixon FF inside the manual outlines; Dixon and in-phase W + F."""
    water, fat, raw = _read(
        Path(data_dir) / "myosegmentum_tum01", "water.nii.gz", "fat.nii.gz", "labels.nii.gz"
    )
    names = {BY_NAME[n].value: n for n in TUM01_LABEL_NAMES.values() if n in structures}
    lab = _canonical(sitk.GetArrayFromImage(raw), TUM01_LABEL_NAMES, structures)
    labels = _image(lab, raw)
    levels = _slab_levels(lab.shape[0], 2)
    clicks = _clicks(lab, labels, names, levels)
    for grade in grades:
        for pattern in patterns if grade else ["none"]:
            res = infiltrate({"water": water, "fat": fat}, labels, names, GRADE_FF.get(grade, 0.0), kind="ff",
                             pattern="diffuse" if pattern == "none" else pattern, seed=seed + grade,
                             levels=levels, assume_same_grid=True)  # fmt: skip
            dixon = {"water": res.images["water"], "fat": res.images["fat"]}
            for contrast in contrasts:
                inputs = dixon if contrast == "dixon" else res.images["inphase"]
                yield ValidationCase(f"tum01 G{grade} {pattern} {contrast}", "tum01", grade, pattern, contrast,
                                     inputs, labels, names, levels, clicks, dixon,
                                     res.truth["structures"])  # fmt: skip


def _musclemap_cases(data_dir, grades, patterns, structures, seed) -> Iterator[ValidationCase]:
    """MuscleMap's single T1-like image infiltrated to each grade's fat volume fraction."""
    image, raw = _read(Path(data_dir) / "musclemap_sub0001", "image.nii.gz", "labels.nii.gz")
    names = {BY_NAME[n].value: n for n in MUSCLEMAP_LABEL_NAMES.values() if n in structures}
    lab = _canonical(sitk.GetArrayFromImage(raw), MUSCLEMAP_LABEL_NAMES, structures)
    labels = _image(lab, raw)
    levels = _slab_levels(lab.shape[0], 1)
    clicks = _clicks(lab, labels, names, levels)
    for grade in grades:
        for pattern in patterns if grade else ["none"]:
            res = infiltrate({"image": image}, labels, names, GRADE_VOLUME.get(grade, 0.0), kind="volume",
                             pattern="diffuse" if pattern == "none" else pattern, seed=seed + grade,
                             levels=levels)  # fmt: skip
            single = res.images["image"]
            yield ValidationCase(f"musclemap G{grade} {pattern} single", "musclemap", grade, pattern, "single",
                                 single, labels, names, levels, clicks, {"image": single},
                                 res.truth["structures"])  # fmt: skip


def fatty_cases(
    data_dir: str | Path | None = None,
    *,
    sources: Sequence[str] = SOURCES,
    grades: Sequence[int] = GOUTALLIER_GRADES,
    patterns: Sequence[str] = PATTERNS,
    contrasts: Sequence[str] = CONTRASTS,
    structures: Sequence[str] = PARASPINALS,
    phantom_overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Iterator[ValidationCase]:
    """Yield the validation cases of the requested sources × grades × patterns × contrasts, built lazily
    (one case's images at a time). ``data_dir`` = the shared data folder (needed for tum01 / musclemap);
    ``phantom_overrides`` = top-level phantom parameters (smaller grid or fewer levels for fast tests)."""
    for name, values, allowed in (("sources", sources, SOURCES), ("contrasts", contrasts, CONTRASTS),
                                  ("patterns", patterns, PATTERNS), ("grades", grades, GOUTALLIER_GRADES)):  # fmt: skip
        bad = [v for v in values if v not in allowed]
        if bad:
            raise BadInputError(f"fatty_cases: unknown {name} {bad}; expected among {list(allowed)}")
    if set(sources) - {"phantom"} and data_dir is None:
        raise BadInputError("fatty_cases: the real cases need data_dir (the shared data folder)")
    if "phantom" in sources:
        yield from _phantom_cases(grades, patterns, contrasts, structures, phantom_overrides, seed)
    if "tum01" in sources:
        yield from _tum01_cases(data_dir, grades, patterns, contrasts, structures, seed)
    if "musclemap" in sources and "single" in contrasts:
        yield from _musclemap_cases(data_dir, grades, patterns, structures, seed)


def _ff_table(labels: sitk.Image, case: ValidationCase, images: Mapping[str, sitk.Image], erode_px: int):
    """measure_labels' FF (%) per (structure, level) inside ``labels``, from a Dixon pair or one image."""
    kwargs: dict[str, Any] = (
        {"water": images["water"], "fat": images["fat"]} if "water" in images else {"image": images["image"]}
    )
    table = measure_labels(labels, case.label_names, levels=case.levels, per_slice=False, erode_px=erode_px,
                           **kwargs)  # fmt: skip
    return {(r.structure, r.level): float(r.fat_fraction_pct) for r in table.itertuples()}


def score_case(case: ValidationCase, labels: sitk.Image | np.ndarray, erode_px: int = 1) -> pd.DataFrame:
    """Per structure × level (and ``all``): Dice, volume error (%), FF (ours, truth, error in pp) — see the
    module doc for which FF each side is. ``labels`` = a segmentation with the project's values."""
    pred = sitk.GetArrayFromImage(labels) if isinstance(labels, sitk.Image) else np.asarray(labels)
    truth = sitk.GetArrayFromImage(case.labels)
    if pred.shape != truth.shape:
        raise BadInputError(
            f"score_case {case.name}: segmentation shape {pred.shape} differs from the truth's {truth.shape}"
        )
    pred_img = _image(pred.astype(np.uint8), case.labels)
    measured_on = (
        {"water": case.inputs["water"], "fat": case.inputs["fat"]} if isinstance(case.inputs, dict)
        else {"image": case.inputs}
    )  # fmt: skip
    ours = _ff_table(pred_img, case, measured_on, erode_px)
    true_ff = _ff_table(case.labels, case, case.ff_images, erode_px)
    ours_raw = _ff_table(pred_img, case, measured_on, 0) if erode_px else ours
    true_raw = _ff_table(case.labels, case, case.ff_images, 0) if erode_px else true_ff
    rows = []
    for value, name in sorted(case.label_names.items()):
        for level, (k0, k1) in {**case.levels, "all": (0, truth.shape[0] - 1)}.items():
            t, p = truth[k0 : k1 + 1] == value, pred[k0 : k1 + 1] == value
            nt, n_p = int(t.sum()), int(p.sum())
            rows.append({
                "case": case.name, "source": case.source, "grade": case.grade, "pattern": case.pattern,
                "contrast": case.contrast, "structure": name, "level": level,
                "dice": 2.0 * float((t & p).sum()) / max(1, nt + n_p),
                "volume_err_pct": 100.0 * (n_p / nt - 1.0) if nt else np.nan,
                "ff_pct": ours.get((name, level), np.nan), "ff_true_pct": true_ff.get((name, level), np.nan),
                "ff_raw_pct": ours_raw.get((name, level), np.nan), "ff_raw_true_pct": true_raw.get((name, level), np.nan),
            })  # fmt: skip
    table = pd.DataFrame(rows)
    table["ff_err_pp"] = table["ff_pct"] - table["ff_true_pct"]
    table["ff_raw_err_pp"] = table["ff_raw_pct"] - table["ff_raw_true_pct"]
    return table


def summary_row(table: pd.DataFrame) -> dict[str, Any]:
    """One line of the issue's table from a ``score_case`` table (whole muscles): worst and mean Dice, largest
    |FF error| and |volume error| over the scored muscles, and the mean true FF."""
    whole = table[table.level == "all"]
    first = whole.iloc[0]
    return {
        "case": first.case, "source": first.source, "grade": int(first.grade), "pattern": first.pattern,
        "contrast": first.contrast, "dice_min": float(whole.dice.min()), "dice_mean": float(whole.dice.mean()),
        "ff_err_max_pp": float(whole.ff_err_pp.abs().max()), "vol_err_max_pct": float(whole.volume_err_pct.abs().max()),
        "ff_raw_err_max_pp": float(whole.ff_raw_err_pp.abs().max()), "ff_true_mean_pct": float(whole.ff_true_pct.mean()),
        "ff_raw_true_mean_pct": float(whole.ff_raw_true_pct.mean()),
    }  # fmt: skip
