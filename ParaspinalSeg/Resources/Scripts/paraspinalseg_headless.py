"""Headless ParaspinalSeg: segment the paraspinal muscles from seed points and measure them, no GUI.

Loads the image(s), seeds and level landmarks into the MRML scene with ``slicer.util``, runs
``ParaspinalSegLogic`` (segmentation from one click per muscle per level, then measurement) and
saves ``segmentation.seg.nrrd`` (``slicer.util.saveNode``) and ``measurements.csv`` (contract C4,
full precision) into ``--out-dir``::

    Slicer --no-main-window --python-script ParaspinalSeg/Resources/Scripts/paraspinalseg_headless.py -- \\
        --water water.nii.gz --fat fat.nii.gz --seeds seeds.mrk.json --levels levels.mrk.json \\
        --case-id P0001 --out-dir out/P0001

    # single T1/T2-weighted image instead of a Dixon pair:
    ... -- --image t1w.nii.gz --seeds seeds.mrk.json --levels levels.mrk.json --out-dir out/
    # measure an existing (e.g. hand-corrected) segmentation instead of segmenting:
    ... -- --water water.nii.gz --fat fat.nii.gz --segmentation corrected.seg.nrrd --out-dir out/

Seeds: labels = structure names (``multifidus_left`` …), description = level (``L4``); levels:
points labelled L1..L5 (both ``.mrk.json``, contract C2). Exit status 0 on success, 2 on bad
input (the message names the file or structure). Also runs through the slicer-core test harness
by calling :func:`main` with the argument list.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import slicer

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPSlicer import headless


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (everything after ``--`` on Slicer's command line)."""
    p = argparse.ArgumentParser(prog="paraspinalseg_headless", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="single T1/T2-weighted volume (fat bright)")
    src.add_argument("--water", help="Dixon water image (with --fat)")
    p.add_argument("--fat", help="Dixon fat image (with --water)")
    p.add_argument("--seeds", help="seed points .mrk.json (one per muscle per level)")
    p.add_argument("--levels", help="level landmarks L1..L5 .mrk.json")
    p.add_argument("--segmentation", help="existing .seg.nrrd to measure instead of segmenting")
    p.add_argument("--only-level", help="segment only this level (e.g. L4)")
    p.add_argument("--case-id", default="", help="case identifier written into measurements.csv")
    p.add_argument("--no-per-slice", action="store_true", help="omit the per-slice rows")
    p.add_argument(
        "--erosion-voxels",
        type=int,
        default=1,
        help="erode masks in-plane before the fat fractions (0-3, default 1)",
    )
    p.add_argument(
        "--fat-method",
        default="auto",
        choices=["auto", "dixon", "t1_local", "t1_linear", "none"],
        help="fat fraction method (default auto: dixon with --water/--fat, else t1_local); none = areas and "
        "volumes only, on any contrast",
    )
    p.add_argument("--out-dir", required=True, help="output folder")
    args = p.parse_args(argv)
    if bool(args.water) != bool(args.fat):
        p.error("--water and --fat go together (Dixon pair); for one image use --image")
    if not args.seeds and not args.segmentation:
        p.error("give --seeds (to segment) or --segmentation (to measure an existing one)")
    return args


def run(args: argparse.Namespace) -> dict:
    """Load, segment (or load the segmentation), measure, save; returns the written paths."""
    import ParaspinalSeg

    logic = ParaspinalSeg.ParaspinalSegLogic()
    out = Path(args.out_dir)
    image = headless.loadNode("image", args.image, slicer.util.loadVolume, "image")
    water = headless.loadNode("water", args.water, slicer.util.loadVolume, "water")
    fat = headless.loadNode("fat", args.fat, slicer.util.loadVolume, "fat")
    seeds = headless.loadNode("seeds", args.seeds, slicer.util.loadMarkups, "seeds")
    levels = headless.loadNode("levels", args.levels, slicer.util.loadMarkups, "levels")
    if args.segmentation:
        seg = headless.loadNode(
            "segmentation", args.segmentation, slicer.util.loadSegmentation, "Segmentation"
        )
    else:
        seg = logic.segment(
            seedsNode=seeds,
            inputVolume=image,
            fatVolume=fat,
            waterVolume=water,
            levelsNode=levels,
            onlyLevel=args.only_level,
        )
    table = logic.measure(
        image or water,
        seg,
        levelsNode=levels,
        fatVolume=fat,
        waterVolume=water,
        caseId=args.case_id,
        perSlice=not args.no_per_slice,
        erosionVoxels=args.erosion_voxels,
        fatMethod=args.fat_method,
    )
    out.mkdir(parents=True, exist_ok=True)
    written = {"measurements": out / "measurements.csv"}
    if not args.segmentation:
        written["segmentation"] = out / "segmentation.seg.nrrd"
        if not slicer.util.saveNode(seg, str(written["segmentation"])):
            raise BadInputError(f"--out-dir: Slicer could not write {written['segmentation']}")
    headless.saveTableCsv(table, written["measurements"], integerColumns=("slice", "n_voxels", "ff_erode_px"))
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default: the arguments after ``--``), run, return the exit status."""
    return headless.runScript("paraspinalseg_headless", parse_args, run, argv)


if __name__ == "__main__":
    headless.runAsScript(main)
