"""ParaspinalRadiomicsLogic on the real MuscleMap case (slicer-core): table == Lib on the same voxels.

Slicer's NIfTI reader and SimpleITK derive this oblique volume's direction cosines with different
1e-16 rounding; with in-plane resampling (protocol-mri) pyradiomics' resampled grid then differs
by a voxel column and shape features by ~0.15 %. The comparison therefore uses the geometry the
scene holds (as a user in Slicer gets it); the file-based path is tested in the Lib's own tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from lbp_pytest_plugin import shared_path

from ParaspinalLBPCore.structures import MUSCLEMAP_LABEL_NAMES
from ParaspinalRadiomicsLib import extraction

pytestmark = [pytest.mark.slicer, pytest.mark.realdata]

MUSCLEMAP = MUSCLEMAP_LABEL_NAMES  # ../shared/data/README.md


def test_logic_extract_musclemap(slicer_scene, slicer_module) -> None:
    image_path = shared_path("data/musclemap_sub0001/image.nii.gz")
    labels_path = shared_path("data/musclemap_sub0001/labels.nii.gz")
    slicer = slicer_scene
    module = slicer_module("ParaspinalRadiomics")
    from ParaspinalLBPSlicer import mrml

    volume = slicer.util.loadVolume(str(image_path))
    label_node = slicer.util.loadLabelVolume(str(labels_path))
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(label_node, seg)
    segmentation = seg.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        segment.SetName(MUSCLEMAP[int(segment.GetLabelValue())])

    calls = []
    table = module.ParaspinalRadiomicsLogic().extract(
        volume, seg, params="protocol-mri", caseId="sub0001", progress=lambda d, t, w: calls.append((d, t))
    )
    df = slicer.util.dataframeFromTable(table).set_index("structure").sort_index()
    assert table.GetAttribute("ParaspinalLBP.table") == "features"
    assert set(df.index) == set(MUSCLEMAP.values())
    assert (df["status"] == "ok").all(), df["reason"].to_dict()
    assert calls and calls[-1][0] == calls[-1][1] == 8

    scene_image = mrml.volumeToImage(volume)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(scene_image), sitk.GetArrayFromImage(sitk.ReadImage(str(image_path)))
    )
    file_labels = sitk.ReadImage(str(labels_path))
    file_labels.CopyInformation(scene_image)
    lib = extraction.extract_case(scene_image, file_labels, MUSCLEMAP, "protocol-mri", case_id="sub0001")
    lib = lib.set_index("structure").sort_index()
    features = [c for c in lib.columns if c.startswith("original_")]
    assert len(features) >= 90, "the six protocol classes give ~100 features"
    np.testing.assert_allclose(
        df[features].astype(float).to_numpy(), lib[features].astype(float).to_numpy(), rtol=1e-12, atol=0
    )
    # The image is preprocessed identically: voxel counts equal the label counts.
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_path)))
    for value, name in MUSCLEMAP.items():
        assert int(float(df.loc[name, "n_voxels"])) == int((lab == value).sum())
