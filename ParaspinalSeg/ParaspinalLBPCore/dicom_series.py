"""DICOM series input: scan a folder, list its series, recognise Dixon water/fat, check and read one series.

Headers are read with pydicom, pixels with SimpleITK's GDCM series reader (no hand parsing)::

    from ParaspinalLBPCore import dicom_series as ds

    series = ds.scan_folder("case01/")                  # every image series below the folder, sorted
    print(ds.format_series_table(series))               # number, role, modality, image type, size, ...
    image, info = ds.load_image("case01/", series="5")  # one checked volume (SeriesNumber or UID)
    water, fat, w_info, f_info = ds.load_dixon("case01/")  # the Dixon pair, recognised by its headers
    info.metadata                                       # ScanOptions, SequenceName, ImageType, ... (dict)

A folder with several series and no ``series`` choice, an unreadable series (not MR, a localizer,
missing slices, enhanced multi-frame ...) or an ambiguous Dixon pair raises ``DicomInputError``
(a ValueError) whose message names the folder and series and, where a choice is needed, lists them.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ParaspinalLBPCore.errors import BadInputError, MissingInputError

#: Header keywords kept per series for checks of the image type (fat-suppressed, water-only, swapped ...).
METADATA_KEYWORDS = (
    "ScanOptions",
    "SequenceName",
    "SequenceVariant",
    "ScanningSequence",
    "InversionTime",
    "SeriesDescription",
    "ImageType",
    "ProtocolName",
    "Manufacturer",
    "MagneticFieldStrength",
    "EchoTime",
    "RepetitionTime",
    "FlipAngle",
)
_HEADER_KEYWORDS = (
    "SeriesInstanceUID",
    "SeriesNumber",
    "Modality",
    "SOPClassUID",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "InstanceNumber",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    *METADATA_KEYWORDS,
)
ENHANCED_MR_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.3": "Enhanced MR Color Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
}
MIN_SLICES = 3  # fewer parallel slices are a localizer/scout or a single image, not a volume

# Dixon roles. ImageType values are matched exactly (Siemens ...\DIXON\WATER, Philips ...\W\W, GE IDEAL);
# SeriesDescription words as below; short ones (W, F, IP, OP, IN, OPP) only beside a Dixon word.
DIXON_ROLES = ("water", "fat", "in_phase", "opposed_phase")
_ROLE_TOKENS = {
    "W": "water",
    "WATER": "water",
    "F": "fat",
    "FAT": "fat",
    "IP": "in_phase",
    "IN": "in_phase",
    "IN_PHASE": "in_phase",
    "INPHASE": "in_phase",
    "OP": "opposed_phase",
    "OPP": "opposed_phase",
    "OUT_PHASE": "opposed_phase",
    "OUTPHASE": "opposed_phase",
    "OPP_PHASE": "opposed_phase",
    "OPPPHASE": "opposed_phase",
    "OPPOSED_PHASE": "opposed_phase",
    "OPPOSEDPHASE": "opposed_phase",
}
_SHORT_TOKENS = {"W", "F", "IP", "OP", "IN", "OPP"}
_DIXON_WORDS = {"DIXON", "MDIXON", "QDIXON", "IDEAL", "FLEX", "LAVA", "TWOPOINT", "2PT"}
# A description with these words is not a Dixon fat image (fat saturation/suppression, fat-fraction maps).
_NOT_FAT_WORDS = {"SAT", "FATSAT", "FS", "SUP", "SUPP", "SPAIR", "SPIR", "STIR", "FRACTION", "FF", "PDFF"}


class DicomInputError(BadInputError):
    """A DICOM folder or series that cannot be used as it is; the message says which and why."""


@dataclass(eq=False)
class SeriesInfo:
    """One image series of a folder: identity, headers the checks need, files sorted along the slice normal."""

    folder: str
    uid: str
    number: int | None
    description: str
    modality: str
    image_type: tuple[str, ...]
    sop_class_uid: str
    rows: int
    columns: int
    files: tuple[str, ...]
    positions: tuple[float, ...]  # mm along the slice normal, ascending (empty without geometry)
    origin: tuple[float, ...]  # ImagePositionPatient of the first file (lowest along the normal)
    orientation: tuple[float, ...]  # ImageOrientationPatient of the first slice
    pixel_spacing: tuple[float, ...]
    frames: int
    study_uid: str
    frame_of_reference_uid: str
    metadata: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # why this series is not a readable 3D MR volume (empty: fine)

    @property
    def dixon(self) -> str | None:
        """Dixon role recognised from ImageType, else SeriesDescription: water/fat/in_phase/opposed_phase."""
        return dixon_role(self.image_type, self.description)

    @property
    def size(self) -> tuple[int, int, int]:
        """(columns, rows, slices)."""
        return (self.columns, self.rows, len(self.files))

    @property
    def label(self) -> str:
        """How messages name the series: number, description and UID."""
        number = f"series {self.number}" if self.number is not None else "series (no number)"
        return f"{number} '{self.description}' (UID {self.uid})"


def dixon_role(image_type: Sequence[str], description: str) -> str | None:
    """Dixon role of a series from its ImageType values, else its SeriesDescription words (None: not Dixon)."""
    roles = {_ROLE_TOKENS[v] for v in (t.strip().upper() for t in image_type) if v in _ROLE_TOKENS}
    if len(roles) == 1:
        return roles.pop()
    if roles:
        return None  # contradictory ImageType values
    words = [w for w in re.split(r"[^A-Z0-9]+", description.upper()) if w]
    joined = [a + "_" + b for a, b in itertools.pairwise(words)] + words
    dixon_context = bool(_DIXON_WORDS & set(words)) or any(w.endswith("DIXON") for w in words)
    found = set()
    for w in joined:
        role = _ROLE_TOKENS.get(w)
        if role is None or (w in _SHORT_TOKENS and not dixon_context):
            continue
        if role == "fat" and _NOT_FAT_WORDS & set(words):
            continue
        found.add(role)
    return found.pop() if len(found) == 1 else None


def _value(ds: Any, keyword: str) -> Any:
    """A header value as plain Python: str, float, or list of those (None when absent/empty)."""
    v = ds.get(keyword)
    if v is None or v == "":
        return None
    if isinstance(v, str | bytes):
        return str(v)
    try:
        return [_plain(x) for x in v] if not isinstance(v, str) and hasattr(v, "__iter__") else _plain(v)
    except TypeError:
        return str(v)


def _plain(v: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v) if isinstance(v, float) else int(v)
    return str(v)


def _headers(folder: Path) -> tuple[list[tuple[str, Any]], int, int]:
    """(path, dataset) of every DICOM image file below ``folder``; counts of non-DICOM and non-image files."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    found, not_dicom, not_image = [], 0, 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.upper().startswith("DICOMDIR"):
                continue
            path = os.path.join(root, name)
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_KEYWORDS))
            except (InvalidDicomError, OSError, EOFError, ValueError, TypeError):
                not_dicom += 1
                continue
            if "SeriesInstanceUID" not in ds:
                not_dicom += 1
            elif ds.get("Rows") is None:  # SEG/SR/KO/PR ... objects without an image
                not_image += 1
            else:
                found.append((path, ds))
    return found, not_dicom, not_image


