"""``python -m TrialAnalysisLib randomize``: generate the stratified permuted-block allocation list."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ParaspinalLBPCore.errors import BadInputError


def expand_codes(tokens: list[str]) -> list[str]:
    """Expand range notation 'C1..C5' (or 'C1-C5') to C1 C2 C3 C4 C5; other tokens pass through."""
    out: list[str] = []
    for tok in tokens:
        for part in tok.split(","):
            m = re.fullmatch(r"([A-Za-z_]*)(\d+)(?:\.\.|-)\1?(\d+)", part.strip())
            if m:
                prefix, a, b = m.group(1), int(m.group(2)), int(m.group(3))
                if b < a:
                    raise BadInputError(f"--centres {part}: range end before start")
                out += [f"{prefix}{i}" for i in range(a, b + 1)]
            elif part.strip():
                out.append(part.strip())
    if len(set(out)) != len(out):
        raise BadInputError(f"--centres: duplicate codes in {out}")
    return out


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``randomize`` sub-command."""
    p = subparsers.add_parser(
        name,
        help="generate a stratified permuted-block allocation list (CSV + .sha256 + .json)",
        description="Blocks of the given sizes in random order, strata centre × sex, allocation ratio, seed.",
    )
    p.add_argument(
        "--centres", nargs="+", default=["C1", "C2", "C3", "C4", "C5"], help="centre codes (C1 C2 …)"
    )
    p.add_argument(
        "--sexes", nargs="+", default=["F", "M"], help="sex codes used as the second stratum factor"
    )
    p.add_argument(
        "--per-stratum", type=int, required=True, help="capacity per stratum (whole blocks are added)"
    )
    p.add_argument("--block-sizes", type=int, nargs="+", default=[4, 6])
    p.add_argument("--ratio", type=int, nargs=2, default=[1, 1], metavar=("EXERCISE", "CONTROL"))
    p.add_argument("--arms", nargs=2, default=["exercise", "control"])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="allocation CSV path (e.g. allocation.csv)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate, write and print the summary of the list."""
    from TrialAnalysisLib.randomization import block_randomization

    result = block_randomization(
        args.per_stratum,
        strata={"centre": expand_codes(args.centres), "sex": args.sexes},
        block_sizes=args.block_sizes,
        ratio=args.ratio,
        seed=args.seed,
        arms=args.arms,
    )
    path = result.to_csv(args.out)
    print(result.summary())
    print(f"wrote {path}, {path.with_suffix('.sha256').name}, {path.with_suffix('.json').name}")
    return 0
