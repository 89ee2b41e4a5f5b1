"""Background jobs: run a Lib's command line in its own process, poll it without blocking, cancel it.

Long work (the trial's analysis plan, a cohort's radiomics) must not run in Slicer's GUI thread:
the Logic starts ``python -m <M>Lib …`` with :func:`startLibJob`, the Widget polls the returned
:class:`Job` from a ``qt.QTimer`` (:meth:`Job.poll` never blocks) and its Cancel button calls
:meth:`Job.cancel`; from the Python console or headless, :meth:`Job.wait` blocks until the end.

- The child runs in a new session (its own process group on POSIX, a new process group on
  Windows), so cancelling reaches the whole tree — inside Slicer the ``PythonSlicer`` launcher
  *and* the Python it starts.
- stdout and stderr are read by two daemon threads into a queue; :meth:`Job.poll` drains it.
- Progress protocol: a stdout line ``PROGRESS <done>/<total> <stage>`` (e.g. printed by
  ``trial-analysis analyze --progress``) sets ``done``, ``total`` and ``stage``; such lines are not
  returned as log lines. Every other line (stdout or stderr) is a log line.
- Status: ``running``, then ``succeeded`` (exit 0), ``failed`` (non-zero exit) or ``cancelled``
  (after :meth:`Job.cancel`). :attr:`Job.errorMessage` names the command, the exit status and the
  last stderr line (the Lib CLIs print user-fixable errors as one line there).
- Cancel sends SIGTERM to the process group and SIGKILL after a grace period, so a child can die at
  any instruction (a long C call delays Python's SIGTERM handler past any grace). The Libs publish
  through ``ParaspinalLBPCore.staging``; ``stagingFolders`` names the folders where the job stages its
  outputs, and once the whole process group is gone the job finishes a committed publication there or
  removes an unfinished one (``staging.recover``) *before* its status leaves ``running``: a cancelled
  job leaves the earlier outputs or the complete new ones, never a staging folder.
- :meth:`Job.addEndCallback` registers clean-ups (e.g. removing the temporary input files the Logic
  wrote for the command) that run once, on the first :meth:`Job.poll` that sees the job ended.
- Python: the ``PythonSlicer`` launcher beside the running Slicer when there is one (it sets
  Slicer's library paths), else ``sys.executable`` (see :func:`pythonExecutable`).

Only the standard library is used, so this file also works outside Slicer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import namedtuple
from collections.abc import Callable, Sequence
from pathlib import Path

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
PROGRESS_PREFIX = "PROGRESS "

#: What :meth:`Job.poll` returns: the new log lines and the job's state after reading them.
JobUpdate = namedtuple("JobUpdate", "lines done total stage status returncode")


def parseProgress(line: str) -> tuple[int, int, str] | None:
    """``(done, total, stage)`` of a ``PROGRESS <done>/<total> <stage>`` line, else None."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    counts, _, stage = line[len(PROGRESS_PREFIX) :].partition(" ")
    done, slash, total = counts.partition("/")
    if not (slash and done.isdigit() and total.isdigit()):
        return None
    return int(done), int(total), stage.strip()


def _isExecutable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def pythonExecutable() -> str:
    """The Python to run a Lib's command line with.

    Inside Slicer ``sys.executable`` may be the application itself, and the bare interpreter lacks
    Slicer's library paths: use the ``PythonSlicer`` launcher (beside the interpreter, in Slicer's
    ``bin`` folder, or on the PATH Slicer sets). Elsewhere (a venv, the test harness) use
    ``sys.executable``.
    """

    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    candidates = [Path(sys.executable).parent / name]
    app = getattr(sys.modules.get("slicer"), "app", None)
    home = getattr(app, "slicerHome", None)
    if isinstance(home, str) and home:  # running inside real Slicer
        candidates.append(Path(home) / "bin" / name)
        found = shutil.which("PythonSlicer")
        if found:
            candidates.append(Path(found))
    for candidate in candidates:
        if _isExecutable(candidate):
            return str(candidate)
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    raise RuntimeError(
        f"no Python to run a background job: {sys.executable} is not a Python interpreter and "
        f"no PythonSlicer was found in {', '.join(str(c.parent) for c in candidates)}"
    )