def scan_folder(folder: str | Path) -> list[SeriesInfo]:
    """Every image series below ``folder`` (recursive), sorted by SeriesNumber then UID; errors when none."""
    folder = Path(folder)
    if not folder.exists():
        raise MissingInputError(f"DICOM folder not found: {folder}")
    if not folder.is_dir():
        raise DicomInputError(f"{folder} is not a folder (a DICOM series is given as the folder holding it)")
    found, not_dicom, not_image = _headers(folder)
    if not found:
        extra = f"; {not_image} DICOM object(s) without an image (SEG/SR ...)" if not_image else ""
        raise DicomInputError(
            f"{folder}: no DICOM image files found ({not_dicom} other file(s) looked at{extra})"
        )
    return _group(found, str(folder))


def scan_files(files: Sequence[str | Path], where: str) -> list[SeriesInfo]:
    """The image series of an explicit file list (e.g. from Slicer's DICOM database); ``where`` names it."""
    import pydicom

    found = []
    for f in files:
        try:
            found.append(
                (str(f), pydicom.dcmread(f, stop_before_pixels=True, specific_tags=list(_HEADER_KEYWORDS)))
            )
        except (OSError, ValueError, EOFError) as exc:
            raise DicomInputError(f"{where}: cannot read DICOM file {f}: {exc}") from None
    if not found:
        raise DicomInputError(f"{where}: no DICOM files given")
    return _group(found, where)


