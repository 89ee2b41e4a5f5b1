"""Headless ParaspinalRadiomics: pyradiomics features of every segment of one case, no GUI.

Loads the image and the segmentation (e.g. ParaspinalSeg's ``segmentation.seg.nrrd``) into the
MRML scene with ``slicer.util``, runs ``ParaspinalRadiomicsLogic.extract`` and writes the feature
table (contract C5: one row per case × structure × level, full precision) to ``--out``::

    Slicer --no-main-window --python-script \\
        ParaspinalRadiomics/Resources/Scripts/paraspinalradiomics_headless.py -- \\
        --image water.nii.gz --segmentation out/P0001/segmentation.seg.nrrd \\
        --preset protocol-mri --case-id P0001 --out out/P0001/features.csv

    # per vertebral level slabs (needs the L1..L5 landmarks), only some feature classes:
    ... -- --image t1w.nii.gz --segmentation seg.seg.nrrd --levels levels.mrk.json --per-level \\
        --classes firstorder shape --out features.csv

``--preset`` is a preset name (``protocol-mri``, ``ibsi-like``) or a pyradiomics parameter YAML.
Exit status 0 on success, 2 on bad input (the message names the file or structure). Also runs
through the slicer-core test harness by calling :func:`main` with the argument list.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import slicer

from ParaspinalLBPSlicer import headless


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (everything after ``--`` on Slicer's command line)."""
    p = argparse.ArgumentParser(prog="paraspinalradiomics_headless", description=__doc__.splitlines()[0])
    p.add_argument("--image", required=True, help="image volume (NIfTI, NRRD, …)")
    p.add_argument("--segmentation", required=True, help="segmentation (.seg.nrrd) on the image grid")
    p.add_argument("--preset", default="protocol-mri", help="preset name or parameter YAML")
    p.add_argument("--classes", nargs="+", help="feature classes to keep (e.g. firstorder shape glcm)")
    p.add_argument("--levels", help="level landmarks L1..L5 (.mrk.json), needed for --per-level")
    p.add_argument("--per-level", action="store_true", help="also one row per level slab")
    p.add_argument("--no-per-side", action="store_true", help="merge left and right structures")
    p.add_argument("--case-id", default="", help="case identifier (default: image file name)")
    p.add_argument("--out", required=True, help="output features.csv")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    """Load, extract, save; returns the written CSV path."""
    import ParaspinalRadiomics

    caseId = args.case_id or Path(args.image).name.split(".")[0]
    volume = headless.loadNode("image", args.image, slicer.util.loadVolume, caseId)
    seg = headless.loadNode("segmentation", args.segmentation, slicer.util.loadSegmentation, "Segmentation")
    levels = headless.loadNode("levels", args.levels, slicer.util.loadMarkups, "levels")
    table = ParaspinalRadiomics.ParaspinalRadiomicsLogic().extract(
        volume,
        seg,
        params=args.preset,
        featureClasses=args.classes,
        levelsNode=levels,
        perLevel=args.per_level,
        perSide=not args.no_per_side,
        caseId=caseId,
    )
    return headless.saveTableCsv(table, Path(args.out), integerColumns=("n_voxels",))


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default: the arguments after ``--``), run, return the exit status."""
    return headless.runScript("paraspinalradiomics_headless", parse_args, run, argv)


if __name__ == "__main__":
    headless.runAsScript(main)
