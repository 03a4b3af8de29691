"""``python -m mobilevit_edu.book``: the command line of :mod:`mobilevit_edu.book`."""

import sys

from mobilevit_edu.book import main

sys.exit(main())
