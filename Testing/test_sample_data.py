"""Sample Data registration of the phantom example case: checksums match the phantom CLI, files load.

Real Slicer downloads the release assets and verifies them against the registered SHA-256; here
the same phantom is generated locally with the CLI (deterministic), so equal checksums prove the
code, the description and the release assets agree. The local files are then loaded into the
harness scene with the registered file types and node names (the "in tests, from local files"
path). If the phantom's output changes on purpose, run ``Testing/tools/make_sample_data.py`` and
upload new release assets.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ParaspinalLBPSlicer import sampledata

pytestmark = pytest.mark.slicer

REPO = Path(__file__).resolve().parents[1]
N_MUSCLES, LEVELS = 8, ["L1", "L2", "L3", "L4", "L5"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory) -> Path:
    """The example case generated locally exactly as the description says."""
    source = json.loads((REPO / "ParaspinalSeg/Resources/SampleData.json").read_text())["sources"][0]
    out = tmp_path_factory.mktemp("sample") / "phantom"
    args = source["generator"].split()[3:]  # after "python -m ParaspinalSegLib"
    cmd = [sys.executable, "-m", "ParaspinalSegLib", *args, "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    return out


def test_checksums_match_local_phantom(phantom_dir: Path) -> None:
    sources = sampledata.sampleDataSources()
    assert [s["sampleName"] for s in sources] == ["ParaspinalPhantom"]
    src = sources[0]
    n = len(src["uris"])
    assert n == 5
    for key in ("fileNames", "checksums", "nodeNames", "loadFileTypes", "phantomFiles"):
        assert len(src[key]) == n, key
    assert src["category"] == "Paraspinal LBP"
    base = "https://github.com/paraspinal-lbp/ParaspinalLBP/releases/download/sample-data-v1/"
    for uri, name in zip(src["uris"], src["fileNames"], strict=True):
        assert uri == base + name
    assert len(set(src["fileNames"])) == n and len(set(src["nodeNames"])) == n
    for phantom_file, checksum in zip(src["phantomFiles"], src["checksums"], strict=True):
        algo, digest = checksum.split(":")
        assert algo == "SHA256" and len(digest) == 64
        assert digest == _sha256(phantom_dir / phantom_file), (
            f"{phantom_file}: phantom output changed; rerun Testing/tools/make_sample_data.py "
            "and upload new release assets"
        )


def test_registration_call(slicer_module) -> None:
    """registerSampleData passes every field with the keyword names of Slicer's SampleDataLogic."""
    module = slicer_module("ParaspinalSeg")
    calls = []

    # SampleData needs Qt; this stand-in has the exact signature of Slicer 5.8+
    # SampleDataLogic.registerCustomSampleDataSource, so a wrong keyword fails here.
    def registerCustomSampleDataSource(
        category="Custom",
        sampleName=None,
        uris=None,
        fileNames=None,
        nodeNames=None,
        customDownloader=None,
        thumbnailFileName=None,
        loadFileTypes=None,
        loadFiles=None,
        loadFileProperties=None,
        checksums=None,
        loadFileType=None,
    ):
        calls.append(dict(locals()))

    fake = types.ModuleType("SampleData")
    fake.SampleDataLogic = types.SimpleNamespace(
        registerCustomSampleDataSource=registerCustomSampleDataSource
    )
    sys.modules["SampleData"] = fake
    try:
        module.registerSampleData()
    finally:
        del sys.modules["SampleData"]
    assert len(calls) == 1
    call, src = calls[0], sampledata.sampleDataSources()[0]
    for key in ("uris", "fileNames", "checksums", "nodeNames", "loadFileTypes"):
        assert call[key] == src[key]
    assert callable(call["customDownloader"])  # offline fallback, tested below
    thumb = Path(call["thumbnailFileName"])
    assert thumb.is_file()
    from PIL import Image

    with Image.open(thumb) as im:
        assert im.size == (128, 128)
    text = (REPO / "ParaspinalSeg/ParaspinalSeg.py").read_text()
    assert 'slicer.app.connect("startupCompleted()", registerSampleData)' in text