class Job:
    """A command running in the background; poll it, cancel it, or wait for it."""

    def __init__(
        self,
        command: Sequence[str],
        cwd: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        pythonPath: Sequence[str | os.PathLike] = (),
        name: str | None = None,
        stagingFolders: Sequence[str | os.PathLike] = (),
    ) -> None:
        """Start ``command`` now; ``pythonPath`` folders are put first on the child's PYTHONPATH.

        ``stagingFolders``: folders where the command stages its outputs (recovered when it has ended).
        """

        self.command = [str(c) for c in command]
        self.name = name or Path(self.command[0]).name
        self.lines: list[str] = []  # every log line so far (PROGRESS lines excluded)
        self.done, self.total, self.stage = 0, 0, ""
        self.status, self.returncode = RUNNING, None
        self.lastStderrLine = ""
        self.startTime = time.monotonic()
        self._cancelRequested = False
        self._killAt: float | None = None  # after cancel: SIGKILL whatever of the group is left from then on
        self.stagingFolders = [Path(p) for p in stagingFolders]
        self.cleanupLines: list[str] = []  # what the end-of-job recovery did (also log lines)
        self._exitTime: float | None = None
        self._endTime: float | None = None
        self._queue: queue.Queue = queue.Queue()
        self._endCallbacks: list[Callable[[Job], None]] = []
        self.outputPath: Path | None = None  # set by the Logic that started the job, if it has one output
        childEnv = dict(os.environ if env is None else env)
        childEnv["PYTHONUNBUFFERED"] = "1"
        childEnv.setdefault("PYTHONIOENCODING", "utf-8")
        if pythonPath:
            entries = [str(p) for p in pythonPath] + [p for p in [childEnv.get("PYTHONPATH", "")] if p]
            childEnv["PYTHONPATH"] = os.pathsep.join(entries)
        options = {}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            options["start_new_session"] = True  # own session and process group: cancel reaches the tree
        try:
            self.process = subprocess.Popen(
                self.command,
                cwd=None if cwd is None else str(cwd),
                env=childEnv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                **options,
            )
        except OSError as exc:
            raise RuntimeError(f"{self.name}: cannot start {' '.join(self.command)}: {exc}") from exc
        self.pid = self.process.pid
        self._readers = [
            threading.Thread(target=self._read, args=(stream, tag), daemon=True, name=f"job-{self.pid}-{tag}")
            for stream, tag in ((self.process.stdout, "out"), (self.process.stderr, "err"))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, tag: str) -> None:
        """Reader thread: one queue item per line until the stream closes."""
        with stream:
            for line in stream:
                self._queue.put((tag, line.rstrip("\r\n")))

    def poll(self) -> JobUpdate:
        """New log lines and the current state; never blocks (call it from a timer)."""

        new: list[str] = []
        while True:
            try:
                tag, line = self._queue.get_nowait()
            except queue.Empty:
                break
            progress = parseProgress(line) if tag == "out" else None
            if progress is not None:
                self.done, self.total, self.stage = max(self.done, progress[0]), progress[1], progress[2]
                continue
            if tag == "err" and line.strip():
                self.lastStderrLine = line.strip()
            new.append(line)
        if self.status == RUNNING:
            new += self._updateStatus(time.monotonic())
        self.lines.extend(new)
        return JobUpdate(new, self.done, self.total, self.stage, self.status, self.returncode)

    def _updateStatus(self, now: float) -> list[str]:
        """Finish the job once it has ended: recover its staging folders, set the status, run callbacks."""
        returncode = self.process.poll()
        if returncode is None:
            return []
        if self._exitTime is None:
            self._exitTime = now
        readersDone = not any(r.is_alive() for r in self._readers)
        # A grandchild that keeps the pipes open must not keep the job "running" for ever.
        if not (readersDone and self._queue.empty()) and now - self._exitTime < 2.0:
            return []
        groupGone = not self.groupAlive()
        if not groupGone and self._cancelRequested:  # a cancelled job ends when all its processes have
            if self._killAt is not None and now >= self._killAt:
                self._signalGroup(kill=True)
            return []
        if not groupGone and now - self._exitTime < 2.0:  # e.g. pool workers shutting down
            return []
        lines = self.cleanupLines = self._recoverStaging(groupGone)
        self.returncode = returncode
        self._endTime = now
        if self._cancelRequested:
            self.status = CANCELLED
        else:
            self.status = SUCCEEDED if returncode == 0 else FAILED
        callbacks, self._endCallbacks = self._endCallbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # a clean-up must not hide the job's own outcome
                logging.exception("%s: end-of-job callback failed", self.name)
        return lines

    def _recoverStaging(self, groupGone: bool) -> list[str]:
        """Finish or remove what the job's processes left in its staging folders; one log line each."""
        if not self.stagingFolders:
            return []
        from ParaspinalLBPCore import staging  # stdlib only; not at top level (house rule for this package)

        deadGroup = self.pid if groupGone and os.name != "nt" else None
        lines = []
        for folder in self.stagingFolders:
            try:
                lines += [f"clean-up: {line}" for line in staging.recover(folder, deadGroup)]
            except (OSError, ValueError) as exc:  # e.g. no permission, a COMMIT not written by staging.py
                logging.exception("%s: clean-up of %s failed", self.name, folder)
                lines.append(f"clean-up of {folder} failed: {exc}")
        return lines

    def addEndCallback(self, callback: Callable[[Job], None]) -> None:
        """Call ``callback(job)`` once when the job has ended (any status), from :meth:`poll`."""
        if self.status == RUNNING:
            self._endCallbacks.append(callback)
        else:
            callback(self)

    @property
    def publishedWhileCancelled(self) -> bool:
        """True when a cancelled job had committed its outputs and the clean-up completed them (they are new)."""
        return any(line.startswith("clean-up: finished") for line in self.cleanupLines)

    @property
    def running(self) -> bool:
        """True until the job has ended and all its output has been read."""
        return self.status == RUNNING

    @property
    def elapsed(self) -> float:
        """Seconds from the start to the end of the job (or to now while it runs)."""

        return (self._endTime or time.monotonic()) - self.startTime

    @property
    def errorMessage(self) -> str:
        """One line naming the command, the exit status and the last stderr line ('' unless failed)."""
        if self.status != FAILED:
            return ""
        detail = self.lastStderrLine or "no error output"
        return f"{self.name} failed (exit status {self.returncode}; {' '.join(self.command)}): {detail}"

    def raiseIfFailed(self) -> None:
        """RuntimeError with :attr:`errorMessage` when the job failed (cancelled is not a failure)."""
        if self.status == FAILED:
            raise RuntimeError(self.errorMessage)

    def groupAlive(self) -> bool:
        """True while any process of the job's process group (or the child, on Windows) exists."""
        if self.process.poll() is None:
            return True
        if os.name == "nt":
            return False
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):  # gone (or the id now belongs to someone else)
            return False
        return True

    def _signalGroup(self, kill: bool) -> None:

        if os.name == "nt":
            if self.process.poll() is None:
                # taskkill /T reaches the launcher's children too; /F when killing.
                args = ["taskkill", "/T", "/PID", str(self.pid)] + (["/F"] if kill else [])
                subprocess.run(args, capture_output=True, check=False)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(self.pid, signal.SIGKILL if kill else signal.SIGTERM)

    def cancel(self, grace: float = 5.0) -> None:
        """Terminate the whole process group now, kill it if still alive after ``grace`` seconds.

        Returns at once; the status becomes ``cancelled`` on a later :meth:`poll`, once every process
        of the group is gone and the staging folders are recovered (a job that had already ended keeps
        its status).
        """

        if self.status != RUNNING or self._cancelRequested:
            return
        self._cancelRequested = True
        self._killAt = time.monotonic() + grace
        self._signalGroup(kill=False)

        def escalate() -> None:
            if self.groupAlive():
                self._signalGroup(kill=True)

        timer = threading.Timer(grace, escalate)
        timer.daemon = True
        timer.start()

    def wait(self, timeout: float | None = None, interval: float = 0.1) -> JobUpdate:
        """Block until the job ends (or ``timeout`` seconds pass); returns the last :meth:`poll`."""

        deadline = None if timeout is None else time.monotonic() + timeout
        update = self.poll()
        while update.status == RUNNING and (deadline is None or time.monotonic() < deadline):
            time.sleep(interval)
            update = self.poll()
        return update


