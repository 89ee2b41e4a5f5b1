"""``python -m TrialAnalysisLib sample-size``: n per arm for a difference, or what a given n implies."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``sample-size`` sub-command."""
    p = subparsers.add_parser(
        name,
        help="sample size / detectable difference for the 12-month ODI comparison; checks the protocol's 157/arm",
        description="Two-arm comparison of means (normal approximation or exact t). Without --n-per-arm: n per "
        "arm for --delta; with --n-per-arm: the detectable difference. Always prints the protocol check.",
    )
    p.add_argument("--delta", type=float, default=5.0, help="true difference in ODI points (default 5)")
    p.add_argument("--sd", type=float, default=15.0, help="SD of the 12-month ODI change (default 15)")
    p.add_argument("--alpha", type=float, default=0.025, help="significance level (default 0.025)")
    p.add_argument("--sides", type=int, choices=(1, 2), default=1, help="1 = one-sided (default) or 2")
    p.add_argument("--power", type=float, default=0.80, help="target power (default 0.80)")
    p.add_argument("--dropout", type=float, default=0.10, help="dropout fraction (default 0.10)")
    p.add_argument(
        "--n-per-arm", type=int, default=None, help="planned n per arm: report the detectable difference"
    )
    p.add_argument("--method", choices=("z", "t"), default="z")
    p.add_argument("--plot", type=Path, default=None, help="write the power curve PNG here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute and print the result (and the power curve if asked)."""
    from TrialAnalysisLib.sample_size import plot_power_curve, sample_size

    res = sample_size(
        delta=args.delta,
        sd=args.sd,
        alpha=args.alpha,
        sides=args.sides,
        power=args.power,
        dropout=args.dropout,
        n_per_arm_total=args.n_per_arm,
        method=args.method,
    )
    print(res.summary())
    if args.plot:
        plot_power_curve(
            args.plot,
            n_per_arm_total=args.n_per_arm or int(res.info["n_per_arm"]),
            sd=args.sd,
            alpha=args.alpha,
            sides=args.sides,
            dropout=args.dropout,
        )
        print(args.plot)
    return 0
