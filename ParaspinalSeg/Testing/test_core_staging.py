"""ParaspinalLBPCore.staging: a writer killed at ANY step leaves the old outputs or the complete new ones
once recovery has run, and no staging debris.

The kill points are exhaustive and deterministic: a child publishes through the real ``staging`` code with
SIGTERM blocked and is stopped for good before its k-th step (each file written into the staging folder,
each rename, each folder removal), for every k, then SIGKILLed there. Recovery is then done as the next
run does it (``recover`` finds the owner process gone), by the next writer, and after a recovery that was
itself killed half way.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kill_points import snapshot, stager_command, stager_env

from ParaspinalLBPCore.atomic import atomic_path
from ParaspinalLBPCore.staging import deferred_signals, recover, staged_dir, staged_files, staging_leftovers

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals")

OLD = {"a.txt": "old a", "keep.txt": "not part of the publication", "sub/x": "old x"}
# A file over a file, a new file, a folder over a folder, and results.json moved last.
NEW_FILES = {"a.txt": "new a", "b.txt": "new b", "sub/y": "new y", "results.json": "{}"}
NEW_DIR = {"model.txt": "new model", "report/roc.txt": "new roc"}


def _tree(files: dict[str, str]) -> dict[str, bytes | None]:
    """The snapshot a folder holding ``files`` has (folders listed as None)."""
    out: dict[str, bytes | None] = {}
    for rel, text in files.items():
        parts = rel.split("/")
        for i in range(1, len(parts)):
            out["/".join(parts[:i])] = None
        out[rel] = text.encode()
    return dict(sorted(out.items()))


def _write(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


def _run(spec: dict, timeout: float = 120.0) -> tuple[subprocess.Popen, list[str]]:
    """Start the staging child; return once it printed PAUSED (it then waits for SIGKILL) or ended."""
    proc = subprocess.Popen(stager_command(spec), stdout=subprocess.PIPE, env=stager_env())
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=1.0):
            chunk = os.read(proc.stdout.fileno(), 65536)
            data += chunk
            if b"PAUSED" in data or not chunk:
                break
    lines = data.decode().splitlines()
    if not any(line.startswith("PAUSED") for line in lines):
        proc.wait(timeout=timeout)
    return proc, lines


def _kill_at(spec: dict, k: int) -> str:
    """Run the child, SIGKILL it before its k-th step; returns that step."""
    proc, lines = _run({**spec, "pause_at": k})
    paused = [line for line in lines if line.startswith("PAUSED before ")]
    assert paused, f"step {k}: the child did not pause: {lines}"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=120) == -signal.SIGKILL
    return paused[0].removeprefix("PAUSED before ")


def _steps(spec: dict) -> list[str]:
    """Every step of an uninterrupted run (which must publish)."""
    proc, lines = _run(spec)
    assert proc.returncode == 0 and lines[-1] == "DONE", lines
    return [line.split(" ", 2)[2] for line in lines if line.startswith("EVENT ")]


def _commit_step(steps: list[str]) -> int:
    """1-based index of the rename that writes COMMIT: the publication is final after it."""
    return next(i for i, s in enumerate(steps, 1) if s.startswith("replace") and s.endswith("COMMIT"))


def _case(mode: str, folder: Path) -> tuple[dict, dict[str, str], dict[str, str]]:
    """(child spec, files before, files after a complete publication)."""
    if mode == "files":
        spec = {"mode": "files", "folder": str(folder), "entries": NEW_FILES, "last": ["results.json"]}
        after = {**OLD, **NEW_FILES}
        del after["sub/x"]  # the folder sub is replaced whole
        return spec, OLD, after
    spec = {"mode": "dir", "folder": str(folder), "name": "bundle", "entries": NEW_DIR}
    before = {"keep.txt": "beside it"}
    if mode == "dir":
        before |= {"bundle/model.txt": "old model", "bundle/old.txt": "only in the old"}
    return spec, before, {"keep.txt": "beside it", **{f"bundle/{k}": v for k, v in NEW_DIR.items()}}


def _reset(folder: Path, files: dict[str, str]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _write(folder, files)


@pytest.mark.parametrize("mode", ["files", "dir", "dir-new"])
def test_a_kill_at_every_step_leaves_old_or_new_after_recovery(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "out"
    spec, before, after = _case(mode, folder)
    _reset(folder, before)
    steps = _steps(spec)
    assert snapshot(folder) == _tree(after) and staging_leftovers(folder) == []
    commit = _commit_step(steps)
    assert len([s for s in steps[: commit - 1] if s.startswith("write")]) == len(spec["entries"])
    if mode == "files":  # the moves come after the commit, results.json last
        moves = [s for s in steps[commit:] if s.startswith("replace")]
        assert moves[-1].endswith("/results.json") and len(moves) == len(NEW_FILES) + 1  # + old sub aside
    if mode == "dir":  # the two renames: the old folder aside, the new one in
        assert steps[commit].endswith("/replaced/0") and steps[commit + 1].endswith("/bundle")
    for k in range(1, len(steps) + 1):
        _reset(folder, before)
        step = _kill_at(spec, k)
        assert len(staging_leftovers(folder)) == 1, f"killed before step {k} ({step})"
        assert len(recover(folder)) == 1
        expected = after if k > commit else before
        assert snapshot(folder) == _tree(expected), f"killed before step {k}: {step}"


def test_a_killed_recovery_is_recovered(tmp_path: Path) -> None:
    """Kill the writer between the two renames of a folder swap, then the recovery at each of its steps:
    the next recovery still completes the new folder."""
    folder = tmp_path / "out"
    spec, before, after = _case("dir", folder)
    _reset(folder, before)
    between = _commit_step(_steps(spec)) + 2  # before the rename of the new folder in

    def killed_between_the_renames() -> None:
        _reset(folder, before)
        assert _kill_at(spec, between).endswith("/bundle")
        assert not (folder / "bundle").exists()  # the moment at which the old swap could lose the bundle

    killed_between_the_renames()
    recovery = {"mode": "recover", "folder": str(folder)}
    recovery_steps = _steps(recovery)
    assert snapshot(folder) == _tree(after)
    assert recovery_steps[0].startswith("rename") and len(recovery_steps) == 3  # claim, move in, remove
    for m in range(1, len(recovery_steps) + 1):
        killed_between_the_renames()
        _kill_at(recovery, m)
        recover(folder)
        assert snapshot(folder) == _tree(after), f"recovery killed before {recovery_steps[m - 1]}"


def test_the_next_writer_recovers_first(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    spec = {"mode": "files", "folder": str(folder), "entries": {"a.txt": "new a", "b.txt": "new b"}}
    for k, expected in ((3, "old a"), (5, "new a")):  # before the commit (after both writes) / after a move
        _write(folder, {"a.txt": "old a"})
        (folder / "b.txt").unlink(missing_ok=True)
        _kill_at(spec, k)
        with staged_files(folder) as new:
            (new / "c.txt").write_text("c")
        assert (folder / "a.txt").read_text() == expected and (folder / "c.txt").read_text() == "c"
        assert (folder / "b.txt").exists() == (expected == "new a") and staging_leftovers(folder) == []


def test_only_stale_entries_are_touched(tmp_path: Path) -> None:
    """A live writer's staging stays; another host's too; a dead process group's goes even if its pid lives."""
    folder = tmp_path / "out"
    _write(folder, {"a.txt": "old a"})
    proc, lines = _run({"mode": "files", "folder": str(folder), "entries": {"a.txt": "new a"}, "pause_at": 1})
    try:
        assert lines[-1] == "PAUSED before write a.txt"
        assert recover(folder) == [] and len(staging_leftovers(folder)) == 1  # its writer is alive
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(recover(folder)) == 1 and staging_leftovers(folder) == []
    import ParaspinalLBPCore.staging as staging

    live = os.getppid()  # a process that surely exists
    ours = folder / f".x.plbp-{staging._HOST}-{live}-424242-abc.staging"
    theirs = folder / ".x.plbp-0badc0de-999999-999999-abc.staging"
    ours.mkdir()
    theirs.mkdir()
    assert recover(folder) == []
    assert recover(folder, dead_group=424242) == [f"removed the unfinished staging folder {ours}"]
    assert staging_leftovers(folder) == [theirs]  # another machine's writer may still be at work
    assert (folder / "a.txt").read_text() == "old a"


