"""Cohort batch: same values as per-case extraction, resume, failure isolation, processes and Dask, CLI."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from ParaspinalRadiomicsLib.batch import Batch, read_manifest
from ParaspinalRadiomicsLib.cli import main
from ParaspinalRadiomicsLib.extraction import extract_case
from ParaspinalRadiomicsLib.tables import read_features

logging.getLogger("radiomics").setLevel(logging.ERROR)
PARAMS = {
    "featureClass": {"shape": [], "firstorder": [], "glcm": []},
    "setting": {"binWidth": 10, "normalize": True, "normalizeScale": 100},
}
NAMES = {"1": "multifidus_left", "2": "multifidus_right", "3": "psoas_left"}
LEVELS = {"L4": [0, 4], "L5": [5, 9]}


def _write_case(folder: Path, seed: int) -> None:
    """Small synthetic case: image, label map and C1 labels.json beside it."""
    rng = np.random.default_rng(seed)
    shape = (10, 40, 40)
    img = rng.normal(100, 15, shape).astype(np.float32)
    lab = np.zeros(shape, np.uint8)
    lab[:, 8 : 18 + seed % 3, 8:18] = 1
    lab[:, 8:18, 22 : 32 + seed % 2] = 2
    lab[1:9, 24:34, 12:28] = 3
    img[lab == 3] += 30
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(img)
    image.SetSpacing((1.0, 1.0, 4.0))
    labels = sitk.GetImageFromArray(lab)
    labels.CopyInformation(image)
    sitk.WriteImage(image, str(folder / "image.nii.gz"))
    sitk.WriteImage(labels, str(folder / "labels.nii.gz"))
    (folder / "labels.json").write_text(json.dumps({"labels": NAMES, "levels": LEVELS}))


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    rows = []
    for i in range(4):
        _write_case(tmp_path / f"c{i}", i)
        rows.append({"case_id": f"case{i}", "image": f"c{i}/image.nii.gz", "labels": f"c{i}/labels.nii.gz"})
    pd.DataFrame(rows).to_csv(tmp_path / "cohort.csv", index=False)
    return tmp_path


def _expected(folder: Path, case_id: str) -> pd.DataFrame:
    image = sitk.ReadImage(str(folder / "image.nii.gz"))
    labels = sitk.ReadImage(str(folder / "labels.nii.gz"))
    names = {int(k): v for k, v in NAMES.items()}
    levels = {k: tuple(v) for k, v in LEVELS.items()}
    return extract_case(image, labels, names, PARAMS, levels=levels, per_level=True, case_id=case_id)


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, exact: bool) -> None:
    """Same rows, statuses and features. ``exact`` only for the same computation in this process; tables
    made in other processes or threads agree to 1e-12 relative (see test_process_pool_and_dask...)."""
    a = a.reset_index(drop=True)
    b = b.reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    assert a[["case_id", "structure", "level", "status"]].equals(
        b[["case_id", "structure", "level", "status"]]
    )
    feats = [c for c in a.columns if c.startswith("original_")]
    if exact:
        np.testing.assert_array_equal(a[feats].to_numpy(float), b[feats].to_numpy(float))
    else:
        np.testing.assert_allclose(a[feats].to_numpy(float), b[feats].to_numpy(float), rtol=1e-12, atol=0)


def test_batch_equals_per_case_extraction_and_resumes(cohort: Path):
    out = cohort / "features.csv"
    batch = Batch(cohort / "cohort.csv", PARAMS, out, per_level=True)
    res = batch.run(jobs=1, show_progress=False)
    assert (res.n_cases, res.n_run, res.n_failed) == (4, 4, 0)
    table = read_features(out)
    assert len(table) == 4 * 3 * 3  # cases x structures x (all + 2 levels)
    expected = pd.concat([_expected(cohort / f"c{i}", f"case{i}") for i in range(4)], ignore_index=True)
    # exact: the same extraction in this process, and floats survive the CSV round trip unchanged
    _assert_same(table, expected, exact=True)
    assert json.loads(Path(f"{out}.json").read_text())["settings_hash"] == table.settings_hash.iloc[0]
    # re-run: nothing to do
    res = Batch(cohort / "cohort.csv", PARAMS, out, per_level=True).run(show_progress=False)
    assert (res.n_run, res.n_skipped) == (0, 4)
    # an input changes -> only that case runs again; settings change -> all run again
    lab = cohort / "c2" / "labels.nii.gz"
    os.utime(lab, ns=(lab.stat().st_atime_ns, lab.stat().st_mtime_ns + 10**9))
    res = Batch(cohort / "cohort.csv", PARAMS, out, per_level=True).run(show_progress=False)
    assert (res.n_run, res.n_skipped) == (1, 3)
    res = Batch(cohort / "cohort.csv", PARAMS, out, per_level=False).run(show_progress=False)
    assert res.n_run == 4 and len(read_features(out)) == 4 * 3


def test_failing_case_is_recorded_and_others_go_on(cohort: Path):
    (cohort / "c1" / "image.nii.gz").write_bytes(b"corrupt")
    out = cohort / "features.csv"
    res = Batch(cohort / "cohort.csv", PARAMS, out).run(show_progress=False)
    assert (res.n_run, res.n_failed) == (4, 1)
    table = read_features(out)
    bad = table[table.case_id == "case1"]
    assert len(bad) == 1 and bad.status.iloc[0] == "error"
    assert "image.nii.gz" in bad.reason.iloc[0] and "case failed" in bad.reason.iloc[0]
    assert (table[table.case_id != "case1"].status == "ok").all()
    # recorded errors are not retried unless asked (inputs unchanged) ...
    assert Batch(cohort / "cohort.csv", PARAMS, out).run(show_progress=False).n_run == 0
    # ... and a fixed input is picked up
    _write_case(cohort / "c1", 1)
    res = Batch(cohort / "cohort.csv", PARAMS, out).run(show_progress=False)
    assert (res.n_run, res.n_failed) == (1, 0)
    assert (read_features(out).status == "ok").all()


def test_process_pool_and_dask_cluster_give_identical_tables(cohort: Path):
    """Local processes and a Dask cluster (workers as threads, cold parameter cache) give the serial table.

    This test failed once with differing feature values. Cause: normalisation was made single-threaded by
    setting SimpleITK's process-wide default thread count around ``Normalize`` and restoring it after; with
    Dask workers as threads of one process, one thread's restore could land while another was about to
    normalise, whose statistics were then summed multi-threaded in a scheduling-dependent order (last-bit
    differences, ~1e-15 relative in features). The save/set/restore is under a lock now (see
    test_normalisation_single_threaded_in_concurrent_threads). Values are compared to 1e-12 relative, not
    bit for bit: workers in other processes need not share this process's numeric environment (a Dask
    nanny sets OMP/OPENBLAS_NUM_THREADS=1 in its workers; BLAS kernels depend on thread counts).
    """
    from distributed import LocalCluster

    from ParaspinalRadiomicsLib import batch

    ref = cohort / "ref.csv"
    Batch(cohort / "cohort.csv", PARAMS, ref).run(jobs=1, show_progress=False)
    pool = cohort / "pool.csv"
    assert Batch(cohort / "cohort.csv", PARAMS, pool).run(jobs=2, show_progress=False).n_failed == 0
    _assert_same(read_features(pool), read_features(ref), exact=False)
    params = cohort / "p.yaml"
    params.write_text(json.dumps(PARAMS))
    dask_out = cohort / "dask.csv"
    batch._PARAMS_CACHE.clear()  # both worker threads build their extractor at once (parser lock)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        # the CLI path users take: --scheduler ADDRESS
        rc = main(
            [
                "batch",
                "--manifest",
                str(cohort / "cohort.csv"),
                "--params",
                str(params),
                "--out",
                str(dask_out),
                "--scheduler",
                cluster.scheduler_address,
            ]
        )
        assert rc == 0
    _assert_same(read_features(dask_out), read_features(ref), exact=False)


@pytest.fixture
def many_sitk_threads() -> Iterator[int]:
    """SimpleITK's process-wide default at 8 threads (where its Normalize is non-deterministic), restored."""
    n = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(8)
    yield 8
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


