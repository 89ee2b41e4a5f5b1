"""Trial dataset schema (contract C6) as code: tables, columns, types, units, ranges, codes; loading.

The simulator writes with this schema and every consumer reads through :func:`load_trial`, so the
CSV layout has one definition. :func:`write_data_dictionary` exports it as ``data_dictionary.csv``;
:func:`TrialAnalysisLib.schema_validation.validate_trial` checks a dataset against this schema.

Conventions: tidy CSVs, UTF-8, ``\\n`` line ends, empty field = missing, booleans ``True``/``False``,
dates ISO ``YYYY-MM-DD``. Visit days count from randomization (day 0); the month visits count from
the end of the 6-week intervention (m1 = day 72 … m12 = day 407); recurrence time counts from the
end of the intervention (day 42) and is censored at 365 days.

Arms are the names ``exercise``/``control``, or, in a coded dataset for blinded analysis, two codes
(A/B) declared in ``arm_coding.csv`` (:class:`ArmCoding`, :func:`arm_coding`), as the randomisation
service's coded export writes it; without that file a dataset is unblinded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ParaspinalLBPCore.atomic import atomic_path
from ParaspinalLBPCore.errors import BadInputError, MissingInputError, MissingKeyError
from ParaspinalLBPCore.structures import LEVELS, MUSCLE_NAMES

CENTRES = ("C1", "C2", "C3", "C4", "C5")
SEXES = ("F", "M")
ARMS = ("exercise", "control")
ARM_CODING_STATES = ("unblinded", "coded")
VISITS = ("baseline", "eoi_6w", "m1", "m3", "m6", "m12")
# Nominal day (from randomization) and allowed window (± days) of each visit.
VISIT_DAY = {"baseline": 0, "eoi_6w": 42, "m1": 72, "m3": 133, "m6": 224, "m12": 407}
VISIT_WINDOW = {"baseline": (-30, 0), "eoi_6w": (35, 49), "m1": (65, 79), "m3": (119, 147), "m6": (203, 245),
                "m12": (377, 437)}  # fmt: skip
EXCLUSION_CODES = (
    "age_lt_60", "odi_out_of_range", "goutallier_lt_2", "nsaid_contraindication",
    "prior_spine_surgery", "specific_pathology", "declined_consent",
)  # fmt: skip
AE_TERMS = (
    "dyspepsia", "gastrointestinal_bleeding", "nausea", "muscle_soreness", "back_pain_flare",
    "hypertension", "oedema", "dizziness", "headache", "fall", "upper_respiratory_infection",
)  # fmt: skip
SEVERITIES = ("mild", "moderate", "severe")
RELATEDNESS = ("unrelated", "possibly", "probably", "definitely")
INTERVENTION_WEEKS = 6
RECURRENCE_MAX_DAYS = 365


@dataclass(frozen=True)
class Column:
    """One column: type (str|int|float|bool|date), unit, allowed range or codes, missing allowed, decimals;
    ``arm`` marks an arm column, whose allowed codes a coded dataset declares in arm_coding.csv."""

    name: str
    dtype: str
    description: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    codes: tuple[str, ...] = ()
    nullable: bool = False
    decimals: int | None = None
    arm: bool = False  # holds an arm: one of ``codes``, or of arm_coding.csv's codes in a coded dataset


@dataclass(frozen=True)
class Table:
    """One CSV file of the dataset with its columns and the columns forming its unique key."""

    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    required: bool = True

    @property
    def filename(self) -> str:
        """CSV file name, e.g. ``participants.csv``."""
        return f"{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        """Column names in canonical order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """Column by name (KeyError naming the table when unknown)."""
        for c in self.columns:
            if c.name == name:
                return c
        raise MissingKeyError(f"{self.filename}: no column {name!r} in the schema")


