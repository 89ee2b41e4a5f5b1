"""Seed auto-initialisation (propose_seeds / ``propose-seeds`` CLI): accuracy vs ground truth and manual labels, bad input.

Accuracy is measured as in Testing/benchmarks/bench_autoseed.py (which prints the full report);
the thresholds below sit just under the numbers measured at this commit, given in comments.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import SimpleITK as sitk
from lbp_pytest_plugin import shared_path

from ParaspinalLBPCore.cli import run_cli
from ParaspinalLBPCore.structures import BY_NAME, MUSCLE_NAMES, MUSCLEMAP_LABEL_NAMES, TUM01_LABEL_NAMES
from ParaspinalSegLib.autoseed import propose_seeds, refine_seeds, seed_accuracy, write_proposal
from ParaspinalSegLib.autoseed_anatomy import AutoSeedParams, prepare_maps, slice_anatomy
from ParaspinalSegLib.levels import levels_from_landmarks
from ParaspinalSegLib.markups import read_points
from ParaspinalSegLib.phantom import make_phantom, write_phantom
from ParaspinalSegLib.phantom_params import PhantomParams
from ParaspinalSegLib.segment import segment

PHANTOM_NAMES = {BY_NAME[n].value: n for n in MUSCLE_NAMES}


def cli(argv: list[str]) -> int:
    return run_cli("paraspinal-seg", "test", {"propose-seeds": "ParaspinalSegLib.autoseed_cli:add_cli"}, argv)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    write_phantom(make_phantom(seed=0), out)
    read = lambda name: sitk.ReadImage(str(out / name))  # noqa: E731
    return {
        "dir": out,
        "water": read("water.nii.gz"),
        "fat": read("fat.nii.gz"),
        "t1w": read("t1w.nii.gz"),
        "t2w": read("t2w.nii.gz"),
        "labels": read("labels.nii.gz"),
        "levels": read_points(out / "levels.mrk.json"),
    }


@pytest.fixture(scope="module")
def tum01():
    d = "data/myosegmentum_tum01/"
    water = sitk.ReadImage(str(shared_path(d + "water.nii.gz")))
    fat = sitk.ReadImage(str(shared_path(d + "fat.nii.gz")))
    labels = sitk.ReadImage(str(shared_path(d + "labels.nii.gz")))
    slabs = np.array_split(np.arange(labels.GetSize()[2]), 4)  # as test_segment_realdata: 4 levels
    levels = {f"L{n + 2}": (int(s[0]), int(s[-1])) for n, s in enumerate(slabs)}
    return water, fat, labels, levels


def fraction_inside(rows: list[dict]) -> float:
    return float(np.mean([r["inside"] for r in rows]))


def test_phantom_dixon_all_muscles(phantom) -> None:
    """Dixon phantom, all 8 muscles × 5 levels, level landmarks: every seed in the right muscle (measured 40/40)."""
    prop = propose_seeds(
        {"water": phantom["water"], "fat": phantom["fat"]},
        structures=list(MUSCLE_NAMES),
        levels=phantom["levels"],
    )
    rows = seed_accuracy(prop.points, phantom["labels"], PHANTOM_NAMES)
    assert len(rows) == 40 and not prop.info["missing"]
    assert {(r["structure"], r["level"]) for r in rows} == {
        (n, f"L{i}") for n in MUSCLE_NAMES for i in range(1, 6)
    }
    assert fraction_inside(rows) >= 0.95, [r for r in rows if not r["inside"]]
    # seeds are interior points, not on an outline (measured median depth 10.2 mm)
    assert np.median([r["depth_mm"] for r in rows]) >= 6.0
    # each point is on its level's middle slice (landmarks sit half-way between two slices here)
    ranges = levels_from_landmarks(phantom["levels"], phantom["labels"])
    assert all(abs(r["k"] - 0.5 * sum(ranges[r["level"]])) <= 0.5 for r in rows), [
        (r["level"], r["k"]) for r in rows
    ]


@pytest.mark.parametrize(
    ("seed", "params", "contrast", "minimum"),
    [
        # measured 38/40 (erector right L5 lands in multifidus, psoas right L5 in the abdomen)
        (3, {"sex": "male", "body_scale": 1.15}, "dixon", 0.92),
        # measured 40/40 (coil shading handled by the local fat reference)
        (1, {"bias_strength": 0.4, "snr": 25}, "t2w", 0.95),
    ],
)
def test_phantom_variants_all_muscles(tmp_path, seed, params, contrast, minimum) -> None:
    """Other bodies/contrasts (held-back cases are not this phantom): all 8 muscles × 5 levels."""
    write_phantom(make_phantom(PhantomParams(**params), seed=seed), tmp_path)
    read = lambda name: sitk.ReadImage(str(tmp_path / name))  # noqa: E731
    inputs = (
        {"water": read("water.nii.gz"), "fat": read("fat.nii.gz")}
        if contrast == "dixon"
        else read(f"{contrast}.nii.gz")
    )
    prop = propose_seeds(
        inputs,
        structures=list(MUSCLE_NAMES),
        levels=read_points(tmp_path / "levels.mrk.json"),
        allow_missing=True,
    )
    rows = seed_accuracy(prop.points, read("labels.nii.gz"), PHANTOM_NAMES)
    inside = sum(r["inside"] for r in rows) / 40.0
    assert inside >= minimum, [(r["structure"], r["level"], r["found"]) for r in rows if not r["inside"]]
    back = [r for r in rows if r["structure"].startswith(("multifidus", "erector"))]
    assert sum(r["inside"] for r in back) >= 19, back  # back muscles: at most one miss in 20


@pytest.mark.parametrize("contrast", ["t1w", "t2w"])
def test_phantom_single_image_all_muscles(phantom, contrast) -> None:
    """T1w/T2w phantom (fat bright, CSF dark/bright), all 8 muscles × 5 levels: measured 40/40 each."""
    prop = propose_seeds(phantom[contrast], structures=list(MUSCLE_NAMES), levels=phantom["levels"])
    rows = seed_accuracy(prop.points, phantom["labels"], PHANTOM_NAMES)
    assert len(rows) == 40
    assert fraction_inside(rows) >= 0.95, [r for r in rows if not r["inside"]]


def test_phantom_canal_localisation(phantom) -> None:
    """Canal centre vs the phantom's canal label on every slice (measured Dixon median 0.6 / max 1.1 mm)."""
    p = AutoSeedParams()
    maps = prepare_maps({"water": phantom["water"], "fat": phantom["fat"]}, False, p)
    truth = sitk.GetArrayFromImage(phantom["labels"])
    errs = []
    for k in range(truth.shape[0]):
        anat = slice_anatomy(maps, k, p)
        cj, ci = np.argwhere(truth[k] == BY_NAME["spinal_canal"].value).mean(axis=0)
        errs.append(np.hypot(anat.canal[0] - cj, anat.canal[1] - ci) * 1.0)  # 1 mm in-plane spacing
        assert abs(anat.midline - ci) <= 1.5, (k, anat.midline, ci)
    assert np.median(errs) < 2.0 and max(errs) < 4.0, np.round(errs, 1)


