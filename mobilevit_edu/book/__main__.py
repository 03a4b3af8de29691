"""``python -m mobilevit_edu.book``: the book's command line (see :mod:`mobilevit_edu.book.cli`)."""

import sys

from mobilevit_edu.book.cli import main

if __name__ == "__main__":
    sys.exit(main())
