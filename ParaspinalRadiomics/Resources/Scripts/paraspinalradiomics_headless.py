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
import sys
from pathlib import Path

import slicer


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


def _load(option: str, path: str | None, loader, name: str):
    """Load a file with slicer.util; FileNotFoundError names the option."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"--{option}: file not found: {path}")
    node = loader(str(path))
    if node is None:
        raise ValueError(f"--{option}: Slicer could not load {path}")
    node.SetName(name)
    return node


def save_table_csv(tableNode, path: Path, integer_columns=()) -> Path:
    """Write a table node as CSV at full precision with empty cells for missing text (atomic)."""
    import pandas as pd

    df = slicer.util.dataframeFromTable(tableNode)
    for column in integer_columns:
        if column in df.columns:
            df[column] = pd.to_numeric(df[column], errors="coerce").round().astype("Int64")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def run(args: argparse.Namespace) -> Path:
    """Load, extract, save; returns the written CSV path."""
    import ParaspinalRadiomics

    caseId = args.case_id or Path(args.image).name.split(".")[0]
    volume = _load("image", args.image, slicer.util.loadVolume, caseId)
    seg = _load("segmentation", args.segmentation, slicer.util.loadSegmentation, "Segmentation")
    levels = _load("levels", args.levels, slicer.util.loadMarkups, "levels")
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
    return save_table_csv(table, Path(args.out), integer_columns=("n_voxels",))


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default: the arguments after ``--``), run, return the exit status."""
    if argv is None:
        argv = sys.argv[1:]
        argv = argv[argv.index("--") + 1 :] if "--" in argv else argv
    args = parse_args(argv)
    try:
        path = run(args)
    except (ValueError, FileNotFoundError, KeyError, OSError) as exc:
        print(f"paraspinalradiomics_headless: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    status = main()
    if hasattr(slicer, "app") and hasattr(slicer.app, "exit"):
        slicer.util.exit(status)  # real Slicer: quit the application with the status
    else:
        sys.exit(status)
