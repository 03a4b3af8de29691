"""The MobileViT block: local representation -> global representation -> fusion.

Paper: §3.1, Fig. 1b and Eq. (1); App. C, Fig. 14 (the fusion ablation). For an input
X in R^{C x H x W}:

1. **local**: an n x n conv (3 x 3, BN, Swish) encodes local spatial information, then a
   point-wise conv projects C -> d channels (no norm, no activation), giving X_L.
2. **global**: X_L is unfolded into P sequences of N patches each (``patches.unfold``),
   L transformer layers relate the N patches for every pixel position p, a final LayerNorm closes
   the stack, and folding puts every pixel back (X_F). Since the 3 x 3 conv already saw a pixel's
   neighbourhood and the transformer sees every patch, each output pixel sees every input pixel
   (Fig. 4) with far fewer tokens than a ViT.
3. **fusion**: a point-wise conv projects d -> C (BN, Swish); the result is concatenated with the
   block's input X (input first, as in the official code) and a 3 x 3 conv (BN, Swish) fuses the
   2C channels back to C. ``fusion=False`` leaves concat and fusion out (the Fig. 14 ablation):
   the block then returns the projection alone.
"""

from __future__ import annotations

import torch
from torch import nn

from mobilevit_edu.nn.layers import ConvBNAct
from mobilevit_edu.nn.patches import fold, unfold
from mobilevit_edu.nn.transformer import TransformerEncoderLayer

__all__ = ["MobileViTBlock"]


class MobileViTBlock(nn.Module):
    """MobileViT block with C input/output channels and transformer width d."""

    def __init__(
        self,
        channels: int,
        transformer_dim: int,
        depth: int,
        *,
        num_heads: int = 4,
        ffn_ratio: float = 2.0,
        patch_size: int | tuple[int, int] = 2,
        kernel_size: int = 3,
        dropout: float = 0.1,
        attn_drop: float = 0.0,
        ffn_drop: float = 0.0,
        fusion: bool = True,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        self.channels, self.transformer_dim, self.depth = channels, transformer_dim, depth
        self.patch_size = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        # 1. local representation
        self.conv_kxk = ConvBNAct(channels, channels, kernel_size)
        self.conv_1x1 = nn.Conv2d(channels, transformer_dim, 1, bias=False)
        # 2. global representation
        self.transformer = nn.Sequential(
            *[
                TransformerEncoderLayer(
                    transformer_dim, num_heads, ffn_ratio, dropout=dropout,
                    attn_drop=attn_drop, ffn_drop=ffn_drop, fused_attention=fused_attention,
                )
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(transformer_dim, eps=1e-5)
        # 3. fusion
        self.conv_proj = ConvBNAct(transformer_dim, channels, 1)
        self.fusion = ConvBNAct(2 * channels, channels, kernel_size) if fusion else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"MobileViTBlock expects [B, {self.channels}, H, W], got {tuple(x.shape)}"
            )
        y = self.conv_kxk(x)  # [B, C, H, W] -> [B, C, H, W]
        y = self.conv_1x1(y)  # [B, C, H, W] -> [B, d, H, W]
        nhwc = y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
        seq, grid = unfold(y, self.patch_size)  # [B, d, H, W] -> [B*P, N, d]
        seq = self.transformer(seq)  # [B*P, N, d] -> [B*P, N, d]
        seq = self.norm(seq)
        y = fold(seq, grid, channels_last=nhwc)  # [B*P, N, d] -> [B, d, H, W], same memory order
        y = self.conv_proj(y)  # [B, d, H, W] -> [B, C, H, W]
        if self.fusion is None:
            return y
        return self.fusion(torch.cat((x, y), dim=1))  # [B, 2C, H, W] -> [B, C, H, W]


# --- figures (chapter 05) ---------------------------------------------------------------------
PART_COLOURS = {"input": "#bbbbbb", "local": "#4c72b0", "global": "#dd8452", "fusion": "#55a868"}


def plot_block_shapes(
    steps: list[tuple[str, str, str]],
    *,
    skip: tuple[int, int] | None = None,
    title: str = "MobileViT block",
    name: str = "mobilevit_block_shapes",
):
    """A top-to-bottom diagram of a block: one box per step, coloured by the part it belongs to.

    ``steps`` are ``(part, label, shape)`` triples in forward order, ``part`` one of ``input``,
    ``local``, ``global``, ``fusion``; ``skip=(i, j)`` draws an arrow from box ``i`` to box ``j``
    (the input that is concatenated before the fusion conv). Saved as ``figures/<name>.png``;
    returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    from mobilevit_edu.plots.save import save_figure

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
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_influence_maps(
    maps: list[torch.Tensor],
    titles: list[str],
    pixel: tuple[int, int],
    *,
    name: str = "mobilevit_block_influence",
):
    """How much every output pixel changed when one input pixel was nudged, one panel per model.

    ``maps`` are ``[H, W]`` tensors of non-negative changes (e.g. summed over channels), drawn on
    one shared log scale (exact zeros shown as the bottom colour); ``pixel`` (row, column) is
    marked. Saved as ``figures/<name>.png``; returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from mobilevit_edu.plots.save import save_figure

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
    save_figure(fig, name)
    return fig
