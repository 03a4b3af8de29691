"""Figures of the data (chapters 08-13): the shapes data set and the paper's augmentations.

Paper: §4.1 ("random resized cropping and horizontal flipping"); the shapes data set is the
book's stand-in for ImageNet, COCO and PASCAL VOC (``mobilevit_edu.data.shapes``).

Every ``plot_*`` function draws, returns the matplotlib Figure and writes
``figures/<name>.png`` (``plots.save.save_figure``) only when given ``name=``.
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mobilevit_edu.data.shapes import TASKS, ShapesDataset
from mobilevit_edu.plots.save import finish

__all__ = ["plot_shapes_gallery", "plot_augmentations"]


def plot_shapes_gallery(dataset: ShapesDataset, n: int = 8, size: int = 96, *,
                        name: str | None = None) -> Figure:
    """The first ``n`` samples of ``dataset`` rendered at ``size``, with labels, boxes and masks."""
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.3))
    for k in range(n):
        s = dataset.render(k, size, size)
        ax = axes[0, k]
        ax.imshow(s.image.permute(1, 2, 0).numpy())  # [3, H, W] -> [H, W, 3]
        for (x0, y0, x1, y1) in s.boxes.tolist():
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="white", lw=0.8))
        ax.set_title(dataset.classes[s.label], fontsize=9)
        axes[1, k].imshow(s.mask.numpy(), cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image + boxes", fontsize=8)
    axes[1, 0].set_ylabel("mask", fontsize=8)
    fig.suptitle(f"ShapesDataset, task {dataset.task!r} ({TASKS[dataset.task]})", fontsize=10)
    return finish(fig, name)


def plot_augmentations(image: torch.Tensor, transform: Callable[..., torch.Tensor], n: int = 6,
                       seed: int = 0, *, name: str | None = None) -> Figure:
    """``image`` and ``n`` draws of ``transform`` from a seeded ``torch.Generator``."""
    g = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(1, n + 1, figsize=(1.6 * (n + 1), 1.9))
    axes[0].imshow(image.permute(1, 2, 0).numpy())  # [3, H, W] -> [H, W, 3]
    axes[0].set_title("input", fontsize=9)
    for k in range(n):
        out = transform(image, generator=g)
        axes[k + 1].imshow(out.clamp(0, 1).permute(1, 2, 0).numpy())  # [3, h, w] -> [h, w, 3]
        axes[k + 1].set_title(f"draw {k}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return finish(fig, name)