def test_load_local_files(slicer_scene, slicer_module, phantom_dir: Path) -> None:
    """Load the local copies with the registered file types/names: volumes share the phantom grid."""
    slicer = slicer_scene
    src = sampledata.sampleDataSources()[0]
    nodes = {}
    for phantom_file, ftype, name in zip(
        src["phantomFiles"], src["loadFileTypes"], src["nodeNames"], strict=True
    ):
        node = slicer.util.loadNodeFromFile(str(phantom_dir / phantom_file), ftype, {"name": name})
        node.SetName(name)  # Slicer's markups reader names from the file; SampleData renames likewise
        nodes[name] = node
    water, fat, t1w = (nodes[f"ParaspinalPhantom_{s}"] for s in ("water", "fat", "T1w"))
    for vol in (water, fat, t1w):
        assert vol.IsA("vtkMRMLScalarVolumeNode")
    import SimpleITK as sitk

    ref = sitk.ReadImage(str(phantom_dir / "water.nii.gz"))
    arr = slicer.util.arrayFromVolume(water)
    assert arr.shape == ref.GetSize()[::-1]
    np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(ref))
    assert slicer.util.arrayFromVolume(fat).shape == arr.shape == slicer.util.arrayFromVolume(t1w).shape
    np.testing.assert_allclose(water.GetSpacing(), ref.GetSpacing(), rtol=1e-6)
    seeds, levels = nodes["ParaspinalPhantom_seeds"], nodes["ParaspinalPhantom_levels"]
    assert seeds.IsA("vtkMRMLMarkupsFiducialNode") and levels.IsA("vtkMRMLMarkupsFiducialNode")
    assert seeds.GetNumberOfControlPoints() == N_MUSCLES * len(LEVELS)
    assert [levels.GetNthControlPointLabel(i) for i in range(levels.GetNumberOfControlPoints())] == LEVELS
    # Each level landmark lies inside the volume, on the slice range labels.json gives for it.
    truth = json.loads((phantom_dir / "labels.json").read_text())["levels"]
    import vtk

    m = vtk.vtkMatrix4x4()
    water.GetRASToIJKMatrix(m)
    ras_to_ijk = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    for i, lv in enumerate(LEVELS):
        ras = np.array([*levels.GetNthControlPointPosition(i), 1.0])
        k = int(np.rint((ras_to_ijk @ ras)[2]))
        assert truth[lv][0] <= k <= truth[lv][1], (lv, k, truth[lv])


def test_offline_render_fills_slicer_cache(slicer_module, tmp_path: Path) -> None:
    """Without network, the Sample Data button renders the phantom into Slicer's download cache: every
    registered file arrives under its registered name with the registered SHA-256 (Slicer's SampleData
    reuses cached files whose checksum matches), then Slicer's own loader is called with the source."""
    src = sampledata.sampleDataSources()[0]
    cache = tmp_path / "RemoteIO"
    loaded = []

    class Logic:  # stand-in for SampleData.SampleDataLogic (needs Qt); records what Slicer would load
        def downloadFromSource(self, dataSource):
            loaded.append(dataSource)
            return [cache / name for name in src["fileNames"]]

    fake = types.ModuleType("SampleData")
    fake.SampleDataLogic = Logic
    sys.modules["SampleData"] = fake
    try:
        dataSource = types.SimpleNamespace(sampleName=src["sampleName"])
        paths = sampledata._downloader(str(cache))(dataSource)
    finally:
        del sys.modules["SampleData"]
    assert loaded == [dataSource]
    for path, checksum in zip(paths, src["checksums"], strict=True):
        assert path.is_file(), path
        assert "SHA256:" + _sha256(path) == checksum, path.name
    assert not list(cache.glob("*.part"))
    with pytest.raises(ValueError, match="cannot render generator"):
        sampledata.renderSampleIntoCache({**src, "generator": "curl http://x"}, str(cache))
