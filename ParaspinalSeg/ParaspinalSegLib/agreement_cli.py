"""``paraspinal-seg agreement``: Dice, surface distances, ICC and Bland–Altman between two sets of
segmentations of the same cases (two raters, or one rater twice); see agreement.py and docs/cohort.md.

``--progress`` prints ``PROGRESS <done>/<total> <stage>`` lines on stdout (total = cases + 1; the last
line is ``PROGRESS <total>/<total> done``) for ``ParaspinalLBPSlicer.jobs``, instead of the tqdm bar.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ParaspinalLBPCore.errors import BadInputError


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``agreement`` sub-command."""
    p = subparsers.add_parser(
        name, help="rater agreement of segmentations: Dice, ASSD, ICC, Bland–Altman", description=__doc__
    )
    p.add_argument(
        "--a", required=True, type=Path, help="rater A: batch folder or <case_id>/labels.nii.gz folders"
    )
    p.add_argument("--b", required=True, type=Path, help="rater B (or the same rater's repeat), same layout")
    p.add_argument("--out", required=True, type=Path, help="report folder (replaced as a whole when done)")
    p.add_argument("--manifest", type=Path, help="batch manifest naming each case's images and levels")
    p.add_argument("--erode-px", type=int, default=1, help="as in `segment` (default 1)")
    p.add_argument("--assume-same-grid", action="store_true", help="as in `segment`")
    p.add_argument("--progress", action="store_true", help="print PROGRESS lines instead of the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compare, write the report, print where it is."""
    from tqdm import tqdm

    from ParaspinalSegLib.agreement import run_agreement
    from ParaspinalSegLib.agreement_report import write_report

    if args.erode_px < 0:
        raise BadInputError(f"--erode-px must be ≥ 0, got {args.erode_px}")
    bar = None

    def progress(done: int, total: int, stage: str) -> None:
        nonlocal bar
        if args.progress:
            print(f"PROGRESS {done}/{total} {stage}", flush=True)
            return
        bar = bar or tqdm(total=total, desc="agreement", unit="case")
        bar.n = done
        bar.set_postfix_str(stage)

    result = run_agreement(
        args.a, args.b, args.manifest, erode_px=args.erode_px, assume_same_grid=args.assume_same_grid,
        progress=progress,
    )  # fmt: skip
    page = write_report(result, args.out, str(args.a), str(args.b))
    total = result.cases["case_id"].nunique() + 1
    if args.progress:
        print(f"PROGRESS {total}/{total} done", flush=True)
    elif bar is not None:
        bar.n = total
        bar.close()
    for note in result.notes:
        print(f"note: {note}")
    print(f"{total - 1} cases compared; report {page}")
    return 0