def test_normalisation_single_threaded_in_concurrent_threads(cohort: Path, many_sitk_threads: int):
    """Normalisation in two threads at once equals pyradiomics' single-threaded one bit for bit (the same
    computation on the same image in this process: deterministic once single-threaded), and leaves the
    process-wide thread default as it was (the unlocked save/set/restore left it at 1 after two threads
    overlapped: a restore can land inside another thread's normalisation)."""
    from radiomics import imageoperations

    from ParaspinalRadiomicsLib.extraction import load_params, prepare_image

    rp = load_params(PARAMS)
    image = sitk.ReadImage(str(cohort / "c0" / "image.nii.gz"))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    ref = sitk.GetArrayFromImage(imageoperations.normalizeImage(image, **rp.settings))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(many_sitk_threads)
    differing = [0, 0]

    def work(t: int) -> None:
        for _ in range(100):
            out = sitk.GetArrayFromImage(prepare_image(image, rp).image)
            differing[t] += not np.array_equal(out, ref)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert differing == [0, 0]
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == many_sitk_threads


def test_parameters_load_in_concurrent_threads(tmp_path: Path):
    """Four threads loading parameters at once all succeed (pykwalify's YAML parser is shared and not
    thread-safe: unserialised, 19 of 50 two-thread tries raised IndexError/ComposerError)."""
    from ParaspinalRadiomicsLib.extraction import load_params

    path = tmp_path / "p.yaml"
    path.write_text("setting:\n  binWidth: 10\nfeatureClass:\n  firstorder:\n")
    errors: list[str] = []

    def work() -> None:
        for source in (PARAMS, path, "protocol-mri"):
            try:
                load_params(source)
            except Exception as exc:  # any failure is the finding
                errors.append(repr(exc))

    for _ in range(10):
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_manifest_errors_name_the_line(tmp_path: Path):
    m = tmp_path / "m.csv"
    m.write_text("case_id,image,labels\na,x.nii,y.nii\na,x.nii,y.nii\n")
    with pytest.raises(ValueError, match=r"line 3: duplicate case_id 'a'"):
        read_manifest(m)
    m.write_text("case_id,image\na,x.nii\n")
    with pytest.raises(ValueError, match="missing column"):
        read_manifest(m)


