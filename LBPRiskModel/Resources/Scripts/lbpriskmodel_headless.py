"""Headless LBPRiskModel: predict one case's risk from its tables with a verified model bundle, no GUI.

Loads the case's feature table (ParaspinalRadiomics, contract C5) and measurement table
(ParaspinalSeg, contract C4) into table nodes, verifies the model bundle (SHA-256), builds the
case record exactly as the Slicer module does (``LBPRiskModelLogic.caseRecord``: imaging
predictors pivoted as in training + clinical values), predicts, and writes ``prediction.json``
(risk, 95 % interval, risk group, per-feature contributions, bundle hash) and, beside it,
``<stem>_contributions.csv``::

    Slicer --no-main-window --python-script LBPRiskModel/Resources/Scripts/lbpriskmodel_headless.py -- \\
        --model bundle/ --features out/P0001/features.csv --measurements out/P0001/measurements.csv \\
        --clinical-json '{"age": 71, "odi_baseline": 38}' --out out/P0001/prediction.json

``--clinical-json`` is a JSON object or a path to a JSON file; ``--case-id`` picks one case when
the tables hold several. Exit status 0 on success, 2 on bad input or a bundle that fails
verification. Also runs through the slicer-core test harness by calling :func:`main`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import slicer

from ParaspinalLBPCore.errors import BadInputError, MissingInputError, MissingKeyError
from ParaspinalLBPSlicer import headless


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (everything after ``--`` on Slicer's command line)."""
    p = argparse.ArgumentParser(prog="lbpriskmodel_headless", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model bundle directory")
    p.add_argument("--features", help="features.csv of the case (C5)")
    p.add_argument("--measurements", help="measurements.csv of the case (C4)")
    p.add_argument("--clinical-json", help="clinical values: JSON object or a .json file")
    p.add_argument("--case-id", help="use only this case's rows of the tables")
    p.add_argument("--out", required=True, help="output prediction.json")
    return p.parse_args(argv)


def _clinical(value: str | None) -> dict:
    """Clinical values from inline JSON or a JSON file; a BadInputError names the option."""
    if not value:
        return {}
    text = Path(value).read_text(encoding="utf-8") if Path(value).is_file() else value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"--clinical-json: not a JSON object or file ({exc})") from None
    if not isinstance(data, dict):
        raise BadInputError("--clinical-json: expected a JSON object {field: value}")
    return data


def _table(option: str, path: str | None, caseId: str | None):
    """A CSV as a typed table node (numbers as doubles), optionally one case's rows only."""
    if path is None:
        return None
    import pandas as pd

    from ParaspinalLBPSlicer.tables import dataFrameToTable

    if not Path(path).is_file():
        raise MissingInputError(f"--{option}: file not found: {path}")
    # slicer.util.loadTable reads CSV columns as text without a schema; pandas keeps the types.
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BadInputError(
            f"--{option}: {path} is not a readable CSV ({' '.join(str(exc).split())})"
        ) from None
    if caseId is not None:
        if "case_id" not in df.columns:
            raise MissingKeyError(f"--{option}: {path} has no case_id column")
        df = df[df["case_id"].astype(str) == caseId]
        if df.empty:
            raise MissingKeyError(f"--{option}: case {caseId!r} not in {path}")
    elif "case_id" in df.columns and df["case_id"].nunique() > 1:
        raise BadInputError(f"--{option}: {path} holds several cases; choose one with --case-id")
    return dataFrameToTable(df.reset_index(drop=True), None, option)


def run(args: argparse.Namespace) -> Path:
    """Verify the bundle, build the record, predict, write the JSON; returns its path."""
    import LBPRiskModel
    from LBPRiskModelLib.bundle import BundleError

    logic = LBPRiskModel.LBPRiskModelLogic()
    try:
        bundle = logic.loadBundle(args.model)
    except BundleError as exc:
        raise BadInputError(f"--model: {exc}") from None
    features = _table("features", args.features, args.case_id)
    measurements = _table("measurements", args.measurements, args.case_id)
    record = logic.caseRecord(bundle, features, measurements, _clinical(args.clinical_json))
    prediction, contributions = logic.predict(bundle, record)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "case_id": args.case_id or "",
        "risk": prediction.risk,
        "ci_low": prediction.ci_low,
        "ci_high": prediction.ci_high,
        "risk_group": prediction.risk_group,
        "top_features": list(prediction.top_features),
        "contributions": [
            {"feature": f, "value": v if isinstance(v, int | float | str) else str(v), "contribution": c}
            for f, v, c in prediction.contributions
        ],
        "contribution_unit": prediction.contribution_unit,
        "base_value": prediction.base_value,
        "warnings": dict(prediction.warnings),
        "model_name": prediction.model_name,
        "model_version": prediction.model_version,
        "bundle_hash": prediction.bundle_hash,
        "record": record,
    }
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    tmp.replace(out)
    csv = out.with_name(f"{out.name.split('.')[0]}_contributions.csv")
    slicer.util.dataframeFromTable(contributions).to_csv(csv, index=False)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default: the arguments after ``--``), run, return the exit status."""
    return headless.runScript("lbpriskmodel_headless", parse_args, run, argv)


if __name__ == "__main__":
    headless.runAsScript(main)