C = Column
PID = C("participant_id", "str", "participant identifier, 'P' + 4 digits")
LAB = [
    C("hb_g_l", "float", "haemoglobin", "g/L", 60, 220, decimals=0),
    C("wbc_10e9_l", "float", "white cell count", "10^9/L", 1, 30, decimals=1),
    C("plt_10e9_l", "float", "platelet count", "10^9/L", 50, 800, decimals=0),
    C("creatinine_umol_l", "float", "serum creatinine", "umol/L", 20, 400, decimals=0),
    C("alt_u_l", "float", "alanine aminotransferase", "U/L", 1, 500, decimals=0),
    C("ast_u_l", "float", "aspartate aminotransferase", "U/L", 1, 500, decimals=0),
]

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table("participants", "one row per randomized participant: baseline, arm, conduct flags", (
            PID,
            C("centre", "str", "recruiting centre", codes=CENTRES),
            C("sex", "str", "sex", codes=SEXES),
            C("age", "int", "age at randomization (inclusion ≥ 60)", "years", 18, 110),
            C("bmi", "float", "body-mass index", "kg/m2", 14, 60, decimals=1),
            C("arm", "str", "randomized arm (a coded dataset holds the codes of arm_coding.csv)", codes=ARMS, arm=True),
            C("randomization_date", "date", "date of randomization (ISO)"),
            C("stratum", "str", "randomization stratum centre-sex, e.g. 'C1-F'"),
            C("block_id", "str", "allocation block, e.g. 'C1-F-B03' (see allocation.csv)"),
            C("odi_baseline", "float", "Oswestry Disability Index at baseline (inclusion 20–60)", "points", 0, 100, decimals=0),
            C("vas_baseline", "float", "pain visual analogue scale at baseline", "cm", 0, 10, decimals=1),
            C("joa_baseline", "float", "JOA low-back score at baseline (higher = better)", "points", 0, 29, decimals=0),
            C("goutallier_grade", "int", "Goutallier grade of multifidus fatty infiltration at L4–L5 (inclusion ≥ 2)", "grade", 0, 4),
            C("biering_sorensen_s", "float", "Biering–Sørensen trunk-extensor hold time", "s", 0, 300, decimals=1),
            C("semg_mf_slope", "float", "sEMG multifidus median-frequency fatigue slope", "%/s", -3, 1, decimals=3),
            *LAB,
            C("mean_ff_pct", "float", "mean paraspinal (multifidus + erector spinae, both sides, L1–L5) fat fraction", "%", 0, 100, decimals=2),
            C("compliance_pct", "float", "exercise-diary compliance over the 6 weeks (exercise arm; empty in control)", "%", 0, 100, nullable=True, decimals=1),
            C("per_protocol", "bool", "per-protocol set: exercise arm compliance ≥ 75 %; control arm completed the 6-week course"),
            C("withdrew", "bool", "withdrew / lost to follow-up before the 12-month visit"),
            C("has_mri", "bool", "belongs to the imaging cohort (phantom MRI rendered from the phenotype)"),
            C("mri_dir", "str", "MRI directory relative to the dataset (empty if none)", nullable=True),
        ), key=("participant_id",)),
        Table("phenotype", "baseline paraspinal phenotype per participant × muscle/side × level", (
            PID,
            C("structure", "str", "muscle and side (canonical structure name)", codes=MUSCLE_NAMES),
            C("level", "str", "vertebral level", codes=LEVELS),
            C("fat_fraction_pct", "float", "mean fat fraction in the muscle at the level", "%", 0, 100, decimals=2),
            C("csa_cm2", "float", "cross-sectional area at the level", "cm2", 0, 60, decimals=2),
        ), key=("participant_id", "structure", "level")),
        Table("visits", "one row per participant × scheduled visit; missed visits have empty values", (
            PID,
            C("visit", "str", "scheduled visit", codes=VISITS),
            C("visit_day", "int", "day of the visit from randomization (empty if missed)", "days", -30, 500, nullable=True),
            C("odi", "float", "Oswestry Disability Index", "points", 0, 100, nullable=True, decimals=0),
            C("vas", "float", "pain visual analogue scale", "cm", 0, 10, nullable=True, decimals=1),
            C("joa", "float", "JOA low-back score", "points", 0, 29, nullable=True, decimals=0),
            C("nass", "int", "NASS patient satisfaction index at m12 (1 = best … 4 = worst); empty elsewhere", "", 1, 4, nullable=True),
        ), key=("participant_id", "visit")),
        Table("recurrence", "first recurrence (new episode ≥ 24 h with VAS > 2) after the intervention", (
            PID,
            C("time_days", "float", "days from end of intervention to recurrence or censoring", "days", 0, RECURRENCE_MAX_DAYS, decimals=0),
            C("event", "int", "1 = recurrence, 0 = censored", "", 0, 1),
        ), key=("participant_id",)),
        Table("adverse_events", "one row per adverse event", (
            PID,
            C("ae_id", "str", "adverse-event identifier"),
            C("term", "str", "adverse-event term", codes=AE_TERMS),
            C("severity", "str", "severity", codes=SEVERITIES),
            C("relatedness", "str", "relation to the trial intervention", codes=RELATEDNESS),
            C("serious", "bool", "serious adverse event"),
            C("onset_day", "int", "onset day from randomization", "days", 0, 500),
        ), key=("ae_id",)),
        Table("compliance", "weekly exercise-diary compliance (exercise arm)", (
            PID,
            C("week", "int", "intervention week", "week", 1, INTERVENTION_WEEKS),
            C("sessions_planned", "int", "home-exercise sessions planned", "sessions", 0, 14),
            C("sessions_done", "int", "sessions done per the diary", "sessions", 0, 14),
        ), key=("participant_id", "week")),
        Table("screening", "screening log for the CONSORT diagram", (
            C("screening_id", "str", "screening identifier, 'S' + 5 digits"),
            C("centre", "str", "screening centre", codes=CENTRES),
            C("screening_date", "date", "screening date (ISO)"),
            C("eligible", "bool", "met all inclusion and no exclusion criteria"),
            C("exclusion_reason", "str", "first failed criterion, or declined_consent; empty if enrolled", codes=EXCLUSION_CODES, nullable=True),
            C("enrolled", "bool", "randomized"),
            C("participant_id", "str", "participant identifier if enrolled", nullable=True),
        ), key=("screening_id",)),
        Table("allocation", "randomization list as generated (checksum in allocation.sha256)", (
            C("stratum", "str", "stratum centre-sex"),
            C("sequence_in_stratum", "int", "position in the stratum's list (1-based)", "", 1, 100000),
            C("block_id", "str", "block identifier"),
            C("block_size", "int", "size of the block", "", 2, 100),
            C("arm", "str", "allocated arm (a coded dataset holds the codes of arm_coding.csv)", codes=ARMS, arm=True),
        ), key=("stratum", "sequence_in_stratum")),
        Table("arm_coding", "how the arm columns are written (one row; absent = unblinded), e.g. by the randomisation service's export", (
            C("state", "str", "'unblinded': arm columns hold the arm names; 'coded': they hold the codes below (blinded analysis)", codes=ARM_CODING_STATES),
            C("codes", "str", "when coded, the two arm codes separated by '|', e.g. 'A|B' (which arm is which is not stated); empty when unblinded", nullable=True),
            C("allocation_sha256", "str", "SHA-256 of the allocation.csv exported with this declaration (ties the two together)"),
        )),
    )
}  # fmt: skip


