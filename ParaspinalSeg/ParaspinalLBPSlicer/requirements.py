"""Python packages the modules need beyond what Slicer bundles, and the (never silent) install prompt."""

from __future__ import annotations

import importlib.util

#: Packages the four modules need beyond what Slicer bundles (numpy, SimpleITK, vtk), as pinned in
#: pyproject.toml (Testing/test_house.py keeps the two in step): import name -> pip requirement.
PYTHON_REQUIREMENTS = {
    "pandas": "pandas==2.3.3",
    "scipy": "scipy==1.16.3",
    "yaml": "PyYAML==6.0.4",
    "radiomics": "pyradiomics-bhklab==3.1.4",
    "sklearn": "scikit-learn==1.9.1",
    "lightgbm": "lightgbm==4.7.0",
    "xgboost": "xgboost-cpu==3.4.1",
    "skops": "skops==0.16.0",
    "statsmodels": "statsmodels==0.15.0",
    "lifelines": "lifelines==0.30.3",
    "matplotlib": "matplotlib==3.10.7",
    "jinja2": "jinja2==3.1.6",
    "tqdm": "tqdm==4.70.1",
    "pydicom": "pydicom==3.0.2",
    "highdicom": "highdicom==0.27.0",
}


def missingRequirements(importNames=None) -> list[str]:
    """Pip requirements of ``importNames`` (default: all) that are not importable in this Python."""
    names = importNames or list(PYTHON_REQUIREMENTS)
    unknown = sorted(set(names) - set(PYTHON_REQUIREMENTS))
    if unknown:
        raise KeyError(f"not a ParaspinalLBP requirement: {', '.join(unknown)}")
    return [PYTHON_REQUIREMENTS[n] for n in names if importlib.util.find_spec(n) is None]


def ensureRequirements(importNames=None) -> bool:
    """GUI only: ask the user before installing missing packages (never silently); True when all present."""
    import slicer
    from slicer.i18n import tr as _

    missing = missingRequirements(importNames)
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(
        _("This module needs Python packages that are not installed yet:\n")
        + "\n".join(missing)
        + _("\n\nInstall them now? (Slicer may need a restart afterwards.)"),
        windowTitle="ParaspinalLBP",
    ):
        return False
    with slicer.util.tryWithErrorDisplay(_("Installing Python packages failed."), waitCursor=True):
        slicer.util.pip_install(" ".join(missing))
    return not missingRequirements(importNames)
