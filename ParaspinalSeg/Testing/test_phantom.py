"""Tests of the digital lumbar MRI phantom (ParaspinalSegLib.phantom, contract C3) against its own truth."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from scipy import ndimage as ndi

from ParaspinalLBPCore.structures import MUSCLE_NAMES, structure
from ParaspinalSegLib.markups import read_points
from ParaspinalSegLib.phantom import IMAGE_NAMES, PhantomParams, make_phantom, write_phantom
from ParaspinalSegLib.phantom_cli import parse_levels
from ParaspinalSegLib.phantom_params import MuscleParams

SMALL = {"matrix": [192, 192], "spacing_mm": [1.7, 1.7], "slices_per_level": 3}


def small(**over) -> PhantomParams:
    """A fast, coarse case (same anatomy, fewer voxels)."""
    return PhantomParams.from_dict({**SMALL, **over})


@pytest.fixture(scope="module")
def default_case():
    """The default 5-level 320×320×30 case, rendered once for several tests."""
    return make_phantom(PhantomParams(), seed=7)


@pytest.fixture(scope="module")
def written(tmp_path_factory, default_case):
    out = tmp_path_factory.mktemp("phantom")
    write_phantom(default_case, out)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_outputs_and_geometry(written, default_case):
    names = [f"{n}.nii.gz" for n in (*IMAGE_NAMES, "ff", "labels")]
    names += ["labels.json", "truth.json", "params.yaml", "levels.mrk.json", "seeds.mrk.json"]
    for name in names:
        assert (written / name).is_file(), name
    ref = sitk.ReadImage(str(written / "water.nii.gz"))
    assert ref.GetSize() == (320, 320, 30)
    assert ref.GetSpacing() == pytest.approx((1.0, 1.0, 4.0))
    assert ref.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    # x centred on the midline, slices centred on z = 0
    assert ref.GetOrigin()[0] == pytest.approx(-159.5)
    assert ref.GetOrigin()[2] == pytest.approx(-58.0)
    for name in (*IMAGE_NAMES, "ff", "labels"):
        img = sitk.ReadImage(str(written / f"{name}.nii.gz"))
        assert img.GetSize() == ref.GetSize() and img.GetOrigin() == pytest.approx(ref.GetOrigin())
        expected = sitk.sitkUInt8 if name == "labels" else sitk.sitkFloat32
        assert img.GetPixelID() == expected, name
    lab = json.loads((written / "labels.json").read_text())
    assert lab["levels"] == {"L1": [24, 29], "L2": [18, 23], "L3": [12, 17], "L4": [6, 11], "L5": [0, 5]}
    for value, name in lab["labels"].items():
        assert structure(name).value == int(value)
    assert set(MUSCLE_NAMES) <= set(lab["labels"].values())
    # spinal canal is posterior to the vertebral body (LPS: +y posterior), muscles posterior-most
    labels = default_case.arrays["labels"]
    jy = lambda v: np.nonzero(labels[15] == v)[0].mean()  # noqa: E731
    assert jy(10) < jy(12) < jy(1)
    assert np.nonzero(labels[15] == 1)[1].mean() > np.nonzero(labels[15] == 2)[1].mean()  # left = +x


def test_slice_gap_and_anisotropic_spacing():
    p = make_phantom(
        small(slice_gap_mm=1.0, slice_thickness_mm=3.0, spacing_mm=[1.5, 2.0], levels=["L4", "L5"]), seed=0
    )
    img = p.images["labels"]
    assert img.GetSpacing() == pytest.approx((1.5, 2.0, 4.0))
    assert img.GetSize() == (192, 192, 6)
    assert img.GetOrigin()[2] == pytest.approx(-10.0)
    truth = p.truth["structures"]
    for m in MUSCLE_NAMES:
        assert truth[m]["L4"]["csa_cm2"] == pytest.approx(truth[m]["L4"]["csa_requested_cm2"], rel=0.03), m


def test_deterministic_bytes(tmp_path):
    p = small()
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_phantom(make_phantom(p, seed=3), a)
    write_phantom(make_phantom(p, seed=3), b)
    write_phantom(make_phantom(p, seed=4), c)
    files = sorted(f.name for f in a.iterdir())
    assert files == sorted(f.name for f in b.iterdir())
    for name in files:
        assert _sha(a / name) == _sha(b / name), name
    assert _sha(a / "water.nii.gz") != _sha(c / "water.nii.gz")


def test_csa_matches_request_and_trends(default_case):
    truth = default_case.truth["structures"]
    for m in MUSCLE_NAMES:
        for lv in ("L1", "L2", "L3", "L4", "L5"):
            e = truth[m][lv]
            assert e["csa_cm2"] == pytest.approx(e["csa_requested_cm2"], rel=0.02), (m, lv)
            assert e["csa_label_cm2"] == pytest.approx(e["csa_requested_cm2"], rel=0.04), (m, lv)
    csa = {m: [truth[m][lv]["csa_cm2"] for lv in ("L1", "L2", "L3", "L4", "L5")] for m in MUSCLE_NAMES}
    for side in ("left", "right"):
        assert np.all(np.diff(csa[f"multifidus_{side}"]) > 0)
        assert np.all(np.diff(csa[f"psoas_{side}"]) > 0)
        assert np.all(np.diff(csa[f"erector_spinae_{side}"]) < 0)
        assert 5 <= csa[f"multifidus_{side}"][2] <= 11 and 13 <= csa[f"erector_spinae_{side}"][1] <= 23
        assert 3 <= csa[f"psoas_{side}"][0] <= 7 and 14 <= csa[f"psoas_{side}"][4] <= 21
        assert all(3.5 <= v <= 7.5 for v in csa[f"quadratus_lumborum_{side}"])
    # smooth along z: no slice-to-slice jump above 15 % within the multifidus
    px = 0.01
    per_slice = (default_case.arrays["labels"] == 1).sum(axis=(1, 2)) * px
    assert np.max(np.abs(np.diff(per_slice)) / per_slice[1:]) < 0.15


def test_fat_fraction_truth_and_ff_map(default_case):
    truth = default_case.truth["structures"]
    for m in MUSCLE_NAMES:
        for lv in ("L1", "L3", "L5"):
            e = truth[m][lv]
            assert e["fat_fraction_pct"] == pytest.approx(e["fat_fraction_requested_pct"], abs=0.3), (m, lv)
    ff = default_case.arrays["ff"]
    assert ff.min() >= 0 and ff.max() <= 1
    labels = default_case.arrays["labels"]
    assert np.median(ff[labels == 14]) > 0.9  # subcutaneous fat
    assert np.median(ff[labels == 12]) < 0.05  # CSF


def test_fat_fraction_extremes_are_realised():
    muscles = {
        "psoas_right": {"fat_fraction": 0.7, "pattern": "patchy"},
        "multifidus_left": {"fat_fraction": 0.0},
        "erector_spinae_left": {"fat_fraction": {"L1": 0.05, "L5": 0.45}, "pattern": "streaky"},
    }
    truth = make_phantom(small(muscles=muscles), seed=11).truth["structures"]
    for lv in ("L1", "L3", "L5"):
        assert truth["psoas_right"][lv]["fat_fraction_pct"] == pytest.approx(70.0, abs=0.5)
        assert truth["multifidus_left"][lv]["fat_fraction_pct"] == pytest.approx(0.0, abs=0.05)
    assert truth["erector_spinae_left"]["L1"]["fat_fraction_pct"] == pytest.approx(5.0, abs=0.3)
    assert truth["erector_spinae_left"]["L5"]["fat_fraction_pct"] == pytest.approx(45.0, abs=0.3)
    assert truth["erector_spinae_left"]["L3"]["fat_fraction_pct"] == pytest.approx(11.0, abs=0.3)  # default


def test_ff_map_vs_dixon_images_away_from_edges():
    p = make_phantom(PhantomParams.from_dict({"snr": 400, "bias_strength": 0.3}), seed=2)
    w, f = p.arrays["water"].astype(float), p.arrays["fat"].astype(float)
    ff_img = f / (w + f)
    labels = p.arrays["labels"]
    for value in (1, 3, 5, 14):
        inner = ndi.binary_erosion(labels == value, structure=np.ones((1, 5, 5)))
        assert inner.sum() > 500
        err = np.abs(ff_img[inner] - p.arrays["ff"][inner])
        assert np.median(err) < 0.01 and np.percentile(err, 95) < 0.03, value
    # in-phase = W + F and opposed = |W − F| (noise aside)
    m = ndi.binary_erosion(labels == 3, structure=np.ones((1, 5, 5)))
    assert np.median(p.arrays["inphase"][m] / (w + f)[m]) == pytest.approx(1.0, abs=0.02)
    assert np.median(p.arrays["opposed"][m] / np.abs(w - f)[m]) == pytest.approx(1.0, abs=0.03)


def test_contrasts(default_case):
    a, labels = default_case.arrays, default_case.arrays["labels"]
    med = lambda img, v: float(np.median(a[img][labels == v]))  # noqa: E731
    for img in ("t1w", "t2w", "fat"):
        assert med(img, 14) > 2.5 * med(img, 3), img  # fat bright, muscle dark
    assert med("t1w", 12) < 0.5 * med("t1w", 3)  # CSF dark on T1w
    assert med("t2w", 12) > 1.1 * med("t2w", 14)  # CSF brightest on T2w
    assert med("water", 3) > 5 * med("water", 14)  # water image: muscle bright, fat dark


def test_asymmetry_and_atrophy_change_areas():
    base = make_phantom(small(), seed=1).truth["structures"]
    asym = make_phantom(small(asymmetry=0.3), seed=1).truth["structures"]
    atro = make_phantom(
        small(muscles={"multifidus_right": {"atrophy": {"L4": 0.6}}, "psoas_left": {"atrophy": 1.3}}), seed=1
    ).truth["structures"]
    for lv in ("L1", "L3", "L5"):
        left, right = asym["erector_spinae_left"][lv]["csa_cm2"], asym["erector_spinae_right"][lv]["csa_cm2"]
        assert abs(left - right) / ((left + right) / 2) == pytest.approx(0.3, abs=0.02)
        assert atro["psoas_left"][lv]["csa_cm2"] / base["psoas_left"][lv]["csa_cm2"] == pytest.approx(
            1.3, rel=0.03
        )
    ratio = atro["multifidus_right"]["L4"]["csa_cm2"] / base["multifidus_right"]["L4"]["csa_cm2"]
    assert ratio == pytest.approx(0.6, rel=0.04)
    assert atro["multifidus_right"]["L2"]["csa_cm2"] == pytest.approx(
        base["multifidus_right"]["L2"]["csa_cm2"], rel=0.03
    )
    absolute = make_phantom(small(muscles={"psoas_left": {"csa_cm2": {"L1": 6.0, "L5": 22.0}}}), seed=1)
    assert absolute.truth["structures"]["psoas_left"]["L1"]["csa_cm2"] == pytest.approx(6.0, rel=0.02)
    assert absolute.truth["structures"]["psoas_left"]["L5"]["csa_cm2"] == pytest.approx(22.0, rel=0.02)
    assert absolute.truth["structures"]["psoas_left"]["L3"]["csa_cm2"] == pytest.approx(12.0, rel=0.02)
    assert absolute.params.to_dict()["muscles"]["psoas_left"]["csa_cm2"] == {"L1": 6.0, "L5": 22.0}
    male = make_phantom(small(sex="male"), seed=1).truth["structures"]
    assert male["psoas_left"]["L4"]["csa_cm2"] > 1.2 * base["psoas_left"]["L4"]["csa_cm2"]


def _texture(pattern: str) -> dict[str, float]:
    muscles = {
        m: MuscleParams(fat_fraction=0.25, pattern=pattern)
        for m in ("erector_spinae_left", "erector_spinae_right")
    }
    p = make_phantom(PhantomParams(levels=["L2", "L3"], snr=1000, bias_strength=0.0, muscles=muscles), seed=5)
    ff, labels = p.arrays["ff"], p.arrays["labels"]
    inner = ndi.binary_erosion(labels == 3, structure=np.ones((1, 5, 5)))
    vals = ff[inner]
    gy = np.abs(np.diff(ff, axis=1))[inner[:, 1:] & inner[:, :-1]].mean()
    gx = np.abs(np.diff(ff, axis=2))[inner[:, :, 1:] & inner[:, :, :-1]].mean()
    return {"mean": float(vals.mean()), "sd": float(vals.std()), "skew": float(((vals - vals.mean()) ** 3).mean() / vals.std() ** 3),
            "gx_over_gy": float(gx / gy), "roughness": float((gx + gy) / 2 / vals.std())}  # fmt: skip


def test_fat_patterns_differ():
    d, s, p = _texture("diffuse"), _texture("streaky"), _texture("patchy")
    for t in (d, s, p):
        assert t["mean"] == pytest.approx(0.25, abs=0.03)
    assert d["sd"] < 0.65 * s["sd"] and d["sd"] < 0.65 * p["sd"]  # diffuse: low-contrast mottling
    assert s["gx_over_gy"] > 1.8 and s["gx_over_gy"] > 1.8 * max(
        p["gx_over_gy"], d["gx_over_gy"]
    )  # AP streaks
    assert p["roughness"] < 0.5 * min(d["roughness"], s["roughness"])  # patches: large smooth blobs
    assert min(t["skew"] for t in (d, s, p)) > 0.5  # fat in a minority of voxels (real FF is right-skewed)


def test_seeds_and_levels_inside_structures(tmp_path):
    p = make_phantom(small(seed_jitter_mm=3.0), seed=9)
    write_phantom(p, tmp_path)
    seeds = read_points(tmp_path / "seeds.mrk.json")
    assert len(seeds) == 8 * 5
    img = sitk.ReadImage(str(tmp_path / "labels.nii.gz"))
    arr = sitk.GetArrayFromImage(img)
    lab = json.loads((tmp_path / "labels.json").read_text())
    for pt in seeds:
        i, j, k = img.TransformPhysicalPointToIndex(tuple(float(v) for v in pt.position_lps))
        assert arr[k, j, i] == structure(pt.label).value, pt
        k0, k1 = lab["levels"][pt.description]
        assert k0 <= k <= k1
    levels = read_points(tmp_path / "levels.mrk.json")
    assert [p.label for p in levels] == ["L1", "L2", "L3", "L4", "L5"]
    for pt in levels:
        i, j, k = img.TransformPhysicalPointToIndex(tuple(float(v) for v in pt.position_lps))
        assert arr[k, j, i] in (10, 13)  # vertebral body (disc only at level edges)
        k0, k1 = lab["levels"][pt.label]
        assert k0 <= k <= k1
    unjittered = make_phantom(small(), seed=9).seeds
    moved = [np.linalg.norm(np.subtract(a[1], b[1])) for a, b in zip(p.seeds, unjittered, strict=True)]
    assert np.mean(moved) > 1.0


def test_bad_parameters_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("snr: 30\nslice_thicknes_mm: 3\n")
    with pytest.raises(KeyError, match="slice_thicknes_mm"):
        PhantomParams.from_yaml(bad)
    bad.write_text("muscles:\n  multifidus_left:\n    fat_fraction: 0.9\n")
    with pytest.raises(ValueError, match=r"muscles\.multifidus_left\.fat_fraction"):
        PhantomParams.from_yaml(bad)
    bad.write_text("muscles:\n  multifidus_middle: {atrophy: 1}\n")
    with pytest.raises(KeyError, match="multifidus_middle"):
        PhantomParams.from_yaml(bad)
    bad.write_text("muscles:\n  psoas_left: {pattern: stripy}\n")
    with pytest.raises(ValueError, match="pattern"):
        PhantomParams.from_yaml(bad)
    with pytest.raises(ValueError, match="levels"):
        PhantomParams.from_dict({"levels": ["L1", "L3"]})
    with pytest.raises(FileNotFoundError):
        PhantomParams.from_yaml(tmp_path / "missing.yaml")


def test_params_yaml_round_trip(tmp_path):
    p = small(muscles={"psoas_left": {"fat_fraction": {"L3": 0.4}, "pattern": "patchy"}}, asymmetry=0.1)
    path = tmp_path / "p.yaml"
    p.to_yaml(path)
    q = PhantomParams.from_yaml(path)
    assert q.to_dict() == p.to_dict()
    assert q.fat_fraction("psoas_left", "L3") == pytest.approx(0.4)
    preset = Path(__file__).resolve().parents[1] / "ParaspinalSegLib" / "presets" / "phantom_default.yaml"
    assert PhantomParams.from_yaml(preset).to_dict() == PhantomParams().to_dict()


def test_parse_levels():
    assert parse_levels("L1-L5") == ["L1", "L2", "L3", "L4", "L5"]
    assert parse_levels("l4-l3") == ["L3", "L4"]
    assert parse_levels("L5,L4") == ["L4", "L5"]
    with pytest.raises(ValueError, match="L6"):
        parse_levels("L6")


def test_cli_writes_and_reruns_from_params(tmp_path):
    out = tmp_path / "case"
    cmd = [sys.executable, "-m", "ParaspinalSegLib", "phantom", "--out", str(out), "--seed", "4",
           "--levels", "L4-L5", "--matrix", "160", "160", "--spacing", "2", "2", "--snr", "25"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    params = yaml.safe_load((out / "params.yaml").read_text())
    assert params["levels"] == ["L4", "L5"] and params["snr"] == 25.0 and params["matrix"] == [160, 160]
    img = sitk.ReadImage(str(out / "t2w.nii.gz"))
    assert img.GetSize() == (160, 160, 12) and img.GetSpacing() == pytest.approx((2.0, 2.0, 4.0))
    again = tmp_path / "again"
    cmd2 = [sys.executable, "-m", "ParaspinalSegLib", "phantom", "--out", str(again), "--seed", "4",
            "--params", str(out / "params.yaml")]  # fmt: skip
    subprocess.run(cmd2, check=True, capture_output=True)
    for name in ("water.nii.gz", "labels.nii.gz", "truth.json"):
        assert _sha(out / name) == _sha(again / name), name
    bad = subprocess.run([*cmd[:6], "--snr", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "snr" in bad.stderr


@pytest.mark.realdata
def test_realism_against_tum01():
    from lbp_pytest_plugin import shared_path

    from ParaspinalSegLib.phantom_realism import compare, image_statistics, load_tum01, tum01_like_phantom

    folder = shared_path("data/myosegmentum_tum01/fat.nii.gz").parent
    real = image_statistics(load_tum01(folder))
    # the real statistics themselves (guards the estimators): README facts and measured values
    assert 12 <= real["ff_muscle_mean_pct"] <= 16
    assert 60 <= real["snr_water"] <= 100
    phantom = image_statistics(tum01_like_phantom(seed=1))
    rows = compare(real, phantom)
    bad = [r for r in rows if not r["ok"]]
    assert not bad, bad
    assert 5 <= phantom["ff_muscle_mean_pct"] <= 25 and 5 <= phantom["ff_muscle_median_pct"] <= 25
    assert phantom["ff_muscle_p95_pct"] < 60
