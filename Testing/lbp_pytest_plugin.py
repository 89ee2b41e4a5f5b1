"""Project-wide pytest plugin (loaded with -p): fixtures: access to ../shared data (skip locally, fail in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_path(relative: str) -> Path:
    """Path of a file under ../shared; skips the test when absent, fails when absent in CI."""
    path = SHARED / relative
    if not path.exists():
        msg = f"shared data missing: {path} (see ../shared/data/README.md)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def shared() -> type:
    """Fixture form of :func:`shared_path`: ``shared("data/musclemap_sub0001/image.nii.gz")``."""
    return shared_path


@pytest.fixture
def slicer_scene():
    """A real, cleared MRML scene with Slicer's module logics (slicer-core), as ``slicer`` module."""
    import slicer_harness

    slicer = slicer_harness.bootstrap()
    slicer.mrmlScene.Clear(0)
    yield slicer
    slicer.mrmlScene.Clear(0)


@pytest.fixture
def slicer_module():
    """Import a module file (``ParaspinalSeg`` …) the way Slicer does; returns the Python module."""
    import slicer_harness

    return slicer_harness.import_module_file
