"""Sample Data registration of the project's example case(s), described in Resources/SampleData.json.

The example case is the project's deterministic digital phantom, so it never depends on the
network alone: Slicer downloads it from the release assets by URL (checked by SHA-256), and when
a site's network blocks that, the same bytes are rendered locally into Slicer's download cache
first (``renderSampleIntoCache``) — Slicer's SampleData reuses cached files whose checksum matches.
"""

from __future__ import annotations

import json
import os

#: The module folder whose Resources hold SampleData.json and the thumbnails.
_MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sampleDataSources(moduleDir: str = _MODULE_DIR) -> list[dict]:
    """Sample Data sources (uris, fileNames, checksums, nodeNames, loadFileTypes) from Resources/SampleData.json."""
    path = os.path.join(moduleDir, "Resources", "SampleData.json")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["sources"]


def sha256File(path: str) -> str:
    """Hex SHA-256 of a file, as Slicer's SampleData verifies it."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def renderSampleIntoCache(source: dict, cacheDir: str) -> list[str]:
    """Render ``source['generator']`` (the phantom command) in-process and copy every output whose
    SHA-256 equals the registered checksum into ``cacheDir`` under its registered file name.

    Returns the file names now in the cache. A file whose bytes differ (another platform's
    floating point) is left out, so Slicer downloads that one by URL as usual.
    """
    import argparse
    import shutil
    import tempfile

    from ParaspinalSegLib import phantom_cli

    words = source["generator"].split()
    if words[:4] != ["python", "-m", "ParaspinalSegLib", "phantom"]:
        raise ValueError(f"SampleData.json: cannot render generator {source['generator']!r}")
    os.makedirs(cacheDir, exist_ok=True)
    cached = []
    with tempfile.TemporaryDirectory(prefix="ParaspinalPhantom-") as tmp:
        parser = argparse.ArgumentParser(prog="phantom")
        phantom_cli.add_cli(parser.add_subparsers(), "phantom")
        args = parser.parse_args(["phantom", "--out", os.path.join(tmp, "case"), *words[4:]])
        args.func(args)
        for phantomFile, fileName, checksum in zip(
            source["phantomFiles"], source["fileNames"], source["checksums"], strict=True
        ):
            rendered = os.path.join(tmp, "case", phantomFile)
            if checksum.split(":", 1)[1].lower() != sha256File(rendered):
                continue
            target = os.path.join(cacheDir, fileName)
            shutil.copyfile(rendered, target + ".part")
            os.replace(target + ".part", target)
            cached.append(fileName)
    return cached


def _downloader(cacheDir: str | None = None):
    """SampleData customDownloader: fill the cache locally where it is empty, then let Slicer load."""

    def download(dataSource):
        import SampleData
        import slicer

        from .requirements import missingRequirements

        folder = cacheDir or slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory()
        for source in sampleDataSources():
            if (
                source["sampleName"] == dataSource.sampleName
                and not missingRequirements(["scipy", "yaml"])  # else: plain download by URL
                and not all(os.path.isfile(os.path.join(folder, name)) for name in source["fileNames"])
            ):
                renderSampleIntoCache(source, folder)
        return SampleData.SampleDataLogic().downloadFromSource(dataSource)

    return download


def registerSampleData(moduleDir: str = _MODULE_DIR) -> None:
    """Add the example case(s) to Slicer's Sample Data module (by URL, SHA-256 checked; rendered offline)."""
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
