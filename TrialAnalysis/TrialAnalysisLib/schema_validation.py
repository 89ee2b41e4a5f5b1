"""Validation of a trial dataset against the schema (contract C6) and the protocol.

Checks: files and columns present, values parse as their type, allowed ranges (ODI 0–100, VAS 0–10,
JOA 0–29, …), codes, missing values where not allowed, duplicate keys, participants known to every
table, visit days inside their windows, screening log consistent with enrolment, inclusion criteria
(warnings: protocol deviations), and randomization records against the allocation list: within each
stratum the k-th participant randomized (order: randomization_date, then participant_id) must carry
the arm and block of row k of allocation.csv, whose checksum must match allocation.sha256.

Arms are the names (exercise, control) unless arm_coding.csv declares the dataset coded: then every arm
of participants.csv and allocation.csv is one of its two codes (the randomisation service's coded
export, for blinded analysis). An arm name in a coded dataset, an unknown code, coded arms in a dataset
declared (or, without arm_coding.csv, presumed) unblinded, and a declaration that is malformed or
belongs to another allocation.csv are errors; files that would tell the codes apart are warnings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ParaspinalLBPCore.errors import BadInputError
from TrialAnalysisLib.schema import (
    ARMS,
    TABLES,
    VISIT_WINDOW,
    ArmCoding,
    Column,
    Table,
    TrialData,
    load_trial,
    read_arm_coding,
)

MAX_LISTED = 20  # individual issues listed per (file, column, check); the rest are counted


@dataclass(frozen=True)
class Issue:
    """One finding: level ('error'|'warning'), check name, file, column, participant, CSV line, message."""

    level: str
    check: str
    file: str
    column: str
    participant_id: str
    line: int | None
    message: str


@dataclass
class ValidationReport:
    """All findings of :func:`validate_trial`; ``ok`` when there is no error."""

    issues: list[Issue] = field(default_factory=list)
    n_suppressed: dict[tuple[str, str, str], int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        """Issues of level 'error'."""
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        """Issues of level 'warning'."""
        return [i for i in self.issues if i.level == "warning"]

    @property
    def ok(self) -> bool:
        """True when no error was found (warnings allowed)."""
        return not self.errors

    @property
    def table(self) -> pd.DataFrame:
        """Tidy table of the issues."""
        cols = ["level", "check", "file", "column", "participant_id", "line", "message"]
        return pd.DataFrame([i.__dict__ for i in self.issues], columns=cols)

    def has(self, check: str, file: str | None = None, column: str | None = None) -> bool:
        """Whether an issue of this check (and file/column) was reported."""
        return any(
            i.check == check and (file is None or i.file == file) and (column is None or i.column == column)
            for i in self.issues
        )

    def summary(self) -> str:
        """Readable report: counts then one line per issue."""
        lines = [f"trial dataset validation: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"]
        lines += [f"  {i.level.upper()} [{i.check}] {i.message}" for i in self.issues]
        lines += [
            f"  … {n} more [{c}] in {f} column {col!r}" for (f, col, c), n in self.n_suppressed.items() if n
        ]
        return "\n".join(lines)

    def raise_if_errors(self) -> None:
        """Raise ValueError listing the errors (first 10) when there are any."""
        if self.errors:
            head = "\n".join(i.message for i in self.errors[:10])
            raise BadInputError(f"trial dataset has {len(self.errors)} error(s):\n{head}")


class _Collector:
    def __init__(self) -> None:
        self.report = ValidationReport()
        self._counts: dict[tuple[str, str, str], int] = {}

    def add(self, level: str, check: str, file: str, column: str, message: str, pid: str = "",
            line: int | None = None) -> None:  # fmt: skip
        key = (file, column, check)
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._counts[key] > MAX_LISTED:
            self.report.n_suppressed[key] = self.report.n_suppressed.get(key, 0) + 1
            return
        self.report.issues.append(Issue(level, check, file, column, pid, line, message))


def _where(df: pd.DataFrame, idx: int, file: str) -> tuple[str, int, str]:
    """(participant id, CSV line number, readable location) of row ``idx``."""
    pid = str(df.at[idx, "participant_id"]) if "participant_id" in df.columns else ""
    line = int(df.index.get_loc(idx)) + 2  # header is line 1
    loc = f"{file} line {line}"
    if pid:
        loc += f" (participant {pid}"
        loc += f", visit {df.at[idx, 'visit']})" if "visit" in df.columns else ")"
    return pid, line, loc


def _fmt(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)


def _check_column(col: Column, df: pd.DataFrame, t: Table, out: _Collector) -> None:
    s = df[col.name]
    f = t.filename
    if col.dtype in ("float", "int") and s.dtype == object:  # did not parse: report the offending rows
        txt = s.astype(str).str.strip()
        bad = (txt != "") & pd.to_numeric(txt, errors="coerce").isna()
        for idx in s.index[bad.to_numpy()]:
            pid, line, loc = _where(df, idx, f)
            out.add(
                "error",
                "type",
                f,
                col.name,
                f"{loc}, column {col.name!r}: {s[idx]!r} is not a number",
                pid,
                line,
            )
        s = pd.to_numeric(txt.where(~bad), errors="coerce")
    if col.dtype in ("bool", "date") and s.dtype == object:  # did not parse: report the offending rows
        txt = s.astype(str).str.strip()
        if col.dtype == "bool":
            bad = (txt != "") & ~txt.str.lower().isin(["true", "false", "1", "0"])
            what = "not a boolean (True/False)"
        else:
            bad = (txt != "") & pd.to_datetime(txt, format="%Y-%m-%d", errors="coerce").isna()
            what = "not an ISO date (YYYY-MM-DD)"
        for idx in s.index[bad.to_numpy()]:
            pid, line, loc = _where(df, idx, f)
            out.add(
                "error", "type", f, col.name, f"{loc}, column {col.name!r}: {s[idx]!r} is {what}", pid, line
            )
        s = s.mask(txt == "")
    missing = s.isna() | (s.astype(str).str.strip() == "") if s.dtype == object else s.isna()
    if not col.nullable:
        for idx in s.index[missing.to_numpy()]:
            pid, line, loc = _where(df, idx, f)
            out.add(
                "error", "missing_value", f, col.name, f"{loc}, column {col.name!r}: value missing", pid, line
            )
    if col.codes and not col.arm:  # arm columns: _check_arms (their codes depend on arm_coding.csv)
        bad = ~missing & ~s.astype(str).isin(col.codes)
        for idx in s.index[bad.to_numpy()]:
            pid, line, loc = _where(df, idx, f)
            out.add("error", "code", f, col.name,
                    f"{loc}, column {col.name!r}: unknown code {s[idx]!r} (allowed: {', '.join(col.codes)})", pid, line)  # fmt: skip
    if col.dtype in ("float", "int") and (col.min is not None or col.max is not None):
        v = pd.to_numeric(s, errors="coerce").astype(float)
        lo = -np.inf if col.min is None else col.min
        hi = np.inf if col.max is None else col.max
        bad = v.notna() & ((v < lo) | (v > hi))
        for idx in s.index[bad.to_numpy()]:
            pid, line, loc = _where(df, idx, f)
            out.add("error", "range", f, col.name,
                    f"{loc}, column {col.name!r}: value {_fmt(v[idx])} outside the allowed range "
                    f"{_fmt(col.min)}–{_fmt(col.max)} {col.unit}".rstrip(), pid, line)  # fmt: skip


def _check_table(t: Table, df: pd.DataFrame, out: _Collector) -> None:
    f = t.filename
    for c in t.columns:
        if c.name not in df.columns:
            out.add("error", "missing_column", f, c.name, f"{f}: missing column {c.name!r} ({c.description})")
    for name in df.columns:
        if name not in t.column_names:
            out.add(
                "warning", "unknown_column", f, name, f"{f}: column {name!r} is not in the data dictionary"
            )
    for c in t.columns:
        if c.name in df.columns:
            _check_column(c, df, t, out)
    if t.key and all(k in df.columns for k in t.key):
        dup = df.duplicated(list(t.key), keep="first")
        for idx in df.index[dup.to_numpy()]:
            pid, line, loc = _where(df, idx, f)
            val = ", ".join(f"{k}={df.at[idx, k]}" for k in t.key)
            out.add("error", "duplicate", f, ",".join(t.key), f"{loc}: duplicate id ({val})", pid, line)


def _check_references(data: TrialData, out: _Collector) -> None:
    known = (
        set(data.participants["participant_id"].astype(str))
        if "participant_id" in data.participants
        else set()
    )
    for name, df in data.tables().items():
        if name in ("participants", "allocation") or "participant_id" not in df.columns:
            continue
        ids = df["participant_id"].astype(str).str.strip()
        bad = (ids != "") & (ids != "nan") & ~ids.isin(known)
        for idx in df.index[bad.to_numpy()]:
            pid, line, loc = _where(df, idx, TABLES[name].filename)
            out.add("error", "reference", TABLES[name].filename, "participant_id",
                    f"{loc}: participant {pid!r} is not in participants.csv", pid, line)  # fmt: skip


def _check_visits(v: pd.DataFrame, out: _Collector) -> None:
    if not {"visit", "visit_day"} <= set(v.columns):
        return
    day = pd.to_numeric(v["visit_day"], errors="coerce")
    for visit, (lo, hi) in VISIT_WINDOW.items():
        bad = (v["visit"] == visit) & day.notna() & ((day < lo) | (day > hi))
        for idx in v.index[bad.to_numpy()]:
            pid, line, loc = _where(v, idx, "visits.csv")
            out.add("error", "visit_window", "visits.csv", "visit_day",
                    f"{loc}: visit_day {day[idx]:g} outside the window of {visit} ({lo} to {hi} days)", pid, line)  # fmt: skip
    if "nass" in v.columns:
        bad = (v["visit"] != "m12") & pd.to_numeric(v["nass"], errors="coerce").notna()
        for idx in v.index[bad.to_numpy()]:
            pid, line, loc = _where(v, idx, "visits.csv")
            out.add(
                "warning", "nass_visit", "visits.csv", "nass", f"{loc}: NASS recorded outside m12", pid, line
            )


def _check_inclusion(p: pd.DataFrame, out: _Collector) -> None:
    rules = [
        ("age", lambda x: x >= 60, "age ≥ 60"),
        ("odi_baseline", lambda x: (x >= 20) & (x <= 60), "baseline ODI 20–60"),
        ("goutallier_grade", lambda x: x >= 2, "Goutallier grade ≥ 2"),
    ]
    for col, ok, text in rules:
        if col not in p.columns:
            continue
        x = pd.to_numeric(p[col], errors="coerce").astype(float)
        bad = x.notna() & ~ok(x)
        for idx in p.index[bad.to_numpy()]:
            pid, line, loc = _where(p, idx, "participants.csv")
            out.add("warning", "inclusion", "participants.csv", col,
                    f"{loc}: {col} = {x[idx]:g} violates the inclusion criterion {text}", pid, line)  # fmt: skip


def _check_screening(s: pd.DataFrame, p: pd.DataFrame, out: _Collector) -> None:
    need = {"enrolled", "eligible", "participant_id"}
    if not need <= set(s.columns) or "participant_id" not in p.columns:
        return
    enrolled = s["enrolled"].fillna(False).astype(bool)
    bad = enrolled & ~s["eligible"].fillna(False).astype(bool)
    for idx in s.index[bad.to_numpy()]:
        pid, line, loc = _where(s, idx, "screening.csv")
        out.add(
            "error", "screening", "screening.csv", "eligible", f"{loc}: enrolled but not eligible", pid, line
        )
    listed = set(s.loc[enrolled, "participant_id"].astype(str))
    for pid in sorted(set(p["participant_id"].astype(str)) - listed):
        out.add("error", "screening", "screening.csv", "participant_id",
                f"screening.csv: participant {pid} of participants.csv has no enrolled screening record", pid)  # fmt: skip


def _check_randomization(data: TrialData, out: _Collector) -> None:
    p, a = data.participants, data.allocation
    f = "participants.csv"
    if {"centre", "sex", "stratum"} <= set(p.columns):
        expect = p["centre"].astype(str) + "-" + p["sex"].astype(str)
        for idx in p.index[(expect != p["stratum"].astype(str)).to_numpy()]:
            pid, line, loc = _where(p, idx, f)
            out.add("error", "randomization", f, "stratum",
                    f"{loc}: stratum {p.at[idx, 'stratum']!r} does not match centre-sex {expect[idx]!r}", pid, line)  # fmt: skip
    if data.directory is not None:
        csv = data.files.get("allocation", data.directory / "allocation.csv")
        sha = csv.with_suffix(".sha256")
        if csv.exists() and sha.exists():
            recorded = (sha.read_text().split() or [""])[0]
            if hashlib.sha256(csv.read_bytes()).hexdigest() != recorded:
                out.add("error", "checksum", "allocation.csv", "",
                        "allocation.csv: SHA-256 does not match allocation.sha256 (the list was altered)")  # fmt: skip
    need_p = {"participant_id", "stratum", "randomization_date", "arm", "block_id"}
    need_a = {"stratum", "sequence_in_stratum", "arm", "block_id"}
    if a is None or not need_p <= set(p.columns) or not need_a <= set(a.columns):
        return
    q = p.reset_index().sort_values(["stratum", "randomization_date", "participant_id"], kind="stable")
    q["sequence_in_stratum"] = q.groupby("stratum").cumcount() + 1
    alloc = a.assign(sequence_in_stratum=pd.to_numeric(a["sequence_in_stratum"], errors="coerce"))
    alloc = alloc.drop_duplicates(["stratum", "sequence_in_stratum"])
    m = q.merge(alloc[["stratum", "sequence_in_stratum", "arm", "block_id"]], how="left",
                on=["stratum", "sequence_in_stratum"], suffixes=("", "_list"))  # fmt: skip
    for _, r in m.iterrows():
        idx = r["index"]
        pid, line, loc = _where(p, idx, f)
        where = f"allocation.csv stratum {r['stratum']} sequence {r['sequence_in_stratum']}"
        if pd.isna(r["arm_list"]):
            out.add(
                "error", "randomization", f, "arm", f"{loc}: no entry {where} for this participant", pid, line
            )
            continue
        if r["arm"] != r["arm_list"]:
            out.add("error", "randomization", f, "arm",
                    f"{loc}: arm {r['arm']!r} contradicts {where} ({r['arm_list']!r})", pid, line)  # fmt: skip
        if r["block_id"] != r["block_id_list"]:
            out.add("error", "randomization", f, "block_id",
                    f"{loc}: block_id {r['block_id']!r} contradicts {where} ({r['block_id_list']!r})", pid, line)  # fmt: skip


def _check_arm_coding(data: TrialData, out: _Collector) -> ArmCoding | None:
    """The declared arm coding (None when unusable): well formed, and tied to this allocation.csv by its SHA-256."""
    f, df = "arm_coding.csv", data.arm_coding
    coding, problems = read_arm_coding(df)
    if df is None:
        return coding
    where = f"{f} line 2" if len(df) == 1 else f
    for column, message in problems:
        if column != "state":  # a bad or missing state is already reported by the column checks
            out.add(
                "error",
                "arm_coding",
                f,
                column,
                f"{where}{f', column {column!r}' if column else ''}: {message}",
            )
    alloc = data.files.get("allocation")
    if len(df) == 1 and "allocation_sha256" in df.columns and alloc is not None and alloc.exists():
        recorded = str(df["allocation_sha256"].iloc[0]).strip()
        actual = hashlib.sha256(alloc.read_bytes()).hexdigest()
        if recorded != actual:
            out.add("error", "arm_coding", f, "allocation_sha256",
                    f"{where}, column 'allocation_sha256': {recorded[:12]}… is not the SHA-256 of {alloc.name} "
                    f"({actual[:12]}…): the declaration belongs to another allocation export")  # fmt: skip
    return None if problems else coding


def _arm_problem(value: str, coding: ArmCoding, declared: bool) -> tuple[str, str] | None:
    """(check, reason) when ``value`` is not an arm of a dataset written with ``coding``, else None."""
    allowed = ", ".join(coding.values)
    if coding.coded and value in ARMS:
        return "blinding", (f"arm name {value!r} in a dataset declared coded (arm_coding.csv: codes {allowed}): "
                            "coded and unblinded arms cannot be mixed")  # fmt: skip
    if coding.coded and value not in coding.values:
        return "code", f"unknown code {value!r} (allowed in this coded dataset: {allowed})"
    if not coding.coded and value not in ARMS:
        if declared:
            return "blinding", (f"{value!r} is not an arm name (allowed: {allowed}), yet arm_coding.csv declares "
                                "the dataset unblinded: coded arms cannot pass as unblinded")  # fmt: skip
        return "code", (f"unknown code {value!r} (allowed: {allowed}; a coded dataset declares its codes in "
                        "arm_coding.csv, which the randomisation service's export writes)")  # fmt: skip
    return None


def _check_arms(data: TrialData, coding: ArmCoding, out: _Collector) -> None:
    """Every arm of participants.csv and allocation.csv is a name (unblinded) or a declared code (coded);
    a coded dataset's participants carry both codes."""
    declared = data.arm_coding is not None
    for name in ("participants", "allocation"):
        df, f = getattr(data, name), TABLES[name].filename
        if df is None or "arm" not in df.columns:
            continue
        arm = df["arm"].astype(str).str.strip()
        for idx in df.index[(arm != "").to_numpy()]:
            problem = _arm_problem(arm[idx], coding, declared)
            if problem:
                pid, line, loc = _where(df, idx, f)
                out.add("error", problem[0], f, "arm", f"{loc}, column 'arm': {problem[1]}", pid, line)
        used = sorted(set(arm) & set(coding.values))
        if name == "participants" and coding.coded and len(df) and len(used) < 2:
            out.add("error", "blinding", f, "arm",
                    f"{f}, column 'arm': only code(s) {', '.join(used) or 'none'} used; the participants of a coded "
                    f"dataset carry both declared codes {', '.join(coding.values)}")  # fmt: skip


