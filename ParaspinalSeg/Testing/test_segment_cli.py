"""segment/measure CLIs end to end on the synthetic Dixon case; the .seg.nrrd loads in Slicer with names and colours."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import synthetic_dixon as sd

from ParaspinalLBPCore.cli import run_cli
from ParaspinalLBPCore.structures import BY_NAME
from ParaspinalSegLib.markups import write_points
from ParaspinalSegLib.measure import MEASUREMENT_COLUMNS

COMMANDS = {
    "segment": "ParaspinalSegLib.segment_cli:add_cli",
    "measure": "ParaspinalSegLib.measure_cli:add_cli",
}


def cli(argv: list[str]) -> int:
    return run_cli("paraspinal-seg", "test", COMMANDS, argv)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seg")
    water, fat, truth = sd.make()
    for name, im in (("water", water), ("fat", fat), ("truth", truth)):
        sitk.WriteImage(im, str(tmp / f"{name}.nii.gz"))
    pts = sd.seed_points(truth)
    tagged = [
        (p.label, p.position_lps, "L3" if fat.TransformPhysicalPointToIndex(p.position_lps)[2] < 4 else "L4")
        for p in pts
    ]
    write_points(tmp / "seeds.mrk.json", tagged, coordinate_system="RAS")
    out = tmp / "out"
    rc = cli(
        [
            "segment",
            "--seeds",
            str(tmp / "seeds.mrk.json"),
            "--water",
            str(tmp / "water.nii.gz"),
            "--fat",
            str(tmp / "fat.nii.gz"),
            "--out-dir",
            str(out),
            "--case-id",
            "syn",
        ]
    )
    assert rc == 0
    return tmp, out, truth


def test_segment_cli_outputs(outputs) -> None:
    _tmp, out, truth = outputs
    labels = sitk.ReadImage(str(out / "labels.nii.gz"))
    t = sitk.GetArrayFromImage(truth)
    o = sitk.GetArrayFromImage(labels)
    for v in (1, 2, 3, 4):
        assert 2 * ((o == v) & (t == v)).sum() / ((o == v).sum() + (t == v).sum()) > 0.95
    doc = json.loads((out / "labels.json").read_text())
    assert doc["labels"] == {
        "1": "multifidus_left",
        "2": "multifidus_right",
        "3": "erector_spinae_left",
        "4": "erector_spinae_right",
    }
    assert doc["levels"] == {"L3": [0, 4], "L4": [5, 7]}
    table = pd.read_csv(out / "measurements.csv")
    assert list(table.columns) == list(MEASUREMENT_COLUMNS)
    whole = table[(table.level == "all") & table.slice.isna()].set_index("structure")
    # synthetic muscle FF is 10 %: Dixon within 2 pp (the 1-voxel rim adds partial-volume fat)
    assert np.allclose(whole.fat_fraction_pct, 10.0, atol=2.0)
    assert set(whole.fat_method) == {"dixon"}
    assert set(table.level) == {"all", "L3", "L4"}
    # CSA of a level = mean per-slice area; volume = voxels × voxel volume (1 × 1 × 4 mm)
    per = table[table.slice.notna()]
    l3 = per[(per.structure == "multifidus_left") & (per.level == "L3")]
    row = table[(table.structure == "multifidus_left") & (table.level == "L3") & table.slice.isna()].iloc[0]
    assert row.csa_cm2 == pytest.approx(l3.csa_cm2.mean())
    assert row.volume_cm3 == pytest.approx(row.n_voxels * 0.004)


def test_segment_cli_errors(outputs, capsys) -> None:
    tmp, _out, _ = outputs
    shifted = sitk.ReadImage(str(tmp / "water.nii.gz"))
    shifted.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(tmp / "water0.nii.gz"))
    rc = cli(
        [
            "segment",
            "--seeds",
            str(tmp / "seeds.mrk.json"),
            "--water",
            str(tmp / "water0.nii.gz"),
            "--fat",
            str(tmp / "fat.nii.gz"),
            "--out-dir",
            str(tmp / "bad"),
        ]
    )
    assert rc == 2
    assert "not on the same voxel grid" in capsys.readouterr().err
    rc = cli(
        [
            "segment",
            "--seeds",
            str(tmp / "seeds.mrk.json"),
            "--water",
            str(tmp / "water0.nii.gz"),
            "--fat",
            str(tmp / "fat.nii.gz"),
            "--out-dir",
            str(tmp / "ok"),
            "--assume-same-grid",
        ]
    )
    assert rc == 0
    rc = cli(
        [
            "segment",
            "--seeds",
            str(tmp / "nope.mrk.json"),
            "--image",
            str(tmp / "fat.nii.gz"),
            "--out-dir",
            str(tmp / "x"),
        ]
    )
    assert rc == 2
    assert "nope.mrk.json" in capsys.readouterr().err
    rc = cli(
        [
            "segment",
            "--seeds",
            str(tmp / "seeds.mrk.json"),
            "--water",
            str(tmp / "water.nii.gz"),
            "--out-dir",
            str(tmp / "x"),
        ]
    )
    assert rc == 2
    assert "--fat" in capsys.readouterr().err


def test_measure_cli_on_truth(outputs) -> None:
    tmp, _out, _ = outputs
    names = tmp / "names.json"
    names.write_text(
        json.dumps({str(BY_NAME[n].value): n for n in ("multifidus_left", "erector_spinae_right")})
    )
    rc = cli(
        [
            "measure",
            "--water",
            str(tmp / "water.nii.gz"),
            "--fat",
            str(tmp / "fat.nii.gz"),
            "--labels",
            str(tmp / "truth.nii.gz"),
            "--label-names",
            str(names),
            "--out-dir",
            str(tmp / "m"),
            "--no-per-slice",
        ]
    )
    assert rc == 0
    table = pd.read_csv(tmp / "m" / "measurements.csv")
    assert set(table.structure) == {"multifidus_left", "erector_spinae_right"}
    assert table.slice.isna().all()
    assert np.allclose(table.fat_fraction_pct, 10.0, atol=1.0)
    # the new columns: signal FF, 1-voxel erosion (the CLI default), lean CSA + intramuscular fat = CSA
    assert set(table.ff_type) == {"signal"} and set(table.ff_erode_px) == {1}
    np.testing.assert_allclose(table.lean_csa_cm2 + table.imat_cm2, table.csa_cm2, rtol=1e-9)
    assert table.fat_volume_fraction_pct.between(
        0, 100
    ).all()  # this synthetic fat is no brighter than muscle


@pytest.mark.slicer
def test_seg_nrrd_loads_in_slicer_with_names_colours_terminology(outputs, slicer_scene) -> None:
    _, out, _ = outputs
    slicer = slicer_scene
    node = slicer.modules.segmentations.logic().LoadSegmentationFromFile(
        str(out / "segmentation.seg.nrrd"), False
    )
    assert node is not None
    seg = node.GetSegmentation()
    assert seg.GetNumberOfSegments() == 4
    ref = slicer.util.loadVolume(str(out / "labels.nii.gz"))
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz")))
    for i in range(seg.GetNumberOfSegments()):
        sid = seg.GetNthSegmentID(i)
        segment = seg.GetSegment(sid)
        s = BY_NAME[sid]
        assert segment.GetName() == s.display_name
        np.testing.assert_allclose(segment.GetColor(), np.array(s.color) / 255.0, atol=1e-5)
        assert (
            "SCT^" + {"multifidus": "5709001", "erector_spinae": "44947003"}[s.muscle]
            in segment.GetTerminology()
        )
        arr = slicer.util.arrayFromSegmentBinaryLabelmap(node, sid, ref)
        np.testing.assert_array_equal(arr > 0, lab == s.value)


def test_segment_cli_split_refine_option(outputs, capsys) -> None:
    """--split-refine-mm reaches SegmentParams (recorded in segment_info.json): the default is the gated
    fascia-seam refinement (8 mm); on this synthetic case, whose multifidus/erector border has no
    fascia line to follow, on and off give the same voxels; an out-of-range band is refused."""
    tmp, out, _truth = outputs
    common = ["segment", "--seeds", str(tmp / "seeds.mrk.json"), "--water", str(tmp / "water.nii.gz"),
              "--fat", str(tmp / "fat.nii.gz")]  # fmt: skip
    default = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz")))
    assert json.loads((out / "segment_info.json").read_text())["params"]["split"]["refine_band_mm"] == 8.0
    off = tmp / "refine0"
    assert cli([*common, "--split-refine-mm", "0", "--out-dir", str(off)]) == 0
    assert json.loads((off / "segment_info.json").read_text())["params"]["split"]["refine_band_mm"] == 0.0
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(off / "labels.nii.gz"))), default)
    capsys.readouterr()
    assert cli([*common, "--split-refine-mm", "-3", "--out-dir", str(tmp / "bad")]) == 2
    assert "--split-refine-mm" in capsys.readouterr().err
