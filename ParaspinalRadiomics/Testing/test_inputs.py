"""Inputs: Slicer .seg.nrrd label maps, C1 labels.json, name precedence, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ParaspinalRadiomicsLib.inputs import load_case, read_label_names, read_labels


def _seg(path: Path, arr: np.ndarray, segments: list[tuple[str, int, int]], vector: bool = False) -> None:
    img = sitk.GetImageFromArray(arr, isVector=vector)
    img.SetSpacing((0.9, 0.9, 4.0))
    for i, (name, value, layer) in enumerate(segments):
        img.SetMetaData(f"Segment{i}_Name", name)
        img.SetMetaData(f"Segment{i}_LabelValue", str(value))
        img.SetMetaData(f"Segment{i}_Layer", str(layer))
    sitk.WriteImage(img, str(path))


def test_seg_nrrd_single_and_multi_layer(tmp_path: Path):
    a = np.zeros((4, 10, 10), np.uint8)
    a[1:3, 2:5, 2:5] = 1
    a[1:3, 6:9, 6:9] = 2
    _seg(tmp_path / "one.seg.nrrd", a, [("Multifidus left", 1, 0), ("Psoas right", 2, 0)])
    labels, names = read_labels(tmp_path / "one.seg.nrrd")
    assert names == {1: "multifidus_left", 2: "psoas_right"}
    assert labels.GetPixelID() == sitk.sitkUInt32 and labels.GetSpacing() == pytest.approx((0.9, 0.9, 4.0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), a)
    # two layers, no overlap: flattened, values renumbered in segment order
    b = np.zeros((4, 10, 10, 2), np.uint8)
    b[1:3, 2:5, 2:5, 0] = 1
    b[1:3, 6:9, 6:9, 1] = 5
    _seg(tmp_path / "two.seg.nrrd", b, [("erector spinae left", 1, 0), ("psoas left", 5, 1)], vector=True)
    labels, names = read_labels(tmp_path / "two.seg.nrrd")
    assert names == {1: "erector_spinae_left", 2: "psoas_left"}
    flat = sitk.GetArrayFromImage(labels)
    assert (flat == 1).sum() == 18 and (flat == 2).sum() == 18
    # overlapping layers cannot become one label map: clear error naming file and segment
    b[1:3, 3:6, 3:6, 1] = 5
    _seg(tmp_path / "ovl.seg.nrrd", b, [("erector spinae left", 1, 0), ("psoas left", 5, 1)], vector=True)
    with pytest.raises(ValueError, match=r"ovl.seg.nrrd: segment 'psoas left' overlaps"):
        read_labels(tmp_path / "ovl.seg.nrrd")


def test_label_names_c1_and_precedence(tmp_path: Path):
    p = tmp_path / "labels.json"
    p.write_text(json.dumps({"labels": {"1": "multifidus_left"}, "levels": {"L5": [0, 3], "L4": [4, 7]}}))
    names, levels = read_label_names(p)
    assert names == {1: "multifidus_left"} and levels == {"L5": (0, 3), "L4": (4, 7)}
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"2": "psoas_right"}))
    assert read_label_names(plain) == ({2: "psoas_right"}, None)
    plain.write_text(json.dumps({"labels": {"x": "a"}}))
    with pytest.raises(ValueError, match=r"plain.json: label key 'x' is not an integer"):
        read_label_names(plain)
    plain.write_text(json.dumps({"labels": {"1": "a"}, "levels": {"L3": [5, 2]}}))
    with pytest.raises(ValueError, match=r"level 'L3' has an invalid slice range"):
        read_label_names(plain)
    # a labels.json beside the label map is used; an explicit file wins
    img = sitk.GetImageFromArray(np.ones((8, 4, 4), np.float32))
    sitk.WriteImage(img, str(tmp_path / "image.nii.gz"))
    sitk.WriteImage(sitk.Cast(img, sitk.sitkUInt8), str(tmp_path / "lab.nii.gz"))
    _, _, names, levels = load_case(tmp_path / "image.nii.gz", tmp_path / "lab.nii.gz")
    assert names == {1: "multifidus_left"} and levels["L4"] == (4, 7)
    plain.write_text(json.dumps({"1": "psoas_left"}))
    _, _, names, levels = load_case(tmp_path / "image.nii.gz", tmp_path / "lab.nii.gz", plain)
    assert names == {1: "psoas_left"} and levels is None
    with pytest.raises(FileNotFoundError, match=r"nope\.nii\.gz"):
        load_case(tmp_path / "nope.nii.gz", tmp_path / "lab.nii.gz")
