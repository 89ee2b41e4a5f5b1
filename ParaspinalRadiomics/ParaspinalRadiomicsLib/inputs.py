"""Reading images, label maps (incl. Slicer ``.seg.nrrd``) and C1 ``labels.json`` with clear errors.

Every user-fixable problem raises ValueError/FileNotFoundError naming the file (and the field or label),
so a cohort batch can record it for the one case and go on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ParaspinalLBPCore.errors import BadInputError, MissingInputError

Levels = dict[str, tuple[int, int]]


def read_image(path: str | Path, series: str | None = None) -> sitk.Image:
    """Read a scalar image (NIfTI, NRRD, MHA...) or one series of a DICOM folder (``series``: SeriesNumber
    or UID; needed when the folder holds several), or raise an error naming the file/folder."""
    path = Path(path)
    if path.is_dir():
        from ParaspinalLBPCore.dicom_series import load_image

        return load_image(path, series)[0]
    if series:
        raise BadInputError(f"a series choice ({series}) applies to a DICOM folder, not to the file {path}")
    if not path.is_file():
        raise MissingInputError(f"image file not found: {path}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise BadInputError(f"cannot read image {path}: {_first_line(exc)}") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise BadInputError(
            f"image {path} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "a scalar (grey-level) image is required"
        )
    return image


def check_finite(image: sitk.Image, name: str = "image") -> None:
    """Raise if the image has NaN/inf voxels: pyradiomics' normalisation and binning would turn them into garbage."""
    arr = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise BadInputError(
                f"{name} has {bad} NaN/inf voxels; replace them (e.g. by 0 outside the body) "
                "before extraction — radiomic features are undefined on non-finite intensities"
            )


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def as_label_map(labels: sitk.Image, name: str = "labels") -> sitk.Image:
    """Check a label map (integer-valued, non-negative, scalar) and cast it to UInt32 as pyradiomics does."""
    if labels.GetNumberOfComponentsPerPixel() != 1:
        raise BadInputError(
            f"{name} has {labels.GetNumberOfComponentsPerPixel()} components per voxel; "
            "a scalar label map is required (multi-layer .seg.nrrd files are flattened by read_labels)"
        )
    arr = sitk.GetArrayViewFromImage(labels)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            raise BadInputError(f"{name} has NaN/inf values; a label map must hold integer labels")
        frac = arr != np.round(arr)
        if frac.any():
            example = float(arr[frac].flat[0])
            raise BadInputError(
                f"{name} is not an integer label map (e.g. value {example:g}); "
                "a probability or interpolated mask must be thresholded first"
            )
    if arr.size and arr.min() < 0:
        raise BadInputError(f"{name} has negative label values (min {arr.min()}); labels must be >= 0")
    return sitk.Cast(labels, sitk.sitkUInt32)


def _seg_nrrd_segments(reader: sitk.ImageFileReader) -> list[dict]:
    """Segment metadata of a Slicer .seg.nrrd header: name, label value, layer."""
    keys = reader.GetMetaDataKeys()
    idx = sorted({int(m.group(1)) for k in keys if (m := re.match(r"Segment(\d+)_Name$", k))})

    def get(i: int, f: str) -> str | None:
        key = f"Segment{i}_{f}"
        return reader.GetMetaData(key) if key in keys else None

    return [
        {
            "name": get(i, "Name"),
            "value": int(get(i, "LabelValue") or (i + 1)),
            "layer": int(get(i, "Layer") or 0),
        }
        for i in idx
    ]


def read_labels(path: str | Path) -> tuple[sitk.Image, dict[int, str] | None]:
    """Read a label map or Slicer ``.seg.nrrd``; return (UInt32 label map, names from the file or None).

    ``.seg.nrrd`` segments stored in several layers are flattened into one label map when they do not
    overlap (values renumbered 1..n in segment order); overlapping segments are an error (export them as
    separate label maps instead).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"label file not found: {path}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise BadInputError(f"cannot read label map {path}: {_first_line(exc)}") from exc
    if not path.name.endswith(".seg.nrrd"):
        return as_label_map(img, str(path)), None
    segs = _seg_nrrd_segments(reader)
    ncomp = img.GetNumberOfComponentsPerPixel()
    if ncomp == 1:
        names = {s["value"]: _canonical(s["name"]) for s in segs}
        return as_label_map(img, str(path)), names
    arr = sitk.GetArrayFromImage(img)  # z, y, x, layer
    out = np.zeros(arr.shape[:3], dtype=np.uint32)
    names: dict[int, str] = {}
    for new_value, s in enumerate(segs, start=1):
        sel = arr[..., s["layer"]] == s["value"]
        if np.any(out[sel]):
            raise BadInputError(
                f"{path}: segment {s['name']!r} overlaps another segment; overlapping segments "
                "cannot be flattened into one label map — export each as its own label map"
            )
        out[sel] = new_value
        names[new_value] = _canonical(s["name"])
    flat = sitk.GetImageFromArray(out)
    flat.SetOrigin(img.GetOrigin())
    flat.SetSpacing(img.GetSpacing())
    flat.SetDirection(img.GetDirection())
    return flat, names


def _canonical(name: str | None) -> str:
    """Segment display names ('Multifidus left') to the project's canonical form ('multifidus_left')."""
    return re.sub(r"[^0-9a-z]+", "_", (name or "").strip().lower()).strip("_") or "unnamed"


