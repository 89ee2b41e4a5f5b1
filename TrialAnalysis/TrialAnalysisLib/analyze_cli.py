"""``python -m TrialAnalysisLib analyze --data DIR --out REPORT_DIR``: run the SAP and render the report."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``analyze`` sub-command."""
    p = subparsers.add_parser(
        name,
        help="run the statistical analysis plan on a trial dataset and write report.html/.pdf",
        description="Primary ANCOVA (MICE + Rubin), sensitivity analyses, mixed models, recurrence, safety; "
        "writes report.html (self-contained), report.pdf, results.json and PNG figures.",
    )
    p.add_argument("--data", type=Path, required=True, help="trial dataset directory (contract C6)")
    p.add_argument("--out", type=Path, required=True, help="report directory (created)")
    p.add_argument("--imputations", type=int, default=20, help="number of multiple imputations (default 20)")
    p.add_argument("--seed", type=int, default=1, help="seed of the imputations (default 1)")
    p.add_argument("--no-pdf", action="store_true", help="skip report.pdf")
    p.add_argument(
        "--skip-validation", action="store_true", help="analyse even if `validate` finds errors (not advised)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load, analyse, render; print the report path and the headline result."""
    from tqdm import tqdm

    from TrialAnalysisLib.report import render_report
    from TrialAnalysisLib.schema import load_trial, validate_trial

    if args.imputations < 1:
        raise ValueError(f"--imputations must be ≥ 1, got {args.imputations}")
    with tqdm(total=3, desc="analyze", unit="step") as bar:
        data = load_trial(args.data)
        if data.load_issues:
            f, c, msg = data.load_issues[0]
            raise ValueError(f"{args.data / f}: column {c!r}: {msg} (run `validate --data {args.data}`)")
        bar.update(1)
        report = validate_trial(data)
        if not report.ok and not args.skip_validation:
            e = report.errors[0]
            raise ValueError(
                f"{args.data / e.file}: {len(report.errors)} validation error(s), first: column {e.column!r}"
                f"{' participant ' + e.participant_id if e.participant_id else ''}: {e.message} "
                f"(see `validate --data {args.data}`; --skip-validation to analyse anyway)"
            )
        bar.update(1)
        path = render_report(
            data, args.out, imputations=args.imputations, seed=args.seed, pdf=not args.no_pdf
        )
        bar.update(1)
    print(path)
    return 0
