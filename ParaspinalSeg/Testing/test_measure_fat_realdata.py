"""Fat-fraction quantification validated on real data and the phantom: non-Dixon vs Dixon, Dixon vs truth.

- TUM01 (real 3T Dixon, manual masks): the non-Dixon method on the synthesised in-phase image F + W
  against Dixon F/(F+W) in the same masks, per muscle and per level.
- Phantom (ground truth, coil bias 0.2, SNR 40): Dixon FF on the truth labels (the measurement's own
  error) and on the segmenter's labels (adds the segmentation's share), with and without edge erosion;
  non-Dixon on the phantom's in-phase image against truth.
- MuscleMap (T1-like, no Dixon): plausibility only.
Thresholds sit just above the numbers measured at this commit (given in the comments).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from lbp_pytest_plugin import shared_path
from scipy import ndimage as ndi

from ParaspinalLBPCore.structures import BY_NAME, MUSCLE_NAMES, MUSCLEMAP_LABEL_NAMES, TUM01_LABEL_NAMES
from ParaspinalSegLib.markups import read_points
from ParaspinalSegLib.measure import measure_labels
from ParaspinalSegLib.phantom import make_phantom, write_phantom
from ParaspinalSegLib.segment import segment

TUM01_LEVELS = {"L2": (0, 7), "L3": (8, 14), "L4": (15, 21), "L5": (22, 28)}


@pytest.fixture(scope="module")
def tum01():
    d = "data/myosegmentum_tum01/"
    fat = sitk.ReadImage(str(shared_path(d + "fat.nii.gz")))
    water = sitk.Cast(sitk.ReadImage(str(shared_path(d + "water.nii.gz"))), sitk.sitkFloat64)
    water.CopyInformation(fat)  # the water file's origin is (0,0,0): same voxels (data README)
    labels = sitk.ReadImage(str(shared_path(d + "labels.nii.gz")))
    inphase = water + sitk.Cast(fat, sitk.sitkFloat64)
    kw = {"levels": TUM01_LEVELS, "per_slice": False}
    dixon = measure_labels(labels, TUM01_LABEL_NAMES, water=water, fat=fat, **kw)
    local = measure_labels(labels, TUM01_LABEL_NAMES, image=inphase, fat_method="t1_local", **kw)
    plain = measure_labels(labels, TUM01_LABEL_NAMES, image=inphase, fat_method="t1_linear", **kw)
    key = ["structure", "level"]
    return (
        dixon.set_index(key)["fat_fraction_pct"],
        local.set_index(key)["fat_fraction_pct"],
        plain.set_index(key)["fat_fraction_pct"],
        (water, fat, labels),
        set(local.fat_method),
    )


@pytest.mark.realdata
def test_tum01_non_dixon_whole_muscle_within_5pp(tum01) -> None:
    dixon, local, plain, _, methods = tum01
    assert methods == {"t1_local"}
    d = (local - dixon).xs("all", level="level")
    # measured t1_local − Dixon: ES right −0.29, MF right −2.46, MF left −3.37, ES left +1.10 pp
    # (t1_linear before: −4.11, −13.15, −10.89, −1.55)
    assert (d.abs() < 3.7).all(), d.round(2).to_dict()
    before = (plain - dixon).xs("all", level="level")
    assert before.abs().max() > 10.0 and d.abs().max() < before.abs().max() / 3


@pytest.mark.realdata
def test_tum01_non_dixon_per_level(tum01) -> None:
    dixon, local, _, _, _ = tum01
    d = (local - dixon).drop("all", level="level")
    # measured: L2–L4 every muscle within 4.72 pp (ES right L4 +4.72); L5: ES −4.72/+1.33, multifidus −12.45
    # (right) and −12.06 (left): the target (5 pp) is not met there, see fat.py
    upper = d[d.index.get_level_values("level") != "L5"]
    assert (upper.abs() < 5.0).all(), upper.round(2).to_dict()
    l5 = d.xs("L5", level="level")
    assert l5[["erector_spinae_left", "erector_spinae_right"]].abs().max() < 5.0
    assert l5[["multifidus_left", "multifidus_right"]].abs().max() < 13.0
    assert d.abs().median() < 3.2  # measured 2.90 (t1_linear: 10.5)


@pytest.mark.realdata
def test_tum01_dixon_noise_is_not_the_lean_muscle_ff(tum01) -> None:
    """The Dixon FF of the muscles' commonest voxels is 4–11 %; magnitude noise explains ~1.4 pp of it."""
    _, _, _, (water, fat, labels), _ = tum01
    w, f = sitk.GetArrayFromImage(water), sitk.GetArrayFromImage(fat)
    lab = sitk.GetArrayFromImage(labels)
    core = ndi.binary_erosion(lab > 0, np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool), iterations=2)
    diffs = (w[:, :, 1:] - w[:, :, :-1])[core[:, :, 1:] & core[:, :, :-1]]
    sigma = 1.4826 * np.median(np.abs(diffs - np.median(diffs))) / np.sqrt(2)
    s = w + f
    lean_s = float(np.median(s[core & (f < 0.2 * s)]))
    noise_bias_pp = 100 * sigma * np.sqrt(np.pi / 2) / lean_s  # Rician mean of a zero fat signal
    assert 4.0 < sigma < 6.5  # measured 5.24 (SNR ≈ 87)
    assert noise_bias_pp < 1.7  # measured 1.45 pp at most (true F = 0); far below the ~10 % once assumed
    ff_core = f[core & (s > 0)] / s[core & (s > 0)]
    assert np.median(ff_core) > 0.05  # measured 7.6 %: real fat signal in lean-looking muscle


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom_ff")
    write_phantom(make_phantom(seed=0), out)
    read = {n: sitk.ReadImage(str(out / f"{n}.nii.gz")) for n in ("water", "fat", "labels", "inphase")}
    truth = json.loads((out / "truth.json").read_text())
    seg = segment(
        {"water": read["water"], "fat": read["fat"]},
        read_points(out / "seeds.mrk.json"),
        levels=read_points(out / "levels.mrk.json"),
    )
    return read, truth, seg


