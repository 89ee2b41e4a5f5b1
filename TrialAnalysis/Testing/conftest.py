"""Fixtures of the TrialAnalysis tests: a throwaway PostgreSQL cluster for the randomisation service."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[object]:
    """One PostgreSQL cluster per test session (skips locally, fails in CI, when it cannot start)."""
    from randomization_support import start_postgres

    cluster = start_postgres()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path) -> Callable[[], str]:  # type: ignore[no-untyped-def]
    """Factory of a fresh database of the test's backend (parametrise ``backend`` with sqlite/postgresql)."""
    backend = getattr(request, "param", "sqlite")

    def make() -> str:
        if backend == "sqlite":
            return str(tmp_path / f"rand{next(_names)}.db")
        cluster = request.getfixturevalue("postgres_cluster")
        return cluster.create_database(f"rand{next(_names)}")

    return make