def test_cli_extract_and_batch(cohort: Path, capsys):
    out = cohort / "one.csv"
    rc = main(
        [
            "extract",
            "--image",
            str(cohort / "c0/image.nii.gz"),
            "--labels",
            str(cohort / "c0/labels.nii.gz"),
            "--params",
            "protocol-mri",
            "--out",
            str(out),
            "--per-level",
            "--case-id",
            "case0",
            "--structures",
            "multifidus_left,psoas_left",
        ]
    )
    assert rc == 0
    table = read_features(out)
    assert set(table.structure) == {"multifidus_left", "psoas_left"} and set(table.level) == {
        "all",
        "L4",
        "L5",
    }
    assert (table.status == "ok").all() and "original_gldm_DependenceEntropy" in table.columns
    bad = cohort / "bad.yaml"
    bad.write_text("setting:\n  binWidth: 5\n  normalise: true\n")
    rc = main(["batch", "--manifest", str(cohort / "cohort.csv"), "--params", str(bad), "--out", str(out)])
    assert rc == 2 and "Key 'normalise' was not defined" in capsys.readouterr().err
    params = cohort / "p.yaml"
    params.write_text(json.dumps(PARAMS))  # JSON is valid YAML
    rc = main(
        [
            "batch",
            "--manifest",
            str(cohort / "cohort.csv"),
            "--params",
            str(params),
            "--out",
            str(cohort / "b.csv"),
            "--jobs",
            "1",
        ]
    )
    assert rc == 0 and len(read_features(cohort / "b.csv")) == 4 * 3
