"""Allow ``python -m LBPRiskModelLib``."""

import sys

from LBPRiskModelLib.cli import main

sys.exit(main())
