"""Reviewer decisions on batch cases (``qc_decisions.csv``), which the next batch run respects.

Columns: ``case_id, decision, reviewer, timestamp, note``; ``decision`` is ``accept`` or ``redo``.
Rows are appended (by hand, a spreadsheet, ``paraspinal-seg batch --decide`` or the QC page's
download button); the latest row of a case by timestamp (ties: the later row) is its decision.

- ``accept`` freezes the case: it is not run again, even when its inputs or the settings change
  (a reviewed result must not be replaced silently; ``status.csv`` says when the inputs changed).
  A case without finished outputs is run anyway.
- ``redo`` newer than the case's last run forces one re-run (typically after the seeds were
  corrected); the run after that is newer than the decision, so it does not repeat.

Timestamps are ISO 8601; one without a time zone is taken as UTC.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ParaspinalLBPCore.atomic import atomic_path
from ParaspinalLBPCore.errors import BadInputError

log = logging.getLogger(__name__)

DECISIONS_FILE = "qc_decisions.csv"
DECISION_COLUMNS = ("case_id", "decision", "reviewer", "timestamp", "note")
DECISIONS = ("accept", "redo")


def now_utc() -> str:
    """Current UTC time, ISO 8601 with seconds (the format of markers and decisions)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_time(text: str | None) -> datetime:
    """An ISO 8601 time as an aware datetime (no zone = UTC); missing or unreadable = the epoch."""
    try:
        t = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def read_decisions(path: str | Path, known_cases: Iterable[str] | None = None) -> dict[str, dict]:
    """Latest decision per case ``{case_id: {decision, reviewer, timestamp (datetime), note}}``.

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
        if known is not None and case_id not in known:
            log.warning("decisions file %s, line %d: case %r is not in the manifest", path, line, case_id)
        entry = {
            "decision": decision,
            "reviewer": row["reviewer"].strip(),
            "timestamp": stamp,
            "note": str(row.get("note", "")).strip(),
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


def append_decision(
    path: str | Path, case_id: str, decision: str, reviewer: str, note: str = "", timestamp: str | None = None
) -> Path:
    """Append one decision row (timestamp = now, UTC) to the decisions file, atomically."""
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
