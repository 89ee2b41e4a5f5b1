"""Export a segmentation node as DICOM SEG (ParaspinalSegLib.dicom_seg) into Slicer's DICOM database.

The SEG references the DICOM series the reference volume was loaded from: its instance UIDs come
from the volume's ``DICOM.instanceUIDs`` attribute and its files from the database. Imports of
ParaspinalLBPCore/ParaspinalSegLib.dicom_seg/DICOMLib stay inside the functions (pydicom and
highdicom may still have to be installed when this module loads).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import slicer

from ParaspinalLBPCore.errors import BadInputError

from .segmentations import segmentationToLabels


def referencedDicomFiles(volumeNode, dicomDatabase=None) -> list[str]:
    """Files of the DICOM series ``volumeNode`` was loaded from (via Slicer's DICOM database)."""
    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids:
        raise BadInputError(
            f"volume '{volumeNode.GetName()}' was not loaded from DICOM (no DICOM.instanceUIDs): load its "
            "series through the DICOM module, or export with 'paraspinal-seg dicom-seg --reference-dicom'"
        )
    db = dicomDatabase if dicomDatabase is not None else getattr(slicer, "dicomDatabase", None)
    if db is None or not db.isOpen:
        raise BadInputError("Slicer's DICOM database is not open: open it in the DICOM module first")
    files = [db.fileForInstance(uid) for uid in uids]
    missing = [uid for uid, f in zip(uids, files, strict=True) if not f]
    if missing:
        raise BadInputError(
            f"{len(missing)} of {len(uids)} instances of volume '{volumeNode.GetName()}' are not in the "
            f"DICOM database (e.g. {missing[0]})"
        )
    return files


def writeDicomSeg(segmentationNode, referenceVolume, files, outputPath, creator: str | None = None) -> str:
    """Write ``segmentationNode`` (on ``referenceVolume``'s grid) as a DICOM SEG referencing ``files``."""
    from ParaspinalLBPCore.dicom_series import scan_files
    from ParaspinalSegLib.dicom_seg import write_dicom_seg

    series = scan_files(files, f"volume '{referenceVolume.GetName()}'")
    if len(series) != 1:
        raise BadInputError(
            f"volume '{referenceVolume.GetName()}' comes from {len(series)} DICOM series, not one"
        )
    labels, names = segmentationToLabels(segmentationNode, referenceVolume)
    return str(write_dicom_seg(outputPath, labels, names, series[0], creator=creator or None))


def exportSegmentationToDicom(segmentationNode, referenceVolume, creator: str | None = None) -> str:
    """Write the SEG into a temporary folder and import (copy) it into Slicer's DICOM database."""
    from DICOMLib import DICOMUtils

    files = referencedDicomFiles(referenceVolume)
    folder = Path(tempfile.mkdtemp(prefix="ParaspinalSeg-SEG-", dir=slicer.app.temporaryPath))
    path = writeDicomSeg(segmentationNode, referenceVolume, files, folder / "segmentation.dcm", creator)
    if not DICOMUtils.importDicom(str(folder), slicer.dicomDatabase, copyFiles=True):
        raise RuntimeError(f"importing {path} into the DICOM database failed (see the log)")
    return path
