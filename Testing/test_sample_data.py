"""Sample Data registration of the phantom example case: the description matches the phantom CLI, files load,
and the offline fallback renders, checks and loads the phantom from its own cache folder.

Real Slicer downloads the release assets and verifies their SHA-256: the checksums identify the bytes
that were published, so here they are only checked for form. A phantom rendered here may round its
floating point differently from the machine that made the release, so it is compared with the summaries
recorded for the published files (exact grid, pixel type and markup labels; intensity statistics and
positions within the tolerances of ``sampledata``), never with the checksums. The local files are then
loaded into the harness scene with the registered file types and node names. If the phantom's output
changes on purpose, run ``Testing/tools/make_sample_data.py`` and upload new release assets.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ParaspinalLBPCore.structures import LEVELS as ALL_LEVELS
from ParaspinalLBPCore.structures import MUSCLE_NAMES
from ParaspinalLBPSlicer import sampledata

pytestmark = pytest.mark.slicer

REPO = Path(__file__).resolve().parents[1]
N_MUSCLES, LEVELS = 8, ["L1", "L2", "L3", "L4", "L5"]


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory) -> Path:
    """The example case generated locally exactly as the description says."""
    source = json.loads((REPO / "ParaspinalSeg/Resources/SampleData.json").read_text())["sources"][0]
    out = tmp_path_factory.mktemp("sample") / "phantom"
    args = source["generator"].split()[3:]  # after "python -m ParaspinalSegLib"
    cmd = [sys.executable, "-m", "ParaspinalSegLib", *args, "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    return out


def test_description_matches_local_phantom(phantom_dir: Path) -> None:
    sources = sampledata.sampleDataSources()
    assert [s["sampleName"] for s in sources] == ["ParaspinalPhantom"]
    src = sources[0]
    n = len(src["uris"])
    assert n == 5
    for key in ("fileNames", "checksums", "nodeNames", "loadFileTypes", "phantomFiles", "summaries"):
        assert len(src[key]) == n, key
    assert src["category"] == "Paraspinal LBP"
    base = "https://github.com/paraspinal-lbp/ParaspinalLBP/releases/download/sample-data-v1/"
    for uri, name in zip(src["uris"], src["fileNames"], strict=True):
        assert uri == base + name
    assert len(set(src["fileNames"])) == n and len(set(src["nodeNames"])) == n
    for checksum in src["checksums"]:  # the published bytes: checked by Slicer after download
        assert re.fullmatch(r"SHA256:[0-9a-f]{64}", checksum), checksum
    for phantom_file, recorded in zip(src["phantomFiles"], src["summaries"], strict=True):
        differences = sampledata.summaryDifferences(
            sampledata.fileSummary(str(phantom_dir / phantom_file)), recorded
        )
        assert not differences, (
            f"{phantom_file}: phantom output changed ({differences}); rerun Testing/tools/make_sample_data.py "
            "and upload new release assets"
        )
    # What the summaries promise: Dixon + T1w on one 320 x 320 x 30 grid, one seed per muscle and level
    volumes = [s for s in src["summaries"] if s["kind"] == "volume"]
    assert len(volumes) == 3 and all(
        v["size"] == [320, 320, 30] and v["spacing"] == [1.0, 1.0, 4.0] for v in volumes
    )
    seeds, levels = (s["points"] for s in src["summaries"] if s["kind"] == "markups")
    assert sorted((label, level) for label, level, *_ in seeds) == sorted(
        (m, lv) for m in MUSCLE_NAMES for lv in LEVELS
    )
    assert [label for label, *_ in levels] == LEVELS == list(ALL_LEVELS)


def test_summary_check_accepts_rounding_and_refuses_another_case(phantom_dir: Path, tmp_path: Path) -> None:
    """The rendered-data check: every voxel one float32 ulp off (another platform's rounding) passes; the
    same image 1 % brighter, on another grid or with a seed renamed does not, and the message says why."""
    import SimpleITK as sitk

    src = sampledata.sampleDataSources()[0]
    recorded = dict(zip(src["phantomFiles"], src["summaries"], strict=True))
    water = sitk.ReadImage(str(phantom_dir / "water.nii.gz"))
    values = sitk.GetArrayFromImage(water)

    def summary_of(array: np.ndarray, name: str) -> dict:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(water.GetSpacing())
        image.SetOrigin(water.GetOrigin())
        image.SetDirection(water.GetDirection())
        sitk.WriteImage(image, str(tmp_path / name))
        return sampledata.fileSummary(str(tmp_path / name))

    ulp = summary_of(np.nextafter(values, np.float32(np.inf)), "ulp.nii.gz")
    assert sampledata.summaryDifferences(ulp, recorded["water.nii.gz"]) == []
    brighter = sampledata.summaryDifferences(
        summary_of(values * np.float32(1.01), "b.nii.gz"), recorded["water.nii.gz"]
    )
    assert (
        brighter and all(d.startswith("intensity ") for d in brighter) and any("mean" in d for d in brighter)
    )
    cropped = sampledata.summaryDifferences(
        summary_of(values[:, 1:, :], "c.nii.gz"), recorded["water.nii.gz"]
    )
    assert cropped[0] == "size [320, 319, 30], published [320, 320, 30]"
    seeds = json.loads((phantom_dir / "seeds.mrk.json").read_text())
    seeds["markups"][0]["controlPoints"][0]["label"] = "psoas_left"
    (tmp_path / "seeds.mrk.json").write_text(json.dumps(seeds))
    renamed = sampledata.summaryDifferences(
        sampledata.fileSummary(str(tmp_path / "seeds.mrk.json")), recorded["seeds.mrk.json"]
    )
    assert len(renamed) == 1 and renamed[0].startswith("control points (label, description)")
    seeds["markups"][0]["controlPoints"][0]["label"] = recorded["seeds.mrk.json"]["points"][0][0]
    seeds["markups"][0]["controlPoints"][0]["position"][0] += 0.5
    (tmp_path / "seeds.mrk.json").write_text(json.dumps(seeds))
    moved = sampledata.summaryDifferences(
        sampledata.fileSummary(str(tmp_path / "seeds.mrk.json")), recorded["seeds.mrk.json"]
    )
    assert moved == ["a control point moved 0.5 mm"]


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


def test_offline_render_loads_the_checked_phantom_from_its_own_cache(slicer_scene, tmp_path: Path) -> None:
    """Without the published files in Slicer's cache, the Sample Data button renders the phantom into the
    sample's own cache folder (not under the published file names, whose checksums are the published
    bytes'), checks it against the published summaries and loads it with the registered node names and
    file types; a second press reuses it. Published files in the cache go to Slicer's checked download."""
    slicer = slicer_scene
    src = sampledata.sampleDataSources()[0]
    cache = tmp_path / "RemoteIO"
    downloads, loads = [], []

    class Logic:  # stand-in for SampleData.SampleDataLogic (needs Qt): loads as its loadNode does
        def downloadFromSource(self, dataSource):
            downloads.append(dataSource)
            return []

        def loadNode(self, uri, name, fileType="VolumeFile", fileProperties=None):
            loads.append((uri, name, fileType))
            node = slicer.util.loadNodeFromFile(uri, fileType, {**(fileProperties or {}), "name": name})
            node.SetName(name)  # the harness's markups reader names from the file; Slicer's uses "name"
            return node

    fake = types.ModuleType("SampleData")
    fake.SampleDataLogic = Logic
    sys.modules["SampleData"] = fake
    try:
        dataSource = types.SimpleNamespace(sampleName=src["sampleName"])
        nodes = sampledata._downloader(str(cache))(dataSource)
        folder = Path(sampledata.renderedFolder(src, str(cache)))
        stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
        again = sampledata._downloader(str(cache))(dataSource)
        assert {
            p.name: p.stat().st_mtime_ns for p in folder.iterdir()
        } == stamps  # reused, not rendered again
        for name in src["fileNames"]:
            (cache / name).write_bytes(b"")  # the published files' places taken: Slicer's own download path
        assert sampledata._downloader(str(cache))(dataSource) == [] and downloads == [dataSource]
    finally:
        del sys.modules["SampleData"]
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [folder.name]  # no stray staging folders
    assert sorted(p.name for p in folder.iterdir()) == sorted(src["phantomFiles"])
    assert [(Path(uri).name, name, ftype) for uri, name, ftype in loads[:5]] == list(
        zip(src["phantomFiles"], src["nodeNames"], src["loadFileTypes"], strict=True)
    )
    assert [n.GetName() for n in nodes] == src["nodeNames"] and len(again) == 5
    water = slicer.util.arrayFromVolume(nodes[0])
    assert water.shape == (30, 320, 320)
    assert abs(float(water.mean()) - src["summaries"][0]["mean"]) < 1e-3
    assert nodes[3].GetNumberOfControlPoints() == N_MUSCLES * len(LEVELS)
    with pytest.raises(ValueError, match="cannot render generator"):
        sampledata.renderedSample({**src, "generator": "curl http://x"}, str(tmp_path / "other"))


def test_rendering_that_differs_from_the_published_data_is_not_used(tmp_path: Path) -> None:
    """A rendering that does not match the published summaries (here: the summaries of another release) is
    refused and leaves nothing in the cache, so the Sample Data button downloads the published files."""
    src = sampledata.sampleDataSources()[0]
    other = [dict(s, mean=s["mean"] * 1.05) if s["kind"] == "volume" else s for s in src["summaries"]]
    cache = tmp_path / "RemoteIO"
    assert sampledata.renderedSample({**src, "summaries": other}, str(cache)) is None
    assert list(cache.iterdir()) == []
