"""Command line of ParaspinalRadiomicsLib: ``python -m ParaspinalRadiomicsLib COMMAND …``.

Each sub-command's module is imported only when that sub-command runs (ParaspinalLBPCore.cli).
"""

from __future__ import annotations

from collections.abc import Sequence

from ParaspinalLBPCore.cli import Command, run_cli

COMMANDS = {
    "extract": Command(
        "ParaspinalRadiomicsLib.extract_cli:add_cli",
        "extract features of every structure of one case",
    ),
    "batch": Command(
        "ParaspinalRadiomicsLib.batch_cli:add_cli",
        "extract features for every case of a manifest",
    ),
    "icc": Command(
        "ParaspinalRadiomicsLib.reproducibility_cli:add_icc_cli",
        "per-feature ICC between two segmentations/sessions",
    ),
    "perturb": Command(
        "ParaspinalRadiomicsLib.reproducibility_cli:add_perturb_cli",
        "feature robustness to +-1 voxel mask erosion/dilation/shift",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paraspinal-radiomics`` console script."""
    return run_cli(
        "paraspinal-radiomics", "Radiomic features of paraspinal muscles (pyradiomics).", COMMANDS, argv
    )
