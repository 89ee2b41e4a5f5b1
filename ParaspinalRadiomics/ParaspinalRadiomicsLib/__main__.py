"""Allow ``python -m ParaspinalRadiomicsLib``."""

import sys

from ParaspinalRadiomicsLib.cli import main

sys.exit(main())
