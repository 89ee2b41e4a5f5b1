"""The digital phantom as a scanner-like DICOM study: T1w, T2w and Dixon water/fat/in-phase/opposed-phase
series (MR Image Storage, one file per slice) of one patient, one study, one frame of reference.

``write_phantom_dicom(phantom, out_dir)`` writes ``out_dir/<NN>_<name>/IM0001.dcm ...`` and returns the
stored (quantized) images, so the same pixels can be written as NIfTI for DICOM-vs-NIfTI comparisons.
Dixon series share one intensity scale (F/(F+W) is unchanged up to rounding of the stored integers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import SimpleITK as sitk

from ParaspinalLBPCore.dicom_write import DicomStudy, quantize, write_mr_series
from ParaspinalLBPCore.errors import MissingKeyError

# name in Phantom.images → (SeriesNumber, SeriesDescription, ImageType): Siemens-like Dixon conventions.
PHANTOM_SERIES: dict[str, tuple[int, str, tuple[str, ...]]] = {
    "t1w": (2, "T1 TSE AX", ("ORIGINAL", "PRIMARY", "M", "NORM")),
    "t2w": (3, "T2 TSE AX", ("ORIGINAL", "PRIMARY", "M", "NORM")),
    "inphase": (4, "T1 DIXON AX IN", ("DERIVED", "PRIMARY", "DIXON", "IN_PHASE")),
    "opposed": (5, "T1 DIXON AX OPP", ("DERIVED", "PRIMARY", "DIXON", "OPP_PHASE")),
    "fat": (6, "T1 DIXON AX F", ("DERIVED", "PRIMARY", "DIXON", "FAT")),
    "water": (7, "T1 DIXON AX W", ("DERIVED", "PRIMARY", "DIXON", "WATER")),
}
DIXON_NAMES = ("water", "fat", "inphase", "opposed")


def write_phantom_dicom(
    phantom: Any,
    out_dir: str | Path,
    study: DicomStudy | None = None,
    names: tuple[str, ...] = tuple(PHANTOM_SERIES),
) -> dict[str, sitk.Image]:
    """Write the phantom's images ``names`` as DICOM series under ``out_dir``; return the stored images."""
    study = study or DicomStudy(patient_id=f"PHANTOM-{phantom.seed:04d}", uid_seed=f"phantom-{phantom.seed}")
    unknown = sorted(set(names) - set(PHANTOM_SERIES))
    if unknown:
        raise MissingKeyError(
            f"no DICOM series defined for phantom image(s) {unknown}; known: {list(PHANTOM_SERIES)}"
        )
    stored: dict[str, sitk.Image] = {}
    dixon = [n for n in names if n in DIXON_NAMES]
    if dixon:
        stored.update(quantize({n: phantom.images[n] for n in dixon}))
    for n in names:
        if n not in stored:
            stored.update(quantize({n: phantom.images[n]}))
    out = Path(out_dir)
    for n in names:
        number, description, image_type = PHANTOM_SERIES[n]
        write_mr_series(
            stored[n],
            out / f"{number:02d}_{n}",
            study,
            series_number=number,
            description=description,
            image_type=image_type,
        )
    return stored
