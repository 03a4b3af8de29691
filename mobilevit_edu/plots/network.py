"""Figures of the whole network (chapter 06): the stages, where the parameters live, and the
preprocessing the official weights expect.

Paper: §3.1 and Fig. 1b (the architecture, drawn from ``models.mobilevit.architecture_table``),
§4.1 and App. A / Table 4 (the model sizes, stage by stage); §4.1 (the released weights, read
as BGR, see ``models.checkpoints.official_preprocess``).

Every ``plot_*`` function draws, returns the matplotlib Figure and writes
``figures/<name>.png`` (``plots.save.save_figure``) only when given ``name=``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from mobilevit_edu.plots.save import finish

__all__ = ["plot_architecture", "plot_param_distribution", "plot_preprocessing"]

_STAGE_KINDS = ("conv", "MV2", "MobileViT")


def _stage_kind(row: dict) -> str:
    """'conv' (stem, 1x1 expansion), 'MV2' (MV2 blocks only) or 'MobileViT' (MV2 + block)."""
    if row.get("d") is not None:
        return "MobileViT"
    return "MV2" if row.get("mv2_blocks", 0) else "conv"


def plot_architecture(tables: dict[str, list[dict]], *, name: str | None = None) -> Figure:
    """The networks as rows of boxes, one box per stage (in the spirit of the paper's Fig. 1b).

    ``tables`` maps a row label (e.g. ``"MobileViT-XS"``) to the rows of ``architecture_table``.
    Box height grows with the stage's output size (log scale), the colour says what the stage is
    made of, and the box names its channels (and d, L for a MobileViT stage). The stage names and
    output sizes of the first table head the columns. Saved as ``figures/<name>.png`` when
    ``name`` is given; returns the figure.
    """
    if not tables:
        raise ValueError("nothing to plot: pass {label: architecture_table(model)}")
    n_cols = {len(rows) for rows in tables.values()}
    if len(n_cols) != 1:
        raise ValueError(f"all tables need the same stages, got lengths {sorted(n_cols)}")
    colours = dict(zip(_STAGE_KINDS, ("#9a9a9a", "#0072B2", "#D55E00")))
    first = next(iter(tables.values()))
    sides = [max(int(v) for v in r["output"].split(" x ")) for r in first]
    top = math.log2(max(sides))
    fig, ax = plt.subplots(figsize=(1.25 * len(first) + 1.6, 1.45 * len(tables) + 1.0))
    for i, (label, rows) in enumerate(tables.items()):
        y = -1.45 * i
        ax.text(-0.6, y, label, ha="right", va="center", fontsize=10, fontweight="bold")
        for j, row in enumerate(rows):
            side = max(int(v) for v in row["output"].split(" x "))
            h = 0.35 + 0.75 * math.log2(side) / top  # 8 px -> 0.8, 128 px -> 1.1
            kind = _stage_kind(row)
            ax.add_patch(Rectangle((j - 0.42, y - h / 2), 0.84, h, facecolor=colours[kind],
                                   edgecolor="black", linewidth=0.6, alpha=0.9))
            text = f"C={row['channels']}"
            if kind == "MobileViT":
                text += f"\nd={row['d']}\nL={row['L']}"
            ax.text(j, y, text, ha="center", va="center", fontsize=8, color="white")
            if j:
                ax.annotate("", (j - 0.43, y), (j - 0.57, y),
                            arrowprops={"arrowstyle": "->", "lw": 0.8})
    for j, row in enumerate(first):
        ax.text(j, 0.85, f"{row['stage']}\n{row['output']}", ha="center", va="bottom", fontsize=8.5)
    labels = {"conv": "conv", "MV2": "MV2", "MobileViT": "MV2 + MobileViT block"}
    ax.legend(handles=[Patch(color=colours[k], label=labels[k]) for k in _STAGE_KINDS],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8.5, frameon=False)
    ax.set_xlim(-2.3, len(first) - 0.4)
    ax.set_ylim(-1.45 * (len(tables) - 1) - 0.8, 1.5)
    ax.axis("off")
    return finish(fig, name)


def plot_param_distribution(
    breakdowns: dict[str, dict[str, dict[str, int]]], *, name: str | None = None
) -> Figure:
    """Where the parameters live: one panel per model, one stacked bar per stage.

    ``breakdowns`` maps a model label to ``{stage: {part: parameter count}}`` (stages in network
    order; parts such as ``"MV2"``, ``"block convs"``, ``"transformer"``, ``"classifier"``). Parts
    with the same name share a colour across panels; each bar is labelled with its share of the
    model's total. Saved as ``figures/<name>.png`` when ``name`` is given; returns the figure.
    """
    if not breakdowns:
        raise ValueError("nothing to plot")
    parts: list[str] = []
    for stages in breakdowns.values():
        for counts in stages.values():
            parts += [p for p in counts if p not in parts]
    colours = dict(zip(parts, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    n = len(breakdowns)
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 3.8), squeeze=False)
    for ax, (label, stages) in zip(axes[0], breakdowns.items()):
        total = sum(sum(c.values()) for c in stages.values())
        names = list(stages)
        for x, stage in enumerate(names):
            bottom = 0
            for part in parts:
                n = stages[stage].get(part, 0)
                if n:
                    ax.bar(x, n / 1e6, bottom=bottom / 1e6, color=colours[part], width=0.75)
                bottom += n
            share = 100 * bottom / total
            ax.text(x, bottom / 1e6, f"{share:.0f}%" if share >= 0.5 else "<1%", ha="center",
                    va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_title(f"{label}: {total:,}", fontsize=10.5)
        ax.set_ylim(0, 1.12 * max(sum(c.values()) for c in stages.values()) / 1e6)
        ax.grid(False, axis="x")
    axes[0][0].set_ylabel("parameters (millions)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[p]) for p in parts]
    fig.legend(handles, parts, loc="upper center", ncol=len(parts), bbox_to_anchor=(0.5, 1.06),
               fontsize=9, frameon=False)
    return finish(fig, name)


def plot_preprocessing(
    photo: torch.Tensor,
    bgr: torch.Tensor,
    *,
    crop_box: tuple[float, float, float, float] | None = None,
    name: str | None = None,
) -> Figure:
    """The photo, the tensor ``official_preprocess`` makes from it shown as if it were RGB (red and
    blue swapped: what a BGR-trained network 'expects'), and that tensor flipped back to RGB.

    ``photo``: ``[3, H, W]`` RGB in [0, 1]; ``bgr``: ``[3, h, w]`` BGR in [0, 1]; ``crop_box``:
    ``(left, top, width, height)`` in photo pixels, drawn dashed on the photo if given.
    Saved as ``figures/<name>.png`` when ``name`` is given; returns the figure.
    """
    for label, t in (("photo", photo), ("bgr", bgr)):
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"{label} must be [3, H, W], got {tuple(t.shape)}")
    panels = [
        (photo, f"the photo, RGB {photo.shape[1]} x {photo.shape[2]}"),
        (bgr, "official_preprocess output\nshown as RGB (channels B, G, R)"),
        (bgr.flip(0), f"the same tensor flipped to RGB\n({bgr.shape[1]} x {bgr.shape[2]} crop)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.9))
    for ax, (t, title) in zip(axes, panels):
        ax.imshow(t.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy())  # [3, H, W] -> [H, W, 3]
        ax.set_title(title, fontsize=8.5)
        ax.axis("off")
    if crop_box is not None:
        left, top, width, height = crop_box
        axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False,
                                    edgecolor="white", linestyle="--", linewidth=1.5))
    return finish(fig, name)
