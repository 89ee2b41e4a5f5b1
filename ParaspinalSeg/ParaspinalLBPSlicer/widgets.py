"""Widget-side helpers shared by the modules' Widgets: optional path parameters and a background-job panel.

Qt is imported inside the functions, so this file loads (and its pure helpers run) without Qt, as in
the headless test harness; :class:`JobMonitor` itself needs real Slicer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

#: ctkPathLineEdit shows an unset ``pathlib.Path`` parameter as "." (``Path("")`` is ``Path(".")``).
_UNSET_PATHS = {"", "."}


def optionalPath(value) -> Path | None:
    """A path parameter as a Path, or None when the user left it empty."""
    if value is None or str(value).strip() in _UNSET_PATHS:
        return None
    return Path(value)


class JobMonitor:
    """Follows a :class:`ParaspinalLBPSlicer.jobs.Job` from a ``qt.QTimer`` in a Widget.

    Shows ``PROGRESS`` lines on ``progressBar``, log lines in ``logTextEdit`` (a QPlainTextEdit) and
    the outcome in ``statusLabel``; ``cancelButton`` cancels. When the job ends, ``onSucceeded(job)``
    runs on success (load the results), a failure is shown with the job's one-line error, and
    ``onEnded()`` runs in every case (update the buttons). ``cleanup()`` cancels a running job: call it
    from the Widget's ``cleanup`` so closing Slicer leaves no orphan process.
    """

    POLL_MS = 300

    def __init__(
        self,
        progressBar,
        logTextEdit,
        statusLabel,
        cancelButton,
        onSucceeded: Callable,
        onEnded: Callable[[], None] | None = None,
        what: str = "Job",
    ) -> None:
        import qt

        self.progressBar, self.logTextEdit, self.statusLabel = progressBar, logTextEdit, statusLabel
        self.cancelButton = cancelButton
        self.onSucceeded, self.onEnded, self.what = onSucceeded, onEnded, what
        self.job = None
        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_MS)
        self._timer.connect("timeout()", self.poll)
        self.cancelButton.connect("clicked(bool)", self.cancel)
        self.cancelButton.enabled = False

    @property
    def running(self) -> bool:
        """True while a job is being followed and has not ended."""
        return self.job is not None and self.job.running

    def start(self, job, message: str = "Running…") -> None:
        """Follow ``job`` (just started by a Logic ``…InBackground`` method)."""
        self.job = job
        self.logTextEdit.clear()
        self.progressBar.setRange(0, 0)  # busy indicator until the first PROGRESS line
        self.progressBar.setFormat("starting")
        self.statusLabel.text = message
        self.cancelButton.enabled = True
        self._timer.start()

    def cancel(self) -> None:
        """Ask the running job to stop (its process group is terminated, then killed)."""
        if self.running:
            self.job.cancel()
            self.statusLabel.text = "Cancelling…"
            self.cancelButton.enabled = False

    def poll(self) -> None:
        """Timer slot: new log lines and progress; when the job ends, report it and call back."""
        import slicer

        job = self.job
        if job is None:
            self._timer.stop()
            return
        update = job.poll()
        for line in update.lines:
            self.logTextEdit.appendPlainText(line)
        if update.total:
            self.progressBar.setRange(0, update.total)
            self.progressBar.value = update.done
            self.progressBar.setFormat(f"{update.stage} (%v/%m)")
        if update.status == "running":
            return
        self._timer.stop()
        self.cancelButton.enabled = False
        if update.status == "cancelled" and job.publishedWhileCancelled:
            self.statusLabel.text = (
                f"{self.what} cancelled after it had written its results; they are complete."
            )
            self.progressBar.setFormat("cancelled")
        elif update.status == "cancelled":
            self.statusLabel.text = f"{self.what} cancelled; earlier results were left as they were."
            self.progressBar.setRange(0, 1)
            self.progressBar.value = 0
            self.progressBar.setFormat("cancelled")
        elif update.status == "failed":
            self.statusLabel.text = f"{self.what} failed."
            slicer.util.errorDisplay(job.errorMessage, windowTitle=f"{self.what} failed")
        else:
            with slicer.util.tryWithErrorDisplay(f"{self.what}: the results could not be loaded."):
                self.onSucceeded(job)
                self.statusLabel.text = f"{self.what} done in {job.elapsed:.0f} s."
        if self.onEnded is not None:
            self.onEnded()

    def cleanup(self) -> None:
        """Stop following; a running job is cancelled and given a few seconds to end (no orphans)."""
        self._timer.stop()
        if self.running:
            self.job.cancel(grace=2.0)
            self.job.wait(timeout=3.0)  # on application exit, let the kill escalation happen
        self.cancelButton.disconnect("clicked(bool)", self.cancel)
        self._timer.disconnect("timeout()", self.poll)
