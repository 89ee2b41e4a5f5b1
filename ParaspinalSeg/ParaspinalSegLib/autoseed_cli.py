"""``python -m ParaspinalSegLib propose-seeds``: image(s) → proposed seeds (.mrk.json, one point per muscle per level).

The user opens the proposal in Slicer, corrects the points that are off, and runs ``segment``.
"""

from __future__ import annotations

import argparse
import logging

from tqdm import tqdm

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalSegLib.cli_args import add_image_arguments, check_image_arguments

log = logging.getLogger(__name__)


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``propose-seeds`` sub-command."""
    p = subparsers.add_parser(
        name, help="propose seed points from the image (auto-initialisation)", description=__doc__
    )
    add_image_arguments(p)
    p.add_argument(
        "--structures",
        nargs="+",
        help="muscles to seed (default: multifidus, erector_spinae, psoas, left and right)",
    )
    p.add_argument(
        "--levels",
        help="level landmarks L1..L5 (.mrk.json); without them slabs of ~36 mm are seeded, no level names",
    )
    p.add_argument(
        "--assume-same-grid",
        action="store_true",
        help="accept water/fat whose geometry metadata differ but sizes match",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="write the seeds that were found even if a structure is missing at some level (warns)",
    )
    p.add_argument(
        "--refine",
        action="store_true",
        help="centre each point in its own muscle as segment() draws it (one segment() run per pass; "
        "off by default: no clear Dice gain on the real cases)",
    )
    p.add_argument(
        "--refine-iterations",
        type=int,
        default=1,
        help="segment() passes of --refine (default 1)",
    )
    p.add_argument("--out", required=True, help="output seeds file (.mrk.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the image(s), propose the seeds and write them atomically."""
    from ParaspinalSegLib.autoseed import propose_seeds, write_proposal
    from ParaspinalSegLib.image_inputs import load_image_inputs
    from ParaspinalSegLib.markups import read_points

    check_image_arguments(args)
    if args.refine_iterations < 1:
        raise BadInputError(f"--refine-iterations must be at least 1 (got {args.refine_iterations})")
    steps = tqdm(total=3, desc="propose-seeds", unit="step")
    levels = read_points(args.levels) if args.levels else None
    inputs = load_image_inputs(args).inputs
    steps.update()
    proposal = propose_seeds(
        inputs,
        structures=args.structures,
        levels=levels,
        assume_same_grid=args.assume_same_grid,
        allow_missing=args.allow_missing,
        refine=args.refine,
        refine_iterations=args.refine_iterations,
    )
    steps.update()
    for note in proposal.info["notes"]:
        log.info(note)
    for miss in proposal.info["missing"]:
        log.warning(
            "structure %s not found at level %s: place it by hand", miss["structure"], miss["level"] or "?"
        )
    for n, step in enumerate(proposal.info.get("refine", []), 1):
        log.info(
            "refinement pass %d: median move %.1f mm, max %.1f mm",
            n,
            step["median_move_mm"],
            step["max_move_mm"],
        )
    write_proposal(args.out, proposal)
    steps.update()
    steps.close()
    print(f"wrote {len(proposal.points)} proposed seeds to {args.out}")
    return 0
