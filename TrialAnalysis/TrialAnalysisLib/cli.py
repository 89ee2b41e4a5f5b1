"""Command line of TrialAnalysisLib: ``python -m TrialAnalysisLib COMMAND …``."""

from __future__ import annotations

from collections.abc import Sequence

from TrialAnalysisLib._cli import run_cli

COMMANDS = {
    "simulate": "TrialAnalysisLib.simulate_cli:add_cli",
    "randomize": "TrialAnalysisLib.randomization_cli:add_cli",
    "sample-size": "TrialAnalysisLib.sample_size_cli:add_cli",
    "validate": "TrialAnalysisLib.validate_cli:add_cli",
    "analyze": "TrialAnalysisLib.analyze_cli:add_cli",
    "demo": "TrialAnalysisLib.demo:add_cli",
    "randomization-server": "TrialAnalysisLib.randomization_server.server_cli:add_server_cli",
    "randomization-admin": "TrialAnalysisLib.randomization_server.server_cli:add_admin_cli",
    "audit-verify": "TrialAnalysisLib.randomization_server.server_cli:add_verify_cli",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trial-analysis`` console script."""
    return run_cli("trial-analysis", "METNLBP trial simulation and statistical analysis.", COMMANDS, argv)
