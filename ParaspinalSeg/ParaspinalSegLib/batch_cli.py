"""``paraspinal-seg batch``: segment and measure every case of a manifest; QC contact sheet; resumable.

``--progress`` prints ``PROGRESS <done>/<total> <stage>`` lines on stdout instead of the tqdm bar (for
``ParaspinalLBPSlicer.jobs``): ``total`` = cases + 1, cases already done count at once, the last line
is ``PROGRESS <total>/<total> done``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ParaspinalLBPCore.errors import BadInputError


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``batch`` sub-command."""
    from ParaspinalSegLib.batch_manifest import MANIFEST_COLUMNS
    from ParaspinalSegLib.qc_page import QCThresholds

    columns = "; ".join(f"{k}: {v}" for k, v in MANIFEST_COLUMNS.items())
    p = subparsers.add_parser(
        name,
        help="segment + measure a cohort from a manifest, with a QC contact sheet (resumable)",
        description=f"{__doc__} Manifest columns (relative paths: from the manifest's folder): {columns}.",
    )
    p.add_argument("--manifest", required=True, type=Path, help="cases CSV (see docs/cohort.md)")
    p.add_argument("--out-dir", required=True, type=Path, help="batch folder (created; re-run to resume)")
    p.add_argument("--jobs", type=int, default=1, help="cases processed in parallel (processes; default 1)")
    p.add_argument("--decisions", type=Path, help="reviewer decisions CSV (default OUT/qc_decisions.csv)")
    p.add_argument("--force", action="store_true", help="re-run every case that is not accepted")
    p.add_argument(
        "--retry-failed", action="store_true", help="re-run failed cases whose inputs did not change"
    )
    p.add_argument("--no-qc-images", action="store_true", help="skip the per-level PNGs (faster)")
    p.add_argument("--structures", nargs="+", help="structures to segment (default: every seeded one)")
    p.add_argument("--split-refine-mm", type=float, help="as in `segment` (0 = off)")
    p.add_argument("--assume-same-grid", action="store_true", help="as in `segment`")
    p.add_argument("--erode-px", type=int, default=1, help="as in `segment` (default 1)")
    p.add_argument(
        "--dicom-seg",
        action="store_true",
        help="also write segmentation.dcm (DICOM SEG) per case; needs DICOM image sources",
    )
    d = QCThresholds()
    p.add_argument(
        "--qc-asymmetry",
        type=float,
        default=d.asymmetry,
        help=f"flag L/R CSA asymmetry above this fraction (default {d.asymmetry})",
    )
    p.add_argument(
        "--qc-ff-z",
        type=float,
        default=d.ff_robust_z,
        help=f"flag FF robust |z| above this (default {d.ff_robust_z})",
    )
    p.add_argument(
        "--qc-ff-floor",
        type=float,
        default=d.ff_scale_floor_pct,
        help=f"smallest FF spread (percentage points) for the robust z (default {d.ff_scale_floor_pct})",
    )
    p.add_argument(
        "--qc-ff-min-cases",
        type=int,
        default=d.ff_min_cases,
        help=f"FF outliers only with at least this many cases (default {d.ff_min_cases})",
    )
    p.add_argument(
        "--qc-border-voxels",
        type=int,
        default=d.border_voxels,
        help=f"flag a structure with at least this many voxels on the image border (default {d.border_voxels})",
    )
    p.add_argument("--progress", action="store_true", help="print PROGRESS lines instead of the progress bar")
    p.set_defaults(func=run)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run the batch and print a summary."""
    from ParaspinalSegLib.batch import BatchSettings, run_batch
    from ParaspinalSegLib.qc_page import QCThresholds

    if args.split_refine_mm is not None and not 0 <= args.split_refine_mm <= 30:
        raise BadInputError(f"--split-refine-mm: {args.split_refine_mm} mm is outside 0–30 mm")
    if args.erode_px < 0:
        raise BadInputError(f"--erode-px must be ≥ 0, got {args.erode_px}")
    settings = BatchSettings(
        erode_px=args.erode_px,
        structures=tuple(args.structures) if args.structures else None,
        split_refine_mm=args.split_refine_mm,
        assume_same_grid=args.assume_same_grid,
        qc_images=not args.no_qc_images,
        dicom_seg=args.dicom_seg,
    )
    thresholds = QCThresholds(
        asymmetry=args.qc_asymmetry,
        ff_robust_z=args.qc_ff_z,
        ff_scale_floor_pct=args.qc_ff_floor,
        ff_min_cases=args.qc_ff_min_cases,
        border_voxels=args.qc_border_voxels,
    )

    def progress(done: int, total: int, stage: str) -> None:
        print(f"PROGRESS {done}/{total} {stage}", flush=True)

    result = run_batch(
        args.manifest,
        args.out_dir,
        settings,
        jobs=args.jobs,
        decisions_path=args.decisions,
        thresholds=thresholds,
        force=args.force,
        retry_failed=args.retry_failed,
        progress=progress if args.progress else None,
        show_progress=not args.progress,
    )
    print(
        f"{result.n_cases} cases: {result.n_run} run ({result.n_failed} failed), {result.n_accepted} accepted "
        f"and frozen, {result.seconds:.1f} s; QC page {result.qc_page}"
    )
    return 0
