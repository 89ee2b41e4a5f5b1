"""Imaging cohort of the digital twin: phantom parameter YAML (contract C3) from a participant's phenotype,
rendered by ParaspinalSegLib's phantom CLI in a subprocess (no import of another Lib).

fat_fraction = phenotype FF % / 100 (per-level map, clipped to the phantom's 0–0.70); atrophy = CSA /
reference CSA of that muscle, level and sex (TrialAnalysisLib.simulate_population.reference_csa); sex.
Each participant renders into a temporary folder beside ``mri/<pid>`` that replaces it when complete, so an
interrupted run resumes by skipping the finished directories.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from tqdm import tqdm

from ParaspinalLBPCore.atomic import atomic_dir, atomic_write_text
from ParaspinalLBPCore.errors import MissingKeyError
from ParaspinalLBPCore.structures import LEVELS, MUSCLE_NAMES
from TrialAnalysisLib.simulate_population import derived_seed, reference_csa

PHANTOM_FF_MAX = 0.70
# Files the phantom writes (C3); a directory holding all of them is complete.
PHANTOM_OUTPUTS = (
    "water.nii.gz",
    "fat.nii.gz",
    "labels.nii.gz",
    "labels.json",
    "ff.nii.gz",
    "truth.json",
    "params.yaml",
)


def phantom_params(phenotype: pd.DataFrame, participant_id: str, sex: str) -> dict[str, Any]:
    """Phantom parameter mapping (C3) for one participant from the long phenotype table."""
    ph = phenotype[phenotype["participant_id"] == participant_id]
    if ph.empty:
        raise MissingKeyError(f"phenotype.csv: no rows for participant {participant_id}")
    muscles: dict[str, Any] = {}
    for name in MUSCLE_NAMES:
        rows = ph[ph["structure"] == name].set_index("level")
        missing = [lv for lv in LEVELS if lv not in rows.index]
        if missing:
            raise MissingKeyError(
                f"phenotype.csv: participant {participant_id} {name} lacks levels {missing}"
            )
        muscles[name] = {
            "fat_fraction": {lv: round(min(max(float(rows.at[lv, "fat_fraction_pct"]) / 100, 0.0), PHANTOM_FF_MAX), 4)
                             for lv in LEVELS},
            "atrophy": {lv: round(float(rows.at[lv, "csa_cm2"]) / reference_csa(name, lv, sex), 4) for lv in LEVELS},
            "pattern": "diffuse",
        }  # fmt: skip
    return {"levels": list(LEVELS), "sex": "female" if sex == "F" else "male", "muscles": muscles}


def write_phantom_yaml(path: Path, params: dict[str, Any]) -> Path:
    """Write the parameter YAML atomically (stable key order for byte-identical output)."""
    return atomic_write_text(path, yaml.safe_dump(params, sort_keys=False, default_flow_style=False))


# The Dixon pair written as DICOM with ``dicom=True`` (``mri/<pid>/dicom/``: what the cohort run reads).
DICOM_SERIES = "water,fat"


def is_complete(directory: Path, dicom: bool = False) -> bool:
    """True when a phantom output directory holds every expected file (and its DICOM study if asked)."""
    files = all((directory / f).exists() for f in PHANTOM_OUTPUTS)
    return directory.is_dir() and files and (not dicom or (directory / "dicom").is_dir())


def render_one(yaml_path: Path, out_dir: Path, seed: int, dicom: bool = False) -> None:
    """Render one phantom into ``out_dir`` via ``python -m ParaspinalSegLib phantom`` (atomic directory rename);
    ``dicom`` also writes its Dixon water/fat series as a DICOM study in ``out_dir/dicom``."""
    with atomic_dir(out_dir) as tmp:
        cmd = [sys.executable, "-m", "ParaspinalSegLib", "phantom", "--out", str(tmp), "--seed", str(seed),
               "--params", str(yaml_path)]  # fmt: skip
        cmd += ["--dicom", "--dicom-series", DICOM_SERIES] if dicom else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ChildProcessError(
                f"phantom rendering failed for {out_dir.name} (exit {proc.returncode}): {' | '.join(tail)}"
            )


def render_cohort(
    out: Path, participants: pd.DataFrame, phenotype: pd.DataFrame, ids: Iterable[str], seed: int,
    progress: bool = True, workers: int = 1, dicom: bool = False,
) -> list[Path]:  # fmt: skip
    """Write ``mri/params/<pid>.yaml`` for the imaging cohort and render each not-yet-complete phantom.

    ``workers`` > 1 runs that many phantom subprocesses at once (each case is independent, so the
    output does not depend on it).
    """
    sex = dict(zip(participants["participant_id"], participants["sex"], strict=True))
    dirs, todo = [], []
    for pid in ids:
        y = write_phantom_yaml(
            out / "mri" / "params" / f"{pid}.yaml", phantom_params(phenotype, pid, sex[pid])
        )
        d = out / "mri" / pid
        dirs.append(d)
        if not is_complete(d, dicom):
            todo.append((y, d, derived_seed(seed, "mri", pid), dicom))
    bar = tqdm(
        total=len(dirs), initial=len(dirs) - len(todo), desc="phantom MRI", unit="case", disable=not progress
    )
    with bar, ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        futures = [pool.submit(render_one, *job) for job in todo]
        for fut in as_completed(futures):
            fut.result()
            bar.update(1)
    return dirs
