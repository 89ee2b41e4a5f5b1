"""``python -m ParaspinalSegLib dicom-seg``: an existing label map + its source DICOM series → segmentation.dcm.

Also the ``--dicom-seg`` options of ``segment`` (``add_dicom_seg_arguments``, ``resolve_reference``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ParaspinalLBPCore.errors import BadInputError, MissingInputError


def add_dicom_seg_arguments(parser: argparse.ArgumentParser, flag: bool = True) -> None:
    """``--dicom-seg`` (segment only) and the reference series options it needs for file inputs."""
    if flag:
        parser.add_argument(
            "--dicom-seg",
            action="store_true",
            help="also write segmentation.dcm (DICOM SEG, one segment per muscle) referencing the source "
            "series; with NIfTI/NRRD input name that series with --reference-dicom",
        )
        parser.add_argument(
            "--dicom-sr",
            action="store_true",
            help="also write measurements.dcm: a TID 1500 report of CSA, volume and FF per muscle and level "
            "referencing segmentation.dcm (implies --dicom-seg)",
        )
    parser.add_argument("--rater", help="who drew/corrected the segmentation: the SEG's content creator")
    parser.add_argument(
        "--reference-dicom",
        metavar="DIR",
        help="DICOM folder holding the series the label map lies on (the SEG references it)",
    )
    parser.add_argument("--reference-series", metavar="NUMBER|UID", help="that series, if DIR holds several")


def resolve_reference(args: Any, inputs: Any = None) -> Any:
    """The SeriesInfo a SEG references: ``--reference-dicom`` if given, else the DICOM input's series."""
    from ParaspinalLBPCore import dicom_series as ds

    if getattr(args, "reference_dicom", None):
        folder = args.reference_dicom
        return ds.select_series(ds.scan_folder(folder), args.reference_series, folder)
    ref = inputs.reference_series if inputs is not None else None
    if ref is None:
        raise BadInputError(
            "--dicom-seg needs the source DICOM series: give the image(s) as DICOM folders "
            "(--dicom DIR, --image DIR, --water/--fat DIR) or name the series with --reference-dicom DIR"
        )
    return ref


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``dicom-seg`` sub-command."""
    p = subparsers.add_parser(
        name, help="write a label map as DICOM SEG referencing its source series", description=__doc__
    )
    p.add_argument(
        "--labels", required=True, help="label map on the source series' grid (e.g. labels.nii.gz)"
    )
    p.add_argument(
        "--label-names", help="labels.json (C1); default: beside the label map, else structures.py values"
    )
    add_dicom_seg_arguments(p, flag=False)
    p.add_argument("--out", required=True, help="output DICOM SEG file (e.g. segmentation.dcm)")
    p.add_argument(
        "--measurements", help="measurements.csv (C4) of this label map: also write a TID 1500 report"
    )
    p.add_argument("--sr-out", help="the TID 1500 report file (default: measurements.dcm beside --out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the label map against the reference series and write the SEG atomically."""
    import SimpleITK as sitk

    from ParaspinalLBPCore.structures import default_label_names
    from ParaspinalSegLib.dicom_seg import write_dicom_seg
    from ParaspinalSegLib.io import read_labels_json

    if not args.reference_dicom:
        raise BadInputError("--reference-dicom DIR is required: the DICOM series the label map was drawn on")
    lab_path = Path(args.labels)
    if not lab_path.exists():
        raise MissingInputError(f"label map not found: {lab_path}")
    names_path = Path(args.label_names) if args.label_names else lab_path.parent / "labels.json"
    names = (
        read_labels_json(names_path)[0] if args.label_names or names_path.exists() else default_label_names()
    )
    reference = resolve_reference(args)
    table = None
    if args.measurements:
        import pandas as pd

        if not Path(args.measurements).exists():
            raise MissingInputError(f"measurement table not found: {args.measurements}")
        table = pd.read_csv(args.measurements)
    out = write_dicom_seg(args.out, sitk.ReadImage(str(lab_path)), names, reference, creator=args.rater)
    print(f"wrote {out} (references {reference.label})")
    if table is not None:
        from ParaspinalSegLib.dicom_sr import write_measurement_report

        sr = Path(args.sr_out) if args.sr_out else Path(args.out).with_name("measurements.dcm")
        write_measurement_report(sr, table, out, reference, observer=args.rater)
        print(f"wrote {sr} (TID 1500, references {out.name})")
    return 0
