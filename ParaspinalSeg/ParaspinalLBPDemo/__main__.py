"""Allow ``python -m ParaspinalLBPDemo``."""

import sys

from ParaspinalLBPDemo.demo import main

sys.exit(main())
