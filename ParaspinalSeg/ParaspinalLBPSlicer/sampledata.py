"""Sample Data registration of the project's example case(s), described in Resources/SampleData.json."""

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


def registerSampleData(moduleDir: str = _MODULE_DIR) -> None:
    """Add the example case(s) to Slicer's Sample Data module (downloaded by URL, checked by SHA-256)."""
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
        )