def read_label_names(path: str | Path) -> tuple[dict[int, str], Levels | None]:
    """Read a C1 ``labels.json`` (``{"labels": {...}, "levels": {...}}`` or a plain ``{"1": name}`` map)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"label-names file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"label-names file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadInputError(f"label-names file {path}: expected a JSON object")
    raw = data.get("labels", data)
    if not isinstance(raw, dict):
        raise BadInputError(f"label-names file {path}: field 'labels' must be an object value -> name")
    names: dict[int, str] = {}
    for key, value in raw.items():
        try:
            names[int(key)] = str(value)
        except ValueError:
            raise BadInputError(f"label-names file {path}: label key {key!r} is not an integer") from None
    levels = parse_levels(data.get("levels"), str(path)) if "levels" in data else None
    return names, levels


def parse_levels(raw: object, source: str = "levels") -> Levels | None:
    """Validate ``{"L1": [k0, k1], ...}`` (inclusive slice ranges along numpy axis 0)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadInputError(f"{source}: field 'levels' must be an object level -> [k_first, k_last]")
    levels: Levels = {}
    for name, rng in raw.items():
        if not (
            isinstance(rng, list | tuple)
            and len(rng) == 2
            and all(isinstance(v, int | np.integer) for v in rng)
        ):
            raise BadInputError(
                f"{source}: level {name!r} must be [k_first, k_last] (two integers), got {rng!r}"
            )
        k0, k1 = int(rng[0]), int(rng[1])
        if k0 > k1 or k0 < 0:
            raise BadInputError(f"{source}: level {name!r} has an invalid slice range [{k0}, {k1}]")
        levels[str(name)] = (k0, k1)
    return levels


def find_sidecar(labels_path: str | Path) -> Path | None:
    """The C1 ``labels.json`` written beside a label map, if present."""
    cand = Path(labels_path).parent / "labels.json"
    return cand if cand.is_file() else None


def describe_geometry(img: sitk.Image) -> str:
    """One-line geometry description used in mismatch messages."""
    r = lambda t: "(" + ", ".join(f"{v:.6g}" for v in t) + ")"  # noqa: E731
    return (
        f"size {img.GetSize()}, spacing {r(img.GetSpacing())}, origin {r(img.GetOrigin())}, "
        f"direction {r(img.GetDirection())}"
    )


def same_geometry(a: sitk.Image, b: sitk.Image, tol: float = 1e-6) -> bool:
    """True when both images share one voxel grid, with ITK's test (origin/spacing within tol x spacing[0])."""
    if a.GetSize() != b.GetSize():
        return False
    coord_tol = abs(tol * a.GetSpacing()[0])
    return bool(
        np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=coord_tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=coord_tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=tol)
    )


# Header rounding (float32 NIfTI/NRRD fields) moves origins by a few 1e-6 mm; such label maps are on the
# image grid in every practical sense, but ITK/pyradiomics reject them at their 1e-6 x spacing tolerance.
HEADER_ROUNDING_TOL = 1e-4


def match_mask_geometry(
    image: sitk.Image,
    labels: sitk.Image,
    resample_mask: bool = False,
    tol: float | None = None,
    names: tuple[str, str] = ("image", "labels"),
) -> sitk.Image:
    """Return labels on the image grid.

    Same grid (ITK tolerance, or pyradiomics' ``geometryTolerance``): unchanged. Differences below
    1e-4 x spacing (header float rounding): the image's geometry is copied onto the label map (voxels
    unchanged). Otherwise an error giving both geometries, unless ``resample_mask`` (nearest neighbour).
    """
    if same_geometry(image, labels, tol or 1e-6):
        return labels
    if same_geometry(image, labels, HEADER_ROUNDING_TOL):
        aligned = sitk.Image(labels)
        aligned.CopyInformation(image)
        return aligned
    if not resample_mask:
        raise BadInputError(
            f"geometry mismatch between {names[0]} [{describe_geometry(image)}] and "
            f"{names[1]} [{describe_geometry(labels)}]; pass --resample-mask (resample_mask=True) "
            "to resample the label map onto the image grid (nearest neighbour)"
        )
    return sitk.Resample(labels, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())


def load_case(
    image_path: str | Path,
    labels_path: str | Path,
    label_names_path: str | Path | None = None,
    series: str | None = None,
) -> tuple[sitk.Image, sitk.Image, dict[int, str] | None, Levels | None]:
    """Image, label map, names and levels of one case from files.

    Names come from ``label_names_path`` (C1), else from a ``.seg.nrrd`` header, else from a
    ``labels.json`` beside the label map; levels only from C1 files.
    """
    image = read_image(image_path, series)
    labels, names = read_labels(labels_path)
    levels = None
    json_path = Path(label_names_path) if label_names_path else find_sidecar(labels_path)
    if json_path is not None:
        json_names, levels = read_label_names(json_path)
        if label_names_path or names is None:
            names = json_names
    return image, labels, names, levels
