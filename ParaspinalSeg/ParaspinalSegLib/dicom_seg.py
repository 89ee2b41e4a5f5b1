"""DICOM Segmentation (SEG) output and input with highdicom: one segment per structure, SNOMED CT coded.

``write_dicom_seg(path, labels, label_names, reference)`` writes a BINARY SEG referencing the source
series ``reference`` (a ``dicom_series.SeriesInfo``): one segment per structure present, with the
SegmentLabel, the category/type/modifier codes of the ``.seg.nrrd`` terminology (structures.py), the
colour, algorithm type SEMIAUTOMATIC, the source's FrameOfReferenceUID and one frame per source slice
with its PlanePositionSequence (what Slicer's DICOM SEG plugin / QuantitativeReporting read via dcmqi).
``read_dicom_seg(path, reference)`` gives the label map back on the reference grid with the project's
label values (round trip to the voxel).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ParaspinalLBPCore import dicom_series as dser
from ParaspinalLBPCore.atomic import atomic_path
from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPCore.structures import BY_NAME, MUSCLE_CODES, SCT_ANATOMICAL_STRUCTURE, SCT_LEFT, SCT_RIGHT
from ParaspinalLBPCore.structures import structure as _structure

SCT_TISSUE = ("SCT", "85756007", "Tissue")
logging.getLogger("highdicom").setLevel(logging.WARNING)  # it logs every copied module at INFO
ALGORITHM_NAME = "ParaspinalSeg"
SEG_SERIES_NUMBER = 900


def _software_version() -> str:
    try:
        return metadata.version("paraspinal-lbp")
    except metadata.PackageNotFoundError:
        return "unknown"


def _code(triple: tuple[str, str, str]) -> Any:
    from pydicom.sr.coding import Code

    scheme, value, meaning = triple
    return Code(value, scheme, meaning)


def segment_description(number: int, name: str, uid_seed: str) -> Any:
    """The SegmentDescription of structure ``name``: label, SNOMED codes (+ laterality), colour, tracking."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    s = BY_NAME.get(name)
    muscle = s is not None and s.muscle is not None
    desc = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=s.display_name if s else name,
        segmented_property_category=_code(SCT_ANATOMICAL_STRUCTURE if muscle else SCT_TISSUE),
        segmented_property_type=_code(MUSCLE_CODES[s.muscle] if muscle else SCT_TISSUE),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=ALGORITHM_NAME, family=codes.cid7162.NeighborhoodAnalysis, version=_software_version()
        ),
        tracking_uid=generate_uid(entropy_srcs=[uid_seed, name]),
        tracking_id=name,
        display_color=hd.color.CIELabColor.from_rgb(*(s.color if s else (128, 128, 128))),
    )
    if muscle:
        scheme, value, meaning = SCT_LEFT if s.side == "left" else SCT_RIGHT
        modifier = hd.sr.CodedConcept(value, scheme, meaning)
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [modifier]
    return desc


def check_on_series_grid(image: sitk.Image, reference: dser.SeriesInfo, what: str = "label map") -> None:
    """Raise unless ``image`` has the voxel grid of ``reference`` (up to axis order/flips)."""
    grid = dser.series_grid(reference)
    a, b = sitk.DICOMOrient(image, "LPS"), sitk.DICOMOrient(grid, "LPS")
    problems = []
    if a.GetSize() != b.GetSize():
        problems.append(f"size {a.GetSize()} vs {b.GetSize()}")
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-4, atol=1e-4):
        problems.append(
            f"spacing {np.round(a.GetSpacing(), 4).tolist()} vs {np.round(b.GetSpacing(), 4).tolist()}"
        )
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=0.01):
        problems.append(
            f"origin {np.round(a.GetOrigin(), 2).tolist()} vs {np.round(b.GetOrigin(), 2).tolist()}"
        )
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4):
        problems.append("orientation differs")
    if problems:
        raise BadInputError(
            f"{what} is not on the grid of {reference.label} in {reference.folder}: " + "; ".join(problems)
        )


def labels_on_series_grid(labels: sitk.Image, reference: dser.SeriesInfo) -> np.ndarray:
    """The label map as (slices, rows, columns) in the order of ``reference.files``; refuses other grids."""
    check_on_series_grid(labels, reference)
    grid = dser.series_grid(reference)
    moved = sitk.Resample(
        sitk.Cast(labels, sitk.sitkUInt16), grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    out = sitk.GetArrayFromImage(moved)
    src = sitk.GetArrayViewFromImage(labels)
    if not np.array_equal(np.bincount(out.ravel()), np.bincount(src.ravel().astype(np.int64))):
        raise BadInputError(f"label map does not map voxel-for-voxel onto {reference.label}")  # never silent
    return out


def write_dicom_seg(
    path: str | Path,
    labels: sitk.Image,
    label_names: Mapping[int, str],
    reference: dser.SeriesInfo,
    *,
    series_number: int = SEG_SERIES_NUMBER,
    description: str = "Paraspinal muscles (ParaspinalSeg)",
    creator: str | None = None,
) -> Path:
    """Write ``segmentation.dcm``: a BINARY DICOM SEG of the structures present, referencing ``reference``."""
    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    arr = labels_on_series_grid(labels, reference)
    present = [(v, n) for v, n in sorted(label_names.items()) if v > 0 and np.any(arr == v)]
    if not present:
        raise BadInputError(
            "the label map has no voxel of any named structure: nothing to write as DICOM SEG"
        )
    sop_uid = generate_uid()
    numbers = np.zeros(max(int(arr.max()), max(v for v, _ in present)) + 1, np.uint8)
    for k, (v, _) in enumerate(present, 1):
        numbers[v] = k
    pixel = numbers[arr]
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in reference.files]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixel,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment_description(k, n, sop_uid) for k, (_, n) in enumerate(present, 1)],
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="ParaspinalLBP",
        manufacturer_model_name=ALGORITHM_NAME,
        software_versions=_software_version(),
        device_serial_number="1",
        content_description=description[:64],
        content_label="PARASPINAL",
        content_creator_name=creator,
        series_description=description[:64],
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path


def read_dicom_seg(path: str | Path, reference: dser.SeriesInfo) -> tuple[sitk.Image, dict[int, str]]:
    """(label map on the reference grid with the project's values, value → name) of a SEG we wrote."""
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(str(path))
    uids = [
        str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        for f in reference.files
    ]
    names = {}
    for number in seg.get_segment_numbers():
        item = seg.get_segment_description(number)
        name = item.tracking_id or item.segment_label
        names[number] = name if name in BY_NAME else item.segment_label
    values = {n: (_structure(name).value if name in BY_NAME else 100 + n) for n, name in names.items()}
    pixel = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=True, assert_missing_frames_are_empty=True
    )
    lut = np.zeros(max(names) + 1, np.uint8)
    for n, v in values.items():
        lut[n] = v
    image = sitk.GetImageFromArray(lut[pixel])
    image.CopyInformation(dser.series_grid(reference))
    return image, {values[n]: names[n] for n in names}
