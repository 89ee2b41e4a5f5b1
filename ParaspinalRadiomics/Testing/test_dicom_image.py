"""``extract --image`` takes a DICOM series folder: features equal those of the same pixels as NIfTI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from ParaspinalLBPCore.dicom_write import DicomStudy, quantize, write_mr_series
from ParaspinalRadiomicsLib.cli import main


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    """A textured 48×48×6 MR volume with two labelled blocks, as a 2-series DICOM study and as NIfTI."""
    tmp = tmp_path_factory.mktemp("dicomrad")
    rng = np.random.default_rng(3)
    arr = (200 + 60 * rng.standard_normal((6, 48, 48))).clip(1, None).astype(np.float32)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.9375, 0.9375, 4.0))  # exact in float32 and in decimal: same grid
    image.SetOrigin((-20.0, -15.0, 30.0))
    stored = quantize({"t1": image, "t2": image * 0.5})
    study = DicomStudy(patient_id="RAD-1")
    write_mr_series(stored["t1"], tmp / "study" / "t1", study, series_number=3, description="T1 TSE AX")
    write_mr_series(stored["t2"], tmp / "study" / "t2", study, series_number=4, description="T2 TSE AX")
    sitk.WriteImage(stored["t1"], str(tmp / "t1.nii.gz"))
    labels = np.zeros(arr.shape, np.uint8)
    labels[1:5, 5:20, 5:20] = 1
    labels[1:5, 25:42, 24:40] = 2
    lab = sitk.GetImageFromArray(labels)
    lab.CopyInformation(image)
    sitk.WriteImage(lab, str(tmp / "labels.nii.gz"))
    (tmp / "labels.json").write_text(
        json.dumps({"labels": {"1": "multifidus_left", "2": "multifidus_right"}})
    )
    return tmp


def test_extract_from_dicom_folder_equals_nifti(case: Path) -> None:
    common = ["--labels", str(case / "labels.nii.gz"), "--params", "protocol-mri", "--case-id", "c1"]
    assert main(["extract", "--image", str(case / "t1.nii.gz"), *common, "--out", str(case / "a.csv")]) == 0
    assert (
        main(
            [
                "extract",
                "--image",
                str(case / "study"),
                "--series",
                "3",
                *common,
                "--out",
                str(case / "b.csv"),
            ]
        )
        == 0
    )
    a, b = pd.read_csv(case / "a.csv"), pd.read_csv(case / "b.csv")
    assert (a.status == "ok").all() and len(a) == 2
    features = [c for c in a.columns if c.startswith("original_")]
    assert len(features) > 50
    # same pixels on the same grid: equal up to floating-point summation order
    np.testing.assert_allclose(
        a[features].to_numpy(float), b[features].to_numpy(float), rtol=1e-9, atol=1e-12
    )


def test_extract_dicom_folder_with_several_series_asks(case: Path, capsys) -> None:
    rc = main(
        [
            "extract",
            "--image",
            str(case / "study"),
            "--labels",
            str(case / "labels.nii.gz"),
            "--params",
            "protocol-mri",
            "--out",
            str(case / "c.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "holds 2 series; choose one with --series" in err and "T2 TSE AX" in err
    assert not (case / "c.csv").exists()
