"""ParaspinalLBPSlicer.requirements: the pins shipped with the extension, and the version check against the
packages really installed in this Python (the project's .venv holds exactly the pins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ParaspinalLBPSlicer import requirements as rq


def test_pins_parse_markers_and_extras(tmp_path: Path) -> None:
    pins = rq.loadPins()
    assert pins["pyyaml"] == pins["PyYAML".lower()] and pins["uvloop"] == "0.23.0" and pins["psycopg"]
    path = tmp_path / "r.txt"
    path.write_text("# comment\nFoo_Bar[x]==1.2 ; python_version >= '3'\nbaz>=2\n")
    assert rq.loadPins(path) == {"foo-bar": "1.2"}  # only exact pins count


def test_this_environment_meets_every_pin() -> None:
    """make venv installs pyproject's pins, so nothing is reported here (a real metadata check)."""
    assert rq.requirementProblems() == {}
    assert rq.missingRequirements(["pandas", "radiomics"]) == []


def test_wrong_or_absent_versions_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    pins = {**rq.loadPins(), "pandas": "0.0.1", "no-such-distribution": "1.0"}
    monkeypatch.setitem(rq.PYTHON_PACKAGES, "no_such_module", "no-such-distribution")
    problems = rq.requirementProblems(["pandas", "scipy", "no_such_module"], pins=pins)
    installed = rq.installedVersion("pandas")
    assert problems == {
        "pandas==0.0.1": f"{installed} installed",
        "no-such-distribution==1.0": "not installed",
    }
    with pytest.raises(KeyError, match="not a ParaspinalLBP requirement: torch"):
        rq.requirementProblems(["torch"])
