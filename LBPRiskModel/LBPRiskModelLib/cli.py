"""Command line of LBPRiskModelLib: ``python -m LBPRiskModelLib {train,predict,report,serve} …``."""

from __future__ import annotations

from collections.abc import Sequence

from LBPRiskModelLib._cli import run_cli

COMMANDS = {
    "train": "LBPRiskModelLib.train_cli:add_train_cli",
    "predict": "LBPRiskModelLib.train_cli:add_predict_cli",
    "report": "LBPRiskModelLib.train_cli:add_report_cli",
    "serve": "LBPRiskModelLib.webapp.serve_cli:add_cli",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lbp-riskmodel`` console script."""
    return run_cli(
        "lbp-riskmodel", "LBP response/recurrence risk model: train, predict, report, serve.", COMMANDS, argv
    )
