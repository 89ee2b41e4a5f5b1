"""``python -m TrialAnalysisLib simulate``: write a digital-twin trial dataset with known truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from ParaspinalLBPCore.errors import BadInputError


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``simulate`` sub-command."""
    p = subparsers.add_parser(
        name,
        help="simulate the METNLBP trial (CSV dataset + data dictionary + truth.json)",
        description="Deterministic: the same seed and parameters give byte-identical CSVs.",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--n", type=int, default=314, help="participants to enrol (default 314)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--with-mri", type=int, default=0, metavar="K", help="render phantom MRIs for K participants"
    )
    p.add_argument(
        "--effect", type=float, default=None, help="exercise − control 12-month ODI change (default −5)"
    )
    p.add_argument(
        "--hr", type=float, default=None, help="recurrence hazard ratio exercise/control (default 0.6)"
    )
    p.add_argument("--ff-modification", type=float, default=None,
                   help="change of the effect per +10 %%-points multifidus L4–L5 FF (default 1.5)")  # fmt: skip
    p.add_argument(
        "--control-change", type=float, default=None, help="control 12-month ODI change (default −8)"
    )
    p.add_argument(
        "--rho", type=float, default=None, help="AR(1) correlation of visit residuals (default 0.6)"
    )
    p.add_argument(
        "--dropout", type=float, default=None, help="dropout probability per follow-up visit (0.012)"
    )
    p.add_argument(
        "--mri-workers", type=int, default=1, help="processes rendering phantom MRIs in parallel (default 1)"
    )
    p.add_argument(
        "--mri-dicom",
        action="store_true",
        help="also write each phantom's Dixon water/fat as DICOM (mri/<pid>/dicom)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate and print where the dataset went."""
    from TrialAnalysisLib.simulate import simulate_trial

    mapping = {"effect": "effect_odi_12m", "hr": "recurrence_hr", "ff_modification": "ff_effect_modification",
               "control_change": "control_change_12m", "rho": "ar1_rho", "dropout": "dropout_per_visit"}  # fmt: skip
    overrides = {
        field: getattr(args, arg) for arg, field in mapping.items() if getattr(args, arg) is not None
    }
    if "recurrence_hr" in overrides and overrides["recurrence_hr"] <= 0:
        raise BadInputError(f"--hr {overrides['recurrence_hr']}: a hazard ratio must be > 0")
    out = simulate_trial(
        args.out,
        n=args.n,
        seed=args.seed,
        with_mri=args.with_mri,
        progress=True,
        mri_workers=args.mri_workers,
        mri_dicom=args.mri_dicom,
        **overrides,
    )
    print(f"wrote trial dataset (n={args.n}, seed={args.seed}) to {out}")
    return 0