#: The folder holding the shared plain-Python package ParaspinalLBPCore (and this package): on every
#: Lib job's PYTHONPATH, since inside Slicer only the modules' own folders are on ``sys.path``.
SHARED_DIR = Path(__file__).resolve().parents[1]


def libPythonPath(moduleDirs: Sequence[str | os.PathLike] = ()) -> list[str]:
    """PYTHONPATH entries for a Lib job: the module folders given, then the shared folder."""
    entries = [str(p) for p in moduleDirs]
    return entries + ([str(SHARED_DIR)] if str(SHARED_DIR) not in entries else [])


def startLibJob(
    lib: str,
    args: Sequence[str],
    python: str | None = None,
    pythonPath: Sequence[str | os.PathLike] = (),
    cwd: str | os.PathLike | None = None,
    name: str | None = None,
    stagingFolders: Sequence[str | os.PathLike] = (),
) -> Job:
    """Start ``python -m <lib> <args…>`` in the background (e.g. ``TrialAnalysisLib analyze …``).

    ``pythonPath``: the module folder holding ``lib``; the shared folder is added (:func:`libPythonPath`).
    ``stagingFolders``: where the command stages its outputs (see :class:`Job`).
    """
    command = [python or pythonExecutable(), "-m", lib, *[str(a) for a in args]]
    return Job(
        command,
        cwd=cwd,
        pythonPath=libPythonPath(pythonPath),
        name=name or f"{lib} {args[0] if args else ''}".strip(),
        stagingFolders=stagingFolders,
    )
