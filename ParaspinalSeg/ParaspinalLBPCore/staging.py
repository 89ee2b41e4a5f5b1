"""Crash-safe publishing: outputs are built in a hidden staging folder, committed, then moved into place;
whatever a killed writer leaves behind is finished or removed by whoever comes next.

    with staged_files(report_dir, last=("results.json",)) as new:   # files that join a folder
        (new / "report.html").write_text(html)
    with staged_dir(bundle_dir) as new:                             # a whole folder, swapped
        (new / "model.skops").write_bytes(data)
    recover(folder)                                                 # after a crash, before reading

Protocol. The staging folder ``<folder>/.<label>.plbp-<host>-<pid>-<pgid>-<token>.staging`` names its
owner (host tag, process id, process group). Inside it the writer fills ``new/``; then ``COMMIT`` (the
list of moves, written by a rename: the commit point) makes the set final; each move is one rename (a
folder or a file of another kind at the target is first renamed into ``replaced/``); last the staging
folder is deleted. SIGTERM/SIGINT are held while this runs. A kill at any moment therefore leaves either
an uncommitted staging folder (the outputs are exactly as before) or a committed one (the new result is
complete inside it).

:func:`recover` acts on staging folders and temporary files (:func:`temporary_name`) whose owner is gone:
a process that no longer exists on this host, or any process of a group the caller knows to be dead
(a background job that was killed). It claims a staging folder by renaming it to its own name (so two
recoverers never both act on it), then rolls it forward when committed or deletes it when not. Every
writer recovers its folder before staging, so the next run cleans up after a killed one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ParaspinalLBPCore.errors import BadInputError

__all__ = [
    "deferred_signals",
    "recover",
    "staged_dir",
    "staged_files",
    "staging_leftovers",
    "temporary_name",
]

log = logging.getLogger(__name__)

COMMIT = "COMMIT"
_OWNED = re.compile(
    r"^\.(?P<label>.*)\.plbp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<pgid>\d+)-(?P<token>[a-z0-9_]+)(?P<rest>.*)$"
)
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


@dataclass(frozen=True)
class _Owner:
    label: str
    host: str
    pid: int
    pgid: int
    token: str
    rest: str


def _owner(name: str) -> _Owner | None:
    m = _OWNED.match(name)
    if m is None:
        return None
    g = m.groupdict()
    return _Owner(g["label"], g["host"], int(g["pid"]), int(g["pgid"]), g["token"], g["rest"])


def _own_tag() -> str:
    """``plbp-<host>-<pid>-<pgid>``: the owner part of every name this process stages under."""
    pgid = os.getpgid(0) if hasattr(os, "getpgid") else os.getpid()
    return f"plbp-{_HOST}-{os.getpid()}-{pgid}"


def temporary_name(path: str | Path) -> tuple[str, str]:
    """``(prefix, suffix)`` for ``tempfile.mkstemp`` beside ``path``: owner-tagged (so :func:`recover`
    can remove it once its writer is gone) and ending in ``path``'s suffixes (``.nii.gz`` picks the format)."""
    path = Path(path)
    return f".{path.name}.{_own_tag()}-", "".join(path.suffixes)


def _alive(pid: int) -> bool:
    """True while process ``pid`` exists on this host (a zombie counts as gone)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to another user
        return True
    with contextlib.suppress(OSError, IndexError):  # Linux: a zombie has finished writing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _alive_windows(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259
    finally:
        kernel32.CloseHandle(handle)


def _stale(owner: _Owner, dead_group: int | None) -> bool:
    """True when the owner can no longer be writing: its group is known dead, or its process is gone."""
    if owner.host != _HOST:
        return False  # another machine's writer on a shared folder: we cannot tell, so leave it
    if dead_group is not None and owner.pgid == dead_group:
        return True
    return not _alive(owner.pid)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGTERM and SIGINT while the block runs and deliver them afterwards (main thread only)."""
    names = ("SIGTERM", "SIGINT")
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for name in names:
        sig = getattr(signal, name, None)
        # getsignal() is None for a handler installed outside Python (embedded): leave that one alone
        if sig is not None and signal.getsignal(sig) is not None:
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)


def _new_staging(folder: Path, label: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    recover(folder)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=f".{label}.{_own_tag()}-", suffix=".staging"))
    (staging / "new").mkdir()
    return staging


