"""Inputs the methods cannot use are refused (contrast.py): fat-suppressed / water-only single images and swapped
Dixon pairs, from the image itself and from metadata; every valid input the project has passes.

Real data: TUM01's water image given as the image, its pair swapped, and fat-suppressed images made from it
(the Dixon water image is what STIR/SPAIR leave: the water signal with fat's removed; + 5 % residual fat as
imperfect suppression; W·(1 − FF) as complete suppression; a 3× surface-coil gain); MuscleMap's T1-like image,
the TotalSegmentator MR example and TUM01's in-phase image pass. Phantom: every contrast at every Goutallier
grade, thin (3 mm) and thick (60 mm) subcutaneous fat.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from lbp_pytest_plugin import shared_path

from ParaspinalLBPCore.structures import TUM01_LABEL_NAMES
from ParaspinalSegLib import contrast
from ParaspinalSegLib.contrast import UnsupportedContrastError, check_contrast, metadata_finding
from ParaspinalSegLib.markups import write_points
from ParaspinalSegLib.measure import measure_labels
from ParaspinalSegLib.phantom import make_phantom
from ParaspinalSegLib.phantom_params import PhantomParams, goutallier_params
from ParaspinalSegLib.segment import segment


def _like(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(np.asarray(arr, np.float32))
    img.CopyInformation(ref)
    return img


def _coil(arr: np.ndarray, spacing_mm: float, gain: float = 3.0) -> np.ndarray:
    """A posterior surface coil: gain ``gain`` at the back of the body, decaying over 60 mm."""
    body_rows = np.flatnonzero((arr > np.percentile(arr, 60)).any(axis=(0, 2)))
    distance = np.clip((body_rows[-1] - np.arange(arr.shape[1])) * spacing_mm, 0, None)
    return arr * (1 + (gain - 1) * np.exp(-distance / 60.0))[None, :, None]


@pytest.fixture(scope="module")
def tum01():
    d = "data/myosegmentum_tum01/"
    fat = sitk.Cast(sitk.ReadImage(str(shared_path(d + "fat.nii.gz"))), sitk.sitkFloat32)
    water = sitk.Cast(sitk.ReadImage(str(shared_path(d + "water.nii.gz"))), sitk.sitkFloat32)
    water.CopyInformation(fat)  # the water file's origin is (0,0,0): same voxels (data README)
    labels = sitk.ReadImage(str(shared_path(d + "labels.nii.gz")))
    return water, fat, labels


@pytest.mark.realdata
def test_tum01_refusals_and_acceptances(tum01) -> None:
    water, fat, _ = tum01
    w, f = sitk.GetArrayFromImage(water), sitk.GetArrayFromImage(fat)
    ff = f / np.maximum(w + f, 1e-6)
    refused = {
        "water": w,
        "water + 5 % fat": w + 0.05 * f,
        "water, fat fully suppressed": w * (1 - ff),
        "water, 3x coil": _coil(w, 1.0185),
        "water + 10 % fat, 3x coil": _coil(w + 0.1 * f, 1.0185),
    }
    # measured shell ratio: 0.55, 0.54, 1.16, 0.49, 0.68 (fat-bright images: 2.2-4.1)
    for name, arr in refused.items():
        v = check_contrast(_like(arr, fat))
        assert not v.ok and v.finding == "fat_dark", (name, v)
        assert v.evidence["shell_ratio"] < contrast.FAT_DARK_RATIO, (name, v.evidence)
    inphase = check_contrast(_like(w + f, fat))
    assert inphase.ok and inphase.finding == "fat_bright" and inphase.evidence["shell_ratio"] > 2.0  # 2.37
    pair = check_contrast(water=water, fat=fat)
    assert pair.ok and pair.finding == "dixon" and pair.evidence["shell_fat_fraction"] > 0.9  # 0.958
    swapped = check_contrast(water=fat, fat=water)
    assert not swapped.ok and swapped.finding == "swapped" and swapped.evidence["shell_fat_fraction"] < 0.1


@pytest.mark.realdata
def test_other_real_images_pass() -> None:
    for path in ("data/musclemap_sub0001/image.nii.gz", "data/totalseg_mr_example/image.nii.gz"):
        v = check_contrast(sitk.ReadImage(str(shared_path(path))))
        # measured: MuscleMap 3.44, TotalSegmentator (a fat-weighted image: muscle at the noise level) 3.48
        assert v.ok and v.finding == "fat_bright" and v.evidence["shell_ratio"] > 2.5, (path, v)


@pytest.mark.realdata
def test_every_entry_point_refuses_tum01_water(tum01, tmp_path) -> None:
    water, fat, labels = tum01
    with pytest.raises(UnsupportedContrastError, match="image: fat is not bright"):
        segment(water, [])
    with pytest.raises(UnsupportedContrastError, match="swapped"):
        segment({"water": fat, "fat": water}, [])
    with pytest.raises(UnsupportedContrastError, match="--fat-method none"):
        measure_labels(labels, TUM01_LABEL_NAMES, image=water, per_slice=False)
    with pytest.raises(UnsupportedContrastError, match="swapped"):
        measure_labels(labels, TUM01_LABEL_NAMES, water=fat, fat=water, per_slice=False)
    # areas only: any contrast
    areas = measure_labels(labels, TUM01_LABEL_NAMES, image=water, per_slice=False, fat_method="none")
    assert areas.fat_fraction_pct.isna().all() and (areas.csa_cm2 > 4).all()
    sitk.WriteImage(water, str(tmp_path / "water.nii.gz"))
    sitk.WriteImage(labels, str(tmp_path / "labels.nii.gz"))
    (tmp_path / "labels.json").write_text(
        json.dumps({"labels": {str(k): v for k, v in TUM01_LABEL_NAMES.items()}})
    )
    base = [sys.executable, "-m", "ParaspinalSegLib", "measure", "--image", str(tmp_path / "water.nii.gz"),
            "--labels", str(tmp_path / "labels.nii.gz"), "--out-dir", str(tmp_path)]  # fmt: skip
    run = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "fat is not bright" in run.stderr, run.stderr[-500:]
    run = subprocess.run([*base, "--fat-method", "none"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-500:]


@pytest.fixture(scope="module")
def phantoms():
    small = {"matrix": [256, 256], "slices_per_level": 3, "levels": ["L3", "L4", "L5"]}
    cases = {f"grade {g}": goutallier_params(g, **small) for g in range(5)}
    cases["3 mm fat, bias 0.6"] = PhantomParams.from_dict(
        {**small, "subcutaneous_fat_mm": 3.0, "bias_strength": 0.6}
    )
    cases["60 mm fat, large body"] = PhantomParams.from_dict(
        {**small, "matrix": [400, 400], "subcutaneous_fat_mm": 60.0, "body_scale": 1.3}
    )
    return {name: make_phantom(p, seed=3) for name, p in cases.items()}


def test_phantom_every_contrast_passes_water_and_swaps_refused(phantoms) -> None:
    for name, ph in phantoms.items():
        for image in ("inphase", "t1w", "t2w", "opposed"):
            v = check_contrast(ph.images[image])
            # measured 2.2-3.9 over these cases
            assert v.ok and v.finding == "fat_bright", (name, image, v.evidence)
        assert check_contrast(water=ph.images["water"], fat=ph.images["fat"]).finding == "dixon", name
        v = check_contrast(ph.images["water"])
        assert not v.ok and v.finding == "fat_dark", (name, v.evidence)  # measured 0.20-0.98
        v = check_contrast(water=ph.images["fat"], fat=ph.images["water"])
        assert not v.ok and v.finding == "swapped", (name, v.evidence)


def test_no_body_surface_is_inconclusive_and_passes() -> None:
    """A field of view without skin against air (a crop inside the body) cannot be judged: it passes, saying so."""
    rng = np.random.default_rng(0)
    arr = 300 + 20 * rng.standard_normal((4, 80, 80))
    v = check_contrast(arr.astype(np.float32), spacing_ji=(1.0, 1.0))
    assert v.ok and v.finding == "inconclusive" and "no body surface" in v.reason


METADATA_CASES = [
    # (metadata, role, expected finding or None)
    ({"ScanOptions": "FS\\PFP", "SeriesDescription": "t2_tse_tra"}, "image", "fat_dark"),
    ({"ScanOptions": ["PFP"], "SeriesDescription": "t2_tse_fs_tra"}, "image", "fat_dark"),
    ({"SeriesDescription": "Ax T2 FAT SAT"}, "image", "fat_dark"),
    ({"SeriesDescription": "STIR sag", "SequenceName": "*tir2d1"}, "image", "fat_dark"),
    ({"SeriesDescription": "T2 SPAIR tra"}, "image", "fat_dark"),
    ({"ScanningSequence": "SE\\IR", "InversionTime": 160}, "image", "fat_dark"),  # STIR by TI (ms)
    ({"ScanningSequence": ["SE", "IR"], "InversionTime": 0.15}, "image", "fat_dark"),  # BIDS: seconds
    ({"ScanningSequence": "SE\\IR", "InversionTime": 2500, "SeriesDescription": "t1_flair"}, "image", None),
    ({"ImageType": ["DERIVED", "PRIMARY", "DIXON", "WATER"]}, "image", "fat_dark"),
    ({"ImageType": "ORIGINAL\\PRIMARY\\W\\W"}, "image", "fat_dark"),  # Philips mDIXON water
    ({"SeriesDescription": "t1_vibe_dixon_tra_W"}, "image", "fat_dark"),
    ({"ImageType": ["DERIVED", "PRIMARY", "DIXON", "OPP_PHASE"]}, "image", "opposed_phase"),
    ({"ImageType": ["DERIVED", "PRIMARY", "DIXON", "IN_PHASE"]}, "image", None),
    ({"ImageType": ["DERIVED", "PRIMARY", "DIXON", "WATER"]}, "fat", "swapped"),
    ({"ImageType": ["DERIVED", "PRIMARY", "DIXON", "FAT"]}, "water", "swapped"),
    ({"ImageType": ["DERIVED", "PRIMARY", "DIXON", "FAT"]}, "fat", None),
    ({"SeriesDescription": "T2 SPAIR"}, "water", None),  # a water image is fat-free anyway
    ({"SeriesDescription": "T1 W TSE"}, "image", None),  # "W" is not a Dixon water tag outside a Dixon name
    ({"SeriesDescription": "t1_tse_tra"}, "image", None),
    ({"descrip": "TE=12;Time=101010.000;phase=1"}, "image", None),  # dcm2niix's NIfTI descrip
    ({}, "image", None),
]


@pytest.mark.parametrize(("meta", "role", "expected"), METADATA_CASES)
def test_metadata_findings(meta, role, expected) -> None:
    found = metadata_finding(meta, role)
    assert (found[0] if found else None) == expected, found


def test_metadata_refuses_before_the_image_is_looked_at(phantoms) -> None:
    t1w = phantoms["grade 2"].images["t1w"]
    v = check_contrast(t1w, metadata={"SeriesDescription": "t1_tse_fs_tra"})
    assert not v.ok and v.source == "metadata" and "SeriesDescription" in v.reason
    assert check_contrast(t1w, metadata={"SeriesDescription": "t1_tse_tra"}).finding == "fat_bright"


def test_read_metadata_nifti_and_bids_sidecar(tmp_path, phantoms) -> None:
    img = sitk.Image(phantoms["grade 0"].images["t2w"])
    img.SetMetaData("ITK_FileNotes", "T2 STIR tra")  # written as the NIfTI header's descrip
    sitk.WriteImage(img, str(tmp_path / "stir.nii.gz"))
    meta = contrast.read_metadata(tmp_path / "stir.nii.gz")
    assert meta["descrip"] == "T2 STIR tra" and metadata_finding(meta, "image")[0] == "fat_dark"
    sitk.WriteImage(phantoms["grade 0"].images["t2w"], str(tmp_path / "t2.nii.gz"))
    assert metadata_finding(contrast.read_metadata(tmp_path / "t2.nii.gz"), "image") is None
    (tmp_path / "t2.json").write_text(json.dumps({"ScanOptions": ["FS"], "SeriesDescription": "t2_tse_tra"}))
    assert metadata_finding(contrast.read_metadata(tmp_path / "t2.nii.gz"), "image")[0] == "fat_dark"
    (tmp_path / "t2.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"t2\.json: not valid JSON"):
        contrast.read_metadata(tmp_path / "t2.nii.gz")


def test_segment_cli_refuses_by_sidecar(tmp_path, phantoms) -> None:
    """A fat-bright-looking image whose BIDS sidecar says fat-saturated is refused before segmenting."""
    ph = phantoms["grade 1"]
    sitk.WriteImage(ph.images["t1w"], str(tmp_path / "t1.nii.gz"))
    (tmp_path / "t1.json").write_text(json.dumps({"ScanOptions": "FS"}))
    write_points(tmp_path / "seeds.mrk.json", ph.seeds)
    cmd = [sys.executable, "-m", "ParaspinalSegLib", "segment", "--image", str(tmp_path / "t1.nii.gz"),
           "--seeds", str(tmp_path / "seeds.mrk.json"), "--out-dir", str(tmp_path / "out")]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "metadata say fat-suppressed" in run.stderr, run.stderr[-500:]
    assert not (tmp_path / "out").exists()
