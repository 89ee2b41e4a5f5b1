"""ParaspinalSegLib.validation: the fatty validation set (phantom per grade x pattern, infiltrated TUM01 and
MuscleMap) and its scoring, on a fast subset: the truth scores perfectly, known label changes score as computed."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalLBPCore.structures import BY_NAME
from ParaspinalSegLib.phantom_params import PARASPINALS
from ParaspinalSegLib.validation import GRADE_FF, GRADE_VOLUME, fatty_cases, score_case, summary_row

FAST = {"matrix": [192, 192], "spacing_mm": [1.7, 1.7], "slices_per_level": 3, "levels": ["L4", "L5"]}
PLANE = np.zeros((3, 3, 3), bool)
PLANE[1] = ndi.generate_binary_structure(2, 1)


@pytest.fixture(scope="module")
def phantom_cases():
    return list(
        fatty_cases(sources=("phantom",), grades=(0, 3), patterns=("peripheral",), phantom_overrides=FAST)
    )


def _check_case_structure(case) -> None:
    lab = sitk.GetArrayFromImage(case.labels)
    assert set(case.label_names.values()) == set(PARASPINALS)
    assert set(np.unique(lab)) == {0, *(BY_NAME[n].value for n in PARASPINALS)}
    # one click per muscle per level, inside that muscle on a slice of that level
    assert sorted((p.label, p.description) for p in case.seeds) == sorted(
        (n, lv) for n in PARASPINALS for lv in case.levels
    )
    for p in case.seeds:
        i, j, k = case.labels.TransformPhysicalPointToIndex(tuple(float(v) for v in p.position_lps))
        k0, k1 = case.levels[p.description]
        assert k0 <= k <= k1 and lab[k, j, i] == BY_NAME[p.label].value


def test_phantom_cases_grid_and_truth_scores_perfectly(phantom_cases) -> None:
    assert [c.name for c in phantom_cases] == [
        "phantom G0 peripheral dixon", "phantom G0 peripheral single",
        "phantom G3 peripheral dixon", "phantom G3 peripheral single",
    ]  # fmt: skip
    for case in phantom_cases:
        _check_case_structure(case)
        table = score_case(case, case.labels)
        assert len(table) == 4 * 3  # 4 muscles x (2 levels + all)
        assert (table.dice == 1.0).all() and (table.volume_err_pct == 0.0).all()
        if case.contrast == "dixon":
            assert np.allclose(table.ff_err_pp, 0.0)
        else:  # the T1w-like image's own FF method against Dixon inside the same (true) outline
            assert table.ff_err_pp.abs().max() < 15.0
        assert case.levels == {"L4": (3, 5), "L5": (0, 2)}


def test_score_of_a_known_wrong_segmentation(phantom_cases) -> None:
    case = phantom_cases[2]  # grade 3, peripheral fat, Dixon
    truth = sitk.GetArrayFromImage(case.labels)
    eroded = np.zeros_like(truth)
    for value in case.label_names:
        eroded[ndi.binary_erosion(truth == value, PLANE)] = value
    table = score_case(case, eroded).set_index(["structure", "level"])
    for value, name in case.label_names.items():
        t, e = (truth == value).sum(), (eroded == value).sum()
        row = table.loc[(name, "all")]
        assert row.dice == pytest.approx(2 * e / (t + e))
        assert row.volume_err_pct == pytest.approx(100 * (e / t - 1))
        # the fat sits at the border: a label one voxel short misses it and reads far too lean
        assert row.ff_err_pp < -5.0, (name, row.ff_err_pp)
    summary = summary_row(score_case(case, eroded))
    assert summary["grade"] == 3 and summary["dice_min"] == pytest.approx(table.xs("all", level=1).dice.min())
    assert summary["ff_err_max_pp"] > 5.0 and 40.0 < summary["ff_true_mean_pct"] < 60.0


def test_bad_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown patterns"):
        next(fatty_cases(sources=("phantom",), patterns=("marbled",)))
    with pytest.raises(ValueError, match="data_dir"):
        next(fatty_cases(sources=("tum01",)))
    with pytest.raises(FileNotFoundError, match="myosegmentum_tum01"):
        next(fatty_cases("/nonexistent", sources=("tum01",)))


def test_real_cases(shared) -> None:
    data = shared("data/myosegmentum_tum01").parent
    cases = list(fatty_cases(data, sources=("tum01", "musclemap"), grades=(3,), patterns=("streaky",)))
    assert [c.name for c in cases] == ["tum01 G3 streaky dixon", "tum01 G3 streaky single",
                                       "musclemap G3 streaky single"]  # fmt: skip
    tum_dixon, tum_single, mm = cases
    for case in cases:
        _check_case_structure(case)
        assert (score_case(case, case.labels).dice == 1.0).all()
    for name in PARASPINALS:
        for lv in tum_dixon.levels:  # L2-L5
            assert tum_dixon.truth[name][lv]["ff_pct"] == pytest.approx(100 * GRADE_FF[3], abs=0.4)
        for lv in mm.levels:  # L1-L4 (four slabs)
            assert mm.truth[name][lv]["volume_fraction_pct"] == pytest.approx(100 * GRADE_VOLUME[3], abs=0.01)
    # the single image is the in-phase W + F of the same infiltrated pair
    w, f = (sitk.GetArrayFromImage(tum_dixon.inputs[k]).astype(float) for k in ("water", "fat"))
    assert np.allclose(sitk.GetArrayFromImage(tum_single.inputs), w + f, rtol=1e-5, atol=1e-3)
    # a single-image case is scored against the Dixon FF of the same voxels: the truth column is the Dixon
    # case's, the measured one is the single-image method's (its own error shows even in the true outline)
    single = score_case(tum_single, tum_single.labels)
    dixon = score_case(tum_dixon, tum_dixon.labels)
    assert np.allclose(single.ff_true_pct, dixon.ff_true_pct) and np.allclose(dixon.ff_pct, dixon.ff_true_pct)
    assert not np.allclose(single.ff_pct, single.ff_true_pct, atol=0.5)
