"""Cohort batch: many cases, incremental atomic parts, resume, local processes or a Dask cluster.

Manifest CSV columns: ``case_id``, ``image``, ``labels`` (label map or ``.seg.nrrd``), optional
``label_names`` (C1 JSON); relative paths are relative to the manifest's folder.

Each finished case is written to ``<out>.parts/<case>.csv`` and then ``<case>.json`` (the commit marker
holding the input fingerprints (size + mtime of every input file) and the settings key); re-running skips
cases whose marker matches, so an interrupted batch resumes. A failing case becomes one ``status=error``
row with its message; the others go on. At the end all parts are merged atomically into ``<out>``.
Parallelism: ``jobs`` local processes (ProcessPoolExecutor), or ``scheduler`` = a Dask distributed
address / Client, where every worker must have ParaspinalRadiomicsLib installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from ParaspinalLBPCore.atomic import atomic_write_text
from ParaspinalLBPCore.errors import BadInputError, MissingInputError
from ParaspinalRadiomicsLib.extraction import (
    META_COLUMNS,
    PYRADIOMICS_VERSION,
    RadiomicsParams,
    extract_case,
    load_params,
    provenance,
)
from ParaspinalRadiomicsLib.inputs import load_case
from ParaspinalRadiomicsLib.tables import read_features, write_features

log = logging.getLogger(__name__)
_PARAMS_CACHE: dict[str, RadiomicsParams] = {}


@dataclass(frozen=True)
class CaseJob:
    """One manifest row with absolute paths."""

    case_id: str
    image: str
    labels: str
    label_names: str | None = None

    def files(self) -> list[str]:
        """Input files whose change invalidates a finished case."""
        return [f for f in (self.image, self.labels, self.label_names) if f]


def read_manifest(path: str | Path) -> list[CaseJob]:
    """Read and check a manifest; errors name the file, row and column."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"manifest not found: {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("case_id", "image", "labels") if c not in df.columns]
    if missing:
        raise BadInputError(
            f"manifest {path}: missing column(s) {', '.join(missing)} (need case_id, image, labels)"
        )
    jobs: list[CaseJob] = []
    seen: set[str] = set()
    for i, row in df.iterrows():
        line = int(i) + 2
        case_id = row["case_id"].strip()
        if not case_id:
            raise BadInputError(f"manifest {path}, line {line}: empty case_id")
        if case_id in seen:
            raise BadInputError(f"manifest {path}, line {line}: duplicate case_id {case_id!r}")
        seen.add(case_id)
        for col in ("image", "labels"):
            if not row[col].strip():
                raise BadInputError(f"manifest {path}, line {line}: empty {col} for case {case_id!r}")
        absolute = lambda p: str((path.parent / p.strip()).resolve()) if p.strip() else None  # noqa: E731
        jobs.append(
            CaseJob(
                case_id, absolute(row["image"]), absolute(row["labels"]), absolute(row.get("label_names", ""))
            )
        )
    return jobs


def fingerprint(job: CaseJob) -> dict[str, list | None]:
    """Size and mtime of every input file (None when missing)."""
    out: dict[str, list | None] = {}
    for f in job.files():
        p = Path(f)
        out[f] = [p.stat().st_size, p.stat().st_mtime_ns] if p.is_file() else None
    return out


