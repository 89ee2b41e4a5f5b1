"""ParaspinalSegLogic on the real MuscleMap case through slicer-core: table == Lib == numpy count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from lbp_pytest_plugin import shared_path

from ParaspinalSegLib import measure, structures

pytestmark = [pytest.mark.slicer, pytest.mark.realdata]


def test_logic_measure_musclemap(slicer_scene, slicer_module) -> None:
    image_path = shared_path("data/musclemap_sub0001/image.nii.gz")
    labels_path = shared_path("data/musclemap_sub0001/labels.nii.gz")
    slicer = slicer_scene
    module = slicer_module("ParaspinalSeg")
    logic = module.ParaspinalSegLogic()

    volume = slicer.util.loadVolume(str(image_path))
    label_node = slicer.util.loadLabelVolume(str(labels_path))
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(label_node, seg)
    # Name the imported segments as the data README documents (Slicer names them by label value).
    segmentation = seg.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        segment.SetName(structures.MUSCLEMAP_LABEL_NAMES[int(segment.GetLabelValue())])

    table = logic.measure(volume, seg, caseId="sub0001")
    assert table.GetAttribute("ParaspinalLBP.table") == "measurements"
    df = slicer.util.dataframeFromTable(table)
    whole = df[(df["level"] == "all") & (df["slice"].isna() | (df["slice"].astype(str) == "nan"))]
    whole = whole.set_index("structure")
    assert set(whole.index) == set(structures.MUSCLEMAP_LABEL_NAMES.values())

    # The Lib on the files directly gives the same numbers.
    img = sitk.ReadImage(str(image_path))
    lab = sitk.ReadImage(str(labels_path))
    lib = measure.measure_labels(lab, structures.MUSCLEMAP_LABEL_NAMES, image=img, case_id="sub0001")
    lib_whole = lib[(lib["level"] == "all") & lib["slice"].isna()].set_index("structure")
    for col in ("n_voxels", "csa_cm2", "volume_cm3", "mean_intensity"):
        np.testing.assert_allclose(
            whole.loc[lib_whole.index, col].astype(float), lib_whole[col].astype(float), rtol=1e-9
        )

    # Independent numpy count from the raw arrays.
    lab_arr = sitk.GetArrayFromImage(lab)
    img_arr = sitk.GetArrayFromImage(img).astype(float)
    sx, sy, sz = lab.GetSpacing()
    for value, name in structures.MUSCLEMAP_LABEL_NAMES.items():
        mask = lab_arr == value
        per_slice = mask.sum(axis=(1, 2))
        assert whole.loc[name, "n_voxels"] == mask.sum()
        assert whole.loc[name, "volume_cm3"] == pytest.approx(mask.sum() * sx * sy * sz / 1000, rel=1e-9)
        assert whole.loc[name, "csa_cm2"] == pytest.approx(
            per_slice[per_slice > 0].mean() * sx * sy / 100, rel=1e-9
        )
        assert whole.loc[name, "mean_intensity"] == pytest.approx(img_arr[mask].mean(), rel=1e-9)
        # Per-slice rows: one per slice where the muscle is present, areas as counted.
        rows = df[(df["structure"] == name) & pd.to_numeric(df["slice"], errors="coerce").notna()]
        counted = {int(k): per_slice[k] * sx * sy / 100 for k in np.flatnonzero(per_slice)}
        got = {int(float(k)): a for k, a in zip(rows["slice"], rows["csa_cm2"], strict=True)}
        assert got.keys() == counted.keys()
        for k, area in counted.items():
            assert got[k] == pytest.approx(area, rel=1e-9)
    # Plausibility (methods note): per-slice CSA of lumbar muscles lies in a few to ~25 cm².
    assert whole["csa_cm2"].between(1.0, 30.0).all(), whole["csa_cm2"].to_dict()
