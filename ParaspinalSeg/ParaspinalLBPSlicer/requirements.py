"""Python packages the modules need beyond what Slicer bundles: version check and the (never silent)
install prompt.

The pins come from ``requirements.txt`` beside this file, generated from pyproject.toml (the one pin
list) by ``make cmake-lists`` and shipped with the extension, where pyproject.toml is not. A package
counts as missing when it is absent *or* installed in another version than the pin (e.g. Slicer 5.10
bundles pydicom 2.4.4; the modules need 3.0.2). Inside a Slicer that has ``slicer.packaging`` the
prompt and the installation are Slicer's own ``pip_ensure``.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

#: Shipped beside this file; Testing/tools/update_cmake_lists.py writes it from pyproject.toml.
REQUIREMENTS_FILE = Path(__file__).resolve().parent / "requirements.txt"

#: What the four modules import beyond Slicer's bundled packages (numpy, SimpleITK, vtk):
#: import name -> distribution name (its version is the pin in REQUIREMENTS_FILE).
PYTHON_PACKAGES = {
    "pandas": "pandas",
    "scipy": "scipy",
    "yaml": "PyYAML",
    "radiomics": "pyradiomics-bhklab",
    "sklearn": "scikit-learn",
    "lightgbm": "lightgbm",
    "xgboost": "xgboost-cpu",
    "skops": "skops",
    "statsmodels": "statsmodels",
    "lifelines": "lifelines",
    "matplotlib": "matplotlib",
    "jinja2": "jinja2",
    "tqdm": "tqdm",
    "pydicom": "pydicom",
    "highdicom": "highdicom",
}

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def _canonical(name: str) -> str:
    """PEP 503 name normalisation (``PyYAML`` == ``pyyaml``, ``xgboost_cpu`` == ``xgboost-cpu``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def loadPins(path: Path | str = REQUIREMENTS_FILE) -> dict[str, str]:
    """Canonical distribution name -> pinned version, from a ``name==version`` requirements file."""
    pins = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


def installedVersion(distribution: str) -> str | None:
    """Installed version of a distribution in this Python, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def requirementProblems(importNames=None, pins: dict[str, str] | None = None) -> dict[str, str]:
    """Pip requirement -> what is wrong (``not installed`` / ``2.4.4 installed``) for ``importNames``
    (default: all) whose distribution is absent or not at its pinned version."""
    names = importNames or list(PYTHON_PACKAGES)
    unknown = sorted(set(names) - set(PYTHON_PACKAGES))
    if unknown:
        raise KeyError(f"not a ParaspinalLBP requirement: {', '.join(unknown)}")
    pins = loadPins() if pins is None else pins
    problems = {}
    for name in names:
        distribution = PYTHON_PACKAGES[name]
        pinned = pins[_canonical(distribution)]
        installed = installedVersion(distribution)
        if installed != pinned:
            why = "not installed" if installed is None else f"{installed} installed"
            problems[f"{distribution}=={pinned}"] = why
    return problems


def missingRequirements(importNames=None) -> list[str]:
    """Pip requirements of ``importNames`` (default: all) that are absent or not at the pinned version."""
    return list(requirementProblems(importNames))


def ensureRequirements(importNames=None) -> bool:
    """GUI only: ask the user before installing missing or wrong-version packages (never silently); True
    when every requirement is met afterwards."""
    import slicer
    from slicer.i18n import tr as _

    problems = requirementProblems(importNames)
    if not problems:
        return True
    try:  # Slicer's own check, prompt, install and restart offer (Slicer 5.11+)
        from slicer.packaging import pip_ensure
    except ImportError:
        pip_ensure = None
    if pip_ensure is not None:
        pip_ensure(list(problems), requester="ParaspinalLBP")
        return not requirementProblems(importNames)
    if not slicer.util.confirmOkCancelDisplay(
        _("This module needs Python packages that are not installed in the required version:\n")
        + "\n".join(f"{req} ({why})" for req, why in problems.items())
        + _("\n\nInstall them now? (Slicer may need a restart afterwards.)"),
        windowTitle="ParaspinalLBP",
    ):
        return False
    with slicer.util.tryWithErrorDisplay(_("Installing Python packages failed."), waitCursor=True):
        slicer.util.pip_install(" ".join(problems))
    return not requirementProblems(importNames)
