"""Repair the ``slicer`` package clash between slicer-core and shap's dependency ``slicer``.

shap depends on a small PyPI package that is also called ``slicer`` (0.0.8, array slicing). pip
installs both into ``site-packages/slicer/``: whichever wheel is installed last owns
``__init__.py``, and slicer-core's namespace ``__init__`` imports every module in the folder,
including the other package's ``test_slicer.py`` (which needs torch). This script makes the
result deterministic: slicer-core's ``__init__.py`` wins (it re-exports ``slicer.slicer.Slicer``
etc., which is all shap uses) and the two test modules of the 0.0.8 package are removed.
Only the test environment has both packages; real Slicer never installs slicer-core.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path


def main() -> int:
    """Apply the repair to the running interpreter's site-packages; idempotent."""
    spec = importlib.util.find_spec("slicer")
    if spec is None or not spec.submodule_search_locations:
        print("slicer package not installed; nothing to do")
        return 0
    folder = Path(next(iter(spec.submodule_search_locations)))
    init = folder / "__init__.py"
    if "Meta-package for 3DSlicer" not in init.read_text(encoding="utf-8"):
        version = next(
            (
                p.name.split("-")[1].removesuffix(".dist-info")
                for p in folder.parent.glob("slicer_core-*.dist-info")
            ),
            None,
        )
        if version is None:
            print("slicer-core not installed; nothing to do")
            return 0
        subprocess.check_call(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--force-reinstall",
                f"slicer-core=={version}",
            ]
        )
    for name in ("test_slicer.py", "utils_testing.py"):
        (folder / name).unlink(missing_ok=True)
    print(f"slicer namespace repaired in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
