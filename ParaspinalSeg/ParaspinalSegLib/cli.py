"""Command line of ParaspinalSegLib: ``python -m ParaspinalSegLib COMMAND …``.

Each sub-command's module is imported only when that sub-command runs (ParaspinalLBPCore.cli).
"""

from __future__ import annotations

from collections.abc import Sequence

from ParaspinalLBPCore.cli import Command, run_cli

COMMANDS = {
    "phantom": Command(
        "ParaspinalSegLib.phantom_cli:add_cli",
        "render a digital lumbar MRI phantom with ground truth",
    ),
    "segment": Command("ParaspinalSegLib.segment_cli:add_cli", "segment paraspinal muscles from seed points"),
    "measure": Command(
        "ParaspinalSegLib.measure_cli:add_cli",
        "measure a label map (CSA, fat fraction, Goutallier, asymmetry)",
    ),
    "propose-seeds": Command(
        "ParaspinalSegLib.autoseed_cli:add_cli",
        "propose seed points from the image (auto-initialisation)",
    ),
    "infiltrate": Command(
        "ParaspinalSegLib.infiltrate_cli:add_cli",
        "infiltrate fat into a labelled real case inside its outlines",
    ),
    "dicom-seg": Command(
        "ParaspinalSegLib.dicom_seg_cli:add_cli",
        "write a label map as DICOM SEG referencing its source series",
    ),
    "agreement": Command(
        "ParaspinalSegLib.agreement_cli:add_cli",
        "rater agreement of segmentations: Dice, surface distance, ICC, Bland–Altman",
    ),
    "batch": Command(
        "ParaspinalSegLib.batch_cli:add_cli",
        "segment + measure a cohort from a manifest, with a QC contact sheet (resumable)",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paraspinal-seg`` console script."""
    return run_cli(
        "paraspinal-seg", "Paraspinal muscle phantom, segmentation and measurement.", COMMANDS, argv
    )
