"""Command-line plumbing shared by the four Libs: lazily imported sub-commands, user errors as one line.

Each Lib's ``cli.py`` declares its sub-commands as :class:`Command` entries (the import path of the
function that adds the sub-command's parser, and a one-line help). ``prog --help`` imports none of them,
and ``prog CMD …`` imports only ``CMD``'s module, so help is instant and a broken optional dependency of
one sub-command never stops the others. A sub-command module keeps its heavy imports (pyradiomics,
scikit-learn, statsmodels …) inside the function that runs the command.

``add_cli(subparsers, name)`` must add a parser called ``name`` with ``set_defaults(func=...)``, where
``func(args) -> int`` is the exit status. A :class:`~ParaspinalLBPCore.errors.UserError` prints
``prog CMD: error: <message>`` and exits 2 (``--verbose`` shows its traceback); anything else is a bug
and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from ParaspinalLBPCore.errors import UserError

GLOBAL_FLAGS = ("-v", "--verbose", "-h", "--help")


class Command(NamedTuple):
    """One sub-command: ``target`` = ``"package.module:add_cli"``, ``help`` = its line in ``prog --help``."""

    target: str
    help: str = ""


Commands = Mapping[str, Command | str]  # a plain "module:function" string is a Command without help


def _selected(argv: Sequence[str], commands: Commands) -> str | None:
    """The sub-command named on the command line (the first argument that is not a global flag)."""
    for arg in argv:
        if arg in GLOBAL_FLAGS:
            continue
        return arg if arg in commands else None
    return None


def build_parser(
    prog: str, description: str, commands: Commands, argv: Sequence[str]
) -> argparse.ArgumentParser:
    """The parser: the selected sub-command's real parser (its module imported), the others as help lines."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _selected(argv, commands)
    for name, entry in commands.items():
        command = Command(entry) if isinstance(entry, str) else entry
        if name == chosen:
            module_name, func_name = command.target.split(":")
            getattr(importlib.import_module(module_name), func_name)(sub, name)
        else:
            sub.add_parser(name, help=command.help, add_help=False)
    return parser


def run_cli(prog: str, description: str, commands: Commands, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the sub-command and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog, description, commands, argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.verbose:
            raise
        print(f"{prog} {args.command}: error: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 2


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` while the block runs, so ``finally`` clean-ups (staging, bundle
    removal) happen when the background-job runner cancels a command. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
