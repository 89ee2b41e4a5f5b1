"""Per-feature ICC across C5 tables, perturbation robustness, CLI (the ICC itself: test_core_agreement)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from ParaspinalRadiomicsLib.cli import main
from ParaspinalRadiomicsLib.reproducibility import (
    icc,
    perturb_mask,
    perturbation_features,
    perturbation_icc,
    robust_features,
)
from ParaspinalRadiomicsLib.tables import read_features, write_features

logging.getLogger("radiomics").setLevel(logging.ERROR)


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    n = 25
    keys = pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(n)],
            "structure": "multifidus_left",
            "level": "all",
            "status": "ok",
        }
    )
    truth = rng.normal(10, 2, n)
    a = keys.assign(f_stable=truth, f_noise=rng.normal(0, 1, n), f_const=1.0)
    b = keys.assign(f_stable=truth + rng.normal(0, 0.1, n), f_noise=rng.normal(0, 1, n), f_const=1.0)
    b = pd.concat([b, b.iloc[[0]].assign(case_id="extra")]).sample(frac=1, random_state=0)  # order and extras
    return a, b


def test_icc_tables_flags_and_robust_list():
    a, b = _tables()
    table = icc(a, b).set_index("feature")
    assert table.loc["f_stable", "n"] == 25
    assert table.loc["f_stable", "ICC(2,1)"] > 0.98 and not table.loc["f_stable", "flagged"]
    assert table.loc["f_noise", "ICC(2,1)"] < 0.5 and table.loc["f_noise", "flagged"]
    assert table.loc["f_const", "flagged"]  # undefined ICC is not robust
    robust = robust_features(icc(a, b, method="ICC(3,1)", threshold=0.9))
    assert (
        robust["features"] == ["f_stable"] and robust["method"] == "ICC(3,1)" and robust["threshold"] == 0.9
    )
    assert robust["icc"]["f_const"] is None
    with pytest.raises(ValueError, match="unknown ICC method"):
        icc(a, b, method="ICC(4,1)")


def _case(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(5)
    shape = (8, 48, 48)
    img = rng.normal(100, 10, shape).astype(np.float32)
    lab = np.zeros(shape, np.uint8)
    yy, xx = np.mgrid[:48, :48]
    for v, (cy, cx, r) in enumerate([(14, 14, 6), (14, 34, 9), (34, 14, 7), (34, 34, 11)], start=1):
        lab[:, (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = v
        img[lab == v] += 20 * v + rng.normal(0, 5 * v, (lab == v).sum())
    image = sitk.GetImageFromArray(img)
    labels = sitk.GetImageFromArray(lab)
    sitk.WriteImage(image, str(tmp_path / "image.nrrd"))
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))
    return tmp_path / "image.nrrd", tmp_path / "labels.nrrd"


def test_perturbation_masks_and_icc(tmp_path: Path):
    m = np.zeros((3, 10, 10), bool)
    m[:, 3:7, 2:6] = True
    assert perturb_mask(m, "erode").sum() == 3 * 4 and perturb_mask(m, "dilate").sum() == 3 * (16 + 16)
    shifted = perturb_mask(m, "shift_x+1")
    assert shifted.sum() == m.sum() and shifted[:, 3:7, 3:7].all()
    image_path, labels_path = _case(tmp_path)
    image, labels = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(labels_path))
    params = {"featureClass": {"shape": [], "firstorder": []}, "setting": {"binWidth": 5}}
    tables = perturbation_features(image, labels, {1: "a", 2: "b", 3: "c", 4: "d"}, params)
    assert list(tables) == ["original", "erode", "dilate", "shift_x+1", "shift_x-1", "shift_y+1", "shift_y-1"]
    n = {k: t.set_index("structure").n_voxels for k, t in tables.items()}
    assert (n["erode"] < n["original"]).all() and (n["dilate"] > n["original"]).all()
    assert (n["shift_x+1"] == n["original"]).all()
    # the unperturbed table is the plain extraction: exact on purpose, the same voxels through the same
    # functions in the same order, in one process (single-threaded normalisation, no threaded reduction)
    from ParaspinalRadiomicsLib.extraction import extract_case

    plain = extract_case(image, labels, {1: "a", 2: "b", 3: "c", 4: "d"}, params)
    np.testing.assert_array_equal(tables["original"].iloc[:, 8:].to_numpy(), plain.iloc[:, 8:].to_numpy())
    res = perturbation_icc(tables).set_index("feature")
    assert res.loc["original_firstorder_Mean", "ICC(2,1)"] > 0.9  # means differ strongly between structures
    assert res.loc["original_shape_VoxelVolume", "k"] == 7 and res.loc["original_shape_VoxelVolume", "n"] == 4


def test_cli_icc_and_perturb(tmp_path: Path):
    a, b = _tables()
    write_features(a, tmp_path / "a.csv")
    write_features(b, tmp_path / "b.csv")
    rc = main(
        [
            "icc",
            "--a",
            str(tmp_path / "a.csv"),
            "--b",
            str(tmp_path / "b.csv"),
            "--out",
            str(tmp_path / "icc.csv"),
            "--robust-out",
            str(tmp_path / "robust.json"),
        ]
    )
    assert rc == 0
    data = json.loads((tmp_path / "robust.json").read_text())
    assert data["features"] == ["f_stable"] and data["method"] == "ICC(2,1)" and data["threshold"] == 0.75
    assert set(pd.read_csv(tmp_path / "icc.csv").feature) == {"f_stable", "f_noise", "f_const"}
    image_path, labels_path = _case(tmp_path)
    params = tmp_path / "p.yaml"
    params.write_text("featureClass:\n  firstorder: []\nsetting:\n  binWidth: 5\n")
    rc = main(
        [
            "perturb",
            "--image",
            str(image_path),
            "--labels",
            str(labels_path),
            "--params",
            str(params),
            "--out",
            str(tmp_path / "picc.csv"),
            "--robust-out",
            str(tmp_path / "probust.json"),
            "--features-out",
            str(tmp_path / "long.csv"),
        ]
    )
    assert rc == 0
    assert len(read_features(tmp_path / "long.csv")) == 7 * 4
    assert "original_firstorder_Mean" in json.loads((tmp_path / "probust.json").read_text())["features"]
    # cohort form: the same case twice under two ids -> twice the targets
    pd.DataFrame(
        {"case_id": ["x", "y"], "image": [str(image_path)] * 2, "labels": [str(labels_path)] * 2}
    ).to_csv(tmp_path / "m.csv", index=False)
    rc = main(
        [
            "perturb",
            "--manifest",
            str(tmp_path / "m.csv"),
            "--params",
            str(params),
            "--out",
            str(tmp_path / "micc.csv"),
        ]
    )
    assert rc == 0 and (pd.read_csv(tmp_path / "micc.csv").n == 8).all()