@dataclass
class TrialData:
    """A loaded trial dataset: one DataFrame per table (None when the file is absent) plus truth.json."""

    participants: pd.DataFrame
    visits: pd.DataFrame
    phenotype: pd.DataFrame | None = None
    recurrence: pd.DataFrame | None = None
    adverse_events: pd.DataFrame | None = None
    compliance: pd.DataFrame | None = None
    screening: pd.DataFrame | None = None
    allocation: pd.DataFrame | None = None
    arm_coding: pd.DataFrame | None = None
    truth: dict[str, Any] | None = None
    directory: Path | None = None
    load_issues: list[tuple[str, str, str]] = field(default_factory=list)  # (file, column, message)
    files: dict[str, Path] = field(default_factory=dict)  # table -> file actually read

    def tables(self) -> dict[str, pd.DataFrame]:
        """Present tables by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name in TABLES and getattr(self, f.name) is not None}  # fmt: skip


@dataclass(frozen=True)
class ArmCoding:
    """How a dataset writes its arms: the names (unblinded) or two codes (coded, for blinded analysis).

    ``values`` are the arm columns' values, compared arm first and reference arm last (effects are
    first − last); ``labels`` are what tables and figures print: the name, or ``Arm A`` for code ``A``.
    """

    coded: bool
    values: tuple[str, ...]

    def label(self, value: object) -> str:
        """Printed label of an arm value."""
        return f"Arm {value}" if self.coded else str(value)

    @property
    def labels(self) -> tuple[str, ...]:
        """Printed labels in report order."""
        return tuple(self.label(v) for v in self.values)

    @property
    def compared(self) -> str:
        """Label of the arm whose difference from the reference is reported."""
        return self.labels[0]

    @property
    def reference(self) -> str:
        """Label of the reference arm."""
        return self.labels[-1]

    @property
    def contrast(self) -> str:
        """The reported difference in words, e.g. ``exercise − control`` or ``Arm A − Arm B``."""
        return f"{self.compared} − {self.reference}"

    def to_dict(self) -> dict[str, Any]:
        """State and arm values, for results.json."""
        return {"state": "coded" if self.coded else "unblinded", "arms": list(self.values)}


UNBLINDED = ArmCoding(False, ARMS)


def split_codes(text: object) -> list[str]:
    """The codes of arm_coding.csv's ``codes`` field ('A|B' -> ['A', 'B']; empty -> [])."""
    if not isinstance(text, str) or not text.strip():
        return []
    return [c.strip() for c in text.split("|")]


