"""The parameter presets shipped with the module (``presets/*.yaml``); no pyradiomics import, so that the
command line can list them in ``--help``."""

from __future__ import annotations

from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def available_presets() -> list[str]:
    """Names of the presets shipped with the module (``protocol-mri``, ``ibsi-like``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
