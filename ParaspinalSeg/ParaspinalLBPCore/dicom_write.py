"""Write a 3D image as a classic DICOM MR series (MR Image Storage, one file per slice) with pydicom.

Used to turn the digital phantom into scanner-like DICOM for tests and the demo::

    from ParaspinalLBPCore.dicom_write import DicomStudy, quantize, write_mr_series

    study = DicomStudy(patient_id="PHANTOM-0001", patient_name="Phantom^One")
    stored = quantize({"water": water, "fat": fat})        # one shared scale keeps F/(F+W) ratios
    write_mr_series(stored["water"], "case/water", study, series_number=3,
                    description="T1 DIXON W", image_type=("DERIVED", "PRIMARY", "DIXON", "WATER"))

UIDs derive from the study's ``uid_seed`` and the series number, so the same input writes the same
files. Each series folder is written into a temporary sibling and renamed into place (never half).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ParaspinalLBPCore.atomic import atomic_dir
from ParaspinalLBPCore.errors import BadInputError

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass(frozen=True)
class DicomStudy:
    """Patient, study, frame-of-reference and equipment attributes shared by every series of one case."""

    patient_id: str = "PHANTOM"
    patient_name: str = "Phantom^Lumbar"
    patient_birth_date: str = "19550101"
    patient_sex: str = "O"
    study_date: str = "20260101"
    study_time: str = "090000"
    study_id: str = "1"
    accession_number: str = "PHANTOM1"
    study_description: str = "Lumbar spine MRI (ParaspinalLBP digital phantom)"
    referring_physician: str = "Referring^Physician"
    institution: str = "ParaspinalLBP"
    manufacturer: str = "ParaspinalLBP"
    model: str = "Digital phantom"
    field_strength_t: float = 3.0
    uid_seed: str = "paraspinal-phantom"

    def uid(self, *parts: object) -> str:
        """A DICOM UID derived from this study's seed and ``parts`` (deterministic)."""
        from pydicom.uid import generate_uid

        return generate_uid(entropy_srcs=[self.uid_seed, self.patient_id, *map(str, parts)])

    @property
    def study_uid(self) -> str:
        """StudyInstanceUID shared by every series of the case."""
        return self.uid("study")

    @property
    def frame_of_reference_uid(self) -> str:
        """FrameOfReferenceUID shared by every series (one patient position for the whole study)."""
        return self.uid("frame-of-reference")


def quantize(images: Mapping[str, Any], max_stored: int = 32000) -> dict[str, Any]:
    """Round images to uint16 stored values with ONE shared linear scale (keeps fat/water ratios)."""
    import SimpleITK as sitk

    peak = max(float(np.max(sitk.GetArrayViewFromImage(im))) for im in images.values())
    low = min(float(np.min(sitk.GetArrayViewFromImage(im))) for im in images.values())
    if low < 0:
        raise BadInputError(f"quantize: negative intensities ({low:g}); MR magnitude images are >= 0")
    scale = max_stored / peak if peak > 0 else 1.0
    out = {}
    for name, im in images.items():
        arr = np.rint(sitk.GetArrayFromImage(im).astype(np.float64) * scale).astype(np.uint16)
        q = sitk.GetImageFromArray(arr)
        q.CopyInformation(im)
        out[name] = q
    return out


def _ds_numbers(values: Sequence[float]) -> list[Any]:
    from pydicom.valuerep import DSfloat

    return [DSfloat(float(v), auto_format=True) for v in values]


def _base_dataset(
    study: DicomStudy,
    series_uid: str,
    series_number: int,
    description: str,
    image_type: Sequence[str],
    extra: Mapping[str, Any],
) -> Any:
    """Attributes common to every slice of one series (patient, study, series, FoR, equipment, MR)."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID = study.patient_name, study.patient_id
    ds.PatientBirthDate, ds.PatientSex = study.patient_birth_date, study.patient_sex
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study.study_uid, study.study_date, study.study_time
    ds.StudyID, ds.AccessionNumber = study.study_id, study.accession_number
    ds.StudyDescription, ds.ReferringPhysicianName = study.study_description, study.referring_physician
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, series_number, description
    ds.SeriesDate, ds.SeriesTime = study.study_date, study.study_time
    ds.Modality, ds.BodyPartExamined, ds.PatientPosition = "MR", "LSPINE", "HFS"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = study.frame_of_reference_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName = study.manufacturer, study.model
    ds.InstitutionName, ds.MagneticFieldStrength = study.institution, study.field_strength_t
    ds.ImageType = list(image_type)
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SP", ""
    ds.MRAcquisitionType, ds.SequenceName = "3D", "*fl3d2"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength, ds.FlipAngle = 7.0, 2.4, 2, 10
    ds.ImagedNucleus, ds.ProtocolName = "1H", description
    ds.AcquisitionNumber = 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


def write_mr_series(
    image: Any,
    out_dir: str | Path,
    study: DicomStudy,
    *,
    series_number: int,
    description: str,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write a uint16 3D SimpleITK image as one MR series folder (``IM0001.dcm`` ...); returns the files."""
    import SimpleITK as sitk
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    if image.GetDimension() != 3 or image.GetPixelID() != sitk.sitkUInt16:
        raise BadInputError("write_mr_series needs a 3D uint16 image (use quantize() first)")
    arr = sitk.GetArrayViewFromImage(image)
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)
    sx, sy, sz = image.GetSpacing()
    series_uid = study.uid("series", series_number)
    base = _base_dataset(study, series_uid, series_number, description, image_type, extra or {})
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = []
    with atomic_dir(out) as tmp:  # the whole series or the previous one, never a half-written one
        for k in range(arr.shape[0]):
            ds = base.copy()
            ds.SOPInstanceUID = study.uid("instance", series_number, k)
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = _ds_numbers(image.TransformIndexToPhysicalPoint((0, 0, k)))
            ds.ImageOrientationPatient = _ds_numbers([*d[:, 0], *d[:, 1]])
            ds.PixelSpacing = _ds_numbers([sy, sx])
            ds.SliceThickness, ds.SpacingBetweenSlices = _ds_numbers([sz])[0], _ds_numbers([sz])[0]
            ds.SliceLocation = _ds_numbers([float(np.dot(d[:, 2], ds.ImagePositionPatient))])[0]
            ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[2])
            ds.ContentDate, ds.ContentTime = study.study_date, study.study_time
            ds.PixelData = np.ascontiguousarray(arr[k]).astype("<u2").tobytes()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            name = f"IM{k + 1:04d}.dcm"
            ds.save_as(tmp / name, enforce_file_format=True)
            files.append(out / name)
    return files