def read_arm_coding(df: pd.DataFrame | None) -> tuple[ArmCoding, list[tuple[str, str]]]:
    """The coding an arm_coding table declares (unblinded when absent) and its problems as (column, message).

    Coded means exactly two distinct, non-empty codes that are not arm names; unblinded means no codes.
    """
    if df is None:
        return UNBLINDED, []
    if len(df) != 1:
        return UNBLINDED, [("", f"expected exactly one row (the dataset's arm coding), found {len(df)}")]
    row = df.iloc[0]
    state = str(row.get("state", "")).strip()
    codes = split_codes(row.get("codes"))
    if state not in ARM_CODING_STATES:
        return UNBLINDED, [("state", f"state {state!r} is not one of {', '.join(ARM_CODING_STATES)}")]
    if state == "unblinded":
        problems = [("codes", f"codes {row.get('codes')!r} given for an unblinded dataset (leave it empty)")]
        return UNBLINDED, problems if codes else []
    names = {a.lower() for a in ARMS}
    if len(codes) != 2 or len(set(codes)) != 2 or "" in codes or any(c.lower() in names for c in codes):
        return UNBLINDED, [("codes", f"codes {row.get('codes')!r} of a coded dataset must be two distinct codes "
                                     f"separated by '|', e.g. 'A|B', none of them an arm name ({', '.join(ARMS)})")]  # fmt: skip
    return ArmCoding(True, tuple(sorted(codes))), []


def arm_coding_table(allocation_sha256: str, codes: Sequence[str] = ()) -> pd.DataFrame:
    """The one-row arm_coding table: unblinded without ``codes``, coded with the two ``codes``."""
    state = "coded" if codes else "unblinded"
    return pd.DataFrame([{"state": state, "codes": "|".join(codes), "allocation_sha256": allocation_sha256}])


