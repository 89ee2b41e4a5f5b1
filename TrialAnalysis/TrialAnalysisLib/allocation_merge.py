"""Put the randomisation service's allocation export into a trial dataset, so ``validate``/``analyze`` read it.

The export (a zip, or the folder it was extracted to) holds ``allocation.csv`` + ``allocation.sha256``,
``arm_coding.csv`` and ``randomized.csv`` (one row per randomised participant). The merged dataset is
the clinical dataset's files with, in ``participants.csv``, each participant's arm, block_id, stratum
and randomization_date taken from ``randomized.csv``, and the export's allocation and arm coding
beside them. A coded export gives a coded dataset (arms A/B) for blinded analysis; then the clinical
folder's ``truth.json`` and ``allocation.json``, which would reveal the arms, are not copied, and
neither is ``allocation.json`` otherwise (the allocation now comes from the export). Sub-folders (the
imaging cohort's ``mri/``) are not copied: the analysis does not read them.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ParaspinalLBPCore.atomic import atomic_write_bytes
from ParaspinalLBPCore.errors import BadInputError, MissingInputError, MissingKeyError
from TrialAnalysisLib.schema import TABLES, read_arm_coding, write_csv_atomic

EXPORT_FILES = ("allocation.csv", "allocation.sha256", "arm_coding.csv", "randomized.csv")
#: participants.csv columns the export sets.
FROM_EXPORT = ("arm", "block_id", "stratum", "randomization_date")
#: Files of the clinical folder that are never copied (replaced by the export, or revealing when coded).
REPLACED = (*EXPORT_FILES, "allocation.json", "participants.csv")
REVEALING = ("truth.json",)


@dataclass
class MergeResult:
    """What was merged: mode ('coded'|'unblinded'), participants, files written and left out."""

    mode: str
    n_participants: int
    n_randomized_not_in_data: int
    written: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Readable lines for the command line."""
        lines = [f"{self.mode} allocation merged for {self.n_participants} participants"]
        if self.n_randomized_not_in_data:
            lines.append(
                f"  {self.n_randomized_not_in_data} randomised participant(s) not in participants.csv yet"
            )
        if self.left_out:
            lines.append(f"  not copied: {', '.join(self.left_out)}")
        return "\n".join(lines)


def read_export(export: str | Path) -> dict[str, bytes]:
    """The export's files by name (a zip or a folder); the allocation must match its checksum."""
    export = Path(export)
    if not export.exists():
        raise MissingInputError(f"allocation export not found: {export}")
    if export.is_dir():
        files = {n: (export / n).read_bytes() for n in EXPORT_FILES if (export / n).is_file()}
    else:
        try:
            with zipfile.ZipFile(export) as zf:
                files = {n: zf.read(n) for n in EXPORT_FILES if n in zf.namelist()}
        except zipfile.BadZipFile:
            raise BadInputError(f"{export}: not a zip file (the service's Export allocation)") from None
    missing = [n for n in EXPORT_FILES if n not in files]
    if missing:
        raise MissingKeyError(
            f"{export}: the export lacks {', '.join(missing)} (export it again from the service)"
        )
    recorded = (files["allocation.sha256"].decode().split() or [""])[0]
    if hashlib.sha256(files["allocation.csv"]).hexdigest() != recorded:
        raise BadInputError(f"{export}: allocation.csv does not match allocation.sha256 (altered export)")
    return files


def _merged_participants(data_dir: Path, randomized: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """participants.csv with the export's columns set; (table, randomised participants not in it)."""
    path = data_dir / "participants.csv"
    if not path.exists():
        raise MissingInputError(f"{path}: required file of the trial dataset is missing")
    p = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "participant_id" not in p.columns:
        raise MissingKeyError(f"{path}: no column 'participant_id'")
    rand = randomized.set_index("participant_id")
    absent = sorted(set(p["participant_id"]) - set(rand.index))
    if absent:
        raise BadInputError(
            f"{path}: participant(s) {', '.join(absent[:10])} are not in the export's randomized.csv"
        )
    for col in ("centre", "sex"):
        if col in p.columns:
            other = p["participant_id"].map(rand[col])
            bad = p.index[(p[col] != other).to_numpy()]
            if len(bad):
                i = bad[0]
                raise BadInputError(
                    f"{path} line {i + 2} (participant {p.at[i, 'participant_id']}), column {col!r}: "
                    f"{p.at[i, col]!r} but the randomisation recorded {other[i]!r}"
                )
    for col in FROM_EXPORT:
        p[col] = p["participant_id"].map(rand[col])
    order = [c for c in TABLES["participants"].column_names if c in p.columns]
    return p[order + [c for c in p.columns if c not in order]], len(
        set(rand.index) - set(p["participant_id"])
    )


def merge_allocation(data_dir: str | Path, export: str | Path, out_dir: str | Path) -> MergeResult:
    """Write ``out_dir``: the dataset of ``data_dir`` with the allocation ``export`` merged in (see module doc)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise MissingInputError(f"trial data directory not found: {data_dir}")
    if out_dir.resolve() == data_dir.resolve():
        raise BadInputError(f"{out_dir}: the merged dataset must go to another folder than --data")
    files = read_export(export)
    coding_df = pd.read_csv(io.BytesIO(files["arm_coding.csv"]), dtype=str, keep_default_na=False)
    coding, problems = read_arm_coding(coding_df)
    if problems:
        raise BadInputError(f"{export}: arm_coding.csv: {problems[0][1]}")
    randomized = pd.read_csv(io.BytesIO(files["randomized.csv"]), dtype=str, keep_default_na=False)
    need = sorted({"participant_id", "centre", "sex", *FROM_EXPORT} - set(randomized.columns))
    if need:
        raise MissingKeyError(f"{export}: randomized.csv lacks column(s) {', '.join(need)}")
    participants, n_extra = _merged_participants(data_dir, randomized)
    result = MergeResult("coded" if coding.coded else "unblinded", len(participants), n_extra)
    skip = set(REPLACED) | (set(REVEALING) if coding.coded else set())
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(data_dir.iterdir()):
        if f.is_dir():
            result.left_out.append(f.name + "/")
        elif f.name not in skip:
            shutil.copyfile(f, out_dir / f.name)
            result.written.append(f.name)
        elif f.name not in (*EXPORT_FILES, "participants.csv"):
            result.left_out.append(f.name)
    write_csv_atomic(participants, out_dir / "participants.csv")
    for name in ("allocation.csv", "allocation.sha256", "arm_coding.csv"):
        atomic_write_bytes(out_dir / name, files[name])
    result.written += ["participants.csv", "allocation.csv", "allocation.sha256", "arm_coding.csv"]
    return result
