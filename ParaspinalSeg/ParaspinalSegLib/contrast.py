"""Refuse inputs whose contrast the segmentation and fat-fraction methods cannot use.

Both methods need fat to be bright: a single image must be fat-bright (T1w, T2w, in-phase), and in a
Dixon pair the image given as fat must hold the fat signal. Three inputs break that and would otherwise
give silent garbage: a fat-suppressed image (STIR/SPIR/SPAIR) or a Dixon water image given as the single
image, and a Dixon pair with water and fat swapped. :func:`check_contrast` decides from the image itself
and, where present, from metadata (DICOM keywords, BIDS sidecar keys, NIfTI ``descrip``/``intent_name``).

Image evidence is the subcutaneous fat layer, the outermost tissue under the skin in every patient:
- single image: ``shell ratio`` = the brightest depth ring 2-20 mm under the body surface over the median
  of the tissue deeper than 25 mm, per slice (median over slices). Fat-bright sequences put fat at 2-5x
  muscle, so the ratio is >= ~2; with fat suppressed or water only the brightest shallow ring is skin or
  muscle, so it stays near or below 1. A surface coil brightens the shell in both cases by the same gain,
  which a 25 mm depth difference keeps small; a thin fat layer still gives one bright ring.
- Dixon pair: the fat fraction F/(F+W) on the brightest shallow ring of F + W (the fat layer whichever
  image holds it; the coil gain cancels in the ratio): ~0.9 for a correct pair, ~0.1 when swapped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalSegLib.fat import noise_floor

# Single image: shell ratio at or above FAT_BRIGHT_RATIO is fat-bright, at or below FAT_DARK_RATIO fat is
# not bright; in between the image is inconclusive (accepted, with the reason reported). Measured: fat-bright
# 2.2-4.1 (phantom T1w/T2w/in-phase incl. 3 mm and 60 mm fat, TUM01 in-phase, MuscleMap, TotalSegmentator),
# fat-dark 0.2-1.16 (Dixon water images, water + residual fat, with a 3x surface-coil gain).
FAT_BRIGHT_RATIO = 1.6
FAT_DARK_RATIO = 1.3
# Dixon pair: F/(F+W) of the subcutaneous layer above this is a correct pair, below 1 - this swapped.
DIXON_SHELL_FF = 0.6
SHELL_MM = (2.0, 20.0)  # depth range searched for the subcutaneous layer (skin skipped)
LAYER_MM = 3.0  # band thickness: the thinnest subcutaneous fat layer, thicker than skin (1-2 mm)
# The shell is compared with the tissue deeper than DEEP_MM and than DEEP_FRACTION of the slice's largest depth
# (so that in an obese patient the reference lies under the fat layer, not in it).
DEEP_MM = 25.0
DEEP_FRACTION = 0.4
MIN_SURFACE = 0.5  # share of a slice's body outline that must be skin against air (else the slice is skipped)
MAX_SLICES = 15  # evenly spaced slices examined (the layer is the same on neighbouring slices)
# STIR nulls fat at TI = T1_fat x ln 2, 150-260 ms at 1.5-3 T; T1-FLAIR and other IR use TI > 700 ms.
STIR_MAX_TI_MS = 300.0

# Words (upper case, split at anything not a letter or digit) that mark fat suppression.
_SUPPRESSION_WORDS = {"STIR", "SPIR", "SPAIR", "FATSAT", "FS", "SFS", "FATSUPP", "FATSUPPRESSED"}
_SUPPRESSION_PHRASES = ("FAT SAT", "FAT SUPP", "FAT SUPPRESS")
#: DICOM keyword → tag ("gggg,eeee") of the headers the checks read (for readers that take tags, e.g. Slicer's).
DICOM_TAGS = {
    "ScanOptions": "0018,0022",
    "ScanningSequence": "0018,0020",
    "SequenceName": "0018,0024",
    "InversionTime": "0018,0082",
    "SeriesDescription": "0008,103E",
    "ProtocolName": "0018,1030",
    "ImageType": "0008,0008",
}
_TEXT_KEYS = ("SeriesDescription", "ProtocolName", "SequenceName", "descrip", "intent_name")


class UnsupportedContrastError(BadInputError):
    """The input's contrast is one the methods cannot use (the message says which and why)."""


@dataclass(frozen=True)
class ContrastVerdict:
    """Outcome of :func:`check_contrast`: ``ok`` False means refuse; ``finding`` names what was seen."""

    ok: bool
    finding: str  # fat_bright | dixon | fat_dark | swapped | opposed_phase | inconclusive
    reason: str
    source: str  # image | metadata
    evidence: dict[str, Any] = field(default_factory=dict)