def _group(found: list[tuple[str, Any]], where: str) -> list[SeriesInfo]:
    groups: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for path, ds in found:
        groups[str(ds.SeriesInstanceUID)].append((path, ds))
    series = [_series_info(where, uid, members) for uid, members in groups.items()]
    return sorted(series, key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))


def _normal(iop: Sequence[float]) -> np.ndarray:
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:6], float)
    return np.cross(row, col)


def _series_info(folder: str, uid: str, members: list[tuple[str, Any]]) -> SeriesInfo:
    """Group one series' files: sort along the slice normal and record what prevents reading it."""
    first = members[0][1]
    iop = [float(x) for x in first.get("ImageOrientationPatient") or []]
    positions: list[float] = []
    origin: tuple[float, ...] = ()
    if len(iop) == 6 and all(ds.get("ImagePositionPatient") for _, ds in members):
        n = _normal(iop)
        keyed = [
            (
                float(np.dot(n, [float(x) for x in ds.ImagePositionPatient])),
                int(ds.get("InstanceNumber") or 0),
                p,
            )
            for p, ds in members
        ]
        keyed.sort()
        files = tuple(p for _, _, p in keyed)
        positions = [k for k, _, _ in keyed]
        by_path = {p: d for p, d in members}
        origin = tuple(float(x) for x in by_path[files[0]].ImagePositionPatient)
    else:
        files = tuple(p for p, ds in sorted(members, key=lambda m: int(m[1].get("InstanceNumber") or 0)))
    number = first.get("SeriesNumber")
    info = SeriesInfo(
        folder=folder,
        uid=uid,
        number=int(number) if number not in (None, "") else None,
        description=str(first.get("SeriesDescription") or ""),
        modality=str(first.get("Modality") or ""),
        image_type=tuple(str(v) for v in (first.get("ImageType") or [])),
        sop_class_uid=str(first.get("SOPClassUID") or ""),
        rows=int(first.get("Rows") or 0),
        columns=int(first.get("Columns") or 0),
        files=files,
        positions=tuple(positions),
        origin=origin,
        orientation=tuple(iop),
        pixel_spacing=tuple(float(x) for x in first.get("PixelSpacing") or []),
        frames=int(first.get("NumberOfFrames") or 1),
        study_uid=str(first.get("StudyInstanceUID") or ""),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID") or ""),
        metadata={k: _value(first, k) for k in METADATA_KEYWORDS},
    )
    info.problems = tuple(_problems(info, [ds for _, ds in members]))
    return info


def _problems(info: SeriesInfo, datasets: list[Any]) -> Iterable[str]:
    """Why ``info`` cannot be read as one 3D MR volume (nothing: it can)."""
    if info.modality != "MR":
        yield f"modality is {info.modality or 'missing'}, not MR"
    if info.sop_class_uid in ENHANCED_MR_SOP_CLASSES or info.frames > 1:
        kind = ENHANCED_MR_SOP_CLASSES.get(info.sop_class_uid, "a multi-frame object")
        yield (
            f"{kind} ({info.frames} frames per file) is not supported: export the series from the "
            "scanner/PACS as classic single-frame MR Image Storage, or convert it to NIfTI (e.g. dcm2niix)"
        )
        return
    if any("LOCALIZER" in t.upper() for t in info.image_type):
        yield "ImageType says LOCALIZER (a scout, not a diagnostic volume)"
    orientations = {
        tuple(np.round([float(x) for x in ds.get("ImageOrientationPatient") or []], 3)) for ds in datasets
    }
    if len(orientations) > 1:
        yield f"slices in {len(orientations)} different orientations (a localizer/scout or reformat series)"
        return
    if len(info.orientation) != 6 or len(info.positions) != len(info.files) or len(info.pixel_spacing) != 2:
        yield "no ImagePositionPatient/ImageOrientationPatient/PixelSpacing: not a cross-sectional image series"
        return
    if len({(int(ds.Rows), int(ds.Columns)) for ds in datasets}) > 1:
        yield "slices of different sizes (Rows/Columns)"
    if len({tuple(float(x) for x in ds.PixelSpacing) for ds in datasets if ds.get("PixelSpacing")}) > 1:
        yield "PixelSpacing differs between slices"
    if len(info.files) < MIN_SLICES:
        yield (
            f"only {len(info.files)} slice(s): a 3D volume needs at least {MIN_SLICES} "
            "(a localizer/scout or a single image?)"
        )
        return
    yield from _spacing_problems(info)


