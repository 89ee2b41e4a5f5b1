"""The Slicer side of the DICOM SEG export through real MRML (slicer-core): a segmentation node on a volume
loaded from the phantom's DICOM series is written as SEG and read back to the voxel. The database import
(slicer.dicomDatabase, DICOMLib) does not exist in slicer-core and is not run here."""

from __future__ import annotations

import dicom_cases as dc
import numpy as np
import pytest
import SimpleITK as sitk

from ParaspinalLBPCore import dicom_series as ds
from ParaspinalLBPCore.structures import BY_NAME, MUSCLE_NAMES
from ParaspinalSegLib.dicom_seg import read_dicom_seg

pytestmark = pytest.mark.slicer


def test_segmentation_node_to_dicom_seg(slicer_scene, tmp_path) -> None:
    import pydicom

    from ParaspinalLBPSlicer import dicomexport, segmentations

    phantom = dc.small_phantom()
    study = tmp_path / "study"
    dc.write_study(phantom, study, names=("fat", "water"))
    fat = next(s for s in ds.scan_folder(study) if s.dixon == "fat")
    volume = slicer_scene.util.loadVolume(fat.files[0])
    truth = sitk.GetArrayFromImage(phantom.images["labels"]).astype(np.uint8)
    truth[truth > 8] = 0
    labels = sitk.GetImageFromArray(truth)
    labels.CopyInformation(phantom.images["labels"])
    names = {BY_NAME[n].value: n for n in MUSCLE_NAMES}
    node = segmentations.labelsToSegmentation(labels, names, referenceVolume=volume)
    path = dicomexport.writeDicomSeg(node, volume, list(fat.files), tmp_path / "seg.dcm", creator="Rater^A")
    back, back_names = read_dicom_seg(path, fat)
    assert back_names == {v: n for v, n in names.items() if (truth == v).any()}
    assert np.array_equal(sitk.GetArrayFromImage(back), truth)
    assert str(pydicom.dcmread(path, stop_before_pixels=True).ContentCreatorName) == "Rater^A"
    with pytest.raises(ValueError, match="was not loaded from DICOM"):
        dicomexport.referencedDicomFiles(volume)
