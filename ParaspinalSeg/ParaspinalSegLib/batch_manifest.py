"""The cohort manifest's columns (``paraspinal-seg batch``): kept apart from batch.py so that the command
line's help can list them without loading the segmentation engine."""

from __future__ import annotations

#: Manifest columns and what they hold (docs/cohort.md repeats this table).
MANIFEST_COLUMNS: dict[str, str] = {
    "case_id": "case identifier, also the output folder name (letters, digits, '.', '_', '-')",
    "water": "Dixon water image, a file (NIfTI, NRRD, ...) or a DICOM series folder (use with fat)",
    "fat": "Dixon fat image, a file or a DICOM series folder (use with water); results are on its grid",
    "image": "single T1/T2-weighted image (fat bright), a file or a DICOM series folder",
    "dicom": "DICOM study folder: the Dixon water/fat pair is recognised from the headers "
    "(or named by water_series/fat_series); with series, that one image instead",
    "series": "series of the DICOM folder in image or dicom (SeriesNumber or SeriesInstanceUID)",
    "water_series": "water series of a DICOM folder (SeriesNumber or SeriesInstanceUID)",
    "fat_series": "fat series of a DICOM folder (SeriesNumber or SeriesInstanceUID)",
    "seeds": "seed points (.mrk.json; labels = structure names, description = level)",
    "levels": "level landmarks L1..L5 (.mrk.json); optional (else levels from the seeds)",
}
PATH_COLUMNS = ("water", "fat", "image", "dicom", "seeds", "levels")
SERIES_COLUMNS = ("series", "water_series", "fat_series")