def _part_name(case_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", case_id)[:80]
    return f"{safe}-{hashlib.sha1(case_id.encode()).hexdigest()[:8]}"


def run_case(job: CaseJob, params: dict, options: dict) -> tuple[pd.DataFrame, str | None, float]:
    """Worker: extract one case; any failure becomes a single error row (never raises)."""
    t0 = time.perf_counter()
    logging.getLogger("radiomics").setLevel(
        logging.ERROR
    )  # per-mask INFO/WARNING chatter is useless in a cohort
    key = json.dumps(params, sort_keys=True, default=str)
    try:
        rp = _PARAMS_CACHE.get(key) or _PARAMS_CACHE.setdefault(key, load_params(params))
        image, labels, names, levels = load_case(job.image, job.labels, job.label_names)
        df = extract_case(image, labels, names, rp, levels=levels, case_id=job.case_id, **options)
        return df, None, time.perf_counter() - t0
    except Exception as exc:  # a failing case is recorded, the batch goes on
        msg = " ".join(str(exc).split()) or type(exc).__name__
        row = {c: "" for c in META_COLUMNS} | {
            "case_id": job.case_id,
            "n_voxels": 0,
            "status": "error",
            "reason": f"case failed: {msg}",
        }
        return pd.DataFrame([row], columns=META_COLUMNS), msg, time.perf_counter() - t0


@dataclass
class BatchResult:
    """What a batch run did."""

    out: Path
    n_cases: int
    n_run: int
    n_skipped: int
    n_failed: int
    seconds: float


class Batch:
    """A cohort extraction bound to one manifest, parameter set, options and output table."""

    def __init__(
        self,
        manifest: str | Path,
        params: str | Path | dict,
        out: str | Path,
        per_level: bool = False,
        per_side: bool = True,
        resample_mask: bool = False,
        structures: list[str] | None = None,
    ) -> None:
        self.jobs = read_manifest(manifest)
        self.rp = load_params(params)  # validate before any work
        self.out = Path(out)
        self.parts = Path(f"{self.out}.parts")
        self.options = {
            "per_level": per_level,
            "per_side": per_side,
            "resample_mask": resample_mask,
            "structures": list(structures) if structures else None,
        }
        self.key = {
            "settings_hash": self.rp.settings_hash,
            "pyradiomics_version": PYRADIOMICS_VERSION,
            **self.options,
        }

    def _marker(self, job: CaseJob) -> Path:
        return self.parts / f"{_part_name(job.case_id)}.json"

    def is_done(self, job: CaseJob, retry_failed: bool = False) -> bool:
        """True when the case finished with the same inputs and settings."""
        marker = self._marker(job)
        if not marker.is_file() or not marker.with_suffix(".csv").is_file():
            return False
        try:
            meta = json.loads(marker.read_text())
        except json.JSONDecodeError:
            return False
        if retry_failed and meta.get("status") == "error":
            return False
        return meta.get("key") == self.key and meta.get("fingerprint") == fingerprint(job)

    def _record(self, job: CaseJob, df: pd.DataFrame, error: str | None, seconds: float, fp: dict) -> None:
        marker = self._marker(job)
        atomic_write_text(marker.with_suffix(".csv"), df.to_csv(index=False))
        meta = {
            "case_id": job.case_id,
            "key": self.key,
            "fingerprint": fp,
            "status": "error" if error else "ok",
            "error": error,
            "n_rows": len(df),
            "seconds": round(seconds, 3),
        }
        atomic_write_text(marker, json.dumps(meta, indent=1))

    def _iter_local(self, todo: list[CaseJob], jobs: int) -> Iterator[tuple[CaseJob, tuple]]:
        params = self.rp.params
        if jobs <= 1:
            for job in todo:
                yield job, run_case(job, params, self.options)
            return
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(run_case, job, params, self.options): job for job in todo}
            for fut in as_completed(futures):
                yield futures[fut], _result_or_error(fut, futures[fut])

    def _iter_dask(self, todo: list[CaseJob], scheduler: Any) -> Iterator[tuple[CaseJob, tuple]]:
        from distributed import Client
        from distributed import as_completed as dask_completed

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        try:
            futures = {
                client.submit(run_case, job, self.rp.params, self.options, pure=False): job for job in todo
            }
            for fut in dask_completed(list(futures)):
                yield futures[fut], _result_or_error(fut, futures[fut])
        finally:
            if client is not scheduler:
                client.close()

    def run(
        self,
        jobs: int = 1,
        scheduler: Any = None,
        retry_failed: bool = False,
        show_progress: bool = True,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> BatchResult:
        """Run the unfinished cases, then merge every part into the output table.

        ``progress(done, total, case_id)`` is called after each case (``total``: the unfinished cases).
        """
        t0 = time.perf_counter()
        self.parts.mkdir(parents=True, exist_ok=True)
        todo = [j for j in self.jobs if not self.is_done(j, retry_failed)]
        fps = {j.case_id: fingerprint(j) for j in todo}
        n_failed = n_done = 0
        stream = self._iter_dask(todo, scheduler) if scheduler is not None else self._iter_local(todo, jobs)
        with tqdm(total=len(todo), desc="cases", unit="case", disable=not show_progress) as bar:
            for job, (df, error, seconds) in stream:
                self._record(job, df, error, seconds, fps[job.case_id])
                n_failed += error is not None
                if error:
                    log.warning("case %s failed: %s", job.case_id, error)
                bar.update(1)
                n_done += 1
                if progress is not None:
                    progress(n_done, len(todo), job.case_id)
        self.merge()
        return BatchResult(
            self.out,
            len(self.jobs),
            len(todo),
            len(self.jobs) - len(todo),
            n_failed,
            time.perf_counter() - t0,
        )

    def merge(self) -> pd.DataFrame:
        """Concatenate the parts of the manifest's cases (manifest order) into the output, atomically."""
        frames = []
        for job in self.jobs:
            part = self._marker(job).with_suffix(".csv")
            if part.is_file():
                frames.append(read_features(part))
        df = (
            pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame(columns=META_COLUMNS)
        )
        prov = provenance(self.rp) | {"options": self.options, "n_cases": len(self.jobs)}
        write_features(df, self.out, prov)
        return df


def _result_or_error(fut: Any, job: CaseJob) -> tuple[pd.DataFrame, str | None, float]:
    """A worker crash (killed process, lost Dask worker) becomes an error row for that case."""
    try:
        return fut.result()
    except Exception as exc:
        msg = f"worker failed: {type(exc).__name__}: {exc}"
        row = {c: "" for c in META_COLUMNS} | {
            "case_id": job.case_id,
            "n_voxels": 0,
            "status": "error",
            "reason": msg,
        }
        return pd.DataFrame([row], columns=META_COLUMNS), msg, 0.0
