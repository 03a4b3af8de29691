"""Figures of the paper's parts (chapters 02-05): parameters, patches, attention, block shapes.

Paper: §3.1 and Fig. 1b. The MV2 block's parameters per sub-layer (chapter 02), the P patch
sequences ``unfold`` makes of a photo (Eq. 1, chapter 03), attention maps and the cost of
attention against image size (chapter 04), the parameters of one transformer encoder layer
(App. A, chapter 04) and the shapes through one MobileViT block (chapter 05). What one output
pixel *sees* (receptive windows, gradient and influence maps) is in ``plots.receptive_fields``.

Every ``plot_*`` function draws, returns the matplotlib Figure and writes
``figures/<name>.png`` (``plots.save.save_figure``) only when given ``name=``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle

from mobilevit_edu.nn.layers import to_pair
from mobilevit_edu.nn.patches import unfold
from mobilevit_edu.plots.save import finish

__all__ = [
    "PART_COLOURS",
    "plot_param_breakdown",
    "plot_patch_sequences",
    "plot_attention_maps",
    "plot_attention_cost",
    "plot_layer_params",
    "plot_block_shapes",
]


# --- chapter 02: MV2 ---------------------------------------------------------------------------
def plot_param_breakdown(
    breakdown: dict[str, dict[str, int]], *, name: str | None = None
) -> Figure:
    """Stacked horizontal bars of parameters per sub-layer (MV2, chapter 02).

    ``breakdown`` maps a bar label (e.g. ``"layer2.1, depth-wise 3x3"``) to an ordered
    ``{sub-layer: parameter count}``; sub-layers with the same name get the same colour. Each bar
    is annotated with its total. Saved as ``figures/<name>.png`` when ``name`` is given; returns
    the figure.
    """
    if not breakdown:
        raise ValueError("breakdown is empty")
    parts: list[str] = []
    for counts in breakdown.values():
        parts += [k for k in counts if k not in parts]
    colors = dict(zip(parts, plt.cm.tab10.colors))
    labels = list(breakdown)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(labels) + 1.6))
    total_max = max(sum(c.values()) for c in breakdown.values())
    seen: set[str] = set()
    for row, label in enumerate(labels):
        start = 0
        for part, count in breakdown[label].items():
            ax.barh(row, count, left=start, color=colors[part], edgecolor="white",
                    label=None if part in seen else part)
            seen.add(part)
            start += count
        ax.text(start + 0.01 * total_max, row, f"{start:,}", va="center", fontsize=9)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15 * total_max)
    ax.set_xlabel("parameters (conv weights + BatchNorm scale and shift)")
    ax.xaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper right", fontsize=9)
    return finish(fig, name)


# --- chapter 03: unfold -------------------------------------------------------------------------
_POSITION_COLORS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628",
                    "#f781bf", "#999999", "#17becf")


def plot_patch_sequences(
    photo: torch.Tensor,
    patch_size: int = 2,
    *,
    crop: tuple[int, int, int] = (40, 52, 8),
    name: str | None = None,
) -> Figure:
    """The patch grid on a photograph and the P sequences ``unfold`` makes of it.

    Top: the photo ``[3, H, W]`` with a ``crop = (top, left, size)`` box, and that crop enlarged
    with patch borders (black), pixel borders (grey) and every pixel's position p inside its
    patch. Bottom: for every p, the N pixels of sequence p (row p of ``unfold``'s output) laid out
    on the n_h x n_w patch grid; each is the photo sampled with stride ``patch_size``.
    Saves ``figures/<name>.png`` when ``name`` is given; returns the figure.
    """
    if photo.dim() != 3 or photo.shape[0] != 3:
        raise ValueError(f"expected a photo [3, H, W], got {tuple(photo.shape)}")
    ph, pw = to_pair(patch_size, "patch size")
    if ph * pw > len(_POSITION_COLORS):
        raise ValueError(f"at most {len(_POSITION_COLORS)} pixels per patch can be drawn")
    top, left, size = crop
    if top % ph or left % pw or size % ph or size % pw:
        raise ValueError(f"crop {crop} must start and end on patch borders ({ph}x{pw})")
    _, h, w = photo.shape
    seq, grid = unfold(photo[None], (ph, pw))  # [1, 3, H, W] -> [P, N, 3]
    nh, nw = grid.new_height // ph, grid.new_width // pw
    views = seq.reshape(ph * pw, nh, nw, 3).clamp(0, 1).cpu().numpy()  # [P, N, 3] -> [P, nh, nw, 3]
    img = photo.permute(1, 2, 0).clamp(0, 1).cpu().numpy()  # [3, H, W] -> [H, W, 3]

    p_count = ph * pw
    fig = plt.figure(figsize=(2.6 * max(p_count, 4), 2.6 * max(p_count, 4) / 2 + 3.2))
    gs = fig.add_gridspec(2, 2 * p_count, height_ratios=[1.35, 1])
    ax_photo = fig.add_subplot(gs[0, :p_count])
    ax_zoom = fig.add_subplot(gs[0, p_count:])
    ax_photo.imshow(img)
    ax_photo.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False,
                                 edgecolor="yellow", linewidth=2))
    ax_photo.set_title(f"photo {h}x{w}: {nh}x{nw} = {nh * nw} patches of {ph}x{pw} pixels")
    ax_zoom.imshow(img[top:top + size, left:left + size], interpolation="nearest")
    for k in range(size + 1):  # pixel borders grey, patch borders black
        ax_zoom.axhline(k - 0.5, color="black" if k % ph == 0 else "0.6",
                        linewidth=2.5 if k % ph == 0 else 0.8)
        ax_zoom.axvline(k - 0.5, color="black" if k % pw == 0 else "0.6",
                        linewidth=2.5 if k % pw == 0 else 0.8)
    for i in range(size):
        for j in range(size):
            p = (i % ph) * pw + j % pw
            ax_zoom.text(j, i, str(p), ha="center", va="center", fontsize=9, fontweight="bold",
                         color=_POSITION_COLORS[p],
                         bbox=dict(boxstyle="round,pad=0.1", facecolor="white", alpha=0.7,
                                   linewidth=0))
    ax_zoom.set_title("yellow box enlarged: position p of each pixel in its patch")
    for ax in (ax_photo, ax_zoom):
        ax.set_xticks([])
        ax.set_yticks([])
    for p in range(p_count):
        ax = fig.add_subplot(gs[1, 2 * p:2 * p + 2])
        ax.imshow(views[p])
        ax.set_title(f"sequence p={p}: pixel ({p // pw},{p % pw})\nof all {nh * nw} patches",
                     color=_POSITION_COLORS[p], fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return finish(fig, name)


# --- chapter 04: attention and the encoder layer ------------------------------------------------
def plot_attention_maps(
    image: torch.Tensor,
    maps: list[list[torch.Tensor]],
    queries: list[tuple[int, int]],
    titles: list[str],
    *,
    name: str | None = None,
) -> Figure:
    """A photograph beside the attention weights that one query patch gives every patch.

    ``image`` is ``[3, H, W]`` in [0, 1]; ``maps[r][c]`` is a ``[gh, gw]`` grid of the weights of
    query ``queries[r]`` (patch row, column) in head ``c``, summing to 1. Each map is drawn as
    ``N x weight`` on one shared log scale, so a uniform head is 1 everywhere, with the query
    outlined.
    Saved as ``figures/<name>.png`` when ``name`` is given; returns the figure.
    """
    if len(maps) != len(queries) or any(len(row) != len(titles) for row in maps):
        raise ValueError("need one row of maps per query and one title per map in every row")
    rows, cols = len(maps), len(titles) + 1
    vmax = max(2.0, max(float(g.max() * g.numel()) for row in maps for g in row))
    norm = LogNorm(vmin=1e-2, vmax=vmax)  # one colour scale for every map
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.0 * rows), squeeze=False)
    h, w = image.shape[-2:]
    for r, ((qr, qc), row) in enumerate(zip(queries, maps)):
        gh, gw = row[0].shape
        ph, pw = h / gh, w / gw
        axes[r, 0].imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())  # [3, H, W] -> [H, W, 3]
        axes[r, 0].add_patch(
            Rectangle((qc * pw, qr * ph), pw, ph, fill=False, edgecolor="red", linewidth=2)
        )
        axes[r, 0].set_title(f"query patch ({qr}, {qc})", fontsize=10)
        for c, (grid, title) in enumerate(zip(row, titles), start=1):
            scaled = (grid.detach().float() * grid.numel()).clamp_min(1e-3).numpy()
            im = axes[r, c].imshow(scaled, cmap="magma", norm=norm)
            axes[r, c].add_patch(
                Rectangle((qc - 0.5, qr - 0.5), 1, 1, fill=False, edgecolor="cyan", linewidth=1.5)
            )
            axes[r, c].set_title(title, fontsize=10)
            fig.colorbar(im, ax=axes[r, c], fraction=0.046, pad=0.03, label="N x weight")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return finish(fig, name)


def plot_attention_cost(
    sizes: list[int],
    curves: dict[str, list[float]],
    *,
    ylabel: str = "attention scores per image",
    mark: int | None = 256,
    name: str | None = None,
) -> Figure:
    """Attention cost (e.g. the number of N x N score entries) against the image side, log-log.

    ``curves`` maps a label to one value per entry of ``sizes``; ``mark`` draws a vertical line
    at that image size. Saved as ``figures/<name>.png`` when ``name`` is given; returns the figure.
    """
    if not curves or any(len(v) != len(sizes) for v in curves.values()):
        raise ValueError("every curve needs one value per image size")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, values in curves.items():
        style = "--" if label.lower().startswith("vit") else "-"
        ax.plot(sizes, values, style, marker="o", markersize=4, label=label)
    if mark is not None:
        ax.axvline(mark, color="grey", linewidth=0.8, linestyle=":")
        ax.text(mark, 0.02, f" {mark} px", color="grey", va="bottom", fontsize=9,
                transform=ax.get_xaxis_transform())  # x in data units, y in axes fraction
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("image side (px)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=9)
    return finish(fig, name)


def plot_layer_params(
    breakdowns: dict[str, dict[str, int]], *, name: str | None = None
) -> Figure:
    """Stacked horizontal bars: the parameters of one encoder layer, part by part.

    ``breakdowns`` maps a bar label (e.g. ``"FFN 2d"``) to ``{part: parameter count}``; parts with
    the same name share a colour across bars. Saved as ``figures/<name>.png`` when ``name`` is
    given; returns the figure.
    """
    if not breakdowns:
        raise ValueError("nothing to plot")
    parts: list[str] = []
    for parts_of_bar in breakdowns.values():
        parts += [p for p in parts_of_bar if p not in parts]
    colours = dict(zip(parts, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    fig, ax = plt.subplots(figsize=(7.0, 0.9 + 0.7 * len(breakdowns)))
    labels = list(breakdowns)
    for i, label in enumerate(labels):
        left = 0
        for part in parts:
            n = breakdowns[label].get(part, 0)
            ax.barh(i, n, left=left, color=colours[part], label=part if i == 0 else None)
            if n > 0.06 * sum(breakdowns[label].values()):
                ax.text(left + n / 2, i, f"{n:,}", ha="center", va="center", fontsize=8,
                        color="white")
            left += n
        ax.text(left, i, f"  {left:,}", va="center", fontsize=9)
    ax.set_yticks(range(len(labels)), labels)
    ax.grid(False, axis="y")
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}")
    ax.invert_yaxis()
    ax.set_xlabel("parameters")
    ax.set_xlim(0, 1.18 * max(sum(b.values()) for b in breakdowns.values()))
    ax.legend(ncol=len(parts), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)
    return finish(fig, name)


# --- chapter 05: the MobileViT block ------------------------------------------------------------
PART_COLOURS = {"input": "#bbbbbb", "local": "#4c72b0", "global": "#dd8452", "fusion": "#55a868"}


def plot_block_shapes(
    steps: list[tuple[str, str, str]],
    *,
    skip: tuple[int, int] | None = None,
    title: str = "MobileViT block",
    name: str | None = None,
) -> Figure:
    """A top-to-bottom diagram of a block: one box per step, coloured by the part it belongs to.

    ``steps`` are ``(part, label, shape)`` triples in forward order, ``part`` one of ``input``,
    ``local``, ``global``, ``fusion``; ``skip=(i, j)`` draws an arrow from box ``i`` to box ``j``
    (the input that is concatenated before the fusion conv). Saved as ``figures/<name>.png``
    when ``name`` is given; returns the figure.
    """
    unknown = {part for part, _, _ in steps} - set(PART_COLOURS)
    if not steps or unknown:
        raise ValueError(f"need at least one step; unknown parts {sorted(unknown)}")
    n = len(steps)
    fig, ax = plt.subplots(figsize=(6.6, 0.62 * n + 0.9))
    box_w, box_h, x0 = 6.0, 0.62, 1.0
    ys = [n - 1 - i for i in range(n)]  # the first step at the top
    for (part, label, shape), y in zip(steps, ys):
        ax.add_patch(
            FancyBboxPatch(
                (x0, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0.02,rounding_size=0.12",
                facecolor=PART_COLOURS[part], edgecolor="black", linewidth=0.8, alpha=0.9,
            )
        )
        ax.text(x0 + 0.15, y, label, va="center", ha="left", fontsize=9.5, color="black")
        ax.text(x0 + box_w - 0.15, y, shape, va="center", ha="right", fontsize=9.5,
                family="monospace", color="black")
    for y_from, y_to in zip(ys[:-1], ys[1:]):
        ax.annotate("", xy=(x0 + box_w / 2, y_to + box_h / 2),
                    xytext=(x0 + box_w / 2, y_from - box_h / 2),
                    arrowprops={"arrowstyle": "->", "lw": 1.0})
    if skip is not None:
        i, j = skip
        ax.add_patch(
            FancyArrowPatch(
                (x0 + box_w, ys[i]), (x0 + box_w, ys[j]), connectionstyle="arc3,rad=-0.35",
                arrowstyle="->", mutation_scale=12, lw=1.2, color="black",
            )
        )
        ax.text(x0 + box_w + 0.95, (ys[i] + ys[j]) / 2, "input X\n(skip)", fontsize=9, va="center")
    parts = [p for p in PART_COLOURS if any(s[0] == p for s in steps)]
    ax.legend(handles=[Patch(facecolor=PART_COLOURS[p], edgecolor="black", label=p) for p in parts],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(parts), fontsize=9)
    ax.set_xlim(0.5, x0 + box_w + 2.2)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_title(title, fontsize=11)
    ax.axis("off")
    return finish(fig, name)
