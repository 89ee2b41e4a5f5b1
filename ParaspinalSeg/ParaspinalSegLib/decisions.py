"""Reviewer decisions on batch cases (``qc_decisions.csv``), which the next batch run respects.

Columns: ``case_id, decision, reviewer, timestamp, note, run``; ``decision`` is ``accept`` or ``redo``;
``run`` (optional) is the case's run number the reviewer looked at (``run_number`` in ``status.csv`` and
the QC page). Rows are appended (by hand, a spreadsheet, :func:`ParaspinalSegLib.batch.record_decision`
or the QC page's download button); the latest row of a case by timestamp (ties: the later row) is its
decision.

- ``accept`` freezes the case: it is not run again, even when its inputs or the settings change
  (a reviewed result must not be replaced silently; ``status.csv`` says when the inputs changed).
  A case without finished outputs is run anyway.
- ``redo`` forces one re-run (typically after the seeds were corrected). A decision that names its run
  applies while that run is the case's latest, so the re-run (run number + 1) does not repeat it: run
  numbers order runs and decisions, not the clock, however close the decision is to the run's end. A
  decision without a run (written by hand) applies when its timestamp is later than the run's end.

Timestamps are ISO 8601 (written with microseconds); one without a time zone is taken as UTC.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ParaspinalLBPCore.atomic import atomic_path
from ParaspinalLBPCore.errors import BadInputError

log = logging.getLogger(__name__)

DECISIONS_FILE = "qc_decisions.csv"
DECISION_COLUMNS = ("case_id", "decision", "reviewer", "timestamp", "note", "run")
DECISIONS = ("accept", "redo")


def now_utc() -> str:
    """Current UTC time, ISO 8601 with microseconds (the format of markers and decisions)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def parse_time(text: str | None) -> datetime:
    """An ISO 8601 time as an aware datetime (no zone = UTC); missing or unreadable = the epoch."""
    try:
        t = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def read_decisions(path: str | Path, known_cases: Iterable[str] | None = None) -> dict[str, dict]:
    """Latest decision per case ``{case_id: {decision, reviewer, timestamp (datetime), note, run (int or
    None)}}``.

    A missing file means no decisions. Errors name the file, line and column; a case id not in
    ``known_cases`` is logged (the file may outlive a manifest) and kept.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in DECISION_COLUMNS[:4] if c not in df.columns]
    if missing:
        raise BadInputError(
            f"decisions file {path}: column(s) {', '.join(missing)} missing "
            f"(the columns are {', '.join(DECISION_COLUMNS)})"
        )
    latest: dict[str, dict] = {}
    known = set(known_cases) if known_cases is not None else None
    for i, row in enumerate(df.to_dict("records")):
        line = i + 2
        case_id, decision = row["case_id"].strip(), row["decision"].strip().lower()
        if not case_id:
            raise BadInputError(f"decisions file {path}, line {line}, column case_id: empty")
        if decision not in DECISIONS:
            raise BadInputError(
                f"decisions file {path}, line {line}, column decision: {row['decision']!r} is not "
                f"one of {', '.join(DECISIONS)}"
            )
        stamp = _timestamp(row["timestamp"], f"decisions file {path}, line {line}, column timestamp")
        run = _run_number(str(row.get("run", "")), f"decisions file {path}, line {line}, column run")
        if known is not None and case_id not in known:
            log.warning("decisions file %s, line %d: case %r is not in the manifest", path, line, case_id)
        entry = {
            "decision": decision,
            "reviewer": row["reviewer"].strip(),
            "timestamp": stamp,
            "note": str(row.get("note", "")).strip(),
            "run": run,
            "line": line,
        }
        if case_id not in latest or stamp >= latest[case_id]["timestamp"]:
            latest[case_id] = entry
    return latest


def _timestamp(text: str, where: str) -> datetime:
    text = text.strip()
    if not text:
        raise BadInputError(f"{where}: empty (ISO 8601, e.g. 2026-05-01T14:03:00Z)")
    stamp = parse_time(text)
    if stamp.timestamp() == 0:
        raise BadInputError(f"{where}: {text!r} is not an ISO 8601 time (e.g. 2026-05-01T14:03:00Z)")
    return stamp


def _run_number(text: str, where: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise BadInputError(f"{where}: {text!r} is not a run number (1, 2, …; empty when unknown)")
    return int(text)


def redo_pending(decision: Mapping, marker: Mapping) -> bool:
    """Whether ``decision`` (from :func:`read_decisions`) asks to run again a case whose last run left
    ``marker`` (its ``done.json``): a ``redo`` naming the marker's run number, or, for a decision without
    a run (or a marker of a batch made before run numbers), one stamped later than the run finished."""
    if decision.get("decision") != "redo":
        return False
    reviewed, current = decision.get("run"), marker.get("run_number")
    if reviewed is not None and current is not None:
        return reviewed == int(current)
    return decision["timestamp"] > parse_time(marker.get("finished_at"))


def append_decision(
    path: str | Path,
    case_id: str,
    decision: str,
    reviewer: str,
    note: str = "",
    timestamp: str | None = None,
    run: int | None = None,
) -> Path:
    """Append one decision row (timestamp = now, UTC) to the decisions file, atomically.

    ``run``: the case's run number the decision is about (see :func:`redo_pending`); None leaves it empty.
    """
    decision = decision.strip().lower()
    if decision not in DECISIONS:
        raise BadInputError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    if not reviewer.strip():
        raise BadInputError("a decision needs the reviewer's name")
    path = Path(path)
    rows = []
    if path.is_file():
        read_decisions(path)  # refuse to append to a file that does not parse
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    rows.append(
        {
            "case_id": case_id,
            "decision": decision,
            "reviewer": reviewer.strip(),
            "timestamp": timestamp or now_utc(),
            "note": note,
            "run": "" if run is None else int(run),
        }
    )
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(DECISION_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_decision_rows(path: str | Path) -> list[dict[str, str]]:
    """Every row of the decisions file as strings (the QC page carries them into its download)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [{c: (row.get(c) or "").strip() for c in DECISION_COLUMNS} for row in csv.DictReader(fh)]
