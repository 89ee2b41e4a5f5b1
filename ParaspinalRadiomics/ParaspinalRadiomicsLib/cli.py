"""Command line of ParaspinalRadiomicsLib: ``python -m ParaspinalRadiomicsLib COMMAND …``."""

from __future__ import annotations

from collections.abc import Sequence

from ParaspinalRadiomicsLib._cli import run_cli

COMMANDS = {
    "extract": "ParaspinalRadiomicsLib.extract_cli:add_cli",
    "batch": "ParaspinalRadiomicsLib.batch_cli:add_cli",
    "icc": "ParaspinalRadiomicsLib.reproducibility_cli:add_icc_cli",
    "perturb": "ParaspinalRadiomicsLib.reproducibility_cli:add_perturb_cli",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paraspinal-radiomics`` console script."""
    return run_cli("paraspinal-radiomics", "Radiomic features of paraspinal muscles (pyradiomics).", COMMANDS, argv)
