"""``python -m TrialAnalysisLib analyze --data DIR --out REPORT_DIR``: run the SAP and render the report.

``--progress`` prints one machine-readable line per stage on stdout, for programs that run the
command in the background (the Slicer module's Analyze button, via ``ParaspinalLBPSlicer.jobs``)::

    PROGRESS <done>/<total> <stage>

``done`` stages are finished and ``stage`` is starting; ``done`` never decreases, ``total`` is fixed
for the run and the last line is ``PROGRESS <total>/<total> done``. Without it a tqdm bar on stderr
shows the same stages. SIGTERM stops the run cleanly (exit status 143): the report folder is left
as it was (see ``report.render_report``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ParaspinalLBPCore.cli import sigterm_exits
from ParaspinalLBPCore.errors import BadInputError

PRE_STAGES = ("load data", "validate data")


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
    p.add_argument(
        "--progress",
        action="store_true",
        help="print 'PROGRESS <done>/<total> <stage>' lines on stdout instead of the tqdm bar",
    )
    p.set_defaults(func=run)


def progress_reporter(total: int, machine: bool) -> tuple[Callable[[str], None], Callable[[], None]]:
    """(announce(stage), finish()) printing PROGRESS lines (``machine``) or driving a tqdm bar."""
    done = -1
    if machine:

        def announce(stage: str) -> None:
            nonlocal done
            done += 1
            print(f"PROGRESS {done}/{total} {stage}", flush=True)

        def finish() -> None:
            print(f"PROGRESS {total}/{total} done", flush=True)

        return announce, finish
    from tqdm import tqdm

    bar = tqdm(total=total, desc="analyze", unit="stage")

    def announce_bar(stage: str) -> None:
        nonlocal done
        done += 1
        bar.n = done
        bar.set_postfix_str(stage)

    def finish_bar() -> None:
        bar.n = total
        bar.set_postfix_str("done")
        bar.close()

    return announce_bar, finish_bar


def run(args: argparse.Namespace) -> int:
    """Load, analyse, render; print the report path and the headline result."""
    from TrialAnalysisLib.report import render_report, report_stages
    from TrialAnalysisLib.schema import load_trial
    from TrialAnalysisLib.schema_validation import validate_trial

    if args.imputations < 1:
        raise BadInputError(f"--imputations must be ≥ 1, got {args.imputations}")
    stages = [*PRE_STAGES, *report_stages(pdf=not args.no_pdf)]
    announce, finish = progress_reporter(len(stages), args.progress)
    with sigterm_exits():
        announce(PRE_STAGES[0])
        data = load_trial(args.data)
        if data.load_issues:
            f, c, msg = data.load_issues[0]
            raise BadInputError(f"{args.data / f}: column {c!r}: {msg} (run `validate --data {args.data}`)")
        announce(PRE_STAGES[1])
        report = validate_trial(data)
        if not report.ok and not args.skip_validation:
            e = report.errors[0]
            raise BadInputError(
                f"{args.data / e.file}: {len(report.errors)} validation error(s), first: column {e.column!r}"
                f"{' participant ' + e.participant_id if e.participant_id else ''}: {e.message} "
                f"(see `validate --data {args.data}`; --skip-validation to analyse anyway)"
            )
        path = render_report(
            data,
            args.out,
            imputations=args.imputations,
            seed=args.seed,
            pdf=not args.no_pdf,
            progress=announce,
        )
        finish()
    print(path)
    sys.stdout.flush()
    return 0
