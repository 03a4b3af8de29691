"""Figures of the multi-scale sampler (chapters 09-11): the same scenes at every resolution,
the schedule of crop sizes and batch sizes, and optimizer updates per run.

Paper: §3.3 and Fig. 5 (the multi-scale sampler), Fig. 7b and Table 5 (fewer optimizer updates
per epoch); the sampler itself is ``mobilevit_edu.data.sampler``.

Every ``plot_*`` function draws, returns the matplotlib Figure and writes
``figures/<name>.png`` (``plots.save.save_figure``) only when given ``name=``.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch.utils.data import Sampler

from mobilevit_edu.data.sampler import MultiScaleSampler
from mobilevit_edu.plots.save import finish

__all__ = ["plot_batches_at_resolutions", "plot_schedule", "plot_updates"]


def plot_batches_at_resolutions(dataset, sampler: MultiScaleSampler, indices: Sequence[int] = (0, 1, 2),
                                *, name: str | None = None) -> Figure:
    """The same scenes rendered at every crop size of ``sampler``, drawn to scale, with the batch
    size of each resolution (one column per resolution)."""
    table = sampler.table()
    biggest = max(s for s, _ in table)
    fig, axes = plt.subplots(len(indices), len(table), figsize=(2.1 * len(table), 2.1 * len(indices) + 0.4),
                             squeeze=False)
    for c, (size, b) in enumerate(table):
        for r, idx in enumerate(indices):
            image, _ = dataset[(size, size, idx)]
            ax = axes[r, c]
            ax.imshow(image.permute(1, 2, 0).numpy(), extent=(0, size, size, 0))  # [3,H,W] -> [H,W,3]
            ax.set_xlim(0, biggest)
            ax.set_ylim(biggest, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
        axes[0, c].set_title(f"{size} x {size}\nbatch {b} per GPU", fontsize=9)
    fig.suptitle(f"The same scenes at each resolution (drawn to scale), rule {getattr(sampler, 'rule', '-')!r}",
                 fontsize=10)
    return finish(fig, name)


def plot_schedule(samplers: dict[str, Sampler], epoch: int = 0, steps: int = 60, *,
                  name: str | None = None) -> Figure:
    """The first ``steps`` batches of ``epoch`` for each sampler: crop size, images per batch and
    pixels per batch ``b * h * w`` relative to the sampler's base batch (a measure of its cost)."""
    fig, axes = plt.subplots(3, 1, figsize=(9, 6.2), sharex=True)
    styles = [dict(ls="--", marker="", lw=2.0), dict(ls="-", marker="o", ms=4, lw=1.2),
              dict(ls=":", marker="s", ms=3, lw=1.2), dict(ls="-.", marker="^", ms=3, lw=1.2)]
    for k, (label, s) in enumerate(samplers.items()):
        sched = s.schedule(epoch)[:steps]
        xs = np.arange(len(sched))
        size = getattr(s, "base_size", getattr(s, "image_size", 256))
        base = size * size * getattr(s, "base_batch", getattr(s, "batch_size", 1))
        st = styles[k % len(styles)]
        axes[0].plot(xs, [h for h, _, _ in sched], drawstyle="steps-mid", label=label, **st)
        axes[1].plot(xs, [b for _, _, b in sched], drawstyle="steps-mid", label=label, **st)
        axes[2].plot(xs, [h * w * b / base for h, w, b in sched], drawstyle="steps-mid", label=label, **st)
    axes[0].set_ylabel("crop size (px)")
    axes[1].set_ylabel("images per batch\n(per GPU)")
    axes[2].set_ylabel("pixels per batch\n(relative to base)")
    axes[2].set_ylim(0, None)
    axes[2].set_xlabel(f"batch (optimizer step) in epoch {epoch}")
    axes[0].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.32), ncol=len(samplers), frameon=False)
    return finish(fig, name)


def plot_updates(rows: Sequence[tuple[str, float, float | None]], *,
                 name: str | None = None) -> Figure:
    """Optimizer updates per run, this book's count beside the paper's: ``rows`` are
    ``(label, this_book_updates, paper_updates_or_None)``."""
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.2))
    ys = np.arange(len(rows))[::-1]
    ours = [r[1] / 1e3 for r in rows]
    top = max(ours + [r[2] / 1e3 for r in rows if r[2] is not None])
    pad = 0.01 * top
    ax.barh(ys + 0.2, ours, height=0.38, label="this book (from the sampler)", color="tab:blue")
    labelled = False
    for y, r in zip(ys, rows):
        if r[2] is not None:
            ax.barh(y - 0.2, r[2] / 1e3, height=0.38, color="tab:orange",
                    label=None if labelled else "paper (Fig. 7b / Table 5)")
            labelled = True
            ax.text(r[2] / 1e3 + pad, y - 0.2, f"{r[2] / 1e3:.0f} k", va="center", fontsize=8)
        ax.text(r[1] / 1e3 + pad, y + 0.2, f"{r[1] / 1e3:.1f} k", va="center", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels([r[0] for r in rows], fontsize=8)
    ax.set_xlabel("optimizer updates per run (thousands)")
    ax.set_xlim(0, top * 1.18)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return finish(fig, name)
