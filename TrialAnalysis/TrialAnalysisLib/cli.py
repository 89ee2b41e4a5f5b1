"""Command line of TrialAnalysisLib: ``python -m TrialAnalysisLib COMMAND …``.

Each sub-command's module is imported only when that sub-command runs (ParaspinalLBPCore.cli).
"""

from __future__ import annotations

from collections.abc import Sequence

from ParaspinalLBPCore.cli import Command, run_cli

COMMANDS = {
    "simulate": Command(
        "TrialAnalysisLib.simulate_cli:add_cli",
        "simulate the METNLBP trial (CSV dataset + data dictionary + truth.json)",
    ),
    "randomize": Command(
        "TrialAnalysisLib.randomization_cli:add_cli",
        "generate a stratified permuted-block allocation list (CSV + .sha256 + .json)",
    ),
    "sample-size": Command(
        "TrialAnalysisLib.sample_size_cli:add_cli",
        "sample size / detectable difference for the 12-month ODI comparison",
    ),
    "validate": Command(
        "TrialAnalysisLib.validate_cli:add_cli",
        "validate a trial dataset directory (exit 1 when errors are found)",
    ),
    "merge-allocation": Command(
        "TrialAnalysisLib.allocation_merge_cli:add_cli",
        "merge the randomisation service's allocation export (coded or unblinded) into a trial dataset",
    ),
    "analyze": Command(
        "TrialAnalysisLib.analyze_cli:add_cli",
        "run the statistical analysis plan on a trial dataset and write report.html/.pdf",
    ),
    "randomization-server": Command(
        "TrialAnalysisLib.randomization_server.server_cli:add_server_cli",
        "serve central web randomisation (SQLite file or PostgreSQL URL)",
    ),
    "randomization-admin": Command(
        "TrialAnalysisLib.randomization_server.server_cli:add_admin_cli",
        "randomisation database: migrate, create the first administrator",
    ),
    "audit-verify": Command(
        "TrialAnalysisLib.randomization_server.server_cli:add_verify_cli",
        "verify the randomisation audit log (exit 1 when tampered)",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trial-analysis`` console script."""
    return run_cli("trial-analysis", "METNLBP trial simulation and statistical analysis.", COMMANDS, argv)
