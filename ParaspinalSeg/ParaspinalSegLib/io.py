"""Input checks and output writers of the segmentation: volumes, label maps, ``labels.json``, ``.seg.nrrd``.

Every check raises ValueError/FileNotFoundError naming the file or input, so the CLI prints one
clear line. Writers are atomic (temp file + ``os.replace``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ParaspinalLBPCore.atomic import atomic_path
from ParaspinalLBPCore.errors import BadInputError, MissingInputError
from ParaspinalLBPCore.structures import BY_NAME

MAX_VOXELS = 80_000_000  # ~ 512×512×300; larger volumes are refused (memory bound, a few GB)
# Slices tilted up to this from true axial are accepted as axial (areas measured in the slice plane):
# lumbar protocols angle the axial stacks along the discs, and L5–S1 in a lordotic spine reaches 35–40°.
# The segmenter (to_axial) and the measurement (measure.check_axial) share it.
MAX_OBLIQUE_DEG = 40.0


def read_volume(path: str | Path, what: str = "image") -> sitk.Image:
    """Read a 3D scalar volume as float32, naming ``what`` and the file in every error."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{what}: file not found: {path}")
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise BadInputError(f"{what}: cannot read {path}: {str(exc).strip().splitlines()[-1]}") from None
    n = int(np.prod(reader.GetSize()))
    if n > MAX_VOXELS:
        raise BadInputError(
            f"{what}: {path} has {n:,} voxels (size {reader.GetSize()}), more than the "
            f"{MAX_VOXELS:,} this tool processes; crop it to the lumbar region first"
        )
    image = reader.Execute()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise BadInputError(
            f"{what}: {path} has {image.GetNumberOfComponentsPerPixel()} components; expected a scalar volume"
        )
    return check_volume(image, f"{what} ({path.name})")


def check_volume(image: sitk.Image, what: str) -> sitk.Image:
    """Validate one volume (3D, ≥ 2 voxels in-plane, not too big) and return it axial, float32.

    A volume whose axes are a permutation/flip of LPS is reoriented (``sitk.DICOMOrient``) so that
    numpy axis 0 is the slice axis; an axial-oblique acquisition (≤ MAX_OBLIQUE_DEG) is accepted as it is
    (areas are measured in the slice plane); anything else is an error.
    """
    if image.GetDimension() == 2 or (image.GetDimension() == 3 and image.GetSize()[2] == 1):
        raise BadInputError(
            f"{what}: 2D (single-slice) image; a 3D axial volume with several slices is required"
        )
    if image.GetDimension() != 3:
        raise BadInputError(f"{what}: expected a 3D volume, got {image.GetDimension()}D")
    if int(np.prod(image.GetSize())) > MAX_VOXELS:
        raise BadInputError(f"{what}: {image.GetSize()} is larger than {MAX_VOXELS:,} voxels; crop it first")
    if min(image.GetSize()[:2]) < 8:
        raise BadInputError(
            f"{what}: in-plane size {image.GetSize()[:2]} is too small for a muscle segmentation"
        )
    image = to_axial(image, what)
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    return image


def to_axial(image: sitk.Image, what: str) -> sitk.Image:
    """Reorient so the slice axis (numpy axis 0) is closest to S; error when truly oblique."""
    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    closest = np.argmax(np.abs(d), axis=0)  # which LPS axis each image axis is closest to
    if sorted(closest.tolist()) != [0, 1, 2]:
        raise BadInputError(
            f"{what}: direction matrix {np.round(d, 3).tolist()} is not close to any axis permutation"
        )
    if closest[2] != 2 or np.any(np.sign(d[closest, [0, 1, 2]]) < 0):
        image = sitk.DICOMOrient(image, "LPS")
        d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    tilt = float(np.degrees(np.arccos(min(1.0, abs(d[2, 2])))))
    if tilt > MAX_OBLIQUE_DEG:
        raise BadInputError(
            f"{what}: slices are oblique ({tilt:.0f}° from axial, more than {MAX_OBLIQUE_DEG:.0f}°); "
            "resample the volume to an axial grid first"
        )
    return image


def same_grid_problems(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> list[str]:
    """What differs between two voxel grids (size, spacing, origin, direction); empty when equal."""
    problems = []
    if a.GetSize() != b.GetSize():
        problems.append(f"size {a.GetSize()} vs {b.GetSize()}")
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-3, atol=tol):
        problems.append(
            f"spacing {np.round(a.GetSpacing(), 4).tolist()} vs {np.round(b.GetSpacing(), 4).tolist()}"
        )
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=max(tol, 0.01 * min(a.GetSpacing()))):
        problems.append(
            f"origin {np.round(a.GetOrigin(), 3).tolist()} vs {np.round(b.GetOrigin(), 3).tolist()}"
        )
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4):
        problems.append("direction differs")
    return problems