def test_a_killed_atomic_path_writer_leaves_a_temporary_that_recovery_removes(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys, time\n"
        "from ParaspinalLBPCore.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half')\n"
        "    print(tmp, flush=True)\n"
        "    time.sleep(3600)\n"
    )
    target = tmp_path / "labels.nii.gz"
    target.write_bytes(b"old")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True, env=stager_env()
    )
    tmp = Path(proc.stdout.readline().strip())
    proc.kill()
    proc.wait()
    assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz") and f"-{proc.pid}-" in tmp.name
    assert staging_leftovers(tmp_path) == [tmp]
    assert recover(tmp_path) == [f"removed the temporary {tmp}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz"] and target.read_bytes() == b"old"


def test_exceptions_inside_leave_the_old_state(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    _write(folder, {"a.txt": "old a", "bundle/m": "old m"})
    before = snapshot(folder)
    with pytest.raises(KeyboardInterrupt), staged_files(folder) as new:
        (new / "a.txt").write_text("new a")
        raise KeyboardInterrupt
    with pytest.raises(ValueError), staged_dir(folder / "bundle") as new:
        (new / "m").write_text("new m")
        raise ValueError("writer failed")
    assert snapshot(folder) == before
    with atomic_path(folder / "a.txt") as tmp:
        tmp.write_text("new a")
    assert (folder / "a.txt").read_text() == "new a" and staging_leftovers(folder) == []


def test_deferred_signals_hold_sigterm_until_the_block_ends() -> None:
    got = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append("handled"))
    try:
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
            got.append("block done")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert got == ["block done", "handled"]
