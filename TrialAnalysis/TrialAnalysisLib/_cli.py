"""Shared command-line plumbing: sub-commands are registered lazily from ``module:function``.

Each Lib's ``cli.py`` lists its sub-commands as import paths, so a broken optional dependency of
one sub-command never stops the others from running, and ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence


def run_cli(prog: str, description: str, commands: dict[str, str], argv: Sequence[str] | None = None) -> int:
    """Build the parser from ``{name: "pkg.module:add_cli"}``, parse ``argv`` and run the command.

    ``add_cli(subparsers, name)`` must add a parser called ``name`` and ``set_defaults(func=...)``
    with ``func(args) -> int``. Errors a user can fix (ValueError, FileNotFoundError, KeyError)
    print one clear line and exit 2 instead of a traceback.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, target in commands.items():
        module_name, func_name = target.split(":")
        getattr(importlib.import_module(module_name), func_name)(sub, name)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, OSError) as exc:
        if args.verbose:
            raise
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
