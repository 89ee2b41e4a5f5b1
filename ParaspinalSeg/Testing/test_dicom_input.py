"""DICOM series input: scanning, listing, Dixon recognition, reading, and every bad input of issue #16.

Inputs are the phantom written as DICOM by the project (one study, shared FrameOfReferenceUID) and the
real-scanner files pydicom ships in its wheel (no download): a multi-series MR study with localizers
and projection images, CT series, and one MR slice in five transfer syntaxes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dicom_cases as dc
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from ParaspinalLBPCore import dicom_series as ds

PYDICOM_DATA = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(study folder, stored images) of the small phantom: T1w + Dixon water/fat/in/opposed phase."""
    out = tmp_path_factory.mktemp("dicom") / "study"
    return out, dc.write_study(dc.small_phantom(), out)


def test_scan_lists_series_with_roles_and_metadata(study) -> None:
    folder, _ = study
    series = ds.scan_folder(folder)
    assert [s.number for s in series] == [2, 4, 5, 6, 7]
    assert [s.dixon for s in series] == [None, "in_phase", "opposed_phase", "fat", "water"]
    assert all(not s.problems and s.size == (192, 192, 6) for s in series)
    assert len({s.study_uid for s in series}) == 1 and len({s.frame_of_reference_uid for s in series}) == 1
    water = series[-1]
    assert water.metadata["ImageType"] == ["DERIVED", "PRIMARY", "DIXON", "WATER"]
    assert water.metadata["SeriesDescription"] == "T1 DIXON AX W"
    assert set(ds.METADATA_KEYWORDS) <= set(water.metadata)
    table = ds.format_series_table(series)
    for s in series:
        assert s.uid in table and s.description in table


