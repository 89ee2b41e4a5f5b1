"""Command-line options shared by the ParaspinalSeg sub-commands (kept free of heavy imports: the
parser of every sub-command is built on each call)."""

from __future__ import annotations

from typing import Any


def add_image_arguments(parser: Any, image_help: str = "single T1/T2-weighted volume (fat bright)") -> None:
    """The CLIs' image options: ``--image`` or a Dixon pair ``--water`` + ``--fat`` (output on the fat grid)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help=image_help)
    src.add_argument("--water", help="Dixon water image (use with --fat)")
    parser.add_argument("--fat", help="Dixon fat image (use with --water); results are on its grid")


def check_image_arguments(args: Any) -> None:
    """One message for a half Dixon pair, naming both options."""
    if bool(getattr(args, "water", None)) != bool(getattr(args, "fat", None)):
        missing = "--fat" if args.water else "--water"
        raise ValueError(
            f"{missing} is missing: --water and --fat go together (Dixon pair); for one image use --image"
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
