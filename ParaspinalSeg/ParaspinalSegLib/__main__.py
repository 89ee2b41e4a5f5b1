"""Allow ``python -m ParaspinalSegLib``."""

import sys

from ParaspinalSegLib.cli import main

sys.exit(main())
