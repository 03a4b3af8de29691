"""Plots of the paper's reported numbers (chapter 01; nothing here is measured by this book).

Each function draws one of the MobileViT paper's comparisons (§4.1, Fig. 8 and Fig. 9) from the
tables of :mod:`mobilevit_edu.book.paper`, passed in by the caller (the plotting layer does not
import the book's tooling), labels it as the paper's numbers with the figure it comes from, and
returns the figure; it is saved into ``figures/<name>.png`` only when ``name`` is given
(chapter 01 saves them as ``paper_fig8_cnns`` and ``paper_fig9b_vits``)::

    from mobilevit_edu.book import paper
    plot_cnn_comparison(paper.TABLES["fig8b"], paper.TABLES["fig8c"])
    plot_vit_comparison(paper.TABLES["fig9b"])

* :func:`plot_cnn_comparison`: Fig. 8b (light CNNs) and Fig. 8c (heavy CNNs), top-1 vs parameters.
* :func:`plot_vit_comparison`: Fig. 9b (ViT-based models), top-1 vs parameters, basic vs advanced
  augmentation.

A table is a :class:`mobilevit_edu.book.paper.Table`: a ``source`` ("Fig. 8b") and ``rows``, each
with ``model``, ``params_m``, ``top1``, ``aug`` and ``is_mobilevit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from mobilevit_edu.plots.save import finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_cnn_comparison", "plot_vit_comparison"]

MOBILEVIT_COLOR = "#D55E00"  # vermillion: MobileViT in every plot of the paper's numbers
OTHER_COLOR = "#0072B2"  # blue: the models it is compared with
CREDIT = "Numbers copied from Mehta & Rastegari, ICLR 2022 (arXiv 2110.02178); not measured here."


def _label_points(ax: "Axes", points: Sequence[tuple[float, float, str, bool]]) -> None:
    """Write each point's name next to it, trying a few positions and keeping the first one that
    overlaps neither an earlier label nor another point (a greedy, deterministic placement)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    # candidate (dx, dy) offsets in points, with the matching alignment
    candidates = [
        (6, 0, "left", "center"), (-6, 0, "right", "center"), (0, 7, "center", "bottom"),
        (0, -7, "center", "top"), (6, 6, "left", "bottom"), (6, -6, "left", "top"),
        (-6, 6, "right", "bottom"), (-6, -6, "right", "top"),
    ]
    to_px = ax.transData.transform
    marker_boxes = []
    for x, y, _, _ in points:
        px, py = to_px((x, y))
        marker_boxes.append((px - 4, py - 4, px + 4, py + 4))
    axes_box = ax.get_window_extent(renderer)
    placed: list[tuple[float, float, float, float]] = []

    def overlaps(a, b) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    for i, (x, y, name, highlight) in enumerate(points):
        style = dict(fontsize=8.5 if highlight else 7.5, fontweight="bold" if highlight else None,
                     color=MOBILEVIT_COLOR if highlight else "0.2")
        best = None
        for dx, dy, ha, va in candidates:
            text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points",
                               ha=ha, va=va, **style)
            bb = text.get_window_extent(renderer)
            box = (bb.x0, bb.y0, bb.x1, bb.y1)
            inside = (bb.x0 >= axes_box.x0 and bb.x1 <= axes_box.x1
                      and bb.y0 >= axes_box.y0 and bb.y1 <= axes_box.y1)
            others = [m for j, m in enumerate(marker_boxes) if j != i]
            if inside and not any(overlaps(box, o) for o in placed + others):
                best = (text, box)
                break
            text.remove()
        if best is None:  # nothing free: fall back to the first position
            dx, dy, ha, va = candidates[0]
            text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points",
                               ha=ha, va=va, **style)
            bb = text.get_window_extent(renderer)
            best = (text, (bb.x0, bb.y0, bb.x1, bb.y1))
        placed.append(best[1])


