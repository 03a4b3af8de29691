"""Saving the book's figures: one folder, deterministic files.

Every figure the book draws is made by a library function and written here with ``save_figure``
into ``figures/`` at the repository root, so that the chapters, the README and the HTML book show
the same files and a single command can regenerate them all. PNGs are written without a
timestamp or software version, so re-running a chapter does not change an unchanged figure.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["figures_dir", "save_figure", "finish"]


def figures_dir() -> Path:
    """``$MOBILEVIT_EDU_FIGURES`` if set, else ``figures/`` next to ``book.toml``."""
    if env := os.environ.get("MOBILEVIT_EDU_FIGURES"):
        path = Path(env)
    else:
        here = Path(__file__).resolve().parents[2]
        path = here / "figures" if (here / "book.toml").exists() else Path.cwd() / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig: Figure, name: str) -> Path:
    """Write ``fig`` to ``figures/<name>.png`` (150 dpi, no metadata) and return the path."""
    if not name or "/" in name or name.endswith(".png"):
        raise ValueError(f"figure name must be a bare name like 'unfold_grid', got {name!r}")
    path = figures_dir() / f"{name}.png"
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png", metadata={"Software": None})
    os.replace(tmp, path)
    return path


def finish(fig: Figure, name: str | None, *, tight: bool = True) -> Figure:
    """The last line of every ``plot_*`` function of the book: lay the figure out (unless
    ``tight=False``), save it to ``figures/<name>.png`` when ``name`` is given (and only then),
    and return it so that a notebook shows it. This is the library's one saving convention."""
    if tight:
        fig.tight_layout()
    if name:
        save_figure(fig, name)
    return fig
