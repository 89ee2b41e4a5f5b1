"""``python -m ParaspinalSegLib measure``: measure an existing label map (CSA, FF, grade, asymmetry) → measurements.csv."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from ParaspinalLBPCore.errors import MissingInputError
from ParaspinalSegLib.cli_args import add_image_arguments, add_measurement_arguments, check_image_arguments


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``measure`` sub-command."""
    p = subparsers.add_parser(
        name, help="measure a label map (CSA, fat fraction, Goutallier, asymmetry)", description=__doc__
    )
    add_image_arguments(p, "single T1/T2-weighted volume (fat bright): non-Dixon fat fraction (t1_local)")
    p.add_argument("--labels", required=True, help="label map (e.g. labels.nii.gz)")
    p.add_argument(
        "--label-names",
        help="labels.json (C1) or plain {value: name} JSON; default: beside the label map, else structures.py values",
    )
    p.add_argument("--levels", help="level landmarks L1..L5 (.mrk.json); default: levels in labels.json")
    p.add_argument(
        "--assume-same-grid",
        action="store_true",
        help="accept images whose geometry metadata differ from the label map but sizes match",
    )
    p.add_argument(
        "--fat-method",
        default="auto",
        choices=["auto", "dixon", "t1_local", "t1_linear", "none"],
        help="auto: dixon with --water/--fat, else t1_local (bias-corrected non-Dixon model, fat.py; t1_linear "
        "where no bias field can be fitted); none: areas and volumes only, on any contrast (fat-suppressed too)",
    )
    p.add_argument("--no-per-slice", action="store_true", help="omit the per-slice rows")
    add_measurement_arguments(p)
    p.add_argument("--out-dir", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Measure and write OUT/measurements.csv."""
    import SimpleITK as sitk

    from ParaspinalLBPCore.structures import default_label_names
    from ParaspinalSegLib.image_inputs import load_image_inputs
    from ParaspinalSegLib.io import match_grid, read_labels_json
    from ParaspinalSegLib.levels import levels_from_landmarks
    from ParaspinalSegLib.markups import read_points
    from ParaspinalSegLib.measure import measure_labels
    from ParaspinalSegLib.segment_cli import write_csv

    check_image_arguments(args)
    bar = tqdm(total=3, desc="measure", unit="step")
    lab_path = Path(args.labels)
    if not lab_path.exists():
        raise MissingInputError(f"label map not found: {lab_path}")
    labels = sitk.ReadImage(str(lab_path))
    names_path = Path(args.label_names) if args.label_names else lab_path.parent / "labels.json"
    if args.label_names or names_path.exists():
        names, levels = read_labels_json(names_path)
    else:
        names, levels = default_label_names(), {}
    if args.levels:
        levels = levels_from_landmarks(read_points(args.levels), labels, source=args.levels)
    bar.update()
    src = load_image_inputs(args)
    roles = {"image": src.image} if src.image is not None else {"water": src.water, "fat": src.fat}
    kw = {
        role: match_grid(
            im, labels, f"{role} image" if role != "image" else "image", "label map", args.assume_same_grid
        )
        for role, im in roles.items()
    }
    bar.update()
    table = measure_labels(
        labels,
        names,
        levels=levels or None,
        case_id=args.case_id,
        per_slice=not args.no_per_slice,
        fat_method=args.fat_method,
        erode_px=args.erode_px,
        **kw,
    )
    for note in table.attrs.get("notes", []):
        print(f"note: {note}")
    out = write_csv(Path(args.out_dir) / "measurements.csv", table)
    bar.update()
    bar.close()
    print(f"wrote {out} ({len(table)} rows)")
    return 0
