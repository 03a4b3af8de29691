"""``python -m mobilevit_edu.experiments``: the command line of :mod:`mobilevit_edu.experiments`."""

import sys

from mobilevit_edu.experiments.cli import main

sys.exit(main())
