"""Command line of ParaspinalSegLib: ``python -m ParaspinalSegLib {phantom,segment,measure} …``."""

from __future__ import annotations

from collections.abc import Sequence

from ParaspinalSegLib._cli import run_cli

COMMANDS = {
    "phantom": "ParaspinalSegLib.phantom_cli:add_cli",
    "segment": "ParaspinalSegLib.segment_cli:add_cli",
    "measure": "ParaspinalSegLib.measure_cli:add_cli",
    "propose-seeds": "ParaspinalSegLib.autoseed_cli:add_cli",
    "infiltrate": "ParaspinalSegLib.infiltrate_cli:add_cli",
    "dicom-seg": "ParaspinalSegLib.dicom_seg_cli:add_cli",
    "batch": "ParaspinalSegLib.batch_cli:add_cli",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paraspinal-seg`` console script."""
    return run_cli(
        "paraspinal-seg", "Paraspinal muscle phantom, segmentation and measurement.", COMMANDS, argv
    )
