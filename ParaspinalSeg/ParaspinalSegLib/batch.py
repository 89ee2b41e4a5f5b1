"""Cohort run: segment and measure every case of a manifest, resumably, into one combined table.

The manifest (CSV, one row per case; relative paths are relative to the manifest's folder) has the
columns of ``MANIFEST_COLUMNS``: ``case_id``, one image source (``water`` + ``fat``, ``image`` — files or
DICOM series folders — or a DICOM study folder ``dicom``), ``seeds`` and optionally ``levels``. Images are
read as the ``segment`` command reads its options (image_inputs.py). Output folder (docs/cohort.md)::

    cases/<case_id>/   segmentation.seg.nrrd, labels.nii.gz, labels.json, measurements.csv,
                       [segmentation.dcm,] segment_info.json, qc.json, qc/<level>.png,
                       done.json (the commit marker)
    measurements.csv   every finished case, manifest order (written atomically)
    status.csv         one row per case: ok / failed / accepted, the reason, seconds, the decision
    qc.html            the QC contact sheet (qc_page.py)

A case is built in a hidden staging folder and swapped into ``cases/<case_id>`` when complete, and the
four summary files are published as one set (``ParaspinalLBPCore.staging``), so a run stopped at any
moment leaves every case and the summary as before or complete; the next run (or the cancelled Slicer
job) finishes or removes what a killed run left. ``done.json`` holds the SHA-256 of every input file (image
files, DICOM folders, seeds, levels) and of the settings: a re-run skips cases whose hash is unchanged
(a failed case too, unless ``retry_failed``); its ``run_number`` counts the case's runs (1, 2, …).
Reviewer decisions (decisions.py) override this: ``accept`` freezes a case, a ``redo`` of the case's
latest run (:func:`record_decision` names it) forces it to run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ParaspinalLBPCore.errors import BadInputError, MissingInputError, UserError
from ParaspinalLBPCore.staging import recover, staged_dir, staged_files
from ParaspinalSegLib import qc, qc_page
from ParaspinalSegLib.batch_manifest import MANIFEST_COLUMNS, PATH_COLUMNS, SERIES_COLUMNS
from ParaspinalSegLib.decisions import (
    DECISIONS_FILE,
    append_decision,
    now_utc,
    read_decision_rows,
    read_decisions,
    redo_pending,
)
from ParaspinalSegLib.dicom_seg import check_on_series_grid, write_dicom_seg
from ParaspinalSegLib.dicom_seg_cli import resolve_reference
from ParaspinalSegLib.image_inputs import load_image_inputs
from ParaspinalSegLib.io import write_labels, write_labels_json, write_seg_nrrd
from ParaspinalSegLib.markups import read_points
from ParaspinalSegLib.measure import measure_labels
from ParaspinalSegLib.segment import SegmentParams, segment
from ParaspinalSegLib.segment_cli import write_csv

log = logging.getLogger(__name__)

CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MARKER = "done.json"


@dataclass(frozen=True)
class CaseSpec:
    """One manifest row with absolute paths (None = column empty or absent)."""

    case_id: str
    line: int  # line number in the manifest (header = 1)
    water: str | None = None
    fat: str | None = None
    image: str | None = None
    dicom: str | None = None
    series: str | None = None
    water_series: str | None = None
    fat_series: str | None = None
    seeds: str | None = None
    levels: str | None = None

    def inputs(self) -> dict[str, str]:
        """Role → path of every input given."""
        return {c: getattr(self, c) for c in PATH_COLUMNS if getattr(self, c)}

    def selectors(self) -> dict[str, str]:
        """DICOM series choices given (column → SeriesNumber or UID)."""
        return {c: getattr(self, c) for c in SERIES_COLUMNS if getattr(self, c)}


@dataclass(frozen=True)
class BatchSettings:
    """Settings that change a case's outputs (part of its hash)."""

    erode_px: int = 1
    structures: tuple[str, ...] | None = None
    split_refine_mm: float | None = None
    assume_same_grid: bool = False
    qc_images: bool = True
    dicom_seg: bool = False

    def key(self) -> dict:
        """JSON-able form hashed into every case's marker."""
        return dataclasses.asdict(self)