@pytest.mark.realdata
def test_tum01_seeds_inside_manual_muscles(tum01) -> None:
    """Real Dixon case vs the manual labels, 4 levels × 4 muscles: measured 16/16 inside."""
    water, fat, labels, levels = tum01
    structures = list(TUM01_LABEL_NAMES.values())
    prop = propose_seeds(
        {"water": water, "fat": fat}, structures=structures, levels=levels, assume_same_grid=True
    )
    rows = seed_accuracy(prop.points, labels, TUM01_LABEL_NAMES)
    assert len(rows) == 16
    assert fraction_inside(rows) >= 0.95, [r for r in rows if not r["inside"]]
    assert any("water image grid differs" in n for n in prop.info["notes"])


@pytest.mark.realdata
def test_tum01_origin_mismatch_is_an_error(tum01) -> None:
    water, fat, _labels, _levels = tum01
    with pytest.raises(ValueError, match="water image and fat image are not on the same voxel grid"):
        propose_seeds({"water": water, "fat": fat})


@pytest.mark.realdata
def test_musclemap_back_muscles() -> None:
    """Real T1-like case (fatty back muscles, dark psoas), slabs without level names: measured 12/12 seeds
    inside (MF, ES, psoas × 2 sides × 2 slabs). Quadratus lumborum is not asserted: 0/4 (see the report)."""
    d = "data/musclemap_sub0001/"
    img = sitk.ReadImage(str(shared_path(d + "image.nii.gz")))
    labels = sitk.ReadImage(str(shared_path(d + "labels.nii.gz")))
    names = [n for n in MUSCLE_NAMES if not n.startswith("quadratus")]
    prop = propose_seeds(img, structures=names)
    rows = seed_accuracy(prop.points, labels, MUSCLEMAP_LABEL_NAMES)
    assert len(rows) == 12 and {r["level"] for r in rows} == {""}
    assert fraction_inside(rows) >= 0.95, [r for r in rows if not r["inside"]]
    assert all(r["found"] for r in rows)  # every point is in some back muscle, none in fat or bone


