"""``python -m mobilevit_edu.evaluate``: the command line of :mod:`mobilevit_edu.evaluate`."""

import sys

from mobilevit_edu.evaluate.cli import main

sys.exit(main())
