"""Reading and atomically writing C5 feature tables (CSV, exact float round trip) and their provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ParaspinalLBPCore.errors import BadInputError, MissingInputError
from ParaspinalLBPCore.staging import staged_files
from ParaspinalRadiomicsLib.extraction import META_COLUMNS


def write_features(df: pd.DataFrame, path: str | Path, provenance: dict | None = None) -> None:
    """Write a C5 table (floats as shortest round-trip repr) and ``<path>.json`` provenance as one set:
    a run stopped at any moment leaves both earlier files or both new ones (``ParaspinalLBPCore.staging``)."""
    path = Path(path)
    prov = provenance if provenance is not None else df.attrs.get("provenance")
    with staged_files(path.parent, label=path.name) as staging:
        (staging / path.name).write_text(df.to_csv(index=False), encoding="utf-8", newline="")
        if prov is not None:
            text = json.dumps(prov, indent=1, sort_keys=True, default=str)
            (staging / f"{path.name}.json").write_text(text, encoding="utf-8", newline="")


def read_features(path: str | Path) -> pd.DataFrame:
    """Read a C5 table with exact floats; check the contract's leading columns."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"feature table not found: {path}")
    df = pd.read_csv(
        path,
        float_precision="round_trip",
        keep_default_na=True,
        dtype={"case_id": str, "structure": str, "level": str, "reason": str},
    )
    missing = [c for c in ("case_id", "structure", "level") if c not in df.columns]
    if missing:
        raise BadInputError(f"{path} is not a feature table (C5): missing column(s) {', '.join(missing)}")
    if "reason" in df.columns:
        df["reason"] = df["reason"].fillna("")
    return df


def feature_columns(df: pd.DataFrame) -> list[str]:
    """The feature columns of a C5 table (everything after the meta columns)."""
    return [c for c in df.columns if c not in META_COLUMNS]
