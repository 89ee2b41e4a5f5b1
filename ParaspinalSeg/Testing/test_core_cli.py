"""ParaspinalLBPCore.cli and .errors: lazy sub-commands, user errors as one line (exit 2), bugs with their
traceback, on throw-away command modules and on the four real command lines."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ParaspinalLBPCore.cli import Command, run_cli
from ParaspinalLBPCore.errors import BadInputError, MissingInputError, MissingKeyError, UserError

COMMAND_MODULE = """
import argparse
from ParaspinalLBPCore.errors import BadInputError, MissingInputError

def add_cli(subparsers, name):
    p = subparsers.add_parser(name, help="raise what --what says")
    p.add_argument("--what", default="ok")
    p.set_defaults(func=run)

def run(args):
    if args.what == "bad":
        raise BadInputError("table.csv: missing column 'case_id'")
    if args.what == "missing":
        raise MissingInputError("seeds file not found: seeds.mrk.json")
    if args.what == "bug":
        return 1 / 0
    if args.what == "keyerror":
        return {}["no such key"]
    if args.what == "oserror":
        raise OSError("bug: a path the program made itself is wrong")
    print("ran", args.what)
    return 0
"""


@pytest.fixture
def commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Command]:
    """Two command modules on sys.path: a working one and one whose import fails (a broken dependency)."""
    (tmp_path / "cmd_ok.py").write_text(COMMAND_MODULE)
    (tmp_path / "cmd_broken.py").write_text("import no_such_engine_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("cmd_ok", "cmd_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return {
        "ok": Command("cmd_ok:add_cli", "a working command"),
        "broken": Command("cmd_broken:add_cli", "x"),
    }


def test_help_and_other_commands_do_not_import_a_sub_command(commands, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_cli("prog", "test", commands, ["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "a working command" in out and "broken" in out
    assert "cmd_ok" not in sys.modules and "cmd_broken" not in sys.modules
    assert run_cli("prog", "test", commands, ["ok", "--what", "fine"]) == 0  # the broken one is not imported
    assert "ran fine" in capsys.readouterr().out and "cmd_broken" not in sys.modules
    with pytest.raises(ModuleNotFoundError, match="no_such_engine_installed"):
        run_cli("prog", "test", commands, ["broken"])


def test_user_errors_exit_2_with_one_line(commands, capsys) -> None:
    assert run_cli("prog", "test", commands, ["ok", "--what", "bad"]) == 2
    assert capsys.readouterr().err == "prog ok: error: table.csv: missing column 'case_id'\n"
    assert run_cli("prog", "test", commands, ["ok", "--what", "missing"]) == 2
    assert capsys.readouterr().err == "prog ok: error: seeds file not found: seeds.mrk.json\n"
    with pytest.raises(BadInputError):  # --verbose shows the traceback of a user error too
        run_cli("prog", "test", commands, ["--verbose", "ok", "--what", "bad"])


@pytest.mark.parametrize(
    ("what", "shown"),
    [("bug", "ZeroDivisionError"), ("keyerror", "KeyError: 'no such key'"), ("oserror", "OSError: bug")],
)
def test_a_bug_propagates_with_its_traceback(commands, tmp_path: Path, what: str, shown: str) -> None:
    """Run as a real process: an exception from a bug is not turned into a one-line 'error:' message."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from ParaspinalLBPCore.cli import run_cli
        sys.exit(run_cli("prog", "test", {{"ok": "cmd_ok:add_cli"}}, sys.argv[1:]))
    """)
    bug = subprocess.run(
        [sys.executable, "-c", script, "ok", "--what", "bug"], capture_output=True, text=True
    )
    assert bug.returncode == 1
    assert "Traceback (most recent call last)" in bug.stderr and "ZeroDivisionError" in bug.stderr
    assert "prog ok: error:" not in bug.stderr
    user = subprocess.run(
        [sys.executable, "-c", script, "ok", "--what", "bad"], capture_output=True, text=True
    )
    assert user.returncode == 2 and user.stderr == "prog ok: error: table.csv: missing column 'case_id'\n"


def test_error_types() -> None:
    assert issubclass(BadInputError, ValueError) and issubclass(BadInputError, UserError)
    assert issubclass(MissingInputError, FileNotFoundError) and issubclass(MissingInputError, UserError)
    assert issubclass(MissingKeyError, KeyError) and issubclass(MissingKeyError, UserError)
    assert not issubclass(UserError, (ValueError, OSError, KeyError))
    assert (
        str(MissingKeyError("table.csv: missing column 'x'")) == "table.csv: missing column 'x'"
    )  # no quotes
