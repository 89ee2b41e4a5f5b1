"""Sample Data registration of the project's example case(s), described in Resources/SampleData.json.

The example case is the project's digital phantom. Slicer downloads the published release assets by
URL and checks each against its SHA-256: those are the bytes that were published. Where a site's
network blocks the download, the phantom is rendered locally instead (``renderedSample``). Another CPU
or numpy build need not give the same bytes, so a rendered file is never passed off as a published one:
it is checked against the summary recorded with the published data (``fileSummary``: image grid,
pixel type and markup labels exactly, positions and intensity statistics within stated tolerances),
kept in its own cache folder (``renderedFolder``) and loaded from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

#: The module folder whose Resources hold SampleData.json and the thumbnails.
_MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Intensity statistics of a rendered volume may differ from the published ones by this fraction of the
#: published 1st-99th percentile range: rounding differences between platforms move them by ~1e-7 of it,
#: while any real change of the phantom (another noise seed moves the mean by ~1e-2) is far larger.
INTENSITY_TOLERANCE = 1e-4
#: Geometry (origin, direction) and markup positions: mm (direction: unitless) between platforms.
GEOMETRY_TOLERANCE = 1e-6
POSITION_TOLERANCE_MM = 1e-3
_STATISTICS = ("mean", "std", "p01", "p50", "p99")


def sampleDataSources(moduleDir: str = _MODULE_DIR) -> list[dict]:
    """Sample Data sources (uris, fileNames, checksums, nodeNames, loadFileTypes, summaries) from
    Resources/SampleData.json."""
    path = os.path.join(moduleDir, "Resources", "SampleData.json")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["sources"]


def sha256File(path: str) -> str:
    """Hex SHA-256 of a file, as Slicer's SampleData verifies it."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fileSummary(path: str) -> dict:
    """What identifies a sample file across platforms: a volume's grid, pixel type and intensity
    statistics, or a markups file's control points (label, description, position)."""
    if path.endswith(".mrk.json"):
        with open(path, encoding="utf-8") as fh:
            markups = json.load(fh)["markups"]
        points = [p for m in markups for p in m.get("controlPoints", [])]
        return {
            "kind": "markups",
            "points": [[p["label"], p.get("description", ""), *map(float, p["position"])] for p in points],
        }
    import numpy as np
    import SimpleITK as sitk

    image = sitk.ReadImage(path)
    values = sitk.GetArrayViewFromImage(image).astype(np.float64)
    p01, p50, p99 = np.percentile(values, [1, 50, 99])
    return {
        "kind": "volume",
        "size": list(image.GetSize()),
        "pixelType": image.GetPixelIDTypeAsString(),
        "spacing": list(image.GetSpacing()),
        "origin": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "p01": float(p01),
        "p50": float(p50),
        "p99": float(p99),
    }


def summaryDifferences(got: dict, expected: dict) -> list[str]:
    """What differs between a file's summary and the published one beyond the stated tolerances."""
    if got["kind"] != expected["kind"]:
        return [f"a {got['kind']} file, published: {expected['kind']}"]
    if got["kind"] == "markups":
        names = [p[:2] for p in got["points"]]
        if names != [p[:2] for p in expected["points"]]:
            return [
                f"control points (label, description) {names}, published {[p[:2] for p in expected['points']]}"
            ]
        moved = max(
            (_largest(p[2:], q[2:]) for p, q in zip(got["points"], expected["points"], strict=True)),
            default=0,
        )
        return [f"a control point moved {moved:.3g} mm"] if moved > POSITION_TOLERANCE_MM else []
    problems = [
        f"{key} {got[key]}, published {expected[key]}"
        for key in ("size", "pixelType", "spacing")
        if got[key] != expected[key]
    ]
    problems += [
        f"{key} {got[key]}, published {expected[key]}"
        for key in ("origin", "direction")
        if _largest(got[key], expected[key]) > GEOMETRY_TOLERANCE
    ]
    scale = INTENSITY_TOLERANCE * (expected["p99"] - expected["p01"])
    problems += [
        f"intensity {key} {got[key]:.6g}, published {expected[key]:.6g} (tolerance {scale:.3g})"
        for key in _STATISTICS
        if abs(got[key] - expected[key]) > scale
    ]
    return problems


