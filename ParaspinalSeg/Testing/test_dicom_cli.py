"""The CLIs on DICOM: same numbers as on NIfTI of the same pixels, DICOM SEG out, and its readers.

The phantom is written as a DICOM study and its stored pixels as NIfTI (dicom_cases.write_study);
``segment`` runs on both. Labels must be identical voxel for voxel and the measurement tables equal
within 1e-6 relative: the pixels are the same, but NIfTI stores spacing/origin as float32 and DICOM
as 16-character decimal strings, which moves areas by ~6e-8 relative. The SEG is read back with highdicom (round trip to the voxel) and with dcmqi's
segimage2itkimage, the converter Slicer's DICOM SEG plugin (QuantitativeReporting) runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import dicom_cases as dc
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from ParaspinalLBPCore import dicom_series as ds
from ParaspinalLBPCore.structures import BY_NAME, MUSCLE_CODES
from ParaspinalSegLib.cli import main
from ParaspinalSegLib.dicom_seg import read_dicom_seg
from ParaspinalSegLib.markups import write_points


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """segment on the NIfTI pair and on the DICOM study (--dicom, --dicom-seg); returns the folders."""
    tmp = tmp_path_factory.mktemp("dicomcli")
    phantom = dc.small_phantom()
    study = tmp / "study"
    dc.write_study(phantom, study)
    write_points(tmp / "seeds.mrk.json", phantom.seeds, name="Seeds")
    write_points(tmp / "levels.mrk.json", phantom.landmarks, name="Levels")
    nifti = tmp / "study_nifti"
    common = [
        "--seeds",
        str(tmp / "seeds.mrk.json"),
        "--levels",
        str(tmp / "levels.mrk.json"),
        "--case-id",
        "p0",
    ]
    rc = main(
        [
            "segment",
            *common,
            "--water",
            str(nifti / "water.nii.gz"),
            "--fat",
            str(nifti / "fat.nii.gz"),
            "--out-dir",
            str(tmp / "out_nifti"),
        ]
    )
    assert rc == 0
    rc = main(
        [
            "segment",
            *common,
            "--dicom",
            str(study),
            "--dicom-sr",
            "--rater",
            "Rater^A",
            "--out-dir",
            str(tmp / "out_dicom"),
        ]
    )
    assert rc == 0
    return tmp, study, nifti


def _numeric_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for col in a.columns:
        if pd.api.types.is_numeric_dtype(a[col]):
            np.testing.assert_allclose(
                a[col].to_numpy(float),
                b[col].to_numpy(float),
                rtol=1e-6,
                atol=1e-9,
                equal_nan=True,
                err_msg=col,
            )
        else:
            assert a[col].fillna("").tolist() == b[col].fillna("").tolist(), col


def test_dicom_input_gives_the_nifti_numbers(runs) -> None:
    tmp, _, _ = runs
    la = sitk.ReadImage(str(tmp / "out_nifti" / "labels.nii.gz"))
    lb = sitk.ReadImage(str(tmp / "out_dicom" / "labels.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(la), sitk.GetArrayFromImage(lb))
    assert np.allclose(la.GetOrigin(), lb.GetOrigin(), atol=1e-4) and np.allclose(
        la.GetSpacing(), lb.GetSpacing()
    )
    ma = pd.read_csv(tmp / "out_nifti" / "measurements.csv")
    mb = pd.read_csv(tmp / "out_dicom" / "measurements.csv")
    assert len(ma) > 0 and ma["csa_cm2"].notna().sum() > 10
    _numeric_equal(ma, mb)


def test_segment_dicom_seg_round_trips_to_the_voxel(runs) -> None:
    tmp, study, _ = runs
    fat = next(s for s in ds.scan_folder(study) if s.dixon == "fat")
    labels = sitk.ReadImage(str(tmp / "out_dicom" / "labels.nii.gz"))
    back, names = read_dicom_seg(tmp / "out_dicom" / "segmentation.dcm", fat)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))
    expected = json.loads((tmp / "out_dicom" / "labels.json").read_text())["labels"]
    present = {int(v) for v in np.unique(sitk.GetArrayFromImage(labels)) if v}
    assert names == {int(v): n for v, n in expected.items() if int(v) in present}


def test_seg_header_is_what_quantitative_reporting_reads(runs) -> None:
    """highdicom's reader: SEMIAUTOMATIC, SNOMED codes and laterality per muscle, FoR and references."""
    import highdicom as hd

    tmp, study, _ = runs
    fat = next(s for s in ds.scan_folder(study) if s.dixon == "fat")
    seg = hd.seg.segread(tmp / "out_dicom" / "segmentation.dcm")
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.FrameOfReferenceUID == fat.frame_of_reference_uid and seg.StudyInstanceUID == fat.study_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == fat.uid
    refs = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert len(refs) == len(fat.files)
    for n in seg.get_segment_numbers():
        d = seg.get_segment_description(n)
        s = BY_NAME[d.tracking_id]
        assert d.segment_label == s.display_name and d.algorithm_type.value == "SEMIAUTOMATIC"
        assert (d.segmented_property_type.value, d.segmented_property_type.scheme_designator) == (
            MUSCLE_CODES[s.muscle][1],
            "SCT",
        )
        assert d.segmented_property_category.value == "123037004"
        modifier = d.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
        assert modifier.CodeMeaning == s.side.capitalize()
    for frame in seg.PerFrameFunctionalGroupsSequence:
        assert len(frame.PlanePositionSequence[0].ImagePositionPatient) == 3