def arm_coding(data: TrialData) -> ArmCoding:
    """The dataset's arm coding (arm_coding.csv; unblinded when absent); BadInputError if the declaration is unusable."""
    coding, problems = read_arm_coding(getattr(data, "arm_coding", None))
    if problems:
        column, message = problems[0]
        raise BadInputError(f"arm_coding.csv{f' column {column!r}' if column else ''}: {message}")
    return coding


def data_dictionary() -> pd.DataFrame:
    """The data dictionary as a DataFrame (one row per table × column)."""
    rows = []
    for t in TABLES.values():
        for c in t.columns:
            rows.append({
                "table": t.name, "file": t.filename, "column": c.name, "type": c.dtype, "unit": c.unit,
                "min": "" if c.min is None else _fmt_num(c.min), "max": "" if c.max is None else _fmt_num(c.max),
                "codes": "|".join(c.codes), "missing_allowed": c.nullable, "key": c.name in t.key,
                "description": c.description,
            })  # fmt: skip
    return pd.DataFrame(rows)


def _fmt_num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def write_data_dictionary(directory: str | Path) -> Path:
    """Write ``data_dictionary.csv`` into ``directory``."""
    path = Path(directory) / "data_dictionary.csv"
    write_csv_atomic(data_dictionary(), path)
    return path


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write a DataFrame as CSV (``\\n`` line ends) atomically (ParaspinalLBPCore.atomic)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")


