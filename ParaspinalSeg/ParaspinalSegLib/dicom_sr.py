"""TID 1500 measurement report (highdicom Comprehensive 3D SR) of the measurement table, referencing the SEG.

``write_measurement_report(path, table, seg_path, reference)`` writes one measurement group (TID 1411)
per structure × level row of the C4 table (level ``all`` = whole volume; per-slice rows are left out):
finding = the muscle's SNOMED CT code with its laterality, the segment of ``seg_path`` it measures, and
the measurements CSA (SCT 42798000 Area, cm2: mean in-slice area over the level), volume (SCT 118565006,
cm3) and fat fraction (DCM 129100, %), the level coded as a finding site (SCT L1–L5 vertebra).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ParaspinalLBPCore import dicom_series as dser
from ParaspinalLBPCore.atomic import atomic_path
from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPCore.structures import BY_NAME, LEVEL_CODES, MUSCLE_CODES, SCT_LEFT, SCT_RIGHT
from ParaspinalSegLib.dicom_seg import ALGORITHM_NAME, _software_version

# column → (concept, UCUM unit)
MEASUREMENTS = {
    "csa_cm2": (("SCT", "42798000", "Area"), ("UCUM", "cm2", "square centimeter")),
    "volume_cm3": (("SCT", "118565006", "Volume"), ("UCUM", "cm3", "cubic centimeter")),
    "fat_fraction_pct": (("DCM", "129100", "Fat fraction"), ("UCUM", "%", "percent")),
}
SR_SERIES_NUMBER = 901


def _cc(triple: tuple[str, str, str]) -> Any:
    import highdicom as hd

    scheme, value, meaning = triple
    return hd.sr.CodedConcept(value, scheme, meaning)


def _group(row: pd.Series, seg: Any, number: int, reference: dser.SeriesInfo) -> Any:
    """One TID 1411 volumetric group for a structure × level row."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    s = BY_NAME[row["structure"]]
    level = str(row["level"])
    measurements = []
    for column, (concept, unit) in MEASUREMENTS.items():
        value = row.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        sites = [hd.sr.FindingSite(_cc(LEVEL_CODES[level]))] if level in LEVEL_CODES else None
        measurements.append(hd.sr.Measurement(_cc(concept), float(value), _cc(unit), finding_sites=sites))
    laterality = _cc(SCT_LEFT if s.side == "left" else SCT_RIGHT)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=[seg.SOPInstanceUID, s.name, level]), identifier=f"{s.name} {level}"
        ),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(reference.uid),
        ),
        finding_type=_cc(MUSCLE_CODES[s.muscle]),
        finding_sites=[hd.sr.FindingSite(_cc(MUSCLE_CODES[s.muscle]), laterality=laterality)],
        measurements=measurements,
    )


def write_measurement_report(
    path: str | Path,
    table: pd.DataFrame,
    seg_path: str | Path,
    reference: dser.SeriesInfo,
    observer: str | None = None,
) -> Path:
    """Write the TID 1500 report of ``table``'s structure × level rows for the segments of ``seg_path``."""
    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    seg = pydicom.dcmread(seg_path)
    numbers = {str(item.TrackingID): int(item.SegmentNumber) for item in seg.SegmentSequence}
    rows = table[table["slice"].isna()] if "slice" in table.columns else table
    rows = rows[rows["structure"].isin(numbers)]
    if rows.empty:
        raise BadInputError(f"the measurement table has no structure × level row for a segment of {seg_path}")
    groups = [_group(r, seg, numbers[r["structure"]], reference) for _, r in rows.iterrows()]
    device = hd.sr.ObserverContext(
        observer_type=pydicom.sr.codedict.codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[ALGORITHM_NAME]),
            name=ALGORITHM_NAME,
            manufacturer_name="ParaspinalLBP",
        ),
    )
    person = None
    if observer:
        person = hd.sr.ObserverContext(
            observer_type=pydicom.sr.codedict.codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=observer),
        )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=person, observer_device_context=device
        ),
        procedure_reported=_cc(("SCT", "363679005", "Imaging")),
        imaging_measurements=groups,
    )
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in reference.files]
    sr = hd.sr.Comprehensive3DSR(
        evidence=[seg, *sources],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="ParaspinalLBP",
        is_complete=True,
    )
    sr.SeriesDescription, sr.SoftwareVersions = "Paraspinal muscle measurements", _software_version()
    path = Path(path)
    with atomic_path(path) as tmp:
        sr.save_as(tmp)
    return path