def match_grid(
    image: sitk.Image, reference: sitk.Image, name: str, ref_name: str, assume_same_grid: bool
) -> sitk.Image:
    """Return ``image`` on ``reference``'s grid: identical grids pass; otherwise error, or (with
    ``assume_same_grid`` and equal sizes) copy the reference geometry onto it."""
    problems = same_grid_problems(image, reference)
    if not problems:
        return image
    if assume_same_grid and image.GetSize() == reference.GetSize():
        out = sitk.Image(image)
        out.CopyInformation(reference)
        return out
    hint = (
        " (sizes match: if the voxels do correspond, pass --assume-same-grid / assume_same_grid=True)"
        if image.GetSize() == reference.GetSize()
        else ""
    )
    raise BadInputError(
        f"{name} and {ref_name} are not on the same voxel grid: " + "; ".join(problems) + hint
    )


def check_finite(array: np.ndarray, what: str) -> np.ndarray:
    """Replace NaN/inf by 0 is not silent: raise naming the input and how many voxels are bad."""
    bad = ~np.isfinite(array)
    if bad.any():
        raise BadInputError(f"{what}: {int(bad.sum())} voxels are NaN or infinite; fill or mask them first")
    return array


def _atomic(path: Path, write) -> Path:
    with atomic_path(path) as tmp:
        write(str(tmp))
    return path


def write_labels(path: str | Path, labels: sitk.Image) -> Path:
    """Write a label map (uint8, compressed) atomically."""
    return _atomic(Path(path), lambda tmp: sitk.WriteImage(sitk.Cast(labels, sitk.sitkUInt8), tmp, True))


def write_labels_json(
    path: str | Path, label_names: Mapping[int, str], levels: Mapping[str, tuple[int, int]] | None = None
) -> Path:
    """Write contract C1 ``labels.json``: value → structure name, plus optional level slice ranges."""
    doc: dict = {"labels": {str(int(v)): n for v, n in sorted(label_names.items())}}
    if levels:
        doc["levels"] = {lv: [int(a), int(b)] for lv, (a, b) in levels.items()}

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(doc, indent=2), encoding="utf-8")

    return _atomic(Path(path), write)


def read_labels_json(path: str | Path) -> tuple[dict[int, str], dict[str, tuple[int, int]]]:
    """Read C1 ``labels.json`` (full or plain map form): (value → name, level → (k0, k1))."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"label names file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BadInputError(f"{path}: expected a JSON object")
    labels = doc.get("labels", doc) if isinstance(doc.get("labels"), dict) else doc
    names: dict[int, str] = {}
    for k, v in labels.items():
        if k == "levels":
            continue
        try:
            names[int(k)] = str(v)
        except ValueError:
            raise BadInputError(f"{path}: label value {k!r} is not an integer") from None
    levels = {str(k): (int(v[0]), int(v[1])) for k, v in (doc.get("levels") or {}).items()}
    return names, levels


def write_seg_nrrd(path: str | Path, labels: sitk.Image, label_names: Mapping[int, str]) -> Path:
    """Write a Slicer segmentation (``.seg.nrrd``, one shared labelmap layer) with names, colours, terminology.

    Header fields follow vtkMRMLSegmentationStorageNode: ``Segment<N>_ID/Name/Color/LabelValue/Layer/
    Extent/Tags`` and ``Segmentation_MasterRepresentation`` etc.; structures.py gives colours and codes.
    """
    img = sitk.Cast(labels, sitk.sitkUInt8)
    arr = sitk.GetArrayViewFromImage(img)
    nk, nj, ni = arr.shape
    meta = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
        "Segmentation_ConversionParameters": "",
    }
    for n, (value, name) in enumerate(sorted(label_names.items())):
        s = BY_NAME.get(name)
        color = s.color if s else (128, 128, 128)
        mask = arr == value
        if mask.any():
            kk = np.flatnonzero(mask.any(axis=(1, 2)))
            jj = np.flatnonzero(mask.any(axis=(0, 2)))
            ii = np.flatnonzero(mask.any(axis=(0, 1)))
            extent = f"{ii[0]} {ii[-1]} {jj[0]} {jj[-1]} {kk[0]} {kk[-1]}"
        else:
            extent = "0 -1 0 -1 0 -1"
        tags = "Segmentation.Status:inprogress|"
        if s is not None and s.terminology_entry():
            tags += f"TerminologyEntry:{s.terminology_entry()}|"
        p = f"Segment{n}_"
        meta[p + "ID"] = name
        meta[p + "Name"] = s.display_name if s else name
        meta[p + "NameAutoGenerated"] = "0"
        meta[p + "Color"] = " ".join(f"{c / 255.0:.6g}" for c in color)
        meta[p + "ColorAutoGenerated"] = "0"
        meta[p + "LabelValue"] = str(int(value))
        meta[p + "Layer"] = "0"
        meta[p + "Extent"] = extent
        meta[p + "Tags"] = tags
    for k, v in meta.items():
        img.SetMetaData(k, v)
    del nk, nj, ni
    return _atomic(Path(path), lambda tmp: sitk.WriteImage(img, tmp, True))