#: Files that give the arm behind each code away when they sit in a coded dataset, and why.
REVEALING_FILES = {
    "truth.json": "the simulator's planted truth names the arms and the effects' direction",
    "allocation.json": "the list generator's parameters (seed) regenerate the unblinded list",
}


def _check_blinding(data: TrialData, coding: ArmCoding, out: _Collector) -> None:
    """Warnings: what in a coded dataset reveals which code is which arm to whoever reads the files."""
    if not coding.coded:
        return
    for name, why in REVEALING_FILES.items():
        if data.directory is not None and (data.directory / name).exists():
            out.add(
                "warning",
                "blinding",
                name,
                "",
                f"{name} in a coded dataset: {why}; leave it out of blinded data",
            )
    p = data.participants
    if "compliance_pct" in p.columns and "arm" in p.columns:
        recorded = p.groupby(p["arm"].astype(str))["compliance_pct"].apply(lambda s: bool(s.notna().any()))
        if recorded.nunique() > 1:
            out.add("warning", "blinding", "participants.csv", "compliance_pct",
                    "participants.csv, column 'compliance_pct': exercise-diary compliance is recorded for one code "
                    "only and so reveals which arm it is; withhold it (and compliance.csv) from blinded data")  # fmt: skip


def validate_trial(
    data: TrialData | str | Path, mapping: Mapping[str, Any] | str | Path | None = None
) -> ValidationReport:
    """Validate a loaded dataset (or a directory, optionally with an export mapping) and return every finding."""
    if not isinstance(data, TrialData):
        data = load_trial(data, mapping)
    out = _Collector()
    for name, t in TABLES.items():
        df = getattr(data, name)
        if df is None:
            out.add("warning", "missing_file", t.filename, "", f"{t.filename}: file absent")
            continue
        _check_table(t, df, out)
    coding = _check_arm_coding(data, out)
    if coding is not None:  # arms are checked against a usable declaration only
        _check_arms(data, coding, out)
        _check_blinding(data, coding, out)
    _check_references(data, out)
    _check_visits(data.visits, out)
    _check_inclusion(data.participants, out)
    if data.screening is not None:
        _check_screening(data.screening, data.participants, out)
    _check_randomization(data, out)
    if data.compliance is not None and {"sessions_done", "sessions_planned"} <= set(data.compliance.columns):
        c = data.compliance
        bad = pd.to_numeric(c["sessions_done"], errors="coerce") > pd.to_numeric(
            c["sessions_planned"], errors="coerce"
        )
        for idx in c.index[bad.to_numpy()]:
            pid, line, loc = _where(c, idx, "compliance.csv")
            out.add("error", "range", "compliance.csv", "sessions_done", f"{loc}: sessions_done > sessions_planned",
                    pid, line)  # fmt: skip
    return out.report