def read_manifest(path: str | Path) -> list[CaseSpec]:
    """Read and check a manifest; every error names the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"manifest not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BadInputError(f"manifest {path}: not a readable CSV ({' '.join(str(exc).split())})") from None
    df.columns = [str(c).strip() for c in df.columns]
    unknown = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    if unknown:
        raise BadInputError(
            f"manifest {path}: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the columns are {', '.join(MANIFEST_COLUMNS)}"
        )
    for required in ("case_id", "seeds"):
        if required not in df.columns:
            raise BadInputError(f"manifest {path}: column {required!r} is missing")
    if not ({"water", "fat"} <= set(df.columns) or {"image", "dicom"} & set(df.columns)):
        raise BadInputError(f"manifest {path}: needs an image source: columns water + fat, image or dicom")
    specs: list[CaseSpec] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(df.to_dict("records")):
        specs.append(_row_spec(path, i + 2, {k: str(v).strip() for k, v in row.items()}, seen))
    if not specs:
        raise BadInputError(f"manifest {path}: no cases (only a header)")
    return specs


def _row_spec(path: Path, line: int, row: dict[str, str], seen: dict[str, int]) -> CaseSpec:
    where = f"manifest {path}, line {line}"
    case_id = row.get("case_id", "")
    if not case_id:
        raise BadInputError(f"{where}, column case_id: empty")
    if not CASE_ID_PATTERN.match(case_id):
        raise BadInputError(
            f"{where}, column case_id: {case_id!r} is not a usable folder name "
            "(letters, digits, '.', '_', '-'; starting with a letter or digit; at most 100)"
        )
    if case_id in seen:
        raise BadInputError(f"{where}, column case_id: {case_id!r} already used on line {seen[case_id]}")
    seen[case_id] = line
    given = {c for c in (*PATH_COLUMNS, *SERIES_COLUMNS) if row.get(c)}
    if "seeds" not in given:
        raise BadInputError(f"{where}, column seeds: empty for case {case_id!r}")
    if ("water" in given) != ("fat" in given):
        missing = "fat" if "water" in given else "water"
        raise BadInputError(
            f"{where}, column {missing}: empty for case {case_id!r} (water and fat go together)"
        )
    sources = [c for c in ("image", "water", "dicom") if c in given]
    if len(sources) > 1:
        raise BadInputError(f"{where}: case {case_id!r} has {' and '.join(sources)}; give one image source")
    if not sources:
        raise BadInputError(f"{where}: case {case_id!r} has no image (columns water + fat, image or dicom)")
    allowed = {"image": {"series"}, "water": {"water_series", "fat_series"}, "dicom": set(SERIES_COLUMNS)}
    for column in sorted(given & set(SERIES_COLUMNS) - allowed[sources[0]]):
        raise BadInputError(f"{where}, column {column}: does not apply to a case given by {sources[0]}")
    values = {c: str((path.parent / row[c]).resolve()) for c in given & set(PATH_COLUMNS)}
    values |= {c: row[c] for c in given & set(SERIES_COLUMNS)}
    return CaseSpec(case_id, line, **values)


def _hash_path(h: hashlib._Hash, p: Path) -> None:
    if p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
            _hash_path(h, f)
        return
    if not p.is_file():
        h.update(b"<missing>")
        return
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def input_hash(spec: CaseSpec, settings: BatchSettings) -> str:
    """SHA-256 of every input's content (a missing one hashes as missing) and of the settings."""
    h = hashlib.sha256(json.dumps(settings.key(), sort_keys=True, default=str).encode())
    h.update(json.dumps(spec.selectors(), sort_keys=True).encode())
    for role, p in sorted(spec.inputs().items()):
        h.update(f"\0{role}\0".encode())
        _hash_path(h, Path(p))
    return h.hexdigest()


