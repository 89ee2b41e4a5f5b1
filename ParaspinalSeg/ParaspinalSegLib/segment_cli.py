"""``python -m ParaspinalSegLib segment``: seeds + image(s) → segmentation.seg.nrrd, labels.nii.gz, labels.json, measurements.csv."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from tqdm import tqdm

from ParaspinalLBPCore.atomic import atomic_path, atomic_write_text
from ParaspinalLBPCore.errors import BadInputError
from ParaspinalSegLib.cli_args import add_image_arguments, add_measurement_arguments, check_image_arguments
from ParaspinalSegLib.dicom_seg_cli import add_dicom_seg_arguments, resolve_reference

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
    add_dicom_seg_arguments(p)
    p.add_argument("--out-dir", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the segmentation and write all outputs atomically."""
    import SimpleITK as sitk

    from ParaspinalSegLib.image_inputs import load_image_inputs
    from ParaspinalSegLib.io import write_labels, write_labels_json, write_seg_nrrd
    from ParaspinalSegLib.markups import read_points
    from ParaspinalSegLib.measure import measure_labels
    from ParaspinalSegLib.segment import SegmentParams, segment

    params = SegmentParams()
    if args.split_refine_mm is not None:
        if not 0 <= args.split_refine_mm <= 30:
            raise BadInputError(f"--split-refine-mm: {args.split_refine_mm} mm is outside 0–30 mm")
        params.split.refine_band_mm = args.split_refine_mm
    check_image_arguments(args)
    out = Path(args.out_dir)
    steps = tqdm(total=4, desc="segment", unit="step")
    seeds = read_points(args.seeds)
    levels = read_points(args.levels) if args.levels else None
    src = load_image_inputs(args)
    image, water, fat = src.image, src.water, src.fat
    reference = resolve_reference(args, src) if args.dicom_seg or args.dicom_sr else None
    if reference is not None:  # refuse a mismatched reference before segmenting, not after writing
        from ParaspinalSegLib.dicom_seg import check_on_series_grid

        check_on_series_grid(image if image is not None else fat, reference, "the input image")
    steps.update()
    result = segment(
        src.inputs,
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
    if image is not None:
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
    for note in table.attrs.get("notes", []):
        log.warning(note)
    write_csv(out / "measurements.csv", table)
    if reference is not None:
        from ParaspinalSegLib.dicom_seg import write_dicom_seg

        write_dicom_seg(
            out / "segmentation.dcm", result.labels, result.label_names, reference, creator=args.rater
        )
        log.info("wrote %s/segmentation.dcm referencing %s", out, reference.label)
        if args.dicom_sr:
            from ParaspinalSegLib.dicom_sr import write_measurement_report

            write_measurement_report(
                out / "measurements.dcm", table, out / "segmentation.dcm", reference, args.rater
            )
            log.info("wrote %s/measurements.dcm (TID 1500)", out)
    atomic_write_text(out / "segment_info.json", json.dumps(result.info, indent=2, default=str))
    steps.update()
    steps.close()
    print(
        f"wrote {out}/segmentation.seg.nrrd, labels.nii.gz, labels.json, measurements.csv ({result.info['seconds']['total']:.1f} s)"
    )
    return 0


def write_csv(path: Path, table) -> Path:
    """Write a DataFrame as CSV atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path
