"""``python -m TrialAnalysisLib merge-allocation --data DIR --export ZIP --out DIR``: the randomisation
service's allocation export merged into a trial dataset (coded export: a dataset for blinded analysis)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``merge-allocation`` sub-command."""
    p = subparsers.add_parser(
        name,
        help="merge the randomisation service's allocation export into a trial dataset",
        description="Sets each participant's arm, block, stratum and randomisation date from the export's "
        "randomized.csv and writes its allocation.csv, allocation.sha256 and arm_coding.csv beside the "
        "dataset's other files in a new folder. A coded export (arms A/B) gives a coded dataset, which "
        "`validate` accepts and `analyze` reports blinded.",
    )
    p.add_argument(
        "--data", type=Path, required=True, help="trial dataset directory (participants.csv, visits.csv, …)"
    )
    p.add_argument(
        "--export", type=Path, required=True, help="the service's allocation export (zip, or its folder)"
    )
    p.add_argument("--out", type=Path, required=True, help="folder of the merged dataset (not --data)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Merge and print what was done."""
    from TrialAnalysisLib.allocation_merge import merge_allocation

    print(merge_allocation(args.data, args.export, args.out).summary())
    print(args.out)
    return 0