def test_phantom_segment_from_auto_seeds_matches_reference(phantom) -> None:
    """segment() from the proposed seeds vs from the phantom's own one-click seeds: measured worst Dice loss 0.019."""
    dixon = {"water": phantom["water"], "fat": phantom["fat"]}
    prop = propose_seeds(dixon, structures=list(MUSCLE_NAMES), levels=phantom["levels"])
    auto = segment(dixon, prop.points, levels=phantom["levels"])
    ref = segment(dixon, read_points(phantom["dir"] / "seeds.mrk.json"), levels=phantom["levels"])
    truth = sitk.GetArrayFromImage(phantom["labels"])
    a, r = sitk.GetArrayFromImage(auto.labels), sitk.GetArrayFromImage(ref.labels)
    for name in MUSCLE_NAMES:
        v = BY_NAME[name].value
        d_auto = 2 * ((a == v) & (truth == v)).sum() / ((a == v).sum() + (truth == v).sum())
        d_ref = 2 * ((r == v) & (truth == v)).sum() / ((r == v).sum() + (truth == v).sum())
        assert d_auto >= d_ref - 0.05, (name, round(d_auto, 3), round(d_ref, 3))


def _tum01_dice(out: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    dice = {}
    for v, name in TUM01_LABEL_NAMES.items():
        x, y = out == BY_NAME[name].value, truth == v
        dice[name] = 2 * (x & y).sum() / (x.sum() + y.sum())
    return dice


@pytest.mark.realdata
def test_tum01_segment_from_auto_seeds(tum01) -> None:
    """segment() from the proposed seeds on TUM01 vs the manual labels. Measured Dice (auto / reference
    seeds, with segment.py at 15fbfc2): ES left 0.894/0.920, ES right 0.835/0.915, MF left 0.761/0.869,
    MF right 0.742/0.858 — the proposed seeds are inside the right muscle but 5.5 mm (median) from its
    most interior voxel, and the grower's multifidus/erector split depends on that. With ``refine=True``
    (opt-in): 0.898, 0.836, 0.827, 0.746 and 3.9 mm — only multifidus left gains, hence off by default."""
    water, fat, labels, levels = tum01
    structures = list(TUM01_LABEL_NAMES.values())
    prop = propose_seeds(
        {"water": water, "fat": fat}, structures=structures, levels=levels, assume_same_grid=True
    )
    assert "refine" not in prop.info  # refinement is opt-in
    out = sitk.GetArrayFromImage(
        segment({"water": water, "fat": fat}, prop.points, levels=levels, assume_same_grid=True).labels
    )
    truth = sitk.GetArrayFromImage(labels)
    dice = _tum01_dice(out, truth)
    # floors ~0.01 under the values above (was 0.8/0.75, 0.53/0.67: the segmenter improved since)
    assert dice["erector_spinae_left"] >= 0.88 and dice["erector_spinae_right"] >= 0.82, dice
    assert dice["multifidus_left"] >= 0.745 and dice["multifidus_right"] >= 0.73, dice


@pytest.mark.realdata
def test_tum01_refined_seeds_stay_inside(tum01) -> None:
    """Opt-in refinement on TUM01: every point stays in its manual muscle (measured 16/16) and moves
    towards the muscle's centre (median distance to the manual deepest point 5.5 -> 3.9 mm)."""
    water, fat, labels, levels = tum01
    structures = list(TUM01_LABEL_NAMES.values())
    kw = {"structures": structures, "levels": levels, "assume_same_grid": True}
    prop = propose_seeds({"water": water, "fat": fat}, refine=True, **kw)
    rows = seed_accuracy(prop.points, labels, TUM01_LABEL_NAMES)
    assert len(rows) == 16 and all(r["inside"] for r in rows), [r for r in rows if not r["inside"]]
    assert np.median([r["to_interior_mm"] for r in rows]) <= 5.0
    assert len(prop.info["refine"]) == 1 and prop.info["refine"][0]["moved"] == 16


def test_phantom_refinement_centres_points(phantom) -> None:
    """refine=True on the Dixon phantom: structure/level/slice kept, each refined point lies in its own label
    of the segmentation it was taken from, and the points reach the true centres (measured distance to
    the truth's deepest point median 2.2 -> 0.0 mm, max 11.7 -> 10.4 mm; each move <= 5 mm; 40/40 inside)."""
    dixon = {"water": phantom["water"], "fat": phantom["fat"]}
    kw = {"structures": list(MUSCLE_NAMES), "levels": phantom["levels"]}
    plain = propose_seeds(dixon, **kw)
    before = seed_accuracy(plain.points, phantom["labels"], PHANTOM_NAMES)
    seg = segment(dixon, plain.points, levels=phantom["levels"])
    refined = refine_seeds(copy.deepcopy(plain), dixon, phantom["levels"])
    after = seed_accuracy(refined.points, phantom["labels"], PHANTOM_NAMES)
    assert [(r["structure"], r["level"], r["k"]) for r in after] == [
        (r["structure"], r["level"], r["k"]) for r in before
    ]
    lab = sitk.GetArrayFromImage(seg.labels)
    for pt, r in zip(refined.points, after, strict=True):
        i, j, k = seg.labels.TransformPhysicalPointToIndex([float(v) for v in pt.position_lps])
        assert lab[k, j, i] == BY_NAME[pt.label].value, (pt.label, pt.description)
        assert r["inside"], r
    far_before = np.array([r["to_interior_mm"] for r in before])
    far_after = np.array([r["to_interior_mm"] for r in after])
    assert np.median(far_after) <= 1.0 and far_after.max() <= far_before.max(), np.round(far_after, 1)
    assert np.median(far_before) >= 1.5  # the unrefined points are off-centre: the test can fail
    assert far_after.mean() <= far_before.mean() - 1.5, (far_after.mean(), far_before.mean())
    assert refined.info["refine"][0]["moved"] == 40 and refined.info["refine"][0]["max_move_mm"] <= 5.0


def test_cli_writes_c2_seeds(phantom, tmp_path) -> None:
    out = tmp_path / "auto.mrk.json"
    d = phantom["dir"]
    rc = cli(
        ["propose-seeds", "--water", str(d / "water.nii.gz"), "--fat", str(d / "fat.nii.gz"),
         "--levels", str(d / "levels.mrk.json"), "--structures", "multifidus_left", "psoas_right", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["markups"][0]["coordinateSystem"] == "LPS"
    pts = read_points(out)
    assert sorted((p.label, p.description) for p in pts) == sorted(
        (n, f"L{i}") for n in ("multifidus_left", "psoas_right") for i in range(1, 6)
    )
    rows = seed_accuracy(pts, phantom["labels"], PHANTOM_NAMES)
    assert all(r["inside"] for r in rows)


def test_deepest_part_rules() -> None:
    """Refinement target: deepest voxel of the part holding the point, capped move; None when out of reach."""
    from ParaspinalSegLib.autoseed import _deepest_part

    m = np.zeros((50, 60), bool)
    m[30:45, 30:45] = True  # 15 x 15 square: centre (37, 37)
    m[5:8, 50:58] = True  # a thin second part
    assert _deepest_part(m, (31, 31), (1.0, 1.0)) == (37, 37)
    assert _deepest_part(m, (31, 31), (1.0, 1.0), 5.0) == (34, 34)  # capped: 3*sqrt(2) mm < 5 mm
    assert _deepest_part(m, (6, 51), (1.0, 1.0))[0] == 6  # stays in its own (thin) part
    assert _deepest_part(m, (20, 36), (1.0, 1.0)) == (37, 37)  # outside the label: nearest part
    assert _deepest_part(m, (5, 5), (1.0, 1.0), 5.0) is None  # nothing within 5 mm: keep the point
    assert _deepest_part(np.zeros((9, 9), bool), (4, 4), (1.0, 1.0)) is None


def test_cli_refine(phantom, tmp_path, capsys) -> None:
    """``--refine``: points still in the right muscles and closer to their centres; bad pass count is exit 2."""
    d = phantom["dir"]
    base = ["propose-seeds", "--image", str(d / "t2w.nii.gz"), "--levels", str(d / "levels.mrk.json"),
            "--structures", "multifidus_right", "erector_spinae_right"]  # fmt: skip
    assert cli([*base, "--out", str(tmp_path / "a.mrk.json")]) == 0
    assert cli([*base, "--refine", "--out", str(tmp_path / "b.mrk.json")]) == 0
    plain = seed_accuracy(read_points(tmp_path / "a.mrk.json"), phantom["labels"], PHANTOM_NAMES)
    refined = seed_accuracy(read_points(tmp_path / "b.mrk.json"), phantom["labels"], PHANTOM_NAMES)
    assert len(refined) == 10 and all(r["inside"] for r in refined), refined
    far = lambda rows: np.median([r["to_interior_mm"] for r in rows])  # noqa: E731
    assert far(refined) < far(plain), (far(refined), far(plain))
    rc = cli([*base, "--refine", "--refine-iterations", "0", "--out", str(tmp_path / "c.mrk.json")])
    assert rc == 2 and "--refine-iterations" in capsys.readouterr().err


def test_write_proposal_roundtrip(phantom, tmp_path) -> None:
    prop = propose_seeds(phantom["t1w"], structures=["erector_spinae_left"], levels=phantom["levels"])
    path = write_proposal(tmp_path / "s.mrk.json", prop)
    back = read_points(path)
    assert [p.label for p in back] == [p.label for p in prop.points]
    assert np.allclose([p.position_lps for p in back], [p.position_lps for p in prop.points], atol=1e-5)


# ---- bad input -------------------------------------------------------------------------------------


def _volume(arr: np.ndarray, direction=None) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing((1.0, 1.0, 4.0))
    if direction is not None:
        img.SetDirection(direction)
    return img


def test_unknown_structure_is_named(phantom) -> None:
    with pytest.raises(KeyError, match="'gluteus_left'"):
        propose_seeds(phantom["t1w"], structures=["gluteus_left"])


def test_empty_and_constant_images() -> None:
    with pytest.raises(ValueError, match="empty or constant"):
        propose_seeds(_volume(np.zeros((6, 64, 64))))
    with pytest.raises(ValueError, match="empty or constant"):
        propose_seeds(_volume(np.full((6, 64, 64), 100.0)))


def test_single_slice_is_refused(phantom) -> None:
    one = phantom["t1w"][:, :, 10:11]
    with pytest.raises(ValueError, match="2D"):
        propose_seeds(one)


def test_non_axial_volume_is_refused(phantom) -> None:
    img = sitk.Image(phantom["t1w"])
    c, s = np.cos(np.radians(50)), np.sin(np.radians(50))
    img.SetDirection((1, 0, 0, 0, c, -s, 0, s, c))  # 50° oblique
    with pytest.raises(ValueError, match="oblique"):
        propose_seeds(img)


def test_structure_not_found_names_structure_and_level(phantom) -> None:
    """A field of view that ends just in front of the canal has no psoas: error naming structure and level."""
    canal = sitk.GetArrayFromImage(phantom["labels"])[15] == BY_NAME["spinal_canal"].value
    j0 = int(np.argwhere(canal)[:, 0].min()) - 5
    img = phantom["t1w"][:, j0:, :]  # rows (j) from just in front of the canal to the back
    with pytest.raises(ValueError, match=r"structure psoas_left could not be found at level L\d"):
        propose_seeds(img, structures=["multifidus_left", "psoas_left"], levels=phantom["levels"])
    prop = propose_seeds(
        img, structures=["multifidus_left", "psoas_left"], levels=phantom["levels"], allow_missing=True
    )
    assert {m["structure"] for m in prop.info["missing"]} == {"psoas_left"}
    assert len(prop.info["missing"]) == 5
    rows = seed_accuracy(prop.points, phantom["labels"], PHANTOM_NAMES)
    assert len(rows) == 5 and all(r["inside"] for r in rows)  # multifidus still found on the cropped image


def test_cli_errors(phantom, tmp_path, capsys) -> None:
    d = phantom["dir"]
    assert (
        cli(["propose-seeds", "--water", str(d / "water.nii.gz"), "--out", str(tmp_path / "x.mrk.json")]) == 2
    )
    assert "--fat is missing: --water and --fat go together" in capsys.readouterr().err
    assert (
        cli(
            ["propose-seeds", "--image", str(tmp_path / "nope.nii.gz"), "--out", str(tmp_path / "x.mrk.json")]
        )
        == 2
    )
    assert "file not found" in capsys.readouterr().err
    rc = cli(
        [
            "propose-seeds",
            "--image",
            str(d / "t1w.nii.gz"),
            "--structures",
            "psoas_middle",
            "--out",
            str(tmp_path / "x.mrk.json"),
        ]
    )
    assert rc == 2 and "psoas_middle" in capsys.readouterr().err
    assert not (tmp_path / "x.mrk.json").exists()


@pytest.mark.realdata
def test_tum01_inphase_single_image(tum01) -> None:
    """Non-Dixon path on the synthesised in-phase image (F+W, fat bright, strong coil shading): measured 14/16."""
    water, fat, labels, levels = tum01
    w = sitk.Cast(water, sitk.sitkFloat32)
    w.CopyInformation(fat)
    inphase = w + sitk.Cast(fat, sitk.sitkFloat32)
    prop = propose_seeds(inphase, structures=list(TUM01_LABEL_NAMES.values()), levels=levels)
    rows = seed_accuracy(prop.points, labels, TUM01_LABEL_NAMES)
    assert len(rows) == 16 and fraction_inside(rows) >= 0.85, [r for r in rows if not r["inside"]]


@pytest.mark.realdata
def test_totalseg_canal_vs_cord() -> None:
    """Canal centre vs TotalSegmentator's spinal-cord label (3 mm voxels, upper abdomen): measured median 3.2 mm."""
    d = "data/totalseg_mr_example/"
    img = sitk.ReadImage(str(shared_path(d + "image.nii.gz")))
    cord = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_path(d + "seg.nii.gz")))) == 21
    p = AutoSeedParams()
    maps = prepare_maps(img, False, p)
    errs = []
    for k in range(cord.shape[0]):
        if not cord[k].any():
            continue
        try:
            canal = slice_anatomy(maps, k, p).canal
        except ValueError:
            canal = None
        cj, ci = np.argwhere(cord[k]).mean(axis=0)
        errs.append(np.inf if canal is None else 3.0 * np.hypot(canal[0] - cj, canal[1] - ci))
    assert len(errs) == 20
    assert np.median(errs) < 4.0, np.round(errs, 1)
    # measured 13/20 within 10 mm: this is an upper-abdomen (T12–L1) scan, outside the lumbar design range
    assert np.mean(np.asarray(errs) < 10.0) >= 0.6, np.round(errs, 1)
