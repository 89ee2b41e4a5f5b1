"""ParaspinalSegLogic.segment on the real MyoSegmenTUM Dixon case through slicer-core.

Seeds arrive as a markups node (one point per muscle per level, generated from the manual labels
by the same honest rule as the Lib's real-data test); the result must be a segmentation node with
canonical names, colours and SNOMED terms whose voxels equal the Lib's own output, and the
measurement table node must carry the Dixon fat fraction.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from lbp_pytest_plugin import shared_path

from ParaspinalLBPCore.structures import BY_NAME, TUM01_LABEL_NAMES
from ParaspinalSegLib.markups import MarkupPoint
from ParaspinalSegLib.seeds import points_from_labels
from ParaspinalSegLib.segment import segment

pytestmark = [pytest.mark.slicer, pytest.mark.realdata]


def _seed_points(truth: np.ndarray, ref: sitk.Image) -> list[MarkupPoint]:
    return points_from_labels(truth, ref, TUM01_LABEL_NAMES, first_level=2)


def test_logic_segment_tum01(slicer_scene, slicer_module) -> None:
    d = "data/myosegmentum_tum01/"
    slicer = slicer_scene
    module = slicer_module("ParaspinalSeg")
    logic = module.ParaspinalSegLogic()
    from ParaspinalLBPSlicer import mrml, segmentations

    water_node = slicer.util.loadVolume(str(shared_path(d + "water.nii.gz")), {"name": "water"})
    fat_node = slicer.util.loadVolume(str(shared_path(d + "fat.nii.gz")), {"name": "fat"})
    labels = sitk.ReadImage(str(shared_path(d + "labels.nii.gz")))
    truth = sitk.GetArrayFromImage(labels)
    fat_img = mrml.volumeToImage(fat_node)
    points = _seed_points(truth, fat_img)

    seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    for p in points:
        ras = [-p.position_lps[0], -p.position_lps[1], p.position_lps[2]]
        index = seeds.AddControlPoint(ras, p.label)
        seeds.SetNthControlPointDescription(index, p.description)

    # The real water image carries a different origin from the fat image: refused unless told.
    with pytest.raises(ValueError, match="origin"):
        logic.segment(seeds, fatVolume=fat_node, waterVolume=water_node)
    seg = logic.segment(seeds, fatVolume=fat_node, waterVolume=water_node, assumeSameGrid=True)

    segmentation = seg.GetSegmentation()
    names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
    assert names == set(TUM01_LABEL_NAMES.values())
    for name in names:
        segment_ = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
        assert np.allclose(segment_.GetColor(), [c / 255 for c in BY_NAME[name].color])
        assert BY_NAME[name].terminology_entry().split("~")[2] in segment_.GetTerminology()

    # Voxels equal the Lib run on the same images; Dice vs manual as in the Lib's own real-data test.
    water_img = mrml.volumeToImage(water_node)
    water_img.CopyInformation(fat_img)
    lib = segment({"water": water_img, "fat": fat_img}, points)
    exported, exported_names = segmentations.segmentationToLabels(seg, fat_node)
    got = sitk.GetArrayFromImage(exported)
    ref = sitk.GetArrayFromImage(lib.labels)
    for value, name in exported_names.items():
        lib_value = next(v for v, n in lib.label_names.items() if n == name)
        np.testing.assert_array_equal(got == value, ref == lib_value)
        manual = truth == next(v for v, n in TUM01_LABEL_NAMES.items() if n == name)
        dice = 2 * ((got == value) & manual).sum() / ((got == value).sum() + manual.sum())
        assert dice > 0.80, f"{name}: Dice {dice:.3f}"

    with pytest.raises(ValueError, match="water image"):
        logic.measure(None, seg, fatVolume=fat_node, waterVolume=water_node)
    table = logic.measure(
        None, seg, fatVolume=fat_node, waterVolume=water_node, caseId="TUM01", assumeSameGrid=True
    )
    df = slicer.util.dataframeFromTable(table)
    whole = df[(df["level"] == "all") & (df["slice"].astype(str).isin(["", "nan"]))].set_index("structure")
    assert (whole["fat_method"] == "dixon").all()
    ff = whole["fat_fraction_pct"].astype(float)
    assert ff.between(5, 25).all(), ff.to_dict()  # methods note: 12–16 % inside the manual labels


def test_logic_propose_seeds_then_segment_tum01(slicer_scene, slicer_module) -> None:
    """Auto-initialisation through the Logic: proposed seeds (a markups node) land in the right manual
    muscle, and segmenting from them without any correction gives a usable first result."""
    d = "data/myosegmentum_tum01/"
    slicer = slicer_scene
    logic = slicer_module("ParaspinalSeg").ParaspinalSegLogic()
    from ParaspinalLBPSlicer import mrml, segmentations

    water_node = slicer.util.loadVolume(str(shared_path(d + "water.nii.gz")), {"name": "water"})
    fat_node = slicer.util.loadVolume(str(shared_path(d + "fat.nii.gz")), {"name": "fat"})
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_path(d + "labels.nii.gz"))))
    fat_img = mrml.volumeToImage(fat_node)
    # Level landmarks at the middle of 4 equal slabs (the validation's 4 levels over 29 slices).
    landmarks = [
        MarkupPoint(f"L{n + 2}", np.array(fat_img.TransformIndexToPhysicalPoint((0, 0, int(s[len(s) // 2])))))
        for n, s in enumerate(np.array_split(np.arange(truth.shape[0]), 4))
    ]
    levels_node = mrml.pointsToMarkups(landmarks, name="levels")
    names = list(TUM01_LABEL_NAMES.values())
    seeds = logic.proposeSeeds(
        fatVolume=fat_node,
        waterVolume=water_node,
        levelsNode=levels_node,
        structures=names,
        assumeSameGrid=True,
    )
    assert seeds.GetAttribute("ParaspinalLBP.missingSeeds") == ""
    points = mrml.markupsToPoints(seeds)
    assert sorted((p.label, p.description) for p in points) == sorted(
        (n, f"L{k}") for n in names for k in range(2, 6)
    )
    value_of = {n: v for v, n in TUM01_LABEL_NAMES.items()}
    for p in points:
        i, j, k = (round(c) for c in fat_img.TransformPhysicalPointToContinuousIndex(p.position_lps.tolist()))
        assert truth[k, j, i] == value_of[p.label], (p.label, p.description)

    seg = logic.segment(
        seeds, fatVolume=fat_node, waterVolume=water_node, levelsNode=levels_node, assumeSameGrid=True
    )
    got, got_names = segmentations.segmentationToLabels(seg, fat_node)
    got = sitk.GetArrayFromImage(got)
    for value, name in got_names.items():
        manual = truth == value_of[name]
        dice = 2 * ((got == value) & manual).sum() / ((got == value).sum() + manual.sum())
        # Measured at this commit (proposed / reference clicks): ES R 0.806/0.890, ES L 0.849/0.913,
        # MF R 0.718/0.850, MF L 0.562/0.872 — the proposals sit inside the right muscle but off its
        # centre, and the multifidus/erector split still depends on where a click sits, so the user's
        # correction step matters (see test_autoseed.py); the floor catches a proposal in the wrong
        # muscle or a broken hand-over from the markups node.
        floor = 0.50 if name.startswith("multifidus") else 0.75
        assert dice > floor, f"{name}: Dice from proposed seeds {dice:.3f}"
