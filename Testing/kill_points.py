"""Deterministic kill points for the background-job tests: a child that cannot act on SIGTERM, paused at
a chosen step, so the test's Cancel ends in SIGKILL exactly there (not wherever load happens to put it).

Python runs a SIGTERM handler only between bytecodes, so a long C call (BLAS, statsmodels) can hold it
past any grace period; blocking SIGTERM in every thread (``signal.pthread_sigmask`` before any thread
starts) is that situation made certain. Two tools:

- :func:`stager_command`: a tiny child that publishes through ``ParaspinalLBPCore.staging`` and counts
  every step (each file it writes, each rename and folder removal of the publication); ``pause_at=k``
  stops it for good before step ``k`` (it prints ``PAUSED``). A run without pause prints ``EVENT k what``
  for every step, so a test can visit them all.
- :func:`deaf_python`: an interpreter for a Logic's ``…InBackground`` job (monkeypatch
  ``jobs.pythonExecutable``) that runs the real Lib command line with SIGTERM blocked and, optionally,
  pauses before the first rename onto a given path (or the ``nth`` rename into a folder).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO / "ParaspinalSeg"  # holds ParaspinalLBPCore

_PRELUDE = """
import json, os, shutil, signal, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # as if a C call held the handler for ever

def _pause(what):
    print(f"PAUSED before {what}", flush=True)
    while True:
        time.sleep(3600)  # only SIGKILL ends this
"""

_STAGER = """
from pathlib import Path
from ParaspinalLBPCore import staging

spec = json.loads(sys.argv[1])
events = 0

def step(what):
    global events
    events += 1
    if events == spec.get("pause_at"):
        _pause(what)
    if spec.get("pause_at") is None:
        print(f"EVENT {events} {what}", flush=True)

def counting(module, name):
    real = getattr(module, name)
    def wrapper(*args, **kwargs):
        step(f"{name} {args[0]} -> {args[1] if len(args) > 1 else ''}")
        return real(*args, **kwargs)
    setattr(module, name, wrapper)

for module, name in ((os, "replace"), (os, "rename"), (shutil, "rmtree")):
    counting(module, name)

def write(root, entries):
    for rel, data in entries.items():
        step(f"write {rel}")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode())

folder = Path(spec["folder"])
if spec["mode"] == "files":
    with staging.staged_files(folder, label="report", last=spec.get("last", ())) as new:
        write(new, spec["entries"])
elif spec["mode"] == "dir":
    with staging.staged_dir(folder / spec["name"]) as new:
        write(new, spec["entries"])
else:  # "recover": what the next run or the cancelling parent does
    print("RECOVERED", staging.recover(folder), flush=True)
print("DONE", flush=True)
"""

_LAUNCHER = """
spec = json.loads({spec!r})

def _matches(dst):
    dst = os.path.abspath(os.fspath(dst))
    if spec.get("dst"):
        return dst == spec["dst"]
    inside = spec.get("under") and dst.startswith(spec["under"] + os.sep)
    if inside and spec.get("name") in (None, os.path.basename(dst)):
        spec["seen"] = spec.get("seen", 0) + 1
        return spec["seen"] == spec.get("nth", 1)
    return False

def _pausing(real):
    def wrapper(src, dst, *args, **kwargs):
        if _matches(dst):
            _pause(f"{{src}} -> {{dst}}")
        return real(src, dst, *args, **kwargs)
    return wrapper

if spec:
    os.replace, os.rename = _pausing(os.replace), _pausing(os.rename)
import runpy
module = sys.argv[2]  # argv: launcher -m <module> args...
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def stager_command(spec: dict) -> list[str]:
    """Command running the staging child with ``spec`` (mode files|dir|recover, folder, entries, pause_at)."""
    return [sys.executable, "-c", _PRELUDE + _STAGER, json.dumps(spec)]


def stager_env() -> dict[str, str]:
    """Environment for :func:`stager_command` run by ``subprocess`` (the shared folder on PYTHONPATH)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SHARED_DIR), os.environ.get("PYTHONPATH", "")])}


def deaf_python(folder: Path, dst: Path | None = None, under: Path | None = None, name: str | None = None,
                nth: int = 1) -> str:  # fmt: skip
    """Write an interpreter (for ``Job`` commands ``[python, -m, Lib, …]``) with SIGTERM blocked; it pauses
    before the rename onto ``dst``, or before the ``nth`` rename (onto a file called ``name``, if given)
    into ``under`` or below. Returns its path."""
    spec = {}
    if dst is not None:
        spec = {"dst": os.path.abspath(dst)}
    elif under is not None:
        spec = {"under": os.path.abspath(under), "name": name, "nth": nth}
    folder.mkdir(parents=True, exist_ok=True)
    launcher = folder / "deaf_launcher.py"
    launcher.write_text(_PRELUDE + textwrap.dedent(_LAUNCHER.format(spec=json.dumps(spec))), encoding="utf-8")
    shim = folder / "deaf-python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{launcher}" "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    return str(shim)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` (hidden ones too): file -> bytes, folder -> None."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def wait_for_line(job, prefix: str, timeout: float = 240.0) -> str:
    """Poll ``job`` until a log line starting with ``prefix`` appears; AssertionError if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        update = job.poll()
        found = [line for line in job.lines if line.startswith(prefix)]
        if found:
            return found[0]
        assert update.status == "running", (
            f"{job.name} ended ({update.status}) before {prefix!r}: {job.lines[-5:]}"
        )
        time.sleep(0.05)
    job.cancel(grace=0.1)
    raise AssertionError(f"{job.name}: no {prefix!r} line after {timeout} s; {job.lines[-5:]}")


def wait_until_ended(job, timeout: float = 240.0):
    """Poll ``job`` until it has ended (generous deadline: only a hang fails); returns the last update."""
    update = job.wait(timeout=timeout)
    assert update.status != "running", f"{job.name} still running after {timeout} s: {job.lines[-5:]}"
    return update
