"""The reproduction report's figure (chapter 15): every number the book recorded, against the paper's.

The rows come from :func:`mobilevit_edu.book.report.collect`; this module only draws them (the
plotting layer never imports the book's tooling: the :class:`~mobilevit_edu.book.report.Report`
passed in carries its rows, grouped by the paper's table or figure, and its kinds of match).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mobilevit_edu.plots.save import finish

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_report"]


def _numeric(r: Any) -> bool:
    """A row with a positive number on both sides (the only rows a ratio can be drawn for)."""
    return (isinstance(r.paper, (int, float)) and isinstance(r.ours, (int, float))
            and not isinstance(r.paper, bool) and bool(r.paper) and r.ours > 0 and r.paper > 0)


def plot_report(report: Any, *, name: str | None = None) -> "Figure":
    """Ours / paper for every row of ``report`` (a :class:`mobilevit_edu.book.report.Report`) with
    two numbers, one dot per row, coloured by kind of match: exact facts sit on 1, inferred and
    other-hardware rows spread as far as they differ. Small-scale rows are never drawn as a
    ratio (their verdicts are ``plots.experiments.plot_claims``'s). Rows are ordered by kind, then by the
    paper's table or figure. Saved as ``figures/<name>.png`` only when ``name`` is given."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    kinds = [k for k in report.kinds if k != "small-scale"]  # claims get verdicts, not ratios
    in_source_order = [r for group in report.by_source().values() for r in group]
    rows = sorted((r for r in in_source_order if _numeric(r) and r.kind in kinds),
                  key=lambda r: kinds.index(r.kind))
    colours = {kind: f"C{i}" for i, kind in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(8, 0.26 * len(rows) + 1.4))
    for y, r in enumerate(rows):
        ax.scatter(float(r.ours) / float(r.paper), y, color=colours[r.kind], s=22, zorder=3)
    ax.axvline(1.0, color="0.4", lw=1, ls="--", zorder=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 4, 10]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_yticks(range(len(rows)), [f"{r.source}: {r.item}"[:60] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("this book / paper (log scale)")
    for kind, colour in colours.items():
        ax.scatter([], [], color=colour, label=report.kinds[kind])
    ax.legend(loc="lower right", fontsize=7, frameon=True)
    ax.set_title("Every number the book recorded, against the paper's")
    return finish(fig, name)