def format_table(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Render a table's columns as strings with fixed formatting (floats to the schema's decimals)."""
    t = TABLES[table]
    missing = [c for c in t.column_names if c not in df.columns]
    if missing:
        raise MissingKeyError(f"{t.filename}: cannot write, missing columns {missing}")
    out = pd.DataFrame(index=df.index)
    for c in t.columns:
        s = df[c.name]
        if c.dtype == "float":
            d = 3 if c.decimals is None else c.decimals
            v = np.round(pd.to_numeric(s).to_numpy(dtype=float), d) + 0.0  # + 0.0 turns -0.0 into 0.0
            out[c.name] = [("" if np.isnan(x) else f"{x:.{d}f}") for x in v]
        elif c.dtype == "int":
            out[c.name] = [("" if pd.isna(x) else str(int(x))) for x in s]
        elif c.dtype == "bool":
            out[c.name] = [("" if pd.isna(x) else ("True" if bool(x) else "False")) for x in s]
        elif c.dtype == "date":
            out[c.name] = pd.to_datetime(s).dt.strftime("%Y-%m-%d").fillna("")
        else:
            out[c.name] = s.fillna("").astype(str)
    return out


def write_table(df: pd.DataFrame, table: str, directory: str | Path) -> Path:
    """Write one table in canonical column order and formatting."""
    path = Path(directory) / TABLES[table].filename
    write_csv_atomic(format_table(df, table), path)
    return path


def _coerce(raw: pd.Series, col: Column) -> pd.Series:
    """Convert a string column to the schema type; raises ValueError on values that do not parse."""
    s = raw.mask(raw.str.strip() == "")  # empty field = missing
    if col.dtype == "str":
        return raw
    if col.dtype == "float":
        return pd.to_numeric(s, errors="raise").astype("float64")
    if col.dtype == "int":
        num = pd.to_numeric(s, errors="raise")
        if (num.dropna() % 1 != 0).any():
            raise BadInputError("non-integer values")
        return num.astype("Int64")
    if col.dtype == "bool":
        m = s.map(lambda x: {"true": True, "false": False, "1": True, "0": False}.get(str(x).strip().lower())
                  if isinstance(x, str) else None)  # fmt: skip
        bad = s.notna() & m.isna()
        if bad.any():
            raise BadInputError(f"not a boolean: {s[bad].iloc[0]!r}")
        return m.astype("boolean")
    if col.dtype == "date":
        return pd.to_datetime(s, format="%Y-%m-%d", errors="raise")
    raise BadInputError(f"unknown dtype {col.dtype}")


MAPPING_KEYS = ("file", "rename", "recode")


def read_mapping(mapping: Mapping[str, Any] | str | Path | None) -> dict[str, dict[str, Any]]:
    """Check an export mapping (dict, or a JSON/YAML file) and return it as ``{table: {file, rename, recode}}``."""
    if mapping is None:
        return {}
    source = "mapping"
    if isinstance(mapping, (str, Path)):
        path = Path(mapping)
        if not path.exists():
            raise MissingInputError(f"export mapping file not found: {path}")
        import yaml  # JSON is a subset of YAML

        source = path.name
        mapping = yaml.safe_load(path.read_text()) or {}
    if not isinstance(mapping, Mapping):
        raise BadInputError(f"{source}: must map table names to {{file, rename, recode}}")
    out: dict[str, dict[str, Any]] = {}
    for table, spec in mapping.items():
        if table not in TABLES:
            raise MissingKeyError(f"{source}: unknown table {table!r}; known: {', '.join(TABLES)}")
        if not isinstance(spec, Mapping):
            raise BadInputError(f"{source}: entry {table!r} must be a mapping with keys {MAPPING_KEYS}")
        bad = sorted(set(spec) - set(MAPPING_KEYS))
        if bad:
            raise MissingKeyError(
                f"{source}: {table}: unknown key(s) {bad}; allowed: {', '.join(MAPPING_KEYS)}"
            )
        out[table] = {"file": spec.get("file"), "rename": dict(spec.get("rename") or {}),
                      "recode": {c: {str(k): str(v) for k, v in m.items()} for c, m in (spec.get("recode") or {}).items()}}  # fmt: skip
    return out


def load_trial(directory: str | Path, mapping: Mapping[str, Any] | str | Path | None = None) -> TrialData:
    """Load a trial dataset directory into typed DataFrames (validation is separate: :func:`~TrialAnalysisLib.schema_validation.validate_trial`).

    participants.csv and visits.csv are required (FileNotFoundError naming the file); other tables
    are None when absent. Values that do not parse as the schema type are left as text and recorded
    in ``load_issues`` so that :func:`~TrialAnalysisLib.schema_validation.validate_trial` reports them with file and column.
    ``mapping`` maps a real export (e.g. EpiData CSV) onto the schema, per table:
    ``{"participants": {"file": "baseline.csv", "rename": {"pid": "participant_id"},
    "recode": {"sex": {"1": "M", "2": "F"}}}}`` (a dict or a JSON/YAML file).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingInputError(f"trial data directory not found: {directory}")
    maps = read_mapping(mapping)
    kwargs: dict[str, Any] = {}
    issues: list[tuple[str, str, str]] = []
    files: dict[str, Path] = {}
    for name, t in TABLES.items():
        spec = maps.get(name, {})
        path = directory / (spec.get("file") or t.filename)
        if not path.exists():
            if t.name in ("participants", "visits"):
                raise MissingInputError(f"{path}: required file of the trial dataset is missing")
            kwargs[name] = None
            continue
        files[name] = path
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        if spec:
            missing = sorted(set(spec["rename"]) - set(raw.columns))
            if missing:
                raise MissingKeyError(
                    f"{path.name}: mapping renames column(s) {missing} that the file does not have"
                )
            raw = raw.rename(columns=spec["rename"])
            for column, codes in spec["recode"].items():
                if column not in raw.columns:
                    raise MissingKeyError(
                        f"{path.name}: mapping recodes column {column!r} that the file does not have"
                    )
                raw[column] = raw[column].map(lambda v, codes=codes: codes.get(v.strip(), v))
        df = raw.copy()
        for col in t.columns:
            if col.name not in raw.columns:
                continue
            try:
                df[col.name] = _coerce(raw[col.name], col)
            except (ValueError, TypeError) as exc:
                issues.append((t.filename, col.name, f"values do not parse as {col.dtype}: {exc}"))
        kwargs[name] = df
    truth_path = directory / "truth.json"
    truth = json.loads(truth_path.read_text()) if truth_path.exists() else None
    return TrialData(**kwargs, truth=truth, directory=directory, load_issues=issues, files=files)