def _as_array(image: sitk.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, sitk.Image):
        return sitk.GetArrayViewFromImage(image)
    return np.asarray(image)


def _spacing_ji(
    image: sitk.Image | np.ndarray, spacing_ji: tuple[float, float] | None
) -> tuple[float, float]:
    if spacing_ji is not None:
        return float(spacing_ji[0]), float(spacing_ji[1])
    if isinstance(image, sitk.Image):
        sx, sy = image.GetSpacing()[:2]
        return float(sy), float(sx)
    return 1.0, 1.0


def _slices(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, MAX_SLICES)).round().astype(int))


def _body_depth(
    signal: np.ndarray, floor: float, spacing_ji: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(depth in mm under the body surface, flat index) of the body voxels of one slice, or None.

    The body is the largest component above the noise floor with its holes filled; the image border does
    not count as surface (cropped fields of view). None when less than MIN_SURFACE of the body's outline
    is skin against air (too little surface in view to read the layer under it)."""
    cc, n = ndi.label(signal > floor)
    if n == 0:
        return None
    sizes = np.bincount(cc.ravel())[1:]
    box = ndi.find_objects(cc, max_label=int(np.argmax(sizes)) + 1)[-1]
    body = np.zeros(signal.shape, bool)
    body[box] = ndi.binary_fill_holes(cc[box] == int(np.argmax(sizes)) + 1)
    sub = body[box]
    outline = sub & ~ndi.binary_erosion(np.pad(sub, 1), border_value=0)[1:-1, 1:-1]
    on_border = np.zeros(sub.shape, bool)  # outline pixels on the image border are not skin
    nj, ni = signal.shape
    on_border[0, :] |= box[0].start == 0
    on_border[-1, :] |= box[0].stop == nj
    on_border[:, 0] |= box[1].start == 0
    on_border[:, -1] |= box[1].stop == ni
    real = outline & ~on_border
    if outline.sum() == 0 or real.sum() / outline.sum() < MIN_SURFACE:
        return None
    # pad with the mask's own edge values: where the body meets the image border there is no surface
    depth = ndi.distance_transform_edt(np.pad(np.pad(sub, 1), 1, mode="edge"), sampling=spacing_ji)[
        2:-2, 2:-2
    ]
    flat = np.flatnonzero(body)
    return depth[body[box]].astype(np.float32), flat


def _shell_medians(
    depth: np.ndarray, values: np.ndarray, spacing_ji: tuple[float, float]
) -> list[tuple[float, np.ndarray]]:
    """(median value, selection) of depth bands LAYER_MM thick (at least one pixel), starting every pixel from
    SHELL_MM[0] to SHELL_MM[1] under the surface: as thick as a thin fat layer, thicker than the skin."""
    step = max(1.0, min(spacing_ji))
    width = max(LAYER_MM, step)
    lo = max(SHELL_MM[0], min(spacing_ji))
    out = []
    while lo < SHELL_MM[1]:
        sel = (depth > lo) & (depth <= lo + width)
        if sel.sum() >= 20:
            out.append((float(np.median(values[sel])), sel))
        lo += step
    return out


def _body_slices(
    arr: np.ndarray, spacing_ji: tuple[float, float]
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(slice k, depth under the skin, flat indices) of each sampled slice in which a body is found."""
    ks = _slices(arr.shape[0])
    floor = noise_floor(arr[ks])
    for k in ks:
        found = _body_depth(arr[k], floor, spacing_ji)
        if found is not None:
            yield k, *found


def shell_ratio(
    image: sitk.Image | np.ndarray, spacing_ji: tuple[float, float] | None = None
) -> tuple[float, int]:
    """(median over slices of brightest shallow band / deep tissue, number of slices used); NaN if no body."""

    arr = np.asarray(_as_array(image), dtype=np.float32)
    sp = _spacing_ji(image, spacing_ji)
    ratios = []
    for k, depth, flat in _body_slices(arr, sp):
        values = arr[k].ravel()[flat]
        deep = depth > max(DEEP_MM, DEEP_FRACTION * float(depth.max()))
        bands = _shell_medians(depth, values, sp)
        if deep.sum() < 50 or not bands:
            continue
        peak = max(m for m, _ in bands)
        ratios.append(peak / max(float(np.median(values[deep])), 1e-6))
    return (float(np.median(ratios)) if ratios else float("nan")), len(ratios)


def shell_fat_fraction(
    water: sitk.Image | np.ndarray,
    fat: sitk.Image | np.ndarray,
    spacing_ji: tuple[float, float] | None = None,
) -> tuple[float, int]:
    """(median over slices of F/(F+W) on the brightest shallow band of F + W, number of slices used)."""

    w = np.clip(np.asarray(_as_array(water), dtype=np.float32), 0, None)
    f = np.clip(np.asarray(_as_array(fat), dtype=np.float32), 0, None)
    s = w + f
    sp = _spacing_ji(fat, spacing_ji)
    values = []
    for k, depth, flat in _body_slices(s, sp):
        bands = _shell_medians(depth, s[k].ravel()[flat], sp)
        if not bands:
            continue
        sel = max(bands, key=lambda b: b[0])[1]
        fk, sk = f[k].ravel()[flat][sel], s[k].ravel()[flat][sel]
        values.append(float(np.median(fk / np.maximum(sk, 1e-6))))
    return (float(np.median(values)) if values else float("nan")), len(values)


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _inversion_time_ms(meta: Mapping[str, Any]) -> float | None:
    """InversionTime in ms (BIDS gives seconds, DICOM milliseconds)."""
    try:
        ti = float(meta["InversionTime"])
    except (KeyError, TypeError, ValueError):
        return None
    return ti * 1000.0 if ti < 10.0 else ti


def _words(value: Any) -> list[str]:
    return re.findall(r"[A-Z0-9]+", _text(value).upper())


def _suppression(meta: Mapping[str, Any]) -> list[str]:
    """Where the metadata say fat-suppressed: ScanOptions, a short-TI inversion recovery, description words."""
    why = []
    if set(_words(meta.get("ScanOptions", ""))) & _SUPPRESSION_WORDS:
        why.append(f"ScanOptions {_text(meta['ScanOptions'])!r}")
    ti = _inversion_time_ms(meta)
    if "IR" in _words(meta.get("ScanningSequence", "")) and ti is not None and ti < STIR_MAX_TI_MS:
        why.append(f"inversion recovery with InversionTime {ti:.0f} ms (STIR)")
    for key in _TEXT_KEYS:
        words = _words(meta.get(key, ""))
        phrase = " " + " ".join(words)
        if set(words) & _SUPPRESSION_WORDS or any(f" {p}" in phrase for p in _SUPPRESSION_PHRASES):
            why.append(f"{key} {_text(meta[key])!r}")
    return why


def metadata_finding(meta: Mapping[str, Any] | None, role: str) -> tuple[str, str] | None:
    """What the metadata of one image say against its ``role`` (image/water/fat): (finding, reason) or None.

    Keys are DICOM keywords or BIDS sidecar keys (ScanOptions, ScanningSequence, InversionTime, ImageType,
    SeriesDescription, ProtocolName, SequenceName) and NIfTI ``descrip``/``intent_name``. The Dixon role
    (water/fat/in-phase/opposed-phase) is read by the DICOM reader's own rules
    (``ParaspinalLBPCore.dicom_series.dixon_role``), so both entry points agree."""
    from ParaspinalLBPCore.dicom_series import dixon_role

    if not meta:
        return None
    why = _suppression(meta)
    if why and role != "water":  # a water image is fat-free by design
        return "fat_dark", "metadata say fat-suppressed (" + "; ".join(why) + ")"
    image_type = [t.strip() for t in re.split(r"[\\,;]+", _text(meta.get("ImageType", ""))) if t.strip()]
    description = " ".join(
        _text(meta[k]) for k in ("SeriesDescription", "descrip", "intent_name") if meta.get(k)
    )
    dixon = dixon_role(image_type, description)
    said = f"ImageType {_text(meta.get('ImageType', ''))!r}, description {description!r}"
    if role == "image" and dixon == "water":
        return "fat_dark", f"metadata say it is a Dixon water image ({said}): fat is dark in it"
    if role == "image" and dixon == "opposed_phase":
        return "opposed_phase", (
            f"metadata say it is an opposed-phase image ({said}): fat and water cancel in fatty muscle, "
            "so fat is not bright there"
        )
    if role in ("water", "fat") and dixon in ("water", "fat") and dixon != role:
        return "swapped", f"metadata of the image given as {role} say it is a {dixon} image ({said})"
    return None


def check_contrast(
    image: sitk.Image | np.ndarray | None = None,
    *,
    water: sitk.Image | np.ndarray | None = None,
    fat: sitk.Image | np.ndarray | None = None,
    metadata: Mapping[str, Any] | None = None,
    water_metadata: Mapping[str, Any] | None = None,
    fat_metadata: Mapping[str, Any] | None = None,
    spacing_ji: tuple[float, float] | None = None,
) -> ContrastVerdict:
    """Verdict on one fat-bright ``image`` or a Dixon ``water``/``fat`` pair: metadata first, then the image.

    ``ok`` is False only on positive evidence (fat-suppressed/water-only single image, swapped pair,
    opposed-phase per metadata); an image whose layer cannot be read (no body surface in view) is
    ``inconclusive`` and passes, with the reason to report."""
    dixon = water is not None and fat is not None
    if not dixon and image is None:
        raise BadInputError("check_contrast: give an image or a Dixon water + fat pair")
    roles = {"water": water_metadata, "fat": fat_metadata} if dixon else {"image": metadata}
    for role, meta in roles.items():
        found = metadata_finding(meta, role)
        if found:
            return ContrastVerdict(False, found[0], f"{role}: {found[1]}", "metadata")
    if dixon:
        value, n = shell_fat_fraction(water, fat, spacing_ji)
        evidence = {"shell_fat_fraction": round(value, 3), "slices": n}
        if np.isfinite(value) and value >= DIXON_SHELL_FF:
            return ContrastVerdict(
                True, "dixon", "the fat image is bright in the subcutaneous fat", "image", evidence
            )
        if np.isfinite(value) and value <= 1.0 - DIXON_SHELL_FF:
            return ContrastVerdict(
                False,
                "swapped",
                f"water and fat look swapped: the subcutaneous fat layer has F/(F+W) = {value:.2f} "
                "(fat should hold ~0.9 of its signal); pass the images the other way round",
                "image",
                evidence,
            )
        return ContrastVerdict(True, "inconclusive", _no_layer("F/(F+W)", value), "image", evidence)
    value, n = shell_ratio(image, spacing_ji)
    evidence = {"shell_ratio": round(value, 3), "slices": n}
    if np.isfinite(value) and value >= FAT_BRIGHT_RATIO:
        return ContrastVerdict(True, "fat_bright", "subcutaneous fat is bright", "image", evidence)
    if np.isfinite(value) and value <= FAT_DARK_RATIO:
        return ContrastVerdict(
            False,
            "fat_dark",
            f"fat is not bright in this image (subcutaneous layer {value:.2f}x the deep tissue; fat-bright "
            "images give >= 2): a fat-suppressed (STIR/SPIR/SPAIR) or Dixon water image cannot be segmented or "
            "give a fat fraction; use a T1/T2-weighted or in-phase image, or the Dixon pair (--water/--fat)",
            "image",
            evidence,
        )
    return ContrastVerdict(True, "inconclusive", _no_layer("shell ratio", value), "image", evidence)


def _no_layer(what: str, value: float) -> str:
    if not np.isfinite(value):
        return "no body surface in view: the fat/water contrast could not be checked from the image"
    return f"subcutaneous fat layer ambiguous ({what} {value:.2f}): contrast not confirmed from the image"


def require_supported(
    image: sitk.Image | np.ndarray | None = None, *, what: str = "input", hint: str = "", **kwargs: Any
) -> ContrastVerdict:
    """:func:`check_contrast`, raising :class:`UnsupportedContrastError` (message: ``what``, the reason,
    ``hint``) when it refuses; returns the verdict otherwise (``inconclusive`` ones carry a reason to log)."""
    verdict = check_contrast(image, **kwargs)
    if not verdict.ok:
        raise UnsupportedContrastError(f"{what}: {verdict.reason}{hint}")
    return verdict


def require_supported_metadata(metadata: Mapping[str, Mapping[str, Any] | None], hint: str = "") -> None:
    """Refuse on metadata alone (``{role: metadata}``, role image/water/fat): for entry points that read
    the files and leave the image check to the library functions they call."""
    for role, meta in metadata.items():
        found = metadata_finding(meta, role)
        if found:
            raise UnsupportedContrastError(f"{role}: {found[1]}{hint}")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata of an image file for :func:`metadata_finding`: NIfTI ``descrip``/``intent_name`` and the BIDS
    sidecar JSON beside it (``name.json`` for ``name.nii.gz``), whose keys win. Empty when there are none."""
    path = Path(path)
    meta: dict[str, Any] = {}
    if path.name.endswith((".nii", ".nii.gz")):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
            for key in ("descrip", "intent_name"):
                if reader.HasMetaDataKey(key) and reader.GetMetaData(key).strip():
                    meta[key] = reader.GetMetaData(key).strip()
        except RuntimeError:
            pass
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    sidecar = path.with_name(stem + ".json")
    if sidecar.is_file():
        try:
            doc = json.loads(sidecar.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{sidecar}: not valid JSON ({exc})") from None
        if isinstance(doc, dict):
            meta.update(doc)
    return meta
