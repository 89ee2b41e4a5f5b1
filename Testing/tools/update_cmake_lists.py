"""Rewrite each module's CMakeLists.txt so it lists every Python file and resource of the module, and
the pinned requirements the Slicer modules check (generated from pyproject.toml).

Run after adding or removing files or changing a pin (``make cmake-lists``); ``--check`` (run by
``make test``/``make lint``) fails when a file is missing from its module's list or the requirements file
differs from pyproject.toml, so Slicer's build never silently drops a file and an installed extension
checks the same pins as the command line.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULES = ("ParaspinalSeg", "ParaspinalRadiomics", "LBPRiskModel", "TrialAnalysis")
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
#: Shipped with the extension (pyproject.toml is not): ParaspinalLBPSlicer.requirements reads the pins here.
REQUIREMENTS_TXT = REPO / "ParaspinalSeg" / "ParaspinalLBPSlicer" / "requirements.txt"


def render_requirements() -> str:
    """requirements.txt text: the runtime dependencies of pyproject.toml, one pip requirement per line."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    header = (
        "# Generated from pyproject.toml by Testing/tools/update_cmake_lists.py (make cmake-lists); do not edit.\n"
        "# Read by ParaspinalLBPSlicer/requirements.py to check the installed versions inside Slicer.\n"
    )
    return header + "".join(f"{dep}\n" for dep in project["dependencies"])


TEMPLATE = """#-----------------------------------------------------------------------------
set(MODULE_NAME {name})

#-----------------------------------------------------------------------------
# Every Python file of the module and of its library package (checked by Testing/test_house.py;
# regenerate with `make cmake-lists`).
set(MODULE_PYTHON_SCRIPTS
{scripts}
  )

set(MODULE_PYTHON_RESOURCES
{resources}
  )

#-----------------------------------------------------------------------------
slicerMacroBuildScriptedModule(
  NAME ${{MODULE_NAME}}
  SCRIPTS ${{MODULE_PYTHON_SCRIPTS}}
  RESOURCES ${{MODULE_PYTHON_RESOURCES}}
  WITH_GENERIC_TESTS
  )

#-----------------------------------------------------------------------------
if(BUILD_TESTING)
  # Register the unittest subclass in the main script as a ctest.
  # Note that the test will also be available at runtime (Reload and Test).
  slicer_add_python_unittest(SCRIPT ${{MODULE_NAME}}.py)
endif()
"""


def module_files(name: str) -> tuple[list[str], list[str]]:
    """(python scripts, resources) of a module, relative to its folder, sorted."""
    root = REPO / name
    scripts = [f"{name}.py"]
    resources = []
    # The Lib plus any other package of the module (e.g. ParaspinalSeg/ParaspinalLBPSlicer).
    packages = sorted(p.parent for p in root.glob("*/__init__.py") if p.parent.name != "Testing")
    for path in sorted(f for package in packages for f in package.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or SKIP_PARTS & set(rel.parts) or path.suffix == ".pyc":
            continue
        (scripts if path.suffix == ".py" else resources).append(rel.as_posix())
    for path in sorted((root / "Resources").rglob("*")):
        if path.is_file():
            resources.append(path.relative_to(root).as_posix())
    return scripts, resources


def render(name: str) -> str:
    """CMakeLists.txt text for one module."""
    scripts, resources = module_files(name)
    fmt = lambda items: "\n".join(f"  {item}" for item in items)  # noqa: E731
    return TEMPLATE.format(name=name, scripts=fmt(scripts), resources=fmt(resources))


def main() -> int:
    """Write the requirements file and all module CMakeLists; ``--check`` only reports which are out of date
    (exit 1)."""
    check = "--check" in sys.argv
    stale = []
    text = render_requirements()
    if not REQUIREMENTS_TXT.exists() or REQUIREMENTS_TXT.read_text(encoding="utf-8") != text:
        stale.append(REQUIREMENTS_TXT.relative_to(REPO).as_posix())
        if not check:
            REQUIREMENTS_TXT.write_text(text, encoding="utf-8")
    for name in MODULES:
        path = REPO / name / "CMakeLists.txt"
        text = render(name)
        if not path.exists() or path.read_text() != text:
            stale.append(name)
            if not check:
                path.write_text(text)
    if stale:
        print(("out of date: " if check else "updated: ") + ", ".join(stale))
    return 1 if (check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