def _dcmqi(tool: str) -> str:
    exe = Path(sys.executable).parent / tool
    if not exe.exists():
        pytest.skip(f"dcmqi's {tool} not installed (test extra dcmqi)")
    return str(exe)


def test_dcmqi_reads_the_seg_like_slicer(runs, tmp_path) -> None:
    """segimage2itkimage --mergeSegments (Slicer's DICOMSegmentationPlugin call) gives our labels back."""
    tmp, _, _ = runs
    subprocess.run(
        [
            _dcmqi("segimage2itkimage"),
            "--inputDICOM",
            str(tmp / "out_dicom" / "segmentation.dcm"),
            "--outputDirectory",
            str(tmp_path),
            "--mergeSegments",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    meta = json.loads((tmp_path / "meta.json").read_text())
    attrs = [a for group in meta["segmentAttributes"] for a in group]
    value = {a["labelID"]: BY_NAME[a["TrackingIdentifier"]].value for a in attrs}
    assert {a["SegmentLabel"] for a in attrs} == {
        BY_NAME[a["TrackingIdentifier"]].display_name for a in attrs
    }
    assert all(a["SegmentAlgorithmType"] == "SEMIAUTOMATIC" for a in attrs)
    assert all(
        tuple(a["recommendedDisplayRGBValue"]) == BY_NAME[a["TrackingIdentifier"]].color for a in attrs
    )
    merged = sitk.ReadImage(str(tmp_path / "1.nrrd"))
    labels = sitk.ReadImage(str(tmp / "out_dicom" / "labels.nii.gz"))
    lut = np.zeros(max(value) + 1, np.uint8)
    for k, v in value.items():
        lut[k] = v
    assert np.array_equal(lut[sitk.GetArrayFromImage(merged)], sitk.GetArrayFromImage(labels))
    assert np.allclose(merged.GetOrigin(), labels.GetOrigin(), atol=1e-3)


def test_dicom_seg_command_from_nifti_labels(runs, tmp_path) -> None:
    tmp, study, _ = runs
    out = tmp_path / "seg.dcm"
    rc = main(
        [
            "dicom-seg",
            "--labels",
            str(tmp / "out_nifti" / "labels.nii.gz"),
            "--reference-dicom",
            str(study),
            "--reference-series",
            "6",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    fat = ds.select_series(ds.scan_folder(study), "6", study)
    back, _ = read_dicom_seg(out, fat)
    labels = sitk.ReadImage(str(tmp / "out_nifti" / "labels.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))


def test_dicom_seg_refusals(runs, tmp_path, capsys) -> None:
    tmp, study, nifti = runs
    common = ["--seeds", str(tmp / "seeds.mrk.json"), "--out-dir", str(tmp_path / "o")]
    rc = main(["segment", *common, "--image", str(nifti / "t1w.nii.gz"), "--dicom-seg"])
    assert rc == 2 and "--dicom-seg needs the source DICOM series" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # a label map on another grid than the named series is refused before anything is written
    small = sitk.ReadImage(str(tmp / "out_nifti" / "labels.nii.gz"))[:, :, :3]
    sitk.WriteImage(small, str(tmp_path / "small.nii.gz"))
    rc = main(
        [
            "dicom-seg",
            "--labels",
            str(tmp_path / "small.nii.gz"),
            "--reference-dicom",
            str(study),
            "--reference-series",
            "6",
            "--out",
            str(tmp_path / "x.dcm"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "label map is not on the grid of series 6 'T1 DIXON AX F'" in err
    assert not (tmp_path / "x.dcm").exists()


def test_measure_and_several_series_listing(runs, tmp_path, capsys) -> None:
    tmp, study, nifti = runs
    labels = str(tmp / "out_nifti" / "labels.nii.gz")
    assert (
        main(
            [
                "measure",
                "--labels",
                labels,
                "--image",
                str(nifti / "t1w.nii.gz"),
                "--out-dir",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "measure",
                "--labels",
                labels,
                "--image",
                str(study),
                "--series",
                "2",
                "--out-dir",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    _numeric_equal(
        pd.read_csv(tmp_path / "a" / "measurements.csv"), pd.read_csv(tmp_path / "b" / "measurements.csv")
    )
    rc = main(["measure", "--labels", labels, "--image", str(study), "--out-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and "holds 5 series; choose one with --series" in err and "T1 DIXON AX OPP" in err


def test_swapped_water_fat_folders_refused(runs, tmp_path, capsys) -> None:
    tmp, study, _ = runs
    rc = main(
        [
            "measure",
            "--labels",
            str(tmp / "out_nifti" / "labels.nii.gz"),
            "--water",
            str(dc.series_dir(study, "fat")),
            "--fat",
            str(dc.series_dir(study, "water")),
            "--out-dir",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2 and "water and fat swapped?" in capsys.readouterr().err


def test_water_fat_options_take_the_study_folder(runs, tmp_path) -> None:
    """--water DIR --fat DIR on the whole study: each picks its own Dixon role (same numbers as NIfTI)."""
    tmp, study, nifti = runs
    labels = str(tmp / "out_nifti" / "labels.nii.gz")
    assert (
        main(
            [
                "measure",
                "--labels",
                labels,
                "--water",
                str(study),
                "--fat",
                str(study),
                "--out-dir",
                str(tmp_path / "d"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "measure",
                "--labels",
                labels,
                "--water",
                str(nifti / "water.nii.gz"),
                "--fat",
                str(nifti / "fat.nii.gz"),
                "--out-dir",
                str(tmp_path / "n"),
            ]
        )
        == 0
    )
    _numeric_equal(
        pd.read_csv(tmp_path / "d" / "measurements.csv"), pd.read_csv(tmp_path / "n" / "measurements.csv")
    )
    shutil.rmtree(tmp_path / "d")


def test_propose_seeds_from_dicom_equals_nifti(runs, tmp_path) -> None:
    tmp, study, nifti = runs
    levels = ["--levels", str(tmp / "levels.mrk.json")]
    assert main(["propose-seeds", "--dicom", str(study), *levels, "--out", str(tmp_path / "d.mrk.json")]) == 0
    assert (
        main(
            [
                "propose-seeds",
                "--water",
                str(nifti / "water.nii.gz"),
                "--fat",
                str(nifti / "fat.nii.gz"),
                *levels,
                "--out",
                str(tmp_path / "n.mrk.json"),
            ]
        )
        == 0
    )
    from ParaspinalSegLib.markups import read_points

    d, n = read_points(tmp_path / "d.mrk.json"), read_points(tmp_path / "n.mrk.json")
    assert len(d) == len(n) > 0
    for a, b in zip(d, n, strict=True):
        assert (a.label, a.description) == (b.label, b.description)
        np.testing.assert_allclose(a.position_lps, b.position_lps, atol=1e-3)


def _table_rows(path: Path) -> pd.DataFrame:
    t = pd.read_csv(path)
    return t[t["slice"].isna()].set_index(["structure", "level"])


def test_tid1500_report_validates_and_carries_the_table(runs) -> None:
    """highdicom's reader: one volumetric group per structure × level, values = measurements.csv, each
    group referencing its muscle's segment of segmentation.dcm and the source series."""
    import highdicom as hd
    import pydicom

    tmp, study, _ = runs
    out = tmp / "out_dicom"
    seg = pydicom.dcmread(out / "segmentation.dcm", stop_before_pixels=True)
    number = {str(i.TrackingID): int(i.SegmentNumber) for i in seg.SegmentSequence}
    assert str(seg.ContentCreatorName) == "Rater^A"
    table = _table_rows(out / "measurements.csv")
    sr = hd.sr.srread(out / "measurements.dcm")
    fat = next(s for s in ds.scan_folder(study) if s.dixon == "fat")
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(table) > 0
    columns = {"Area": "csa_cm2", "Volume": "volume_cm3", "Fat fraction": "fat_fraction_pct"}
    for g in groups:
        structure, level = g.tracking_identifier.split(" ")
        ref = g.referenced_segment
        assert list(ref.referenced_segment_numbers) == [number[structure]]
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert ref.source_series_for_segmentation.value == fat.uid
        assert g.finding_type.value == MUSCLE_CODES[BY_NAME[structure].muscle][1]
        values = {columns[m.name.meaning]: m.value for m in g.get_measurements()}
        assert set(values) == set(columns.values())
        for column, value in values.items():
            assert value == pytest.approx(table.loc[(structure, level), column], rel=1e-12)


def test_dcmqi_reads_the_report_like_slicer(runs, tmp_path) -> None:
    """tid1500reader (Slicer's TID 1500 plugin converter) reads every group with its segment and values."""
    tmp, _, _ = runs
    subprocess.run(
        [
            _dcmqi("tid1500reader"),
            "--inputDICOM",
            str(tmp / "out_dicom" / "measurements.dcm"),
            "--outputMetadata",
            str(tmp_path / "sr.json"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    meta = json.loads((tmp_path / "sr.json").read_text())
    table = _table_rows(tmp / "out_dicom" / "measurements.csv")
    assert len(meta["Measurements"]) == len(table)
    for group in meta["Measurements"]:
        structure, level = group["TrackingIdentifier"].split(" ")
        area = next(m for m in group["measurementItems"] if m["quantity"]["CodeValue"] == "42798000")
        assert float(area["value"]) == pytest.approx(table.loc[(structure, level), "csa_cm2"], rel=1e-12)
        assert group["Laterality"]["CodeMeaning"] == BY_NAME[structure].side.capitalize()


def test_dicom_seg_command_writes_the_report_too(runs, tmp_path) -> None:
    tmp, study, _ = runs
    rc = main(
        [
            "dicom-seg",
            "--labels",
            str(tmp / "out_nifti" / "labels.nii.gz"),
            "--reference-dicom",
            str(study),
            "--reference-series",
            "6",
            "--measurements",
            str(tmp / "out_nifti" / "measurements.csv"),
            "--out",
            str(tmp_path / "seg.dcm"),
        ]
    )
    assert rc == 0
    import highdicom as hd

    sr = hd.sr.srread(tmp_path / "measurements.dcm")
    assert len(sr.content.get_volumetric_roi_measurement_groups()) == len(
        _table_rows(tmp / "out_nifti" / "measurements.csv")
    )