def _commit(staging: Path, moves: Sequence[tuple[str, str]]) -> None:
    """Write the list of moves to ``COMMIT`` by a rename: from here on the publication is final."""
    tmp = staging / f"{COMMIT}.tmp"
    tmp.write_text(json.dumps({"moves": [list(m) for m in moves]}), encoding="utf-8")
    os.replace(tmp, staging / COMMIT)


def _roll_forward(staging: Path, folder: Path) -> None:
    """Do the committed moves that are not done yet (each one rename), then delete the staging folder."""
    moves = json.loads((staging / COMMIT).read_text(encoding="utf-8"))["moves"]
    for i, (src_rel, name) in enumerate(moves):
        if Path(name).name != name or name in ("", ".", ".."):
            raise BadInputError(f"{staging / COMMIT}: bad target name {name!r} (not written by staging.py)")
        src, dst = staging / src_rel, folder / name
        if not os.path.lexists(src):
            continue  # moved before the interruption
        if os.path.lexists(dst) and (dst.is_dir() or src.is_dir()):
            aside = staging / "replaced" / str(i)
            aside.parent.mkdir(exist_ok=True)
            os.replace(dst, aside)
        os.replace(src, dst)  # a file over a file: atomic, the target never goes missing
    shutil.rmtree(staging)


def _publish(staging: Path, folder: Path, moves: Sequence[tuple[str, str]]) -> None:
    with deferred_signals():
        _commit(staging, moves)
        _roll_forward(staging, folder)


def _abandon(staging: Path, folder: Path) -> None:
    """After an exception: finish a committed publication, or delete an uncommitted staging folder."""
    if (staging / COMMIT).is_file():
        try:
            _roll_forward(staging, folder)
        except OSError:  # left for recover(), which retries
            log.warning("%s: could not finish publishing; recover() will", staging, exc_info=True)
    else:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staged_files(folder: str | Path, label: str | None = None, last: Sequence[str] = ()) -> Iterator[Path]:
    """Yield an empty staging folder; on success every entry written into it joins ``folder``.

    Entries replace same-named ones in ``folder``; others there stay. ``last``: names moved last (e.g. the
    file whose presence marks a finished run). On an exception inside the block ``folder`` is unchanged.
    """
    folder = Path(folder)
    staging = _new_staging(folder, label or folder.name)
    try:
        yield staging / "new"
        names = sorted(p.name for p in (staging / "new").iterdir())
        names.sort(key=lambda n: last.index(n) if n in last else -1)
        _publish(staging, folder, [(f"new/{n}", n) for n in names])
    except BaseException:
        _abandon(staging, folder)
        raise


@contextlib.contextmanager
def staged_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes ``path`` (an existing one is replaced whole).

    On an exception inside the block ``path`` is unchanged.
    """
    path = Path(path)
    staging = _new_staging(path.parent, path.name)
    try:
        yield staging / "new"
        _publish(staging, path.parent, [("new", path.name)])
    except BaseException:
        _abandon(staging, path.parent)
        raise


def recover(folder: str | Path, dead_group: int | None = None) -> list[str]:
    """Finish or remove the staging folders and temporary files in ``folder`` whose owner is gone.

    ``dead_group``: a process group known to have ended (a cancelled background job); its entries are
    recovered even if one of its process ids has been reused. Returns one line per entry handled.
    """
    folder = Path(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    done = []
    for entry in entries:
        owner = _owner(entry.name)
        if owner is None or not _stale(owner, dead_group):
            continue
        path = folder / entry.name
        try:
            if owner.rest == ".staging" and entry.is_dir(follow_symlinks=False):
                done += _recover_staging(path, owner)
            else:
                shutil.rmtree(path) if entry.is_dir(follow_symlinks=False) else path.unlink()
                done.append(f"removed the temporary {path}")
        except FileNotFoundError:
            continue  # another process recovered it first
    return done


def _recover_staging(path: Path, owner: _Owner) -> list[str]:
    """Claim a stale staging folder (rename to our name), then roll it forward or delete it."""
    claimed = path.with_name(f".{owner.label}.{_own_tag()}-{owner.token}.staging")
    os.rename(path, claimed)
    if (claimed / COMMIT).is_file():
        _roll_forward(claimed, path.parent)
        return [f"finished the interrupted publication of {path.parent / owner.label} ({path.name})"]
    shutil.rmtree(claimed)
    return [f"removed the unfinished staging folder {path}"]


def staging_leftovers(folder: str | Path) -> list[Path]:
    """Every staging folder or temporary file in ``folder``, whoever owns it (for checks and tests)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _owner(p.name) is not None)
