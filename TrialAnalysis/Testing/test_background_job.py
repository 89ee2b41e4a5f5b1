"""Background analysis (what the Analyze button runs): real subprocesses, polled, cancelled, failed.

Part 1 checks ``ParaspinalLBPSlicer.jobs`` with tiny Python child scripts (progress protocol, log
lines, exit status, PYTHONPATH, cancelling a process group including a grandchild and a child that
ignores SIGTERM, and a publishing child SIGKILLed at every step of its publication: once the job
reports cancelled, the folder holds the old or the complete new outputs and no staging folder). Part 2
runs ``TrialAnalysisLogic.analyzeInBackground`` (``python -m TrialAnalysisLib analyze --progress``) on
a small simulated trial: progress is monotone and reaches its total, the result equals the
synchronous ``analyze``, ``loadResults`` makes the same table node, a cancelled run leaves no partial
outputs (and an earlier report untouched) also when SIGKILL lands while the report is staged or
between the moves into the folder (a job whose SIGTERM is never handled: ``kill_points``), and bad
input fails with the CLI's one-line error.

No assertion depends on how fast anything runs: deadlines are generous and only catch hangs.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from kill_points import deaf_python, snapshot, stager_command, wait_for_line, wait_until_ended

from ParaspinalLBPSlicer import jobs

POLL = 0.05
RUN_TIMEOUT = 240.0
GONE_TIMEOUT = 120.0  # only a hang fails: SIGKILL ends a group at once, whatever the load


def _live_group_members(pgid: int) -> list[int]:
    """Pids of non-zombie processes in process group ``pgid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _group_gone(pgid: int, limit: float = GONE_TIMEOUT) -> bool:
    """Poll until no live process of the group is left (True) or ``limit`` seconds pass (False)."""
    deadline = time.monotonic() + limit
    while _live_group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def _follow(job: jobs.Job, until=None, timeout: float = RUN_TIMEOUT) -> list[tuple[int, int, str]]:
    """Poll like the Widget's timer; returns each distinct (done, total, stage) seen. Stops early when
    ``until(job)`` is true (the job keeps running)."""
    seen: list[tuple[int, int, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        update = job.poll()
        state = (update.done, update.total, update.stage)
        if update.total and (not seen or seen[-1] != state):
            seen.append(state)
        if update.status != jobs.RUNNING or (until is not None and until(job)):
            return seen
        time.sleep(POLL)
    job.cancel(grace=0.5)
    pytest.fail(f"{job.command} still running after {timeout} s; output: {job.lines[-5:]}")


# --- Part 1: the job runner with tiny child scripts ---------------------------------------------


def test_job_reports_progress_lines_and_exit_status(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "jobhelper.py").write_text("GREETING = 'hello from PYTHONPATH'\n", encoding="utf-8")
    child = _script(
        tmp_path,
        "child.py",
        """
        import sys, time
        import jobhelper
        print(jobhelper.GREETING, flush=True)
        for k in range(5):
            print(f"PROGRESS {k}/5 step {k}", flush=True)
            print(f"working on {k}", file=sys.stderr, flush=True)
            time.sleep(0.05)
        print("PROGRESS 5/5 done", flush=True)
        print("PROGRESS garbage", flush=True)  # not a progress line: logged as is
        """,
    )
    job = jobs.Job([sys.executable, child], pythonPath=[lib], name="child")
    seen = _follow(job)
    assert job.status == jobs.SUCCEEDED and job.returncode == 0 and not job.running
    assert job.errorMessage == ""
    job.raiseIfFailed()
    assert (job.done, job.total, job.stage) == (5, 5, "done")
    assert [s[0] for s in seen] == sorted(s[0] for s in seen) and all(s[1] == 5 for s in seen)
    # stdout and stderr are read by two threads: order is kept within each stream, not across them
    assert next(line for line in job.lines if not line.startswith("working")) == "hello from PYTHONPATH"
    assert [line for line in job.lines if line.startswith("working")] == [f"working on {k}" for k in range(5)]
    assert not any(jobs.parseProgress(line) for line in job.lines)  # progress lines are not log lines
    assert "PROGRESS garbage" in job.lines
    assert job.lastStderrLine == "working on 4"
    elapsed = job.elapsed
    time.sleep(0.05)
    assert elapsed >= 0.25 and job.elapsed == elapsed  # at least the child's five 0.05 s sleeps; frozen


def test_parse_progress() -> None:
    assert jobs.parseProgress("PROGRESS 3/13 mixed model ODI") == (3, 13, "mixed model ODI")
    assert jobs.parseProgress("PROGRESS 13/13") == (13, 13, "")
    for line in ("PROGRESS x/3 a", "PROGRESS 3 a", "progress 1/2 a", "  PROGRESS 1/2 a", "PROGRESS 1/ a"):
        assert jobs.parseProgress(line) is None, line


def test_failed_job_names_command_and_last_stderr_line(tmp_path: Path) -> None:
    child = _script(
        tmp_path,
        "fail.py",
        """
        import sys
        print("some progress", flush=True)
        print("warning: not yet fatal", file=sys.stderr)
        print("fail.py: error: participants.csv: column 'age' missing", file=sys.stderr)
        sys.exit(3)
        """,
    )
    job = jobs.Job([sys.executable, child], name="failing child")
    assert wait_until_ended(job).status == jobs.FAILED
    assert job.returncode == 3
    msg = job.errorMessage
    assert msg.startswith("failing child failed (exit status 3;") and str(child) in msg
    assert msg.endswith("fail.py: error: participants.csv: column 'age' missing")
    with pytest.raises(RuntimeError, match="column 'age' missing"):
        job.raiseIfFailed()


def test_missing_executable_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no-such-python"):
        jobs.Job([str(tmp_path / "no-such-python"), "-c", "pass"])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process-group check reads /proc")
def test_cancel_ends_the_whole_process_group(tmp_path: Path) -> None:
    """The child starts a grandchild (like PythonSlicer starting python-real); both are stopped."""
    child = _script(
        tmp_path,
        "parent.py",
        """
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(f"grandchild {grandchild.pid}", flush=True)
        print("PROGRESS 0/10 sleeping", flush=True)
        time.sleep(600)
        """,
    )
    job = jobs.Job([sys.executable, child])
    _follow(job, until=lambda j: j.total > 0)
    grandchild = int(next(line for line in job.lines if line.startswith("grandchild")).split()[1])
    assert set(_live_group_members(job.pid)) == {job.pid, grandchild}
    job.cancel(grace=60.0)  # SIGTERM alone ends both (default handlers): no SIGKILL needed
    assert _group_gone(job.pid)
    assert wait_until_ended(job).status == jobs.CANCELLED
    assert job.returncode == -15  # SIGTERM
    assert job.errorMessage == ""
    job.raiseIfFailed()  # cancelled is not a failure


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process-group check reads /proc")
def test_cancel_kills_a_child_that_survives_sigterm_after_the_grace_period(tmp_path: Path) -> None:
    """The child reports the SIGTERM and goes on (as one whose handler waits for a long C call would):
    the job stays running until SIGKILL, then is cancelled with status -9."""
    child = _script(
        tmp_path,
        "stubborn.py",
        """
        import signal, time
        signal.signal(signal.SIGTERM, lambda signum, frame: print("SIGTERM received", flush=True))
        print("PROGRESS 0/1 surviving SIGTERM", flush=True)
        while True:
            time.sleep(600)
        """,
    )
    job = jobs.Job([sys.executable, child])
    _follow(job, until=lambda j: j.total > 0, timeout=RUN_TIMEOUT)
    job.cancel(grace=1.0)
    wait_for_line(job, "SIGTERM received")
    assert job.running and _live_group_members(job.pid) == [job.pid]  # alive after SIGTERM
    assert wait_until_ended(job).status == jobs.CANCELLED and job.returncode == -9
    assert _group_gone(job.pid)


NEW_SET = {"a.txt": "new a", "b.txt": "new b", "sub/y": "new y", "results.json": "{}"}


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_cancelled_job_leaves_old_or_new_outputs_whatever_step_sigkill_hits(tmp_path: Path) -> None:
    """A publishing child that never handles SIGTERM, cancelled before each step of its publication in
    turn: when the job reports cancelled (SIGKILL, -9) the folder holds exactly the old files before the
    commit and exactly the new set after it; the job removed or finished the staging folder itself."""
    folder = tmp_path / "out"
    old = {"a.txt": "old a", "keep.txt": "kept", "sub/x": "old x"}

    def reset() -> dict:
        shutil.rmtree(folder, ignore_errors=True)
        for rel, text in old.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        return snapshot(folder)

    spec = {"mode": "files", "folder": str(folder), "entries": NEW_SET, "last": ["results.json"]}
    before = reset()
    dry = jobs.Job(stager_command(spec), pythonPath=jobs.libPythonPath(), stagingFolders=[folder])
    assert wait_until_ended(dry).status == jobs.SUCCEEDED, dry.lines
    after = snapshot(folder)
    assert after["a.txt"] == b"new a" and "sub/x" not in after and after["keep.txt"] == b"kept"
    steps = [line.split(" ", 2)[2] for line in dry.lines if line.startswith("EVENT ")]
    commit = next(i for i, s in enumerate(steps, 1) if s.endswith("/COMMIT"))
    for k in range(1, len(steps) + 1):
        assert reset() == before
        job = jobs.Job(stager_command({**spec, "pause_at": k}), pythonPath=jobs.libPythonPath(),
                       stagingFolders=[folder])  # fmt: skip
        wait_for_line(job, "PAUSED before")
        job.cancel(grace=0.2)
        assert wait_until_ended(job).status == jobs.CANCELLED and job.returncode == -9, steps[k - 1]
        assert snapshot(folder) == (after if k > commit else before), f"killed before {steps[k - 1]}"
        cleanup = [line for line in job.lines if line.startswith("clean-up: ")]
        assert len(cleanup) == 1 and job.cleanupLines == cleanup, cleanup
        assert job.publishedWhileCancelled == (k > commit)


def test_python_executable_outside_and_inside_slicer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Here (venv, harness: no Slicer home) it is sys.executable; in a Slicer install the PythonSlicer
    launcher of its bin folder (a real executable file in a Slicer-like layout)."""
    import types

    fake_slicer = types.SimpleNamespace(app=types.SimpleNamespace())  # harness-like: no slicerHome
    monkeypatch.setitem(sys.modules, "slicer", fake_slicer)
    assert jobs.pythonExecutable() == sys.executable
    launcher = tmp_path / "Slicer-5.10" / "bin" / ("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
    launcher.parent.mkdir(parents=True)
    launcher.write_text('#!/bin/sh\nexec python3 "$@"\n')
    launcher.chmod(0o755)
    fake_slicer.app.slicerHome = str(tmp_path / "Slicer-5.10")
    assert jobs.pythonExecutable() == str(launcher)


# --- Part 2: the real trial analysis in the background ------------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_sigterm_while_the_report_is_published_waits_for_the_whole_set() -> None:
    """The CLI turns SIGTERM into exit 143; during the final moves into the report folder it is held."""
    import signal

    from ParaspinalLBPCore.cli import sigterm_exits
    from ParaspinalLBPCore.staging import deferred_signals

    order = []
    with pytest.raises(SystemExit) as exc, sigterm_exits():
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the signal arrives here and is only recorded
            order.append("all files moved")
        order.append("not reached")
    assert order == ["all files moved"] and exc.value.code == 143


N_IMPUTATIONS = 3
SEED = 1


@pytest.fixture(scope="module")
def trial_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from TrialAnalysisLib.simulate import simulate_trial

    return simulate_trial(tmp_path_factory.mktemp("bgtrial") / "trial", n=80, seed=3)


@pytest.fixture(scope="module")
def logic():
    import slicer_harness

    module = slicer_harness.import_module_file("TrialAnalysis")
    return module.TrialAnalysisLogic()


@pytest.fixture(scope="module")
def sync_run(trial_dir: Path, logic, tmp_path_factory: pytest.TempPathFactory):
    """The synchronous analysis (console/test path): (report dir, primary table as DataFrame)."""
    import slicer

    out = tmp_path_factory.mktemp("sync") / "report"
    html, table = logic.analyze(trial_dir, out, imputations=N_IMPUTATIONS, seed=SEED)
    assert Path(html) == out / "report.html"
    df = slicer.util.dataframeFromTable(table)
    slicer.mrmlScene.RemoveNode(table)
    return out, df


_snapshot = snapshot  # every entry, hidden ones and folders included


@pytest.mark.slicer
def test_cancel_soon_after_start_leaves_no_partial_outputs(trial_dir: Path, logic, tmp_path: Path) -> None:
    out = tmp_path / "report"
    job = logic.analyzeInBackground(trial_dir, out, imputations=N_IMPUTATIONS, seed=SEED)
    _follow(job, until=lambda j: j.done >= 2)  # data loaded and validated: the analysis has started
    assert job.running, "the analysis ended before it could be cancelled"
    job.cancel()
    update = wait_until_ended(job)
    assert _group_gone(job.pid)
    assert update.status == jobs.CANCELLED and job.errorMessage == ""
    assert not out.exists() or list(out.iterdir()) == []  # no report, no results, no staging folder
    with pytest.raises(FileNotFoundError, match=r"results\.json"):
        logic.loadResults(out)


@pytest.mark.slicer
def test_background_run_equals_synchronous_run_and_cancel_keeps_earlier_report(
    trial_dir: Path, logic, sync_run, slicer_scene
) -> None:
    """In the folder of a finished report: a run cancelled while it writes figures changes nothing;
    running again completes with monotone progress and the synchronous run's numbers and table."""
    sync_out, sync_df = sync_run
    out = sync_out.parent / "background"
    shutil.copytree(sync_out, out)
    before = _snapshot(out)
    before_inodes = {name: (out / name).stat().st_ino for name in before}

    job = logic.analyzeInBackground(trial_dir, out, imputations=N_IMPUTATIONS, seed=SEED)
    _follow(job, until=lambda j: j.stage == "figures")
    assert job.running, "the analysis ended before it could be cancelled"
    job.cancel()
    assert wait_until_ended(job).status == jobs.CANCELLED
    assert _snapshot(out) == before  # earlier report untouched, no staging folder left

    job = logic.analyzeInBackground(trial_dir, out, imputations=N_IMPUTATIONS, seed=SEED)
    seen = _follow(job)
    assert job.status == jobs.SUCCEEDED, job.errorMessage or job.lines[-5:]
    done = [s[0] for s in seen]
    assert done == sorted(done) and len(set(done)) >= 4  # incremental, never backwards
    assert {s[1] for s in seen} == {13} and seen[-1] == (13, 13, "done")
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    for name in ("report.html", "results.json", "report.pdf"):  # really rewritten: new files
        assert (out / name).stat().st_ino != before_inodes[name], name

    html, table = logic.loadResults(out)
    assert html == out / "report.html" and table.GetAttribute("ParaspinalLBP.report") == str(html)
    df = slicer_scene.util.dataframeFromTable(table)
    assert list(df["analysis"]) == ["primary_mi", "primary_cc", "primary_pp"]
    pd.testing.assert_frame_equal(df, sync_df, check_exact=False, rtol=1e-9)
    mi = df.set_index("analysis").loc["primary_mi"]
    assert mi["estimate"] == pytest.approx(
        sync_df.set_index("analysis").loc["primary_mi", "estimate"], rel=1e-12
    )
    assert mi["ci_low"] < mi["estimate"] < mi["ci_high"]


@pytest.mark.slicer
@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("kill", ["start", "figures", "commit", "results.json"])
def test_sigkill_at_any_point_leaves_the_earlier_or_the_complete_new_report(
    kill: str, trial_dir: Path, logic, sync_run, tmp_path: Path, monkeypatch, slicer_scene
) -> None:
    """The flake made certain: the job's SIGTERM is never handled (as when a long C call holds the handler
    past the grace period), so Cancel ends in SIGKILL: during the analyses (no report before), while the
    figures are written, with the report staged but not committed, or between the moves into the folder
    (report.html & co moved, results.json not). When the job reports cancelled, the folder holds the
    earlier report byte for byte, or in the last case the complete new one (the job finished the
    publication); never a staging folder."""
    sync_out, sync_df = sync_run
    out = tmp_path / "report"
    if kill != "start":
        shutil.copytree(sync_out, out)
    before = _snapshot(out) if out.exists() else {}
    inodes = {name: (out / name).stat().st_ino for name in before}
    if kill == "results.json":  # between the moves
        python = deaf_python(tmp_path / "bin", dst=out / "results.json")
    else:  # at the commit at the latest: the cancel may land earlier, never later
        python = deaf_python(tmp_path / "bin", under=out, nth=1)
    monkeypatch.setattr(jobs, "pythonExecutable", lambda: python)
    job = logic.analyzeInBackground(trial_dir, out, imputations=N_IMPUTATIONS, seed=SEED)
    if kill in ("start", "figures"):
        _follow(job, until=lambda j: j.done >= 2 if kill == "start" else j.stage == "figures")
    else:
        assert wait_for_line(job, "PAUSED before ").endswith("COMMIT" if kill == "commit" else "results.json")
    assert job.running
    job.cancel(grace=0.2)
    assert wait_until_ended(job).status == jobs.CANCELLED and job.returncode == -9  # SIGKILL
    assert _group_gone(job.pid)
    assert job.publishedWhileCancelled == (kill == "results.json")
    if kill != "results.json":
        assert (_snapshot(out) if out.exists() else {}) == before
        return
    after = _snapshot(out)
    assert set(after) == set(before)  # the same files, none hidden beside them
    assert all((out / name).stat().st_ino != inodes[name] for name in after)  # every one replaced
    df = slicer_scene.util.dataframeFromTable(logic.loadResults(out)[1])
    pd.testing.assert_frame_equal(df, sync_df, check_exact=False, rtol=1e-9)


@pytest.mark.slicer
def test_bad_data_folder_fails_with_the_cli_error_line(logic, tmp_path: Path) -> None:
    missing = tmp_path / "no-trial-here"
    job = logic.analyzeInBackground(missing, tmp_path / "report", imputations=N_IMPUTATIONS, seed=SEED)
    assert job.wait(timeout=RUN_TIMEOUT).status == jobs.FAILED
    assert job.returncode == 2
    assert (
        job.lastStderrLine.startswith("trial-analysis analyze: error:") and str(missing) in job.lastStderrLine
    )
    assert job.errorMessage.endswith(job.lastStderrLine) and "TrialAnalysisLib analyze" in job.errorMessage
    with pytest.raises(RuntimeError, match="no-trial-here"):
        job.raiseIfFailed()
    assert not (tmp_path / "report" / "results.json").exists()