def _largest(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def renderedFolder(source: dict, cacheDir: str) -> str:
    """The cache folder of the locally rendered sample: its own key (generator and published summaries),
    never the published file names, whose checksums belong to the published bytes."""
    key = json.dumps([source["generator"], source["summaries"]], sort_keys=True)
    return os.path.join(
        cacheDir, f"{source['sampleName']}-rendered-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    )


def renderedSample(source: dict, cacheDir: str) -> list[str] | None:
    """Paths of the locally rendered sample files (in ``phantomFiles`` order), rendered into
    :func:`renderedFolder` unless already there; None when the rendering does not match the published
    summaries (this platform, or this version of the phantom, makes another case: download it instead)."""
    folder = renderedFolder(source, cacheDir)
    paths = [os.path.join(folder, name) for name in source["phantomFiles"]]
    if all(os.path.isfile(p) for p in paths) and not _differences(paths, source):
        return paths
    import shutil
    import tempfile
    from pathlib import Path

    from ParaspinalLBPCore.atomic import atomic_dir

    os.makedirs(cacheDir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ParaspinalPhantom-", dir=cacheDir) as tmp:
        case = _renderPhantom(source, tmp)
        problems = _differences([os.path.join(case, name) for name in source["phantomFiles"]], source)
        if problems:
            logging.warning(
                "%s rendered here differs from the published data: %s", source["sampleName"], problems
            )
            return None
        with atomic_dir(folder) as staging:
            for name in source["phantomFiles"]:
                shutil.move(os.path.join(case, name), Path(staging) / name)
    return paths


def _differences(paths: list[str], source: dict) -> list[str]:
    return [
        f"{os.path.basename(path)}: {problem}"
        for path, expected in zip(paths, source["summaries"], strict=True)
        for problem in summaryDifferences(fileSummary(path), expected)
    ]


def _renderPhantom(source: dict, folder: str) -> str:
    """Run ``source['generator']`` (the phantom command) in-process into ``folder``/case; returns that path."""
    import argparse

    from ParaspinalSegLib import phantom_cli

    words = source["generator"].split()
    if words[:4] != ["python", "-m", "ParaspinalSegLib", "phantom"]:
        raise ValueError(f"SampleData.json: cannot render generator {source['generator']!r}")
    parser = argparse.ArgumentParser(prog="phantom")
    phantom_cli.add_cli(parser.add_subparsers(), "phantom")
    case = os.path.join(folder, "case")
    args = parser.parse_args(["phantom", "--out", case, *words[4:]])
    args.func(args)
    return case


def _downloader(cacheDir: str | None = None):
    """SampleData customDownloader: the published files when Slicer has them cached or can download them;
    where they are not cached and the phantom can be rendered here, the checked local rendering."""

    def download(dataSource):
        import SampleData
        import slicer

        from .requirements import missingRequirements

        logic = SampleData.SampleDataLogic()
        folder = cacheDir or slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory()
        for source in sampleDataSources():
            if (
                source["sampleName"] == dataSource.sampleName
                and not all(os.path.isfile(os.path.join(folder, name)) for name in source["fileNames"])
                and not missingRequirements(["scipy", "yaml"])  # else: plain download by URL
            ):
                paths = renderedSample(source, folder)
                if paths is not None:
                    return [
                        logic.loadNode(path, name, fileType, {})
                        for path, name, fileType in zip(
                            paths, source["nodeNames"], source["loadFileTypes"], strict=True
                        )
                    ]
        return logic.downloadFromSource(dataSource)

    return download


def registerSampleData(moduleDir: str = _MODULE_DIR) -> None:
    """Add the example case(s) to Slicer's Sample Data module (published files by URL, SHA-256 checked;
    rendered and checked locally when offline)."""
    import SampleData

    resources = os.path.join(moduleDir, "Resources")
    for source in sampleDataSources(moduleDir):
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category=source["category"],
            sampleName=source["sampleName"],
            thumbnailFileName=os.path.join(resources, source["thumbnail"]),
            uris=source["uris"],
            fileNames=source["fileNames"],
            checksums=source["checksums"],
            nodeNames=source["nodeNames"],
            loadFileTypes=source["loadFileTypes"],
            customDownloader=_downloader(),
        )