@dataclass
class CaseOutcome:
    """What happened to one case in this run."""

    case_id: str
    status: str  # ok / failed
    reason: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def read_marker(case_dir: Path) -> dict | None:
    """The case's ``done.json`` (None when absent or unreadable: the case is not done)."""
    try:
        return json.loads((case_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _write_marker(folder: Path, marker: dict) -> None:
    (folder / MARKER).write_text(json.dumps(marker, indent=1, default=str), encoding="utf-8")


def run_case(spec: CaseSpec, settings: BatchSettings, cases_dir: str, digest: str) -> CaseOutcome:
    """Worker: segment + measure one case into a staging folder, then publish it; never raises.

    A failure publishes a folder holding only the marker (status failed and the reason), so the
    stale outputs of an earlier run with other inputs do not survive next to it.
    """
    t0 = time.perf_counter()
    with staged_dir(Path(cases_dir) / spec.case_id) as staging:  # (an interrupted swap is finished first)
        previous = read_marker(Path(cases_dir) / spec.case_id) or {}
        marker = {
            "case_id": spec.case_id,
            "run_number": int(previous.get("run_number", 0)) + 1,
            "hash": digest,
            "settings": settings.key(),
            "inputs": spec.inputs(),
            "selectors": spec.selectors(),
        }
        try:
            warnings = _process(spec, settings, staging)
            status, reason = "ok", ""
        except Exception as exc:  # a failing case is recorded, the batch goes on
            for p in staging.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            status, reason, warnings = "failed", " ".join(str(exc).split()) or type(exc).__name__, []
            log.debug("case %s failed", spec.case_id, exc_info=True)
        seconds = time.perf_counter() - t0
        marker |= {"status": status, "reason": reason, "seconds": round(seconds, 3), "finished_at": now_utc()}
        _write_marker(staging, marker)
    return CaseOutcome(spec.case_id, status, reason, seconds, warnings)


def _read_inputs(spec: CaseSpec, settings: BatchSettings) -> tuple[Any, list, list | None, Any]:
    """(ImageInputs, seeds, level landmarks, DICOM series the SEG references or None), read exactly
    as the ``segment`` command reads its options; errors name the manifest line."""
    from types import SimpleNamespace

    args = SimpleNamespace(
        **{c: getattr(spec, c) for c in ("image", "water", "fat", "dicom", *SERIES_COLUMNS)}
    )
    args.assume_same_grid = settings.assume_same_grid
    try:
        seeds = read_points(spec.seeds)
        levels = read_points(spec.levels) if spec.levels else None
        src = load_image_inputs(args)
        reference = resolve_reference(args, src) if settings.dicom_seg else None
    except UserError as exc:  # a bug (any other exception) keeps its traceback
        raise BadInputError(f"manifest line {spec.line}: {exc}") from None
    if reference is not None:
        check_on_series_grid(src.image if src.image is not None else src.fat, reference, "the input image")
    return src, seeds, levels, reference


def _process(spec: CaseSpec, settings: BatchSettings, out: Path) -> list[str]:
    """Segment and measure one case with the library calls of ``segment``, write its outputs and QC."""
    import SimpleITK as sitk

    src, seeds, levels, reference = _read_inputs(spec, settings)
    params = SegmentParams()
    if settings.split_refine_mm is not None:
        params.split.refine_band_mm = settings.split_refine_mm
    result = segment(
        src.inputs,
        seeds,
        structures=list(settings.structures) if settings.structures else None,
        levels=levels,
        assume_same_grid=settings.assume_same_grid,
        params=params,
    )
    write_seg_nrrd(out / "segmentation.seg.nrrd", result.labels, result.label_names)
    write_labels(out / "labels.nii.gz", result.labels)
    write_labels_json(out / "labels.json", result.label_names, result.levels)
    if src.image is not None:
        kw = {"image": src.image}
    else:
        water = sitk.Image(src.water)
        water.CopyInformation(result.labels)
        kw = {"water": water, "fat": src.fat}
    table = measure_labels(
        result.labels, result.label_names, levels=result.levels, case_id=spec.case_id,
        erode_px=settings.erode_px, **kw,
    )  # fmt: skip
    write_csv(out / "measurements.csv", table)
    if reference is not None:
        write_dicom_seg(out / "segmentation.dcm", result.labels, result.label_names, reference)
    (out / "segment_info.json").write_text(json.dumps(result.info, indent=1, default=str), encoding="utf-8")
    facts = qc.case_facts(result.labels, result.label_names, result.levels, seeds)
    facts["warnings"] = list(result.info.get("warnings", []))
    (out / "qc.json").write_text(json.dumps(facts, indent=1), encoding="utf-8")
    if settings.qc_images:
        display = kw["image"] if "image" in kw else sitk.Add(kw["water"], kw["fat"])
        qc.render_case(display, result.labels, result.label_names, result.levels, seeds, out / "qc")
    return facts["warnings"]


def _init_worker(threads: int) -> None:
    """Pool initializer: one ITK thread per process when several processes share the cores."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    logging.getLogger().setLevel(logging.WARNING)


def run_cases(
    todo: list[tuple[CaseSpec, str]], settings: BatchSettings, cases_dir: Path, jobs: int
) -> Iterator[CaseOutcome]:
    """Run ``(spec, hash)`` pairs serially or in ``jobs`` processes, yielding outcomes as they finish."""
    if jobs <= 1 or len(todo) <= 1:
        for spec, digest in todo:
            yield run_case(spec, settings, str(cases_dir), digest)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(1,)) as pool:
        futures = {pool.submit(run_case, s, settings, str(cases_dir), d): s for s, d in todo}
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                yield fut.result()
            except Exception as exc:  # the worker process itself died (killed, out of memory)
                yield CaseOutcome(spec.case_id, "failed", f"worker failed: {type(exc).__name__}: {exc}")


Progress = Callable[[int, int, str], None]


@dataclass
class BatchResult:
    """What a batch run did."""

    out_dir: Path
    n_cases: int
    n_run: int
    n_failed: int
    n_accepted: int
    seconds: float
    status: pd.DataFrame
    qc_page: Path | None = None


def plan(
    specs: list[CaseSpec],
    settings: BatchSettings,
    cases_dir: Path,
    decisions: dict[str, dict],
    force: bool = False,
    retry_failed: bool = False,
) -> tuple[list[tuple[CaseSpec, str]], dict[str, tuple[str, str]]]:
    """Which cases must run: ``(todo as (spec, hash), {case_id: (why, hash)})``; ``why`` is 'new', 'forced',
    'redo requested', 'inputs changed' or 'retry' for a case that runs, else 'unchanged' or 'accepted'."""
    todo, why = [], {}
    for spec in specs:
        marker = read_marker(cases_dir / spec.case_id)
        decision = decisions.get(spec.case_id) or {}
        digest = input_hash(spec, settings)
        done_ok = marker is not None and marker.get("status") == "ok"
        if done_ok and decision.get("decision") == "accept":
            why[spec.case_id] = ("accepted", digest)
            continue
        redo = marker is not None and redo_pending(decision, marker)
        if marker is None:
            reason = "new"
        elif force:
            reason = "forced"
        elif redo:
            reason = "redo requested"
        elif marker.get("hash") != digest:
            reason = "inputs changed"
        elif not done_ok and retry_failed:
            reason = "retry"
        else:
            reason = "unchanged"
        why[spec.case_id] = (reason, digest)
        if reason != "unchanged":
            todo.append((spec, digest))
    return todo, why


def collect(specs: list[CaseSpec], cases_dir: Path) -> pd.DataFrame:
    """Every finished case's measurements.csv, in manifest order (case_id column set from the manifest)."""
    frames = []
    for spec in specs:
        folder = cases_dir / spec.case_id
        marker = read_marker(folder)
        if marker is None or marker.get("status") != "ok" or not (folder / "measurements.csv").is_file():
            continue
        frames.append(pd.read_csv(folder / "measurements.csv").assign(case_id=spec.case_id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


STATUS_COLUMNS = (
    "case_id", "status", "run", "run_number", "reason", "seconds", "finished_at", "inputs_changed",
    "decision", "reviewer", "decided_at", "note",
)  # fmt: skip


def status_table(
    specs: list[CaseSpec], cases_dir: Path, why: dict[str, tuple[str, str]], decisions: dict[str, dict]
) -> pd.DataFrame:
    """One row per manifest case: status (ok/failed/missing), why it ran or was kept, reason, decision."""
    rows = []
    for spec in specs:
        marker = read_marker(cases_dir / spec.case_id) or {}
        d = decisions.get(spec.case_id) or {}
        run, digest = why.get(spec.case_id, ("", ""))
        rows.append(
            {
                "case_id": spec.case_id,
                "status": marker.get("status", "missing"),
                "run": run,
                "run_number": marker.get("run_number"),
                "reason": marker.get("reason", ""),
                "seconds": marker.get("seconds"),
                "finished_at": marker.get("finished_at", ""),
                "inputs_changed": bool(marker) and marker.get("hash") != digest,
                "decision": d.get("decision", ""),
                "reviewer": d.get("reviewer", ""),
                "decided_at": d["timestamp"].isoformat() if d else "",
                "note": d.get("note", ""),
            }
        )
    return pd.DataFrame(rows, columns=list(STATUS_COLUMNS))


def record_decision(
    out_dir: str | Path,
    case_id: str,
    decision: str,
    reviewer: str,
    note: str = "",
    decisions_path: str | Path | None = None,
) -> Path:
    """Append a reviewer's decision on the case's latest run in batch folder ``out_dir`` (its run number
    from ``done.json``) to the decisions file (default ``out_dir/qc_decisions.csv``); returns the file."""
    out = Path(out_dir)
    marker = read_marker(out / "cases" / case_id)
    if marker is None:
        raise BadInputError(f"batch folder {out}: case {case_id!r} has not run (no cases/{case_id}/{MARKER})")
    path = Path(decisions_path) if decisions_path else out / DECISIONS_FILE
    return append_decision(path, case_id, decision, reviewer, note, run=marker.get("run_number"))


def run_batch(
    manifest: str | Path,
    out_dir: str | Path,
    settings: BatchSettings | None = None,
    jobs: int = 1,
    decisions_path: str | Path | None = None,
    thresholds=None,
    force: bool = False,
    retry_failed: bool = False,
    progress: Progress | None = None,
    show_progress: bool = True,
) -> BatchResult:
    """Run the cases that need it, then write measurements.csv, status.csv and qc.html in ``out_dir``.

    ``progress(done, total, stage)`` is called as cases finish (total = cases + 1 for the QC page).
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    settings = settings or BatchSettings()
    thresholds = thresholds or qc_page.QCThresholds()
    if jobs < 1:
        raise BadInputError(f"jobs must be ≥ 1, got {jobs}")
    specs = read_manifest(manifest)
    out = Path(out_dir)
    cases = out / "cases"
    dpath = Path(decisions_path) if decisions_path else out / DECISIONS_FILE
    decisions = read_decisions(dpath, [s.case_id for s in specs])
    cases.mkdir(parents=True, exist_ok=True)
    for line in recover(out) + recover(cases):  # what a killed run left: finished or removed
        log.info("%s", line)
    todo, why = plan(specs, settings, cases, decisions, force, retry_failed)
    total, done = len(specs) + 1, len(specs) - len(todo)
    report = progress or (lambda d, t, s: None)
    report(done, total, "cases")
    n_failed = 0
    with tqdm(total=len(todo), desc="batch", unit="case", disable=not show_progress) as bar:
        for outcome in run_cases(todo, settings, cases, jobs):
            done += 1
            n_failed += outcome.status != "ok"
            if outcome.status != "ok":
                log.warning("case %s failed: %s", outcome.case_id, outcome.reason)
            bar.update()
            report(done, total, f"{outcome.case_id} {outcome.status}")
    table = collect(specs, cases)
    status = status_table(specs, cases, why, decisions)
    facts = qc_page.read_facts(cases, [s.case_id for s in specs])
    flags = qc_page.cohort_flags(table, facts, status, thresholds)
    with staged_files(out, label="batch", last=("measurements.csv",)) as staging:  # the summary, one set
        write_csv(staging / "measurements.csv", table)
        write_csv(staging / "status.csv", status)
        write_csv(staging / "qc_flags.csv", flags)
        qc_page.write_page(
            out, status, table, flags, facts, read_decision_rows(dpath), thresholds, dpath.name,
            path=staging / "qc.html",
        )  # fmt: skip
    page = out / "qc.html"
    report(total, total, "done")
    return BatchResult(
        out, len(specs), len(todo), n_failed, int((status["run"] == "accepted").sum()),
        time.perf_counter() - t0, status, page,
    )  # fmt: skip
