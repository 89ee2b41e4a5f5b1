"""Allow ``python -m TrialAnalysisLib``."""

import sys

from TrialAnalysisLib.cli import main

sys.exit(main())
