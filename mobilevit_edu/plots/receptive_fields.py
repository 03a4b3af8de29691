"""Figures of what one output pixel sees (chapters 02, 03, 05 and 08): receptive windows,
gradient and influence maps, the theoretical receptive field's growth, effective receptive fields.

Paper: §3.1 and Fig. 4 (one MobileViT block lets every output pixel see every input pixel); the
numbers come from ``measure.receptive_field`` (theoretical walk, Luo et al.'s effective
receptive field) or from the chapters' own gradients.

Every ``plot_*`` function draws, returns the matplotlib Figure and writes
``figures/<name>.png`` (``plots.save.save_figure``) only when given ``name=``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle

from mobilevit_edu.measure.receptive_field import ERF, RFRow
from mobilevit_edu.plots.save import finish

__all__ = [
    "plot_receptive_windows",
    "plot_gradient_maps",
    "plot_influence_maps",
    "plot_support_maps",
    "plot_rf_growth",
    "plot_erf_grid",
    "plot_erf_overlay",
]


# --- chapter 02: the window of a stack of convolutions ------------------------------------------
def plot_receptive_windows(
    photo: torch.Tensor,
    windows: dict[str, tuple[int, int, int, int]],
    *,
    zoom: int = 24,
    name: str | None = None,
) -> Figure:
    """Receptive windows of a stack of convolutions drawn on a photograph (chapter 02).

    ``photo`` is ``[3, H, W]`` in [0, 1]; ``windows`` maps a label to the window of input pixels
    ``(top, left, bottom, right)`` (inclusive) that one output pixel depends on, smallest first.
    The left panel shows the whole photo, the right one a crop of ``zoom`` pixels around the
    largest window. Saved as ``figures/<name>.png`` when ``name`` is given; returns the figure.
    """
    if photo.dim() != 3 or photo.shape[0] != 3:
        raise ValueError(f"expected a photo [3, H, W], got {tuple(photo.shape)}")
    if not windows:
        raise ValueError("windows is empty")
    img = photo.permute(1, 2, 0).clamp(0, 1).cpu().numpy()  # [3, H, W] -> [H, W, 3]
    h, w = img.shape[:2]
    t, l, b, r = max(windows.values(), key=lambda box: (box[2] - box[0]) * (box[3] - box[1]))
    top, left = max(0, t - zoom), max(0, l - zoom)
    bottom, right = min(h - 1, b + zoom), min(w - 1, r + zoom)
    colors = plt.cm.plasma([i / max(1, len(windows)) for i in range(len(windows))])

    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, (y0, x0, y1, x1) in zip(axes, [(0, 0, h - 1, w - 1), (top, left, bottom, right)]):
        ax.imshow(img, interpolation="nearest")
        for color, (label, (bt, bl, bb, br)) in zip(colors, windows.items()):
            side = f"{bb - bt + 1}x{br - bl + 1}"
            ax.add_patch(
                Rectangle((bl - 0.5, bt - 0.5), br - bl + 1, bb - bt + 1, fill=False,
                          edgecolor=color, linewidth=2, label=f"{label}: {side}")
            )
        ax.set_xlim(x0 - 0.5, x1 + 0.5)
        ax.set_ylim(y1 + 0.5, y0 - 0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1,
                                fill=False, edgecolor="white", linestyle="--", linewidth=1))
    axes[0].set_title(f"the whole {h}x{w} photo")
    axes[1].set_title("zoom (dashed box on the left)")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9, frameon=False,
                   title="input pixels seen by\none output pixel after")
    return finish(fig, name)


# --- chapters 03 and 05: which input pixels an output pixel depends on --------------------------
def plot_gradient_maps(
    photo: torch.Tensor,
    maps: dict[str, torch.Tensor],
    pixel: tuple[int, int],
    *,
    name: str | None = None,
) -> Figure:
    """Which input pixels one output pixel depends on, one panel per model.

    ``maps`` holds ``[H, W]`` gradient magnitudes of the output pixel ``pixel = (row, col)``
    with respect to every input pixel; zeros (no dependence at all) are drawn white, the rest as
    ``log10 |grad|``. The first panel is the input photo ``[3, H, W]`` with the pixel marked.
    Saves ``figures/<name>.png`` when ``name`` is given; returns the figure.
    """
    if not maps:
        raise ValueError("maps is empty")
    h, w = photo.shape[-2:]
    for label, g in maps.items():
        if tuple(g.shape) != (h, w):
            raise ValueError(f"map {label!r} has shape {tuple(g.shape)}, expected {(h, w)}")
    r, c = pixel
    logs = [torch.log10(g.detach().abs().double()[g != 0]) for g in maps.values()]
    logs = [v for v in logs if v.numel()]
    vmin = min(float(v.min()) for v in logs) if logs else -1.0
    vmax = max(float(v.max()) for v in logs) if logs else 0.0
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    image = None
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(3.6 * (len(maps) + 1), 4.2))
    img = photo.permute(1, 2, 0).clamp(0, 1).cpu().numpy()  # [3, H, W] -> [H, W, 3]
    axes[0].imshow(img, interpolation="nearest")
    axes[0].set_title(f"input {h}x{w}, output pixel ({r},{c})")
    for ax, (label, g) in zip(axes[1:], maps.items()):
        g = g.detach().abs().double().cpu().numpy()
        nonzero = g != 0
        shown = np.ma.masked_where(~nonzero, np.log10(np.where(nonzero, g, 1.0)))
        image = ax.imshow(shown, cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
        ax.set_title(f"{label}\n{int(nonzero.sum())} of {h * w} pixels matter", fontsize=10)
    for ax in axes:
        ax.plot(c, r, marker="x", color="red", markersize=10, markeredgewidth=2.5)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():  # frame every map, whatever the style says
            spine.set_visible(True)
    fig.tight_layout()
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes), fraction=0.015, pad=0.01)
        bar.set_label("log10 |d output / d input pixel|\n(white: exactly 0)", fontsize=9)
    return finish(fig, name, tight=False)


def plot_influence_maps(
    maps: list[torch.Tensor],
    titles: list[str],
    pixel: tuple[int, int],
    *,
    name: str | None = None,
) -> Figure:
    """How much every output pixel changed when one input pixel was nudged, one panel per model.

    ``maps`` are ``[H, W]`` tensors of non-negative changes (e.g. summed over channels), drawn on
    one shared log scale (exact zeros shown as the bottom colour); ``pixel`` (row, column) is
    marked. Saved as ``figures/<name>.png`` when ``name`` is given; returns the figure.
    """
    if len(maps) != len(titles) or not maps:
        raise ValueError("need one title per map")
    vmax = max(float(m.max()) for m in maps)
    if vmax <= 0:
        raise ValueError("every map is zero: nothing changed")
    norm = LogNorm(vmin=vmax * 1e-5, vmax=vmax)
    fig, axes = plt.subplots(1, len(maps), figsize=(3.6 * len(maps) + 0.8, 3.6), squeeze=False)
    for ax, m, title in zip(axes[0], maps, titles):
        im = ax.imshow(m.detach().float().clamp_min(vmax * 1e-5).numpy(), cmap="inferno", norm=norm)
        ax.plot(pixel[1], pixel[0], marker="+", color="cyan", markersize=10, mew=1.5)
        changed = int((m > 0).sum())
        ax.set_title(f"{title}\n{changed} of {m.numel()} pixels changed", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.025, pad=0.02, label="|change| (log)")
    return finish(fig, name, tight=False)


# --- chapter 08: theoretical and effective receptive fields -------------------------------------
def plot_support_maps(
    maps: Sequence[torch.Tensor],
    titles: Sequence[str],
    *,
    rel_tol: float = 1e-6,
    name: str | None = None,
) -> Figure:
    """One panel per gradient map ``[H, W]`` on a shared log scale; pixels at or below
    ``rel_tol`` times the largest value (exact zeros included) are drawn black and counted in the
    title. Saved as ``figures/<name>.png`` when ``name`` is given; returns the figure."""
    if not maps or len(maps) != len(titles):
        raise ValueError("need one title per map, and at least one map")
    normed = [m.detach().double().abs() / m.detach().double().abs().max() for m in maps]
    norm = LogNorm(vmin=rel_tol, vmax=1.0)
    fig, axes = plt.subplots(1, len(maps), figsize=(3.5 * len(maps) + 0.9, 3.7), squeeze=False)
    cmap = plt.get_cmap("magma").with_extremes(under="black")
    for ax, m, title in zip(axes[0], normed, titles):
        im = ax.imshow(m.clamp_min(rel_tol / 2).numpy(), cmap=cmap, norm=norm,
                       interpolation="nearest")
        reached = int((m > rel_tol).sum())
        ax.set_title(f"{title}\n{reached} of {m.numel()} pixels reached", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03, pad=0.02,
                 label="|gradient| / max (log)")
    return finish(fig, name, tight=False)


def plot_rf_growth(
    tables: Mapping[str, Sequence[RFRow]],
    image_size: int,
    *,
    name: str | None = None,
) -> Figure:
    """Theoretical receptive field (input pixels, log scale) after every layer, one line per
    network; a line jumps to the top band ("global") where attention makes it global, and the
    image side is drawn dashed. Saved as ``figures/<name>.png`` when ``name`` is given; returns
    the figure."""
    if not tables:
        raise ValueError("nothing to plot")
    top = 2 ** math.ceil(math.log2(max(image_size, max(r.rf for t in tables.values() for r in t))))
    glob = top * 2
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    for label, rows in tables.items():
        xs = range(1, len(rows) + 1)
        ys = [glob if r.is_global else r.rf for r in rows]
        (line,) = ax.plot(xs, ys, marker=".", markersize=4, label=label)
        first = next((i for i, r in enumerate(rows) if r.is_global), None)
        if first is not None:
            ax.plot(first + 1, glob, marker="*", markersize=12, color=line.get_color())
    ax.axhline(image_size, color="grey", linestyle="--", linewidth=1)
    ax.text(1, image_size * 1.08, f"image side {image_size} px", color="grey", fontsize=9)
    ax.set_yscale("log", base=2)
    ticks = [2**i for i in range(0, int(math.log2(top)) + 1)]
    ax.set_yticks(ticks + [glob], [str(t) for t in ticks] + ["global"])
    ax.set_xlabel("layer (convolution or attention stack, in forward order)")
    ax.set_ylabel("receptive field side (input px)")
    ax.legend(fontsize=9, loc="lower right")
    return finish(fig, name)


def plot_erf_grid(
    erfs: Mapping[str, Mapping[str, ERF]],
    *,
    log: bool = True,
    name: str | None = None,
) -> Figure:
    """Effective receptive fields, one row per model and one column per stage. Each panel is the
    normalised map (log colour scale over four decades of its own maximum), its 90 % circle and
    its summaries. Saved as ``figures/<name>.png`` when ``name`` is given; returns the figure."""
    if not erfs or not all(erfs.values()):
        raise ValueError("need at least one model with at least one stage")
    n_rows, n_cols = len(erfs), max(len(v) for v in erfs.values())
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols + 1.4, 2.75 * n_rows),
                             squeeze=False)
    for r, (label, stages) in enumerate(erfs.items()):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(stages):
                ax.axis("off")
                continue
            stage, e = list(stages.items())[c]
            m = e.map.double()
            vmax = float(m.max())
            norm = LogNorm(vmin=vmax * 1e-4, vmax=vmax) if log else Normalize(0, vmax)
            ax.imshow(m.clamp_min(vmax * 1e-4).numpy(), cmap="magma", norm=norm,
                      interpolation="nearest")
            ax.add_patch(Circle((e.centre[1], e.centre[0]), e.radius90, fill=False,
                                edgecolor="cyan", linewidth=1.2))
            ax.set_title(f"{stage}\nr90 {e.radius90:.1f} px, reached {100 * e.support:.0f}%",
                         fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
    return finish(fig, name)


def plot_erf_overlay(
    photo: torch.Tensor,
    erfs: Mapping[str, ERF],
    *,
    decades: float = 4.0,
    name: str | None = None,
) -> Figure:
    """Effective receptive fields laid over a photograph ``[3, H, W]`` (the maps at the photo's
    size): the photo, dimmed, with each map as a heat layer on a log scale over ``decades``
    decades of its maximum (so the weak, far-away part stays visible), its 90 % circle and its
    centre. Saved as ``figures/<name>.png`` when ``name`` is given; returns the figure."""
    if photo.dim() != 3 or photo.shape[0] != 3:
        raise ValueError(f"expected a photo [3, H, W], got {tuple(photo.shape)}")
    if not erfs:
        raise ValueError("nothing to overlay")
    for label, e in erfs.items():
        if tuple(e.map.shape) != tuple(photo.shape[-2:]):
            raise ValueError(
                f"{label}: map {tuple(e.map.shape)} != photo {tuple(photo.shape[-2:])}"
            )
    img = photo.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy()  # [3, H, W] -> [H, W, 3]
    fig, axes = plt.subplots(1, len(erfs), figsize=(3.3 * len(erfs), 3.6), squeeze=False)
    for ax, (label, e) in zip(axes[0], erfs.items()):
        m = e.map.double()
        rel = (m / m.max()).clamp_min(10.0 ** -decades)
        heat = (1 + rel.log10() / decades).numpy()  # 10^-decades -> 0, the maximum -> 1
        ax.imshow(img * 0.5, interpolation="nearest")
        ax.imshow(heat, cmap="inferno", alpha=0.75 * heat, vmin=0, vmax=1, interpolation="nearest")
        ax.add_patch(Circle((e.centre[1], e.centre[0]), e.radius90, fill=False,
                            edgecolor="cyan", linewidth=1.5))
        ax.plot(e.centre[1], e.centre[0], marker="+", color="cyan", markersize=9)
        ax.set_title(f"{label}\n90% within {e.radius90:.0f} px", fontsize=9.5)
        ax.axis("off")
    return finish(fig, name)
