"""The project's structure vocabulary, defined once in :mod:`ParaspinalLBPCore.structures`.

Kept so that ``from ParaspinalSegLib.structures import ...`` still works; new code imports
``ParaspinalLBPCore.structures``.
"""

from ParaspinalLBPCore.structures import *  # noqa: F403
from ParaspinalLBPCore.structures import __all__  # noqa: F401
