"""``python -m ParaspinalRadiomicsLib batch``: a cohort manifest to one C5 feature table (resumable).

``--progress`` prints ``PROGRESS <done>/<total> <case_id>`` on stdout after each case instead of the
tqdm bar (cases already done are not counted).
"""

from __future__ import annotations

import argparse

from ParaspinalRadiomicsLib.extract_cli import add_common_options, params_of, print_progress, quiet_radiomics


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``batch`` sub-command."""
    p = subparsers.add_parser(name, help="extract features for every case of a manifest", description=__doc__)
    p.add_argument("--manifest", required=True, help="CSV with case_id, image, labels[, label_names]")
    p.add_argument("--out", required=True, help="output features.csv (parts in <out>.parts/)")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--scheduler", help="Dask distributed scheduler address (e.g. tcp://host:8786)")
    p.add_argument("--retry-failed", action="store_true", help="re-run cases recorded with an error")
    add_common_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the batch; exit 0 even when some cases failed (they are in the table), 1 when all failed."""
    from ParaspinalRadiomicsLib.batch import Batch

    quiet_radiomics(args)
    batch = Batch(
        args.manifest,
        params_of(args),
        args.out,
        per_level=args.per_level,
        per_side=args.per_side,
        resample_mask=args.resample_mask,
        structures=args.structures,
    )
    res = batch.run(
        jobs=args.jobs,
        scheduler=args.scheduler,
        retry_failed=args.retry_failed,
        show_progress=not args.progress,
        progress=print_progress if args.progress else None,
    )
    rate = res.n_run / res.seconds * 60 if res.seconds > 0 and res.n_run else 0.0
    print(
        f"{res.out}: {res.n_cases} cases ({res.n_run} run, {res.n_skipped} already done, "
        f"{res.n_failed} failed) in {res.seconds:.1f} s ({rate:.1f} cases/min)"
    )
    return 1 if res.n_run and res.n_failed == res.n_run == res.n_cases else 0
