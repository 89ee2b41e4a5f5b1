"""ParaspinalSegLogic on the real MuscleMap case through slicer-core: table == Lib == numpy count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from lbp_pytest_plugin import shared_path

from ParaspinalLBPCore import structures
from ParaspinalSegLib import measure

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


def test_logic_measure_tum01_new_columns_and_refusals(slicer_scene, slicer_module, tmp_path) -> None:
    """TUM01 Dixon through the Logic: lean CSA, intramuscular fat, volume fraction equal the Lib's; the table
    carries each column's unit and meaning; water as the image, a swapped pair and a fat-saturated sidecar
    are refused with the reason."""
    import json

    from ParaspinalSegLib.contrast import UnsupportedContrastError

    slicer = slicer_scene
    logic = slicer_module("ParaspinalSeg").ParaspinalSegLogic()
    d = "data/myosegmentum_tum01/"
    fat = slicer.util.loadVolume(str(shared_path(d + "fat.nii.gz")))
    water = slicer.util.loadVolume(str(shared_path(d + "water.nii.gz")))
    water.CopyOrientation(fat)  # the water file's origin is (0,0,0): same voxels (data README)
    label_node = slicer.util.loadLabelVolume(str(shared_path(d + "labels.nii.gz")))
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(label_node, seg)
    segmentation = seg.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        segment.SetName(structures.TUM01_LABEL_NAMES[int(segment.GetLabelValue())])

    table = logic.measure(fat, seg, fatVolume=fat, waterVolume=water, assumeSameGrid=True, perSlice=False)
    df = slicer.util.dataframeFromTable(table)
    assert list(df.columns) == list(measure.MEASUREMENT_COLUMNS)
    df = df.set_index(["structure", "level"])
    for column, (unit, description) in measure.COLUMN_DOCS.items():
        assert table.GetColumnUnitLabel(column) == unit and table.GetColumnDescription(column) == description
    w = sitk.ReadImage(str(shared_path(d + "water.nii.gz")))
    f = sitk.ReadImage(str(shared_path(d + "fat.nii.gz")))
    w.CopyInformation(f)
    lib = measure.measure_labels(sitk.ReadImage(str(shared_path(d + "labels.nii.gz"))), structures.TUM01_LABEL_NAMES,
                                 water=w, fat=f, per_slice=False, erode_px=1).set_index(["structure", "level"])  # fmt: skip
    for col in ("fat_fraction_pct", "fat_volume_fraction_pct", "lean_csa_cm2", "imat_cm2", "fcsa_cm2"):
        np.testing.assert_allclose(df.loc[lib.index, col].astype(float), lib[col].astype(float), rtol=1e-6)
    whole = df.xs("all", level="level")
    assert (whole.ff_type == "signal").all() and (whole.ff_erode_px.astype(float) == 1).all()
    # lean volunteer: 4-9 % of the compartment is fat by volume (signal FF 11-15 %)
    assert whole.fat_volume_fraction_pct.astype(float).between(3, 10).all(), whole.fat_volume_fraction_pct
    assert (whole.fat_fraction_pct.astype(float) > whole.fat_volume_fraction_pct.astype(float)).all()

    with pytest.raises(UnsupportedContrastError, match="fat is not bright"):
        logic.measure(water, seg, perSlice=False, assumeSameGrid=True)
    with pytest.raises(UnsupportedContrastError, match="swapped"):
        logic.measure(fat, seg, fatVolume=water, waterVolume=fat, assumeSameGrid=True, perSlice=False)
    areas = logic.measure(water, seg, perSlice=False, fatMethod="none")
    assert slicer.util.dataframeFromTable(areas)["csa_cm2"].astype(float).gt(4).all()
    # metadata: an in-phase image whose BIDS sidecar says fat-saturated is refused before measuring
    inphase = sitk.Cast(w, sitk.sitkFloat32) + sitk.Cast(f, sitk.sitkFloat32)
    sitk.WriteImage(inphase, str(tmp_path / "ip.nii.gz"))
    (tmp_path / "ip.json").write_text(json.dumps({"ScanOptions": ["FS"]}))
    ip_node = slicer.util.loadVolume(str(tmp_path / "ip.nii.gz"))
    with pytest.raises(UnsupportedContrastError, match="ScanOptions"):
        logic.measure(ip_node, seg, perSlice=False)
