"""Command line of LBPRiskModelLib: ``python -m LBPRiskModelLib {train,predict,report,serve} …``.

Each sub-command's module is imported only when that sub-command runs (ParaspinalLBPCore.cli).
"""

from __future__ import annotations

from collections.abc import Sequence

from ParaspinalLBPCore.cli import Command, run_cli

COMMANDS = {
    "train": Command("LBPRiskModelLib.train_cli:add_train_cli", "train, validate and export a model bundle"),
    "predict": Command(
        "LBPRiskModelLib.train_cli:add_predict_cli",
        "predict risks for new cases with a verified bundle",
    ),
    "report": Command(
        "LBPRiskModelLib.train_cli:add_report_cli",
        "write the self-contained HTML training report of a bundle",
    ),
    "serve": Command(
        "LBPRiskModelLib.webapp.serve_cli:add_cli",
        "serve the web risk calculator for one model bundle",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lbp-riskmodel`` console script."""
    return run_cli(
        "lbp-riskmodel", "LBP response/recurrence risk model: train, predict, report, serve.", COMMANDS, argv
    )
