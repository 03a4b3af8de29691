"""The pre-norm transformer encoder layer used inside every MobileViT block.

Paper: §3.1 (the transformer that encodes inter-patch relations) and App. A ("the FFN dimension
is 2d rather than 4d"). As in the official code, normalisation comes *before* each sub-layer:

    x = x + Dropout(MHSA(LayerNorm(x)))
    x = x + Dropout(Linear(Dropout(SiLU(Linear(LayerNorm(x))))))      # d -> 2d -> d

LayerNorm eps 1e-5; the FFN activation is Swish (SiLU), as everywhere in MobileViT. The same layer
with GELU and an FFN ratio of 4 is the DeiT/ViT encoder layer the book's ViT baseline uses.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mobilevit_edu.nn.attention import MultiHeadSelfAttention

__all__ = ["FeedForward", "TransformerEncoderLayer"]


class FeedForward(nn.Sequential):
    """``Linear(d, r*d) -> act -> Dropout -> Linear(r*d, d)``."""

    def __init__(
        self, dim: int, hidden_dim: int, act: Callable[[], nn.Module] = nn.SiLU, drop: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)  # [B, N, d] -> [B, N, r*d]
        self.act = act()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim)  # [B, N, r*d] -> [B, N, d]


class TransformerEncoderLayer(nn.Module):
    """Pre-norm encoder layer: ``[B, N, d] -> [B, N, d]``."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        ffn_ratio: float = 2.0,
        *,
        dropout: float = 0.0,
        attn_drop: float = 0.0,
        ffn_drop: float = 0.0,
        act: Callable[[], nn.Module] = nn.SiLU,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = MultiHeadSelfAttention(
            dim, num_heads, attn_drop=attn_drop, fused=fused_attention
        )
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = FeedForward(dim, int(dim * ffn_ratio), act=act, drop=ffn_drop)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop1(self.attn(self.norm1(x)))  # global mixing across the N tokens
        x = x + self.drop2(self.mlp(self.norm2(x)))  # per-token mixing across the d channels
        return x
