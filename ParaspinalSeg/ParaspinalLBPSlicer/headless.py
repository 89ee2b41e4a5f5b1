"""Plumbing shared by the modules' headless scripts (``Slicer --no-main-window --python-script``).

Each script keeps its own options and ``run(args)``; this file gives them the same argument
handling after ``--``, the same one-line error message and exit status 2 on bad input, loading
with a message that names the option, full-precision CSV output of table nodes, and Slicer's exit.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import slicer

#: Errors a user can fix (bad file, missing column, unknown structure): one line, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, OSError)


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
    """
    args = parseArgs(scriptArguments(argv))
    try:
        result = run(args)
    except USER_ERRORS as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
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


def loadNode(option: str, path: str | None, loader: Callable, name: str):
    """Load ``path`` with a ``slicer.util`` loader and name the node; errors name the ``--option``."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"--{option}: file not found: {path}")
    node = loader(str(path))
    if node is None:
        raise ValueError(f"--{option}: Slicer could not load {path}")
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
