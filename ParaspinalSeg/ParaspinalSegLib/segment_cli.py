"""``python -m ParaspinalSegLib segment``: seeds + image(s) → segmentation.seg.nrrd, labels.nii.gz, labels.json, measurements.csv."""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

from tqdm import tqdm

from ParaspinalSegLib.cli_args import add_image_arguments, add_measurement_arguments, check_image_arguments

log = logging.getLogger(__name__)


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``segment`` sub-command."""
    p = subparsers.add_parser(name, help="segment paraspinal muscles from seed points", description=__doc__)
    p.add_argument(
        "--seeds",
        required=True,
        help="seed points (.mrk.json; labels = structure names, description = level)",
    )
    add_image_arguments(p)
    p.add_argument("--levels", help="level landmarks L1..L5 (.mrk.json)")
    p.add_argument("--structures", nargs="+", help="structures to segment (default: every seeded one)")
    p.add_argument(
        "--assume-same-grid",
        action="store_true",
        help="accept water/fat whose geometry metadata differ but sizes match",
    )
    p.add_argument(
        "--split-refine-mm",
        type=float,
        help="redraw the multifidus/erector border along the fascia within this band (mm; "
        "default 8 = SplitParams.refine_band_mm, 0 = off; see docs/segmentation.md)",
    )
    add_measurement_arguments(p)
    p.add_argument("--out-dir", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the segmentation and write all outputs atomically."""
    import SimpleITK as sitk

    from ParaspinalSegLib.io import read_volume, write_labels, write_labels_json, write_seg_nrrd
    from ParaspinalSegLib.markups import read_points
    from ParaspinalSegLib.measure import measure_labels
    from ParaspinalSegLib.segment import SegmentParams, segment

    params = SegmentParams()
    if args.split_refine_mm is not None:
        if not 0 <= args.split_refine_mm <= 30:
            raise ValueError(f"--split-refine-mm: {args.split_refine_mm} mm is outside 0–30 mm")
        params.split.refine_band_mm = args.split_refine_mm
    check_image_arguments(args)
    out = Path(args.out_dir)
    steps = tqdm(total=4, desc="segment", unit="step")
    seeds = read_points(args.seeds)
    levels = read_points(args.levels) if args.levels else None
    if args.image:
        image = read_volume(args.image, "image")
        inputs = image
    else:
        water = read_volume(args.water, "water image")
        fat = read_volume(args.fat, "fat image")
        inputs = {"water": water, "fat": fat}
    steps.update()
    result = segment(
        inputs,
        seeds,
        structures=args.structures,
        levels=levels,
        assume_same_grid=args.assume_same_grid,
        params=params,
    )
    for note in result.info["notes"] + result.info["warnings"]:
        log.warning(note)
    steps.update()
    out.mkdir(parents=True, exist_ok=True)
    write_seg_nrrd(out / "segmentation.seg.nrrd", result.labels, result.label_names)
    write_labels(out / "labels.nii.gz", result.labels)
    write_labels_json(out / "labels.json", result.label_names, result.levels)
    steps.update()
    if args.image:
        table = measure_labels(
            result.labels,
            result.label_names,
            image=image,
            levels=result.levels,
            case_id=args.case_id,
            erode_px=args.erode_px,
        )
    else:
        w = sitk.Image(water)
        w.CopyInformation(result.labels)
        table = measure_labels(
            result.labels,
            result.label_names,
            levels=result.levels,
            case_id=args.case_id,
            water=w,
            fat=fat,
            erode_px=args.erode_px,
        )
    write_csv(out / "measurements.csv", table)
    info_path = out / "segment_info.json"
    tmp = info_path.with_name(f".{info_path.name}.tmp")
    tmp.write_text(json.dumps(result.info, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, info_path)
    steps.update()
    steps.close()
    print(
        f"wrote {out}/segmentation.seg.nrrd, labels.nii.gz, labels.json, measurements.csv ({result.info['seconds']['total']:.1f} s)"
    )
    return 0


def write_csv(path: Path, table) -> Path:
    """Write a DataFrame as CSV atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
