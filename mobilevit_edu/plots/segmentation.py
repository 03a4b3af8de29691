"""Figures of semantic segmentation (paper §4.2.2, Table 2; book chapter 13).

* :func:`plot_aspp_grids`: where ASPP's dilated 3x3 branches read on the OS-16 feature map.
* :func:`plot_segmentation_predictions`: images, ground truth and predicted label maps.
* :func:`plot_segmentation_curves`: loss and validation mIoU per epoch of a training run.

Each draws, returns the figure, and saves it to ``figures/<name>.png`` only when given ``name=``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from mobilevit_edu.plots.save import finish
from mobilevit_edu.segmentation.datasets import voc_palette
from mobilevit_edu.segmentation.deeplabv3 import ATROUS_RATES, aspp_sampling_points

__all__ = [
    "colourise_mask",
    "plot_aspp_grids",
    "plot_segmentation_predictions",
    "plot_segmentation_curves",
]


def plot_aspp_grids(
    size: int = 32,
    rates: Sequence[int] = ATROUS_RATES,
    centres: Sequence[tuple[int, int]] = ((16, 16), (4, 25)),
    *,
    name: str | None = None,
) -> Figure:
    """Where the three dilated 3x3 branches of ASPP look on a ``size x size`` feature map (the
    map of a 512-px image at output stride 16), one panel per rate, for each output pixel in
    ``centres``: filled markers read features, hollow ones fall in the zero padding."""
    colours = ["#D55E00", "#0072B2", "#009E73", "#CC79A7"]
    # one scale for all panels: the map plus every tap of every panel
    pts = [p for r in rates for c in centres for p in aspp_sampling_points(c, r, size)]
    lo = min(0, *(min(p[0], p[1]) for p in pts)) - 1.5
    hi_r = max(size, *(p[0] + 1 for p in pts)) + 0.5
    hi_c = max(size, *(p[1] + 1 for p in pts)) + 0.5
    fig, axes = plt.subplots(1, len(rates), figsize=(3.6 * len(rates), 4.0))
    for ax, rate in zip(np.atleast_1d(axes), rates):
        ax.add_patch(Rectangle((-0.5, -0.5), size, size, facecolor="#f2f2f2", edgecolor="black",
                               linewidth=1.0, zorder=0))
        for k in range(0, size + 1, 4):
            ax.plot([k - 0.5, k - 0.5], [-0.5, size - 0.5], color="white", lw=0.6, zorder=1)
            ax.plot([-0.5, size - 0.5], [k - 0.5, k - 0.5], color="white", lw=0.6, zorder=1)
        n_in = []
        for colour, centre in zip(colours, centres):
            pts = aspp_sampling_points(centre, rate, size)
            n_in.append(sum(p[2] for p in pts))
            ax.add_patch(Rectangle((centre[1] - rate - 0.5, centre[0] - rate - 0.5), 2 * rate + 1,
                                   2 * rate + 1, fill=False, edgecolor=colour, linestyle=":",
                                   linewidth=1.0, zorder=2))
            for r, c, inside in pts:
                ax.plot(c, r, "o", ms=6.5, zorder=3, markeredgecolor=colour,
                        markerfacecolor=colour if inside else "white", markeredgewidth=1.4)
            ax.plot(centre[1], centre[0], "x", color="black", ms=5, zorder=4)
        ax.set_xlim(lo, hi_c)
        ax.set_ylim(hi_r, lo)
        ax.set_aspect("equal")
        ax.axis("off")
        inside = ", ".join(f"{n}/9" for n in n_in)
        ax.set_title(f"rate {rate}: window {2 * rate + 1} x {2 * rate + 1}\n"
                     f"taps inside the map: {inside}", fontsize=9.5)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colour,
                          label=f"output pixel (row {r}, col {c})")
               for colour, (r, c) in zip(colours, centres)]
    handles.append(plt.Line2D([], [], marker="o", ls="", markerfacecolor="white",
                              markeredgecolor="0.3", label="tap in the zero padding"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8.5,
               frameon=False)
    fig.suptitle(f"where a dilated 3x3 conv reads on a {size} x {size} feature map "
                 f"(grey; grid lines every 4 px)", fontsize=10.5, y=0.99)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return finish(fig, name, tight=False)


def colourise_mask(mask: torch.Tensor, palette: np.ndarray | None = None) -> np.ndarray:
    """A label map ``[H, W]`` as an RGB image ``[H, W, 3]`` uint8 (default: the VOC palette)."""
    palette = voc_palette() if palette is None else palette
    return palette[np.asarray(mask.cpu(), dtype=np.int64).clip(0, 255)]  # [H, W] -> [H, W, 3]


def plot_segmentation_predictions(
    images: torch.Tensor,
    targets: torch.Tensor,
    predictions: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    *,
    name: str | None = None,
) -> Figure:
    """One column per image: the image, its ground truth, then each model's predicted label map
    (``predictions`` maps a row title to ``[N, H, W]``), all coloured with the VOC palette; a
    legend names the classes."""
    if images.dim() != 4 or targets.dim() != 3 or images.shape[0] != targets.shape[0]:
        raise ValueError(f"expected images [N, 3, H, W] and targets [N, H, W], got "
                         f"{tuple(images.shape)} and {tuple(targets.shape)}")
    palette = voc_palette()
    rows = [("image", None), ("ground truth", targets)] + list(predictions.items())
    n = images.shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.7 * n + 1.0, 1.75 * len(rows)),
                             squeeze=False)
    for r, (title, maps) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            if maps is None:
                ax.imshow(images[c].permute(1, 2, 0).clamp(0, 1).cpu().numpy())  # [3,H,W]->[H,W,3]
            else:
                ax.imshow(colourise_mask(maps[c], palette), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=9)
    handles = [Patch(facecolor=palette[k] / 255.0, edgecolor="0.5", label=label)
               for k, label in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=len(class_names), fontsize=8.5,
               frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return finish(fig, name, tight=False)


def plot_segmentation_curves(
    history: Sequence[Mapping[str, float]],
    *,
    baselines: Mapping[str, float] | None = None,
    name: str | None = None,
) -> Figure:
    """Training (and validation) loss, left, and validation mIoU, right, per epoch; each entry of
    ``baselines`` (label -> mIoU as a fraction, e.g. the untrained model's) as a dashed line."""
    ep = [row["epoch"] for row in history]
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(9.0, 3.2))
    ax_l.plot(ep, [row["train_loss"] for row in history], marker="o", label="train")
    if all("val_loss" in row for row in history):
        ax_l.plot(ep, [row["val_loss"] for row in history], marker="o", ls=":", label="val")
    ax_l.set(xlabel="epoch", ylabel="cross-entropy per pixel", title="loss")
    ax_l.legend(fontsize=8)
    ax_m.plot(ep, [100 * row["val_miou"] for row in history], marker="o", color="#D55E00",
              label="trained")
    for (label, value), colour in zip((baselines or {}).items(), ("0.35", "#0072B2", "#009E73")):
        ax_m.axhline(100 * value, color=colour, ls="--", lw=1, label=label)
    ax_m.set(xlabel="epoch", ylabel="validation mIoU (%)", title="mean IoU", ylim=(0, 100))
    ax_m.legend(fontsize=8)
    for ax in (ax_l, ax_m):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return finish(fig, name)
