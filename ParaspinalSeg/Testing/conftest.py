"""Fixtures of the ParaspinalSeg tests: the small phantom cohort with planted QC problems and its batch run."""

from __future__ import annotations

from pathlib import Path

import pytest
from cohort_fixtures import make_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered cohort's manifest (read-only for the tests: copy before changing inputs)."""
    return make_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def batch(cohort: Path) -> Path:
    """One serial batch run over the cohort; returns its folder."""
    from ParaspinalSegLib.batch import run_batch

    out = cohort.parent / "batch"
    result = run_batch(cohort, out, show_progress=False)
    assert (result.n_cases, result.n_run, result.n_failed) == (7, 7, 1)
    return out
