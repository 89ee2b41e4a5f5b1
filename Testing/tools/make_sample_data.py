"""Regenerate the Slicer Sample Data description of the project's example case (the phantom).

Writes ``ParaspinalSeg/Resources/SampleData.json`` (URIs of the GitHub release assets, local
file names, SHA-256 checksums and summaries of the files to publish, node names, Slicer file types)
and the 128×128 thumbnail ``ParaspinalSeg/Resources/Icons/ParaspinalPhantom.png`` from the phantom
``python -m ParaspinalSegLib phantom --seed 1 --levels L1-L5`` at the default parameters. Run it
whenever the phantom's output changes, bump ``RELEASE_TAG`` and upload the files of ``--assets DIR``
(named as in ``fileNames``: exactly the bytes whose checksums were recorded) to that release::

    .venv/bin/python Testing/tools/make_sample_data.py --assets /tmp/sample-data-assets
    .venv/bin/python Testing/tools/make_sample_data.py --check   # exit 1 when stale

The checksums identify the published bytes only. ``--check`` and ``Testing/test_sample_data.py`` compare
a local rendering with the recorded summaries (``ParaspinalLBPSlicer.sampledata.summaryDifferences``:
exact grid and markups, intensity statistics within a tolerance), never with the checksums: another
CPU or numpy build may round the phantom's floating point differently.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ParaspinalSeg"))
from ParaspinalLBPSlicer.sampledata import fileSummary, sha256File, summaryDifferences

REPO = Path(__file__).resolve().parents[2]
RESOURCES = REPO / "ParaspinalSeg" / "Resources"
RELEASE_TAG = "sample-data-v1"
BASE_URI = f"https://github.com/paraspinal-lbp/ParaspinalLBP/releases/download/{RELEASE_TAG}/"
SAMPLE = "ParaspinalPhantom"
PHANTOM_ARGS = ["--seed", "1", "--levels", "L1-L5"]
# (phantom output file, Slicer file type, node-name suffix)
FILES = [
    ("water.nii.gz", "VolumeFile", "water"),
    ("fat.nii.gz", "VolumeFile", "fat"),
    ("t1w.nii.gz", "VolumeFile", "T1w"),
    ("seeds.mrk.json", "MarkupsFile", "seeds"),
    ("levels.mrk.json", "MarkupsFile", "levels"),
]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file (what Slicer's SampleData verifies after download)."""
    return sha256File(str(path))


def generate_phantom(out: Path) -> Path:
    """Run the phantom CLI exactly as the sample data was made; returns the output folder."""
    cmd = [sys.executable, "-m", "ParaspinalSegLib", "phantom", "--out", str(out), *PHANTOM_ARGS]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def describe(phantom_dir: Path) -> dict:
    """The SampleData.json content for a generated phantom folder."""
    source = {
        "category": "Paraspinal LBP",
        "sampleName": SAMPLE,
        "thumbnail": f"Icons/{SAMPLE}.png",
        "generator": "python -m ParaspinalSegLib phantom " + " ".join(PHANTOM_ARGS),
        "phantomFiles": [name for name, _, _ in FILES],
        "uris": [BASE_URI + f"{SAMPLE}_{name}" for name, _, _ in FILES],
        "fileNames": [f"{SAMPLE}_{name}" for name, _, _ in FILES],
        "checksums": [f"SHA256:{sha256(phantom_dir / name)}" for name, _, _ in FILES],
        "summaries": [fileSummary(str(phantom_dir / name)) for name, _, _ in FILES],
        "nodeNames": [f"{SAMPLE}_{suffix}" for _, _, suffix in FILES],
        "loadFileTypes": [ftype for _, ftype, _ in FILES],
    }
    return {"releaseTag": RELEASE_TAG, "sources": [source]}


def thumbnail(phantom_dir: Path, out: Path, size: int = 128) -> Path:
    """128×128 PNG of the mid-L4 water slice with the muscle labels tinted (structures.py colours)."""
    import SimpleITK as sitk
    from PIL import Image

    from ParaspinalLBPCore import structures

    levels = json.loads((phantom_dir / "labels.json").read_text())["levels"]
    k = (levels["L4"][0] + levels["L4"][1]) // 2
    water = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom_dir / "water.nii.gz")))[k]
    fat = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom_dir / "fat.nii.gz")))[k]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom_dir / "labels.nii.gz")))[k]
    grey = water + fat
    grey = np.clip(grey / np.percentile(grey, 99.5), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for info in structures.MUSCLES:
        mask = labels == info.value
        rgb[mask] = 0.55 * rgb[mask] + 0.45 * np.array(info.color) / 255.0
    # crop to the body (rows/columns with signal), square, then resize
    body = np.argwhere(grey > 0.08)
    (r0, c0), (r1, c1) = body.min(axis=0), body.max(axis=0) + 1
    side = max(r1 - r0, c1 - c0)
    rc, cc = (r0 + r1) // 2, (c0 + c1) // 2
    r0, c0 = max(rc - side // 2, 0), max(cc - side // 2, 0)
    crop = rgb[r0 : r0 + side, c0 : c0 + side]
    # LPS arrays (row → posterior, column → patient left) already show the radiological convention
    image = Image.fromarray((crop * 255).astype(np.uint8)).resize((size, size), Image.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    return out


def stale_reasons(current: dict, description: dict) -> list[str]:
    """Why the recorded description no longer describes the phantom rendered here (empty: up to date).
    Checksums are left out (they identify the published bytes); summaries are compared with tolerances."""
    (recorded,), (rendered,) = current["sources"], description["sources"]
    reasons = [
        f"{key} differs"
        for key in rendered
        if key not in ("checksums", "summaries") and recorded.get(key) != rendered[key]
    ]
    if len(recorded.get("summaries", [])) != len(rendered["summaries"]):
        return [*reasons, "no summary for every file"]
    reasons += [
        f"{name}: {problem}"
        for name, got, expected in zip(
            rendered["phantomFiles"], rendered["summaries"], recorded["summaries"], strict=True
        )
        for problem in summaryDifferences(got, expected)
    ]
    return reasons


def main(argv: list[str] | None = None) -> int:
    """Generate the phantom; write SampleData.json, the thumbnail and the release assets, or --check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantom-dir", help="use an already generated phantom folder")
    parser.add_argument("--assets", help="copy the release assets (renamed as fileNames) here")
    parser.add_argument("--check", action="store_true", help="only report whether SampleData.json is stale")
    args = parser.parse_args(argv)
    if not args.check and not args.assets:
        parser.error("--assets DIR is needed: the recorded checksums are those of the files to upload")
    with tempfile.TemporaryDirectory() as tmp:
        phantom_dir = Path(args.phantom_dir) if args.phantom_dir else generate_phantom(Path(tmp) / "ph")
        description = describe(phantom_dir)
        if args.check:
            reasons = stale_reasons(json.loads((RESOURCES / "SampleData.json").read_text()), description)
            print("SampleData.json is " + (f"STALE: {reasons}" if reasons else "up to date"))
            return int(bool(reasons))
        (RESOURCES / "SampleData.json").write_text(json.dumps(description, indent=2) + "\n")
        thumbnail(phantom_dir, RESOURCES / "Icons" / f"{SAMPLE}.png")
        assets = Path(args.assets)
        assets.mkdir(parents=True, exist_ok=True)
        src = description["sources"][0]
        for name, target in zip(src["phantomFiles"], src["fileNames"], strict=True):
            shutil.copyfile(phantom_dir / name, assets / target)
    print(f"wrote {RESOURCES / 'SampleData.json'}, Icons/{SAMPLE}.png and the release assets in {assets}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