def _accuracy_vs_params(ax: "Axes", rows: Sequence[Any], title: str, *, log_x: bool) -> None:
    """Scatter top-1 (%) against parameters (M); MobileViT as large stars."""
    for r in rows:
        if r.is_mobilevit:
            ax.scatter(r.params_m, r.top1, marker="*", s=260, color=MOBILEVIT_COLOR, zorder=3,
                       edgecolor="black", linewidth=0.5)
        else:
            ax.scatter(r.params_m, r.top1, marker="o", s=45, color=OTHER_COLOR, zorder=2)
    if log_x:
        ax.set_xscale("log")
    xs = [r.params_m for r in rows]
    ys = [r.top1 for r in rows]
    span = max(xs) / min(xs) if log_x else max(xs) - min(xs)
    if log_x:
        ax.set_xlim(min(xs) / span**0.12, max(xs) * span**0.12)
    else:
        ax.set_xlim(min(xs) - 0.25 * span, max(xs) + 0.25 * span)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("ImageNet-1k top-1 (%)")
    ax.set_title(title)


def _scored(table: Any) -> list[Any]:
    """The rows of a paper table that have both a parameter count and a top-1 accuracy."""
    return [r for r in table.rows if r.params_m is not None and r.top1 is not None]


def plot_cnn_comparison(light: Any, heavy: Any, *, name: str | None = None) -> "Figure":
    """The paper's Fig. 8b (``light``: light CNNs, about 2.5 M parameters, vs MobileViT-XS) and
    Fig. 8c (``heavy``: heavy CNNs vs MobileViT-S), side by side; pass ``paper.TABLES["fig8b"]``
    and ``paper.TABLES["fig8c"]``. Saved as ``figures/<name>.png`` only when ``name`` is given."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    panels = [
        (axes[0], light, "light-weight CNNs", False),
        (axes[1], heavy, "heavy-weight CNNs", True),
    ]
    for ax, tab, what, log_x in panels:
        rows = _scored(tab)
        _accuracy_vs_params(ax, rows, f"paper ({tab.source}): {what}", log_x=log_x)
        if log_x:
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
            ax.set_xticks([5, 10, 20, 50])
    fig.tight_layout()
    for ax, tab, _, _ in panels:
        _label_points(ax, [(r.params_m, r.top1, r.model, r.is_mobilevit) for r in _scored(tab)])
    fig.text(0.5, -0.02, CREDIT, ha="center", va="top", fontsize=8, color="0.35")
    return finish(fig, name, tight=False)


def plot_vit_comparison(vits: Any, *, name: str | None = None) -> "Figure":
    """The paper's Fig. 9b (``vits``: pass ``paper.TABLES["fig9b"]``): ViT-based models, top-1
    against parameters, filled for basic and open for advanced augmentation, MobileViT (basic
    augmentation only) as stars. Saved as ``figures/<name>.png`` only when ``name`` is given."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    rows = _scored(vits)
    fig, ax = plt.subplots(figsize=(9, 5.6))
    _accuracy_vs_params(ax, [r for r in rows if r.is_mobilevit],
                        f"paper ({vits.source}): ViT-based models vs MobileViT", log_x=True)
    for r in rows:
        if r.is_mobilevit:
            continue
        basic = r.aug == "basic"
        ax.scatter(r.params_m, r.top1, marker="o" if basic else "^", s=50, zorder=2,
                   facecolor=OTHER_COLOR if basic else "white", edgecolor=OTHER_COLOR,
                   linewidth=1.3)
    xs = [r.params_m for r in rows]
    ys = [r.top1 for r in rows]
    ax.set_xlim(min(xs) / 1.25, max(xs) * 1.25)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.set_xticks([2, 3, 5, 10, 20])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    handles = [
        Line2D([], [], ls="", marker="o", color=OTHER_COLOR, label="ViT, basic augmentation"),
        Line2D([], [], ls="", marker="^", markerfacecolor="white", color=OTHER_COLOR,
               label="ViT, advanced augmentation"),
        Line2D([], [], ls="", marker="*", markersize=14, color=MOBILEVIT_COLOR,
               markeredgecolor="black", markeredgewidth=0.5, label="MobileViT, basic augmentation"),
    ]
    ax.legend(handles=handles, loc="lower right", frameon=True, framealpha=0.9)
    fig.tight_layout()
    labels = [(r.params_m, r.top1, r.model + ("" if r.is_mobilevit or r.aug == "advanced"
                                              else " (basic)"), r.is_mobilevit) for r in rows]
    _label_points(ax, labels)
    fig.text(0.5, -0.01, CREDIT, ha="center", va="top", fontsize=8, color="0.35")
    return finish(fig, name, tight=False)
