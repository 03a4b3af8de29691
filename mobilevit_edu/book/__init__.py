"""The book's own tooling: what the chapters call and what runs and renders them (chapter 00).

Every chapter opens with ``from mobilevit_edu.book import setup; P = setup(seed=0)``. The
subpackage, by concern:

* :mod:`~mobilevit_edu.book.manifest`: ``book.toml`` (chapters, their checks, chapter 00's tables);
* :mod:`~mobilevit_edu.book.profile`: :func:`setup`, the ``full`` / ``ci`` profiles, the plot style;
* :mod:`~mobilevit_edu.book.runner`, :mod:`~mobilevit_edu.book.figures`,
  :mod:`~mobilevit_edu.book.site`, :mod:`~mobilevit_edu.book.cli`: executing the chapters,
  regenerating ``figures/``, the HTML book, and ``python -m mobilevit_edu.book check|run|figures|html``;
* :mod:`~mobilevit_edu.book.paper` (with ``paper_rows``, ``paper_tables``): the paper's numbers;
* :mod:`~mobilevit_edu.book.results` and :mod:`~mobilevit_edu.book.report`: the ledger of what
  the chapters measured and the reproduction report built from it (chapter 15).

Re-exported here: the names the chapters use.
"""

from mobilevit_edu.book.manifest import find_root, load_book, module_map_markdown, toc_markdown
from mobilevit_edu.book.profile import setup

__all__ = ["setup", "load_book", "find_root", "toc_markdown", "module_map_markdown"]
