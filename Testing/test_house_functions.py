"""House rule: no function in a Lib (``<M>Lib``) or in the shared ParaspinalLBPCore exceeds 120 lines.

A function is measured from its ``def`` line to its last line (docstring included, decorators not);
nested functions count inside their parent and are also measured on their own. Aim for under ~80
lines; 120 is the hard limit a reader can still hold in mind.

``ALLOWED`` names the functions that exceeded the limit when this check landed, each still owned by an
engineer at work on that file. The list may only shrink: an entry whose function is gone or is back
under the limit fails the check, so whoever splits a function removes its entry in the same change.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 120

#: ``path::qualified name`` → why it is still allowed. Remove entries, never add them.
ALLOWED: dict[str, str] = {}


def lib_sources(repo: Path = REPO) -> list[Path]:
    """Every Python file of the four Libs and of the shared ParaspinalLBPCore package."""
    files = [p for p in repo.glob("*/*Lib/**/*.py") if _is_lib(p.relative_to(repo).parts)]
    files += list((repo / "ParaspinalSeg" / "ParaspinalLBPCore").glob("**/*.py"))
    return sorted(files)


def _is_lib(parts: tuple[str, ...]) -> bool:
    """``<M>/<M>Lib/…``: the Lib of module folder ``<M>``."""
    return len(parts) > 2 and parts[1] == parts[0] + "Lib"


def function_lengths(source: str) -> Iterator[tuple[str, int]]:
    """(qualified name, lines from ``def`` to the last line) of every function in ``source``."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                assert child.end_lineno is not None
                yield prefix + child.name, child.end_lineno - child.lineno + 1
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(ast.parse(source), "")


def long_functions(repo: Path = REPO, limit: int = MAX_LINES) -> dict[str, int]:
    """``path::qualified name`` → length of every Lib/core function longer than ``limit`` lines."""
    out = {}
    for path in lib_sources(repo):
        rel = path.relative_to(repo).as_posix()
        for name, n in function_lengths(path.read_text(encoding="utf-8")):
            if n > limit:
                out[f"{rel}::{name}"] = n
    return out


def test_no_lib_function_exceeds_the_limit() -> None:
    too_long = {k: n for k, n in long_functions().items() if k not in ALLOWED}
    assert not too_long, f"functions over {MAX_LINES} lines (split them into named steps): " + ", ".join(
        f"{k} ({n} lines)" for k, n in sorted(too_long.items())
    )


def test_allow_list_only_shrinks() -> None:
    """Every allowed entry still exceeds the limit; once split, its entry must go."""
    current = long_functions()
    stale = sorted(k for k in ALLOWED if k not in current)
    assert not stale, f"no longer over {MAX_LINES} lines (or gone): remove from ALLOWED: {stale}"


def test_check_sees_libs_core_methods_and_nested_functions(tmp_path: Path) -> None:
    """The check finds a long method, a long nested function and a long async function in a Lib and in
    the core package, and ignores files outside them (a module file, a test)."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    sources = {
        "TrialAnalysis/TrialAnalysisLib/a.py": f"class C:\n    def m(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n",
        "LBPRiskModel/LBPRiskModelLib/webapp/b.py": f"def outer():\n    def inner():\n    {body.replace(chr(10), chr(10) + '    ')}\n    return inner\n",
        "ParaspinalSeg/ParaspinalLBPCore/c.py": f"async def job():\n{body}\n",
        "ParaspinalSeg/ParaspinalSeg.py": f"def widget_code():\n{body}\n",
        "TrialAnalysis/Testing/test_x.py": f"def test_long():\n{body}\n",
        "TrialAnalysis/TrialAnalysisLib/short.py": "def f():\n    return 1\n",
    }
    for rel, text in sources.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = long_functions(tmp_path)
    assert set(found) == {
        "TrialAnalysis/TrialAnalysisLib/a.py::C.m",
        "LBPRiskModel/LBPRiskModelLib/webapp/b.py::outer",
        "LBPRiskModel/LBPRiskModelLib/webapp/b.py::outer.inner",
        "ParaspinalSeg/ParaspinalLBPCore/c.py::job",
    }
    assert found["ParaspinalSeg/ParaspinalLBPCore/c.py::job"] == MAX_LINES + 1
    assert long_functions(tmp_path, limit=MAX_LINES + 1) == {
        "LBPRiskModel/LBPRiskModelLib/webapp/b.py::outer": MAX_LINES + 3
    }
