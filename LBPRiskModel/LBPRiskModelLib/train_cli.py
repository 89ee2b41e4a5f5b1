"""Sub-commands ``train``, ``predict`` and ``report`` of ``python -m LBPRiskModelLib``.

``train --progress`` prints ``PROGRESS <done>/<total> <stage>`` lines on stdout instead of the tqdm
bar (for the Slicer module's Train button, via ``ParaspinalLBPSlicer.jobs``); SIGTERM then stops the
run cleanly (exit status 143) and an existing bundle at ``--out`` is left as it was.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd

from ParaspinalLBPCore.atomic import atomic_path
from ParaspinalLBPCore.cli import sigterm_exits
from ParaspinalLBPCore.errors import BadInputError, MissingInputError, MissingKeyError

log = logging.getLogger(__name__)


def add_train_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """``train --data table.csv --outcome COL [--config cfg.yaml] --out BUNDLE_DIR``."""
    p = subparsers.add_parser(name, help="train, validate and export a model bundle")
    p.add_argument("--data", help="modelling table (CSV, one row per case)")
    p.add_argument(
        "--clinical", help="C6 trial dataset directory (participants.csv, visits.csv, recurrence.csv)"
    )
    p.add_argument("--features", help="C5 feature table features.csv (joined by case_id)")
    p.add_argument("--robust", help="robust_features.json restricting the radiomic features")
    p.add_argument("--measurements", help="C4 measurement table measurements.csv")
    p.add_argument(
        "--outcome",
        required=True,
        help="outcome column, or responder:VISIT:MCID / recurrence:MONTHS to derive it from --clinical",
    )
    p.add_argument("--config", help="YAML overriding the default (protocol) configuration")
    p.add_argument(
        "--quick",
        action="store_true",
        help="quick preset for demos/tests (fewer bootstrap replicates; not the protocol)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip SHAP/LIME/ROC figures")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument(
        "--progress",
        action="store_true",
        help="print 'PROGRESS <done>/<total> <stage>' lines on stdout instead of the tqdm bar",
    )
    p.set_defaults(func=run_train)


def _outcome_spec(text: str) -> dict | None:
    parts = text.split(":")
    if parts[0] == "responder":
        return {
            "type": "responder",
            "visit": parts[1] if len(parts) > 1 else "m12",
            "mcid": float(parts[2]) if len(parts) > 2 else 10.0,
        }
    if parts[0] == "recurrence":
        return {"type": "recurrence", "months": float(parts[1]) if len(parts) > 1 else 12.0}
    return None


def train_from_files(
    out: str | Path,
    outcome: str,
    data: str | Path | None = None,
    clinical: str | Path | None = None,
    features: str | Path | None = None,
    measurements: str | Path | None = None,
    robust: str | Path | None = None,
    config: str | Path | None = None,
    quick: bool = False,
    figures: bool = True,
    progress: bool | Callable[[int, int, str], None] = True,
) -> dict[str, Any]:
    """What ``train`` does, as a function: read or assemble the modelling table, train, write the bundle.

    ``data`` is a modelling table (CSV, one row per case); otherwise the table is assembled from the
    trial folder ``clinical`` and the ``features``/``measurements`` tables, and ``outcome`` may be
    ``responder:VISIT:MCID`` or ``recurrence:MONTHS``. Returns ``export.train``'s result.
    """
    from LBPRiskModelLib.dataset import assemble
    from LBPRiskModelLib.export import train
    from LBPRiskModelLib.train import load_config

    cfg = load_config(str(config) if config else None, quick=quick)
    spec = _outcome_spec(outcome)
    definition = ""
    if data:
        path = Path(data)
        if not path.is_file():
            raise MissingInputError(f"{path}: data table not found")
        df = pd.read_csv(path)
    else:
        if spec is not None and not clinical:
            raise BadInputError("--outcome responder:/recurrence: needs --clinical DIR")
        df, derived = assemble(clinical, features, measurements, robust, spec)
        outcome = derived or outcome
    if spec is not None:
        definition = (
            f"ODI improvement from baseline ≥ {spec['mcid']:g} points at visit {spec['visit']} (responder)"
            if spec["type"] == "responder"
            else f"recurrence within {spec['months']:g} months (participants censored earlier excluded)"
        )
    return train(df, outcome, cfg, out, outcome_definition=definition, progress=progress, figures_on=figures)


def _print_progress(done: int, total: int, stage: str) -> None:
    print(f"PROGRESS {done}/{total} {stage}", flush=True)


def run_train(args: argparse.Namespace) -> int:
    """Train and write the bundle; print its hash and the selected model's test AUC."""
    with sigterm_exits() if args.progress else nullcontext():
        res = train_from_files(
            args.out,
            args.outcome,
            data=args.data,
            clinical=args.clinical,
            features=args.features,
            measurements=args.measurements,
            robust=args.robust,
            config=args.config,
            quick=args.quick,
            figures=not args.no_figures,
            progress=_print_progress if args.progress else True,
        )
    m = res["metrics"]
    fam = m["selected_model"]
    lo, hi = m["families"][fam]["test_auc_ci_delong"]
    print(
        f"bundle {args.out} ({res['bundle_hash'][:12]}): {fam}, test AUC {m['families'][fam]['test_auc']:.3f} (95% CI {lo:.3f}-{hi:.3f})"
    )
    return 0


def add_predict_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """``predict --model BUNDLE_DIR --data new.csv --out preds.csv``."""
    p = subparsers.add_parser(name, help="predict risks for new cases with a verified bundle")
    p.add_argument("--model", required=True, help="bundle directory")
    p.add_argument("--data", required=True, help="CSV with the schema's input columns (and case_id)")
    p.add_argument(
        "--out", required=True, help="output CSV (risk, ci_low, ci_high, risk_group, top features)"
    )
    p.add_argument("--top", type=int, default=3, help="number of top contributing features per row")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from LBPRiskModelLib.bundle import BundleError, load_bundle

    try:
        b = load_bundle(args.model)
    except BundleError as exc:
        raise BadInputError(f"refusing bundle: {exc}") from exc
    path = Path(args.data)
    if not path.is_file():
        raise MissingInputError(f"{path}: data table not found")
    df = pd.read_csv(path)
    missing_required = [f.name for f in b.schema if f.required and f.name not in df.columns]
    if missing_required:
        raise MissingKeyError(f"{path}: missing required column(s) {', '.join(missing_required)}")
    id_col = "case_id" if "case_id" in df.columns else None
    out = b.predict(df, n_top=args.top, id_col=id_col)
    with atomic_path(args.out) as tmp:
        out.to_csv(tmp, index=False)
    print(f"{len(out)} predictions → {args.out} (model {b.family}, bundle {b.bundle_hash[:12]})")
    return 0


def add_report_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """``report --model BUNDLE_DIR --out report.html``."""
    p = subparsers.add_parser(name, help="write the self-contained HTML training report of a bundle")
    p.add_argument("--model", required=True, help="bundle directory")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from LBPRiskModelLib.bundle import BundleError, verify_bundle
    from LBPRiskModelLib.reporting import render_report

    try:
        verify_bundle(args.model)
    except BundleError as exc:
        raise BadInputError(f"refusing bundle: {exc}") from exc
    render_report(args.model, args.out)
    print(f"report → {args.out}")
    return 0
