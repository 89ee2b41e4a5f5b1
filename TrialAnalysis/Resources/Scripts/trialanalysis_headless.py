"""Headless TrialAnalysis: validate a trial data folder and write the SAP report, no GUI.

Runs ``TrialAnalysisLogic.validate`` on a trial folder (contract C6: participants.csv,
visits.csv, …) and, unless ``--validate-only``, ``TrialAnalysisLogic.analyze`` (primary ODI
analysis by multiple imputation, complete-case and per-protocol, secondary outcomes, report).
Writes into ``--out``: ``validation.csv`` (one row per finding), ``report.html`` and
``results.json`` (from the library), and ``primary.csv`` (the primary-analysis table node)::

    Slicer --no-main-window --python-script TrialAnalysis/Resources/Scripts/trialanalysis_headless.py -- \\
        --data trial_data/ --out trial_report/ --imputations 20 --seed 1

Exit status 0 on success, 1 when validation finds errors (listed in validation.csv), 2 on bad
input. Also runs through the slicer-core test harness by calling :func:`main`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ParaspinalLBPCore.errors import MissingInputError
from ParaspinalLBPSlicer import headless


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (everything after ``--`` on Slicer's command line)."""
    p = argparse.ArgumentParser(prog="trialanalysis_headless", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="trial data folder (C6)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--imputations", type=int, default=20, help="multiple-imputation data sets")
    p.add_argument("--seed", type=int, default=1, help="seed of the imputations")
    p.add_argument("--validate-only", action="store_true", help="only write validation.csv")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[int, list[Path]]:
    """Validate (and analyse); returns (exit status, written paths)."""
    import TrialAnalysis

    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        raise MissingInputError(f"--data: not a folder: {data}")
    out.mkdir(parents=True, exist_ok=True)
    logic = TrialAnalysis.TrialAnalysisLogic()
    report, issues = logic.validate(data)
    written = [headless.saveTableCsv(issues, out / "validation.csv")]
    print(report.summary())
    if not report.ok:
        return 1, written
    if args.validate_only:
        return 0, written
    html, primary = logic.analyze(data, out, imputations=args.imputations, seed=args.seed)
    written += [Path(html), out / "results.json", headless.saveTableCsv(primary, out / "primary.csv")]
    return 0, written


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default: the arguments after ``--``), run, return the exit status."""
    return headless.runScript("trialanalysis_headless", parse_args, run, argv)


if __name__ == "__main__":
    headless.runAsScript(main)
