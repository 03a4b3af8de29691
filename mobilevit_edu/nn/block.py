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

from mobilevit_edu.nn.layers import ConvBNAct, to_pair
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
        self.patch_size = to_pair(patch_size, "patch_size")
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
