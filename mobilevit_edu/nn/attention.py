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
