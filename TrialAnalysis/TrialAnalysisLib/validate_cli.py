"""``python -m TrialAnalysisLib validate --data DIR``: check a trial dataset against the data dictionary."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``validate`` sub-command."""
    p = subparsers.add_parser(name, help="validate a trial dataset directory (exit 1 when errors are found)")
    p.add_argument("--data", type=Path, required=True, help="trial dataset directory")
    p.add_argument("--mapping", type=Path, default=None,
                   help="JSON/YAML mapping of a real export onto the schema: {table: {file, rename, recode}}")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="also write the issues as CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate, print the report, return 0 when there is no error, 1 otherwise."""
    from TrialAnalysisLib.schema_validation import validate_trial

    report = validate_trial(args.data, args.mapping)
    print(report.summary())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report.table.to_csv(args.out, index=False, lineterminator="\n")
    return 0 if report.ok else 1