def _errors(table: pd.DataFrame, truth: dict) -> pd.Series:
    rows = table[table.level != "all"]
    return pd.Series(
        [
            x.fat_fraction_pct - truth["structures"][x.structure][x.level]["fat_fraction_pct"]
            for x in rows.itertuples()
        ],
        index=pd.MultiIndex.from_frame(rows[["structure", "level"]]),
    )


def test_phantom_dixon_ff_measurement_and_segmentation_share(phantom) -> None:
    read, truth, seg = phantom
    names = {BY_NAME[n].value: n for n in MUSCLE_NAMES}
    lev = {k: tuple(v) for k, v in truth["levels"].items()}
    dix = {"water": read["water"], "fat": read["fat"], "per_slice": False}
    err = {}
    for e in (0, 1):
        err[("truth", e)] = _errors(
            measure_labels(read["labels"], names, levels=lev, erode_px=e, **dix), truth
        )
        err[("seg", e)] = _errors(
            measure_labels(seg.labels, names, levels=seg.levels, erode_px=e, **dix), truth
        )
    # measured |error| median / max over 8 muscles × 5 levels (pp):
    #   truth labels: no erosion 2.91 / 5.12 (partial volume with the surrounding fat), 1-voxel erosion 0.30 / 0.74
    #   segmenter labels: no erosion 2.88 / 5.08, 1-voxel erosion 0.34 / 1.18 (its rim now takes the partial-volume
    #   voxels of muscle fraction >= 0.5, as the truth labels do: the raw mean carries the same ring)
    assert err[("truth", 1)].abs().max() < 0.9
    assert err[("truth", 1)].abs().median() < 0.45
    assert err[("seg", 1)].abs().max() < 1.5
    assert err[("truth", 0)].abs().median() > 2.0  # without erosion the rim's partial volume dominates
    assert err[("seg", 0)].abs().max() < 5.5


def test_phantom_non_dixon_vs_truth(phantom) -> None:
    read, truth, _ = phantom
    names = {BY_NAME[n].value: n for n in MUSCLE_NAMES}
    lev = {k: tuple(v) for k, v in truth["levels"].items()}
    kw = {"image": read["inphase"], "levels": lev, "per_slice": False}
    local = _errors(measure_labels(read["labels"], names, fat_method="t1_local", **kw), truth)
    plain = _errors(measure_labels(read["labels"], names, fat_method="t1_linear", **kw), truth)
    # measured t1_local |error| median 1.62, max 6.22 pp (erector spinae, diffuse fat, −4.3 to −6.2);
    # t1_linear median 6.06, max 9.96
    assert local.abs().median() < 1.9
    assert local.abs().max() < 6.6
    assert plain.abs().median() > 5.0


@pytest.mark.realdata
def test_musclemap_non_dixon_is_plausible() -> None:
    img = sitk.ReadImage(str(shared_path("data/musclemap_sub0001/image.nii.gz")))
    lab = sitk.ReadImage(str(shared_path("data/musclemap_sub0001/labels.nii.gz")))
    t = measure_labels(lab, MUSCLEMAP_LABEL_NAMES, image=img, per_slice=False, fat_method="t1_local")
    ff = t.set_index("structure")["fat_fraction_pct"]
    assert set(t.fat_method) == {"t1_local"}
    # measured: psoas 5.3 / 5.4, quadratus lumborum 13.9 / 17.4, multifidus 32.9 / 32.0, erector spinae 33.9 / 32.1;
    # no Dixon to compare with: only the physiological order (psoas leanest, paraspinals fattiest) and range
    assert ff.between(1.0, 40.0).all(), ff.round(2).to_dict()
    psoas = ff[["psoas_left", "psoas_right"]].max()
    paraspinal = ff[["multifidus_left", "multifidus_right", "erector_spinae_left", "erector_spinae_right"]]
    assert psoas < 10.0 and psoas < paraspinal.min()
