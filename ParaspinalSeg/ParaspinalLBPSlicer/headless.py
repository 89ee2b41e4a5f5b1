"""Plumbing shared by the modules' headless scripts (``Slicer --no-main-window --python-script``).

Each script keeps its own options and ``run(args)``; this file gives them the same argument
handling after ``--``, the same one-line error message and exit status 2 on bad input (a
``ParaspinalLBPCore`` ``UserError``; any other exception is a bug and shows its traceback, exit
status 1), loading with a message that names the option, full-precision CSV output of table nodes,
and Slicer's exit.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

import slicer

from ParaspinalLBPCore.errors import BadInputError, MissingInputError, UserError


def scriptArguments(argv: list[str] | None = None) -> list[str]:
    """The script's own arguments: ``argv`` if given, else what follows ``--`` on Slicer's command line."""
    if argv is not None:
        return list(argv)
    argv = sys.argv[1:]
    return argv[argv.index("--") + 1 :] if "--" in argv else argv


def runScript(prog: str, parseArgs: Callable, run: Callable, argv: list[str] | None = None) -> int:
    """Parse, run and report a headless script; returns its exit status.

    ``run(args)`` returns the written path(s) — a Path, a list or a dict of them — or a tuple
    ``(status, paths)`` when the script has its own non-zero outcome (e.g. validation errors).
    A :class:`~ParaspinalLBPCore.errors.UserError` prints ``prog: error: <message>`` and returns 2;
    any other exception is a bug and propagates with its traceback.
    """
    args = parseArgs(scriptArguments(argv))
    try:
        result = run(args)
    except UserError as exc:
        print(f"{prog}: error: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 2
    status, written = result if isinstance(result, tuple) else (0, result)
    if isinstance(written, dict):
        written = written.values()
    elif isinstance(written, str | Path):
        written = [written]
    for path in written:
        print(f"wrote {path}")
    return status


def exitSlicer(status: int) -> None:
    """Quit real Slicer with ``status`` (``slicer.util.exit``); plain Python (slicer-core) uses sys.exit."""
    if hasattr(slicer, "app") and hasattr(slicer.app, "exit"):
        slicer.util.exit(status)
    else:
        sys.exit(status)


def runAsScript(main: Callable[[], int]) -> None:
    """Run a script's ``main()`` as ``Slicer --python-script`` does and quit with its exit status.

    A bug (an exception ``main`` lets through) prints its traceback and exits with status 1: an uncaught
    exception would leave a ``--no-main-window`` Slicer running. argparse's own exit keeps its status.
    """
    try:
        status = main()
    except SystemExit as exc:  # argparse: usage error 2, --help 0
        status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except Exception:
        traceback.print_exc()
        status = 1
    exitSlicer(status)


def loadNode(option: str, path: str | None, loader: Callable, name: str):
    """Load ``path`` with a ``slicer.util`` loader and name the node; errors name the ``--option``."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise MissingInputError(f"--{option}: file not found: {path}")
    try:
        node = loader(str(path))
    except RuntimeError as exc:  # slicer.util's loaders raise RuntimeError when a file does not load
        raise BadInputError(
            f"--{option}: Slicer could not load {path} ({' '.join(str(exc).split())})"
        ) from None
    if node is None:
        raise BadInputError(f"--{option}: Slicer could not load {path}")
    node.SetName(name)
    return node


def saveTableCsv(tableNode, path: str | Path, integerColumns: Iterable[str] = ()) -> Path:
    """Write a table node as CSV at full precision with empty cells for missing values (atomic).

    ``slicer.util.saveNode`` would write 6 significant digits, ``nan`` for empty cells and a
    ``.schema.csv`` beside it; the tables' consumers expect the Libs' exact CSV instead.
    """
    import pandas as pd

    path = Path(path)
    df = slicer.util.dataframeFromTable(tableNode)
    for column in integerColumns:
        if column in df.columns:
            df[column] = pd.to_numeric(df[column], errors="coerce").round().astype("Int64")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