def test_read_series_equals_written_pixels_and_geometry(study) -> None:
    folder, stored = study
    image, info = ds.load_image(folder, "6")
    assert info.dixon == "fat"
    ref = stored["fat"]
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ref))
    assert np.allclose(image.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    assert np.allclose(image.GetSpacing(), ref.GetSpacing(), atol=1e-6)
    assert np.allclose(image.GetDirection(), ref.GetDirection(), atol=1e-9)
    by_uid, _ = ds.load_image(folder, info.uid)
    assert np.array_equal(sitk.GetArrayFromImage(by_uid), sitk.GetArrayFromImage(image))


def test_pick_dixon_pair(study) -> None:
    folder, _ = study
    water, fat = ds.pick_dixon_pair(ds.scan_folder(folder), folder)
    assert (water.number, fat.number) == (7, 6)


@pytest.mark.parametrize(
    ("image_type", "description", "role"),
    [
        (["ORIGINAL", "PRIMARY", "W", "W"], "mDIXON", "water"),  # Philips-style ImageType
        (["DERIVED", "PRIMARY", "DIXON", "FAT"], "", "fat"),  # Siemens-style
        (["ORIGINAL", "PRIMARY", "IP", "IP"], "", "in_phase"),
        (["ORIGINAL", "PRIMARY", "OUT_PHASE"], "", "opposed_phase"),
        (["ORIGINAL", "PRIMARY", "OTHER"], "Ax LAVA-Flex WATER", "water"),
        (["ORIGINAL", "PRIMARY", "OTHER"], "t1_vibe_dixon_tra_F", "fat"),
        (["ORIGINAL", "PRIMARY", "OTHER"], "t1_vibe_dixon_tra_opp", "opposed_phase"),
        (["ORIGINAL", "PRIMARY", "OTHER"], "T1 in phase", "in_phase"),
        (["ORIGINAL", "PRIMARY", "OTHER"], "T2 TSE FAT SAT", None),  # fat suppression, not a fat image
        (["ORIGINAL", "PRIMARY", "OTHER"], "Dixon FF map", None),  # fat fraction map
        (["ORIGINAL", "PRIMARY", "OTHER"], "T1 W TSE", None),  # single letter without a Dixon word
        (["ORIGINAL", "PRIMARY", "M", "FFE"], "T1 FFE", None),
        (["ORIGINAL", "PRIMARY", "W", "F"], "", None),  # contradictory ImageType
    ],
)
def test_dixon_role_rules(image_type, description, role) -> None:
    assert ds.dixon_role(image_type, description) == role


# ---- bad input -------------------------------------------------------------------------------------


def test_folder_without_dicom(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(ds.DicomInputError, match=rf"{tmp_path}: no DICOM image files found \(1 other"):
        ds.scan_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="DICOM folder not found"):
        ds.scan_folder(tmp_path / "missing")


def test_several_series_ask_for_series(study) -> None:
    folder, _ = study
    with pytest.raises(ds.DicomInputError, match=r"holds 5 series; choose one with --series") as err:
        ds.load_image(folder)
    assert "T1 DIXON AX W" in str(err.value) and "T1 TSE AX" in str(err.value)
    with pytest.raises(ds.DicomInputError, match=r"no series with number or UID '99'"):
        ds.load_image(folder, "99")


def test_duplicate_series_number_needs_uid(study, tmp_path) -> None:
    folder, _ = study
    copy = dc.copy_series(dc.series_dir(folder, "t1w"), tmp_path / "a" / "t1w")
    dup = dc.copy_series(dc.series_dir(folder, "water"), tmp_path / "a" / "water")
    dc.edit(dup, lambda d, k: setattr(d, "SeriesNumber", 2))
    with pytest.raises(
        ds.DicomInputError, match="SeriesNumber 2 is shared by 2 series; give the SeriesInstanceUID"
    ):
        ds.load_image(copy.parent, "2")


def test_missing_slice(study, tmp_path) -> None:
    folder, _ = study
    s = dc.copy_series(dc.series_dir(folder, "water"), tmp_path / "water")
    (s / "IM0004.dcm").unlink()
    with pytest.raises(
        ds.DicomInputError,
        match=r"8\.00 mm between IM0003\.dcm and IM0005\.dcm .* steps 4\.00 mm \(missing slices\?\)",
    ):
        ds.load_image(s)


def test_non_uniform_spacing(study, tmp_path) -> None:
    folder, _ = study
    s = dc.copy_series(dc.series_dir(folder, "water"), tmp_path / "water")

    def shift(d, k):
        if k >= 3:
            d.ImagePositionPatient = [*d.ImagePositionPatient[:2], float(d.ImagePositionPatient[2]) + 1.5]

    dc.edit(s, shift)
    with pytest.raises(
        ds.DicomInputError,
        match=r"series 7 'T1 DIXON AX W' .* slice spacing is not uniform: 5\.50 mm between IM0003",
    ):
        ds.load_image(s)


def test_duplicate_positions(study, tmp_path) -> None:
    folder, _ = study
    s = dc.copy_series(dc.series_dir(folder, "water"), tmp_path / "water")
    extra = pydicom.dcmread(s / "IM0002.dcm")
    extra.SOPInstanceUID = generate_uid()
    extra.EchoTime = 4.8
    extra.save_as(s / "IM0099.dcm")
    with pytest.raises(ds.DicomInputError, match="2 images share slice positions"):
        ds.load_image(s)


def test_localizer_image_type(study, tmp_path) -> None:
    folder, _ = study
    s = dc.copy_series(dc.series_dir(folder, "t1w"), tmp_path / "loc")
    dc.edit(s, lambda d, k: setattr(d, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    with pytest.raises(ds.DicomInputError, match=r"series 2 'T1 TSE AX' .* ImageType says LOCALIZER"):
        ds.load_image(s)


def test_non_mr_modality(study, tmp_path) -> None:
    folder, _ = study
    s = dc.copy_series(dc.series_dir(folder, "t1w"), tmp_path / "ct")
    dc.edit(s, lambda d, k: setattr(d, "Modality", "CT"))
    with pytest.raises(ds.DicomInputError, match="modality is CT, not MR"):
        ds.load_image(s)


def test_water_fat_geometry_differs(study, tmp_path) -> None:
    folder, _ = study
    root = tmp_path / "pair"
    dc.copy_series(dc.series_dir(folder, "water"), root / "water")
    fat = dc.copy_series(dc.series_dir(folder, "fat"), root / "fat")
    dc.edit(fat, lambda d, k: setattr(d, "PixelSpacing", [1.8, 1.8]))
    with pytest.raises(
        ds.DicomInputError,
        match=r"water series 7 .* and fat series 6 .* are not on the same voxel grid: pixel spacing",
    ):
        ds.load_dixon(root)


def test_ambiguous_dixon_pair_lists_series(study, tmp_path) -> None:
    folder, _ = study
    root = tmp_path / "two"
    dc.copy_series(dc.series_dir(folder, "fat"), root / "fat")
    dc.copy_series(dc.series_dir(folder, "water"), root / "water")
    second = dc.copy_series(dc.series_dir(folder, "water"), root / "water2")
    uid = generate_uid()

    def renumber(d, k):
        d.SeriesInstanceUID, d.SeriesNumber, d.SOPInstanceUID = uid, 17, generate_uid()

    dc.edit(second, renumber)
    with pytest.raises(
        ds.DicomInputError, match=r"2 water and 1 fat series .* --water-series and --fat-series"
    ) as err:
        ds.load_dixon(root)
    assert uid in str(err.value)
    water, fat, w, f = ds.load_dixon(root, "17", "6")
    assert (w.number, f.number) == (17, 6) and water.GetSize() == fat.GetSize() == (192, 192, 6)


def test_enhanced_multiframe_mr_refused(study, tmp_path) -> None:
    """A Legacy Converted Enhanced MR object made by highdicom from the phantom series is refused clearly."""
    import highdicom as hd

    folder, _ = study
    files = sorted(dc.series_dir(folder, "water").glob("*.dcm"))
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        [pydicom.dcmread(f) for f in files], generate_uid(), 40, generate_uid(), 1
    )
    (tmp_path / "enh").mkdir()
    enhanced.save_as(tmp_path / "enh" / "enhanced.dcm")
    with pytest.raises(
        ds.DicomInputError,
        match=r"Legacy Converted Enhanced MR Image Storage \(6 frames per file\) is not supported",
    ):
        ds.load_image(tmp_path / "enh")


# ---- real scanner files shipped in pydicom's wheel ---------------------------------------------------


def test_pydicom_multi_series_study_is_listed_and_refused() -> None:
    """pydicom's dicomdirtests MR study (GE localizers, a 3-plane pilot, projection images) has no usable volume."""
    folder = PYDICOM_DATA / "dicomdirtests" / "98892003"
    series = ds.scan_folder(folder)
    assert len(series) == 7
    assert all(s.problems for s in series)
    pilot = next(s for s in series if s.description == "T/S/C RF FAST PILOT" and len(s.files) == 3)
    assert pilot.problems == ("slices in 3 different orientations (a localizer/scout or reformat series)",)
    single = next(s for s in series if s.description == "FAST LOCALIZER")
    assert single.problems[0].startswith("only 1 slice(s)")
    with pytest.raises(ds.DicomInputError, match="holds 7 series; choose one with --series"):
        ds.load_image(folder)
    with pytest.raises(
        ds.DicomInputError,
        match=r"series 2 'T/S/C RF FAST PILOT' .* cannot be read as a 3D MR volume: slices in 3 different orientations",
    ):
        ds.read_series(pilot)


def test_pydicom_ct_series_is_not_mr() -> None:
    folder = PYDICOM_DATA / "dicomdirtests" / "98892001" / "CT5N"
    with pytest.raises(
        ds.DicomInputError, match=r"series 5 'SmartScore - Gated 0.5 sec' .* modality is CT, not MR"
    ):
        ds.load_image(folder)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_compressed_transfer_syntaxes_read_like_uncompressed(name, tmp_path) -> None:
    """pydicom's real 64×64 MR slice, stacked into a 3-slice series, reads through GDCM to the same pixels in
    every transfer syntax (only headers are edited: the encoded pixel data stay as shipped)."""
    reference = pydicom.dcmread(PYDICOM_DATA / "MR_small.dcm").pixel_array
    src = pydicom.dcmread(PYDICOM_DATA / name)
    uid, normal = (
        generate_uid(),
        np.cross(
            np.asarray(src.ImageOrientationPatient[:3], float),
            np.asarray(src.ImageOrientationPatient[3:], float),
        ),
    )
    for k in range(3):
        d = pydicom.dcmread(PYDICOM_DATA / name)
        d.SeriesInstanceUID, d.SOPInstanceUID, d.InstanceNumber = uid, generate_uid(), k + 1
        d.ImagePositionPatient = (np.asarray(src.ImagePositionPatient, float) + 5.0 * k * normal).tolist()
        d.save_as(tmp_path / f"s{k}.dcm")
    image, info = ds.load_image(tmp_path)
    arr = sitk.GetArrayFromImage(image)
    assert arr.shape == (3, 64, 64) and info.size == (64, 64, 3)
    for k in range(3):
        assert np.array_equal(arr[k], reference), name
    assert image.GetSpacing()[2] == pytest.approx(5.0, abs=1e-4)


def test_series_folder_is_read_recursively_and_ignores_non_images(study, tmp_path) -> None:
    """A study folder with nested series and a DICOM SEG (no image) inside: the SEG is not listed."""
    folder, _ = study
    root = tmp_path / "nested"
    dc.copy_series(dc.series_dir(folder, "t1w"), root / "a" / "b" / "t1")
    seg = pydicom.dcmread(PYDICOM_DATA / "test-SR.dcm")
    seg.save_as(root / "a" / "report.dcm")
    shutil.copy(PYDICOM_DATA / "README.txt", root / "README.txt")
    image, info = ds.load_image(root)
    assert info.number == 2 and image.GetSize() == (192, 192, 6)


def test_phantom_command_writes_a_dicom_study(tmp_path) -> None:
    """``paraspinal-seg phantom --dicom``: the six images as one study whose series read back to the NIfTI."""
    from ParaspinalSegLib.cli import main

    out = tmp_path / "ph"
    assert (
        main(
            [
                "phantom",
                "--out",
                str(out),
                "--levels",
                "L4-L5",
                "--matrix",
                "160",
                "160",
                "--slices-per-level",
                "3",
                "--dicom",
            ]
        )
        == 0
    )
    series = ds.scan_folder(out / "dicom")
    assert [s.description for s in series] == [
        "T1 TSE AX",
        "T2 TSE AX",
        "T1 DIXON AX IN",
        "T1 DIXON AX OPP",
        "T1 DIXON AX F",
        "T1 DIXON AX W",
    ]
    assert len({s.frame_of_reference_uid for s in series}) == 1 and len({s.study_uid for s in series}) == 1
    water, fat, _, _ = ds.load_dixon(out / "dicom")
    w = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "water.nii.gz"))).astype(float)
    f = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "fat.nii.gz"))).astype(float)
    dw, df = sitk.GetArrayFromImage(water).astype(float), sitk.GetArrayFromImage(fat).astype(float)
    peak = max(
        sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{n}.nii.gz"))).max()
        for n in ("water", "fat", "inphase", "opposed")
    )
    scale = 32000 / float(
        peak
    )  # quantize(): one shared scale for the Dixon series, stored = round(value * scale)
    assert np.abs(dw - w * scale).max() <= 0.5 + 1e-6 and np.abs(df - f * scale).max() <= 0.5 + 1e-6
