"""``icc`` (two or more feature tables of the same cases) and ``perturb`` (mask perturbations of one case)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ParaspinalLBPCore.agreement import ICC_FORMS
from ParaspinalLBPCore.errors import BadInputError
from ParaspinalRadiomicsLib.extract_cli import add_common_options, quiet_radiomics

if TYPE_CHECKING:
    import pandas as pd


def _icc_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=float, default=0.75, help="flag features with ICC below this (0.75)")
    p.add_argument(
        "--method", choices=ICC_FORMS, default="ICC(2,1)", help="ICC used for flags and the robust list"
    )
    p.add_argument("--robust-out", help="write robust_features.json (C5) for LBPRiskModel")


def add_icc_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``icc`` sub-command."""
    p = subparsers.add_parser(
        name,
        help="per-feature ICC between two segmentations/sessions",
        description="ICC(1,1), ICC(2,1), ICC(3,1) with 95 %% CIs per feature; rows are "
        "matched on case_id, structure, level.",
    )
    p.add_argument("--a", required=True, help="features_a.csv (rater/session A)")
    p.add_argument("--b", required=True, help="features_b.csv (rater/session B)")
    p.add_argument("--more", nargs="*", default=[], help="further tables (raters C, D, ...)")
    p.add_argument("--out", required=True, help="icc.csv")
    _icc_options(p)
    p.set_defaults(func=run_icc)


def _write(table: pd.DataFrame, args: argparse.Namespace) -> None:
    from ParaspinalLBPCore.atomic import atomic_write_text
    from ParaspinalRadiomicsLib.reproducibility import robust_features, write_robust_features

    atomic_write_text(args.out, table.to_csv(index=False))
    n_flag = int(table["flagged"].sum())
    print(f"{args.out}: {len(table)} features, {n_flag} below {args.method} {args.threshold}")
    if args.robust_out:
        data = robust_features(table, args.threshold, args.method)
        write_robust_features(data, args.robust_out)
        print(f"{args.robust_out}: {len(data['features'])} robust features")


def run_icc(args: argparse.Namespace) -> int:
    """Compute the ICC table (and robust list) from feature tables."""
    from ParaspinalRadiomicsLib.reproducibility import icc
    from ParaspinalRadiomicsLib.tables import read_features

    tables = [read_features(p) for p in [args.a, args.b, *args.more]]
    _write(icc(*tables, threshold=args.threshold, method=args.method), args)
    return 0


def add_perturb_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``perturb`` sub-command."""
    p = subparsers.add_parser(
        name,
        help="feature robustness to +-1 voxel mask erosion/dilation/shift",
        description="Extract every structure under 7 mask perturbations (original, "
        "erode, dilate, shift x/y +-1 voxel, in-plane) and report per-feature ICC.",
    )
    p.add_argument("--image", help="image of one case (or use --manifest)")
    p.add_argument("--labels", help="label map / .seg.nrrd of that case")
    p.add_argument("--label-names")
    p.add_argument("--case-id")
    p.add_argument(
        "--manifest", help="cohort CSV (case_id, image, labels[, label_names]): ICC over all cases"
    )
    p.add_argument("--out", required=True, help="icc.csv across perturbations")
    p.add_argument("--features-out", help="also write the per-perturbation features (long CSV)")
    add_common_options(p)
    _icc_options(p)
    p.set_defaults(func=run_perturb)


def run_perturb(args: argparse.Namespace) -> int:
    """Extract under perturbations (one case or every manifest case), then ICC across them."""
    import pandas as pd
    from tqdm import tqdm

    from ParaspinalLBPCore.atomic import atomic_write_text
    from ParaspinalRadiomicsLib.batch import read_manifest
    from ParaspinalRadiomicsLib.inputs import load_case
    from ParaspinalRadiomicsLib.reproducibility import perturbation_features, perturbation_icc

    quiet_radiomics(args)
    if args.manifest:
        cases = [(j.case_id, j.image, j.labels, j.label_names) for j in read_manifest(args.manifest)]
    elif args.image and args.labels:
        cases = [
            (args.case_id or Path(args.image).name.split(".")[0], args.image, args.labels, args.label_names)
        ]
    else:
        raise BadInputError("perturb needs --image and --labels, or --manifest")
    per_case = []
    with tqdm(total=0, desc="perturbations", unit="mask") as bar:
        for case_id, image_path, labels_path, names_path in cases:
            image, labels, names, levels = load_case(image_path, labels_path, names_path)
            offset = bar.n

            def progress(
                done: int, total: int, what: str, offset: int = offset, case_id: str = case_id
            ) -> None:
                bar.total = offset + total
                bar.set_postfix_str(f"{case_id} {what}")
                bar.update(offset + done - bar.n)

            per_case.append(
                perturbation_features(
                    image,
                    labels,
                    names,
                    args.params,
                    levels=levels,
                    per_level=args.per_level,
                    per_side=args.per_side,
                    case_id=case_id,
                    resample_mask=args.resample_mask,
                    structures=args.structures,
                    progress=progress,
                )
            )
    tables = {k: pd.concat([t[k] for t in per_case], ignore_index=True) for k in per_case[0]}
    if args.features_out:
        long = pd.concat([t.assign(perturbation=k) for k, t in tables.items()], ignore_index=True)
        atomic_write_text(args.features_out, long.to_csv(index=False))
    _write(perturbation_icc(tables, args.threshold, args.method), args)
    return 0
