"""``python -m mobilevit_edu.train``: the command line of :mod:`mobilevit_edu.train`."""

import sys

from mobilevit_edu.train import main

sys.exit(main())
