"""Command-line options shared by the ParaspinalSeg sub-commands (kept free of heavy imports: the
parser of every sub-command is built on each call)."""

from __future__ import annotations

from typing import Any

from ParaspinalLBPCore.errors import BadInputError

DICOM_HELP = "a file (NIfTI, NRRD, ...) or a DICOM series folder"


def add_image_arguments(parser: Any, image_help: str = "single T1/T2-weighted volume (fat bright)") -> None:
    """The CLIs' image options: ``--image``, a Dixon pair ``--water`` + ``--fat`` (output on the fat grid),
    or ``--dicom DIR`` (the Dixon pair recognised from the headers, or one series with ``--series``)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help=f"{image_help}: {DICOM_HELP}")
    src.add_argument("--water", help=f"Dixon water image (use with --fat): {DICOM_HELP}")
    src.add_argument(
        "--dicom",
        metavar="DIR",
        help="DICOM folder of the study: the Dixon water/fat pair is recognised from ImageType/"
        "SeriesDescription (or named with --water-series/--fat-series); --series takes one image instead",
    )
    parser.add_argument(
        "--fat", help=f"Dixon fat image (use with --water); results are on its grid: {DICOM_HELP}"
    )
    parser.add_argument(
        "--series",
        metavar="NUMBER|UID",
        help="series of a DICOM folder given to --image/--dicom (SeriesNumber or SeriesInstanceUID; "
        "a folder with several series lists them)",
    )
    parser.add_argument("--water-series", metavar="NUMBER|UID", help="water series of a DICOM folder")
    parser.add_argument("--fat-series", metavar="NUMBER|UID", help="fat series of a DICOM folder")


def check_image_arguments(args: Any) -> None:
    """One message for a half Dixon pair, naming both options."""
    if bool(getattr(args, "water", None)) != bool(getattr(args, "fat", None)):
        missing = "--fat" if args.water else "--water"
        raise BadInputError(
            f"{missing} is missing: --water and --fat go together (Dixon pair); for one image use --image"
        )
    if getattr(args, "fat", None) and getattr(args, "dicom", None):
        raise BadInputError(
            "--fat goes with --water; with --dicom name the series with --water-series/--fat-series"
        )


def add_measurement_arguments(parser: Any) -> None:
    """Options of the measurement table that ``segment`` and ``measure`` both write (contract C4)."""
    parser.add_argument(
        "--erode-px",
        type=int,
        default=1,
        help="erode masks by N voxels in-plane before averaging FF (default 1: no partial volume with the "
        "surrounding fat; 0 = raw mean)",
    )
    parser.add_argument("--case-id", default="", help="case identifier written into measurements.csv")
