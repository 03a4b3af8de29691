"""Multi-head self-attention, written out and through PyTorch's fused kernel.

Paper: §3.1 ("transformers ... learn inter-patch relationships"), Vaswani et al., 2017, Eq. (1):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_h)) V

with ``h`` heads of width ``d_h = d / h``. MobileViT uses h = 4 heads in every block (official
configuration), one stacked projection ``qkv: Linear(d, 3d, bias=True)`` and an output projection
``proj: Linear(d, d)``. There are no positional embeddings anywhere in MobileViT: the unfold
order already tells a patch where it came from, and every sequence holds pixels of one position.

``attention_explicit`` spells out the formula; ``MultiHeadSelfAttention`` uses
``torch.nn.functional.scaled_dot_product_attention`` by default (``fused=True``), which computes
the same thing without materialising the N x N score matrix where a fused kernel exists.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["attention_explicit", "MultiHeadSelfAttention"]


def attention_explicit(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_h)) v, for q, k, v of shape ``[..., N, d_h]``."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q * scale) @ k.transpose(-2, -1)  # [..., N, d_h] x [..., d_h, N] -> [..., N, N]
    weights = scores.softmax(dim=-1)  # every row sums to 1: how much token i reads token j
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # [..., N, N] x [..., N, d_h] -> [..., N, d_h]


class MultiHeadSelfAttention(nn.Module):
    """Self-attention over a sequence ``[B, N, d]`` with ``num_heads`` heads."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        *,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.attn_drop = attn_drop
        self.fused = fused
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)  # rows: [query; key; value]
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected a sequence [B, N, {self.dim}], got {tuple(x.shape)}")
        qkv = self.qkv(x)  # [B, N, d] -> [B, N, 3d]
        # [B, N, 3*h*d_h] -> 3 x [B, h, N, d_h]
        q, k, v = rearrange(qkv, "b n (three h dh) -> three b h n dh", three=3, h=self.num_heads)
        p = self.attn_drop if self.training else 0.0
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            out = attention_explicit(q, k, v, dropout_p=p)
        out = rearrange(out, "b h n dh -> b n (h dh)")  # [B, h, N, d_h] -> [B, N, d]
        return self.proj(out)


# --- figures (chapter 04) ---------------------------------------------------------------------
def plot_attention_maps(
    image: torch.Tensor,
    maps: list[list[torch.Tensor]],
    queries: list[tuple[int, int]],
    titles: list[str],
    name: str = "attention_on_photo",
):
    """A photograph beside the attention weights that one query patch gives every patch.

    ``image`` is ``[3, H, W]`` in [0, 1]; ``maps[r][c]`` is a ``[gh, gw]`` grid of the weights of
    query ``queries[r]`` (patch row, column) in head ``c``, summing to 1. Each map is drawn as
    ``N x weight`` on one shared log scale, so a uniform head is 1 everywhere, with the query
    outlined.
    Saved as ``figures/<name>.png``; returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    from mobilevit_edu.plots.save import save_figure

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
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_attention_cost(
    sizes: list[int],
    curves: dict[str, list[float]],
    *,
    ylabel: str = "attention scores per image",
    mark: int | None = 256,
    name: str = "attention_cost",
):
    """Attention cost (e.g. the number of N x N score entries) against the image side, log-log.

    ``curves`` maps a label to one value per entry of ``sizes``; ``mark`` draws a vertical line
    at that image size. Saved as ``figures/<name>.png``; returns the figure.
    """
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

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
    fig.tight_layout()
    save_figure(fig, name)
    return fig