def _spacing_problems(info: SeriesInfo) -> Iterable[str]:
    """Duplicate positions, missing slices or non-uniform spacing along the slice normal."""
    steps = np.diff(np.asarray(info.positions))
    dup = int(np.sum(steps < 1e-3))
    if dup:
        yield (
            f"{dup + 1} images share slice positions (several echoes, phases or time points in one series?); "
            "export one image per position"
        )
        return
    step = float(np.median(steps))
    off = np.abs(steps - step) > max(0.01, 0.01 * step)
    if off.any():
        k = int(np.argmax(np.abs(steps - step)))
        names = (Path(info.files[k]).name, Path(info.files[k + 1]).name)
        missing = steps[k] > 1.5 * step
        yield (
            f"slice spacing is not uniform: {steps[k]:.2f} mm between {names[0]} and {names[1]} where the "
            f"series steps {step:.2f} mm"
            + (" (missing slices?)" if missing else "")
            + f"; {int(off.sum())} irregular step(s)"
        )


def format_series_table(series: Sequence[SeriesInfo]) -> str:
    """A plain-text table of the series (what a user picks from with --series)."""
    head = ("number", "dixon", "modality", "image type", "size", "description", "SeriesInstanceUID", "usable")
    rows = [head]
    for s in series:
        rows.append(
            (
                "-" if s.number is None else str(s.number),
                s.dixon or "-",
                s.modality or "-",
                "\\".join(s.image_type) or "-",
                "x".join(str(v) for v in s.size),
                s.description or "-",
                s.uid,
                "yes" if not s.problems else "no: " + s.problems[0],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows
    )


def select_series(series: Sequence[SeriesInfo], selector: str | None, folder: str | Path) -> SeriesInfo:
    """The series named by ``selector`` (SeriesInstanceUID or SeriesNumber); without one, the only series."""
    if selector is None or str(selector).strip() == "":
        if len(series) == 1:
            return series[0]
        raise DicomInputError(
            f"{folder} holds {len(series)} series; choose one with --series NUMBER|UID:\n"
            + format_series_table(series)
        )
    sel = str(selector).strip()
    by_uid = [s for s in series if s.uid == sel]
    if by_uid:
        return by_uid[0]
    by_number = [s for s in series if sel.lstrip("+-").isdigit() and s.number == int(sel)]
    if len(by_number) == 1:
        return by_number[0]
    if len(by_number) > 1:
        raise DicomInputError(
            f"{folder}: SeriesNumber {sel} is shared by {len(by_number)} series; give the SeriesInstanceUID:\n"
            + format_series_table(by_number)
        )
    raise DicomInputError(
        f"{folder}: no series with number or UID {sel!r}; the folder holds:\n" + format_series_table(series)
    )


def read_series(info: SeriesInfo) -> Any:
    """Read a checked series as a SimpleITK image (its own orientation, rescale slope/intercept applied)."""
    import SimpleITK as sitk

    if info.problems:
        raise DicomInputError(
            f"{info.folder}: {info.label} cannot be read as a 3D MR volume: " + "; ".join(info.problems)
        )
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames(list(info.files))
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        last = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise DicomInputError(
            f"{info.folder}: cannot read {info.label}: {last[-1] if last else exc}"
        ) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DicomInputError(
            f"{info.folder}: {info.label} is not a grey-level image (colour/multi-component)"
        )
    return image


def load_image(folder: str | Path, series: str | None = None) -> tuple[Any, SeriesInfo]:
    """One series of ``folder`` as a SimpleITK image, with its SeriesInfo (``series``: number or UID)."""
    info = select_series(scan_folder(folder), series, folder)
    return read_series(info), info


def series_grid(info: SeriesInfo) -> Any:
    """An empty uint8 SimpleITK image on the series' voxel grid (as read_series returns it), from headers only."""
    import SimpleITK as sitk

    if info.problems:
        raise DicomInputError(
            f"{info.folder}: {info.label} has no regular voxel grid: " + "; ".join(info.problems)
        )
    row, col = np.asarray(info.orientation[:3]), np.asarray(info.orientation[3:6])
    step = float(np.median(np.diff(info.positions)))
    grid = sitk.Image(info.columns, info.rows, len(info.files), sitk.sitkUInt8)
    grid.SetSpacing((info.pixel_spacing[1], info.pixel_spacing[0], step))
    grid.SetOrigin(info.origin)
    grid.SetDirection(np.column_stack([row, col, _normal(info.orientation)]).ravel().tolist())
    return grid


def geometry_problems(a: SeriesInfo, b: SeriesInfo, tol_mm: float = 0.01) -> list[str]:
    """What differs between two series' voxel grids (size, pixel spacing, orientation, slice positions)."""
    out = []
    if a.size != b.size:
        out.append(f"size {'x'.join(map(str, a.size))} vs {'x'.join(map(str, b.size))}")
    if not np.allclose(a.pixel_spacing, b.pixel_spacing, atol=1e-4):
        out.append(f"pixel spacing {list(a.pixel_spacing)} vs {list(b.pixel_spacing)}")
    if not np.allclose(a.orientation, b.orientation, atol=1e-4):
        out.append("orientation differs")
    elif len(a.positions) == len(b.positions) and not np.allclose(a.positions, b.positions, atol=tol_mm):
        out.append(f"slice positions differ (first {a.positions[0]:.2f} vs {b.positions[0]:.2f} mm)")
    if a.frame_of_reference_uid != b.frame_of_reference_uid:
        out.append("different FrameOfReferenceUID")
    return out


def pick_dixon_pair(
    series: Sequence[SeriesInfo],
    folder: str | Path,
    water: str | None = None,
    fat: str | None = None,
) -> tuple[SeriesInfo, SeriesInfo]:
    """The (water, fat) series: the ones named, else the only usable pair recognised by dixon_role."""
    if water or fat:
        if not (water and fat):
            raise DicomInputError("--water-series and --fat-series go together (name both or neither)")
        return select_series(series, water, folder), select_series(series, fat, folder)
    usable = [s for s in series if not s.problems]
    waters = [s for s in usable if s.dixon == "water"]
    fats = [s for s in usable if s.dixon == "fat"]
    if not waters or not fats:
        raise DicomInputError(
            f"{folder}: no Dixon water/fat pair recognised ({len(waters)} water, {len(fats)} fat series by "
            "ImageType/SeriesDescription); choose a single image with --series, or the pair with "
            "--water-series/--fat-series:\n" + format_series_table(series)
        )
    pairs = [(w, f) for w in waters for f in fats if not geometry_problems(w, f)]
    if len(waters) == 1 and len(fats) == 1:
        return waters[0], fats[0]
    if len(pairs) == 1:
        return pairs[0]
    raise DicomInputError(
        f"{folder}: {len(waters)} water and {len(fats)} fat series ({len(pairs)} pairs on the same grid); "
        "choose with --water-series and --fat-series:\n" + format_series_table(series)
    )


def load_dixon(
    folder: str | Path,
    water_series: str | None = None,
    fat_series: str | None = None,
    assume_same_grid: bool = False,
) -> tuple[Any, Any, SeriesInfo, SeriesInfo]:
    """(water image, fat image, water info, fat info) of ``folder``; refuses pairs on different grids."""
    w, f = pick_dixon_pair(scan_folder(folder), folder, water_series, fat_series)
    check_same_geometry(w, f, assume_same_grid)
    return read_series(w), read_series(f), w, f


def check_same_geometry(water: SeriesInfo, fat: SeriesInfo, assume_same_grid: bool = False) -> None:
    """Refuse a water/fat pair whose grids differ (sizes equal + ``assume_same_grid``: accepted)."""
    problems = geometry_problems(water, fat)
    if problems and not (assume_same_grid and water.size == fat.size):
        hint = (
            " (sizes match: pass --assume-same-grid if the voxels do correspond)"
            if water.size == fat.size
            else ""
        )
        raise DicomInputError(
            f"water {water.label} and fat {fat.label} are not on the same voxel grid: "
            + "; ".join(problems)
            + hint
        )
