"""The MobileNetV2 inverted residual block ("MV2").

Paper: §3.1 and Fig. 1b (the MV2 blocks between MobileViT blocks; the ones marked with a down
arrow down-sample by 2), following Sandler et al., 2018. The block

    expand 1 x 1 (C_in -> t * C_in, BN, Swish)
    depth-wise 3 x 3 (stride s, BN, Swish)
    reduce 1 x 1 (t * C_in -> C_out, BN, *no* activation: the "linear bottleneck")

adds its input back only when the shapes allow it: stride 1 and C_in == C_out. The hidden width is
``make_divisible(round(C_in * t), 8)``, as in the official code (expansion t = 4 for MobileViT-XS
and S, 2 for XXS).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mobilevit_edu.nn.layers import ConvBNAct, make_divisible

__all__ = ["InvertedResidual"]


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual with linear bottleneck.

    ``expansion == 1`` leaves the expansion conv out (MobileNetV2's first block does that).
    ``dilation`` dilates the depth-wise conv (used when a segmentation backbone trades stride for
    dilation to keep output stride 16 or 8).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expansion: float = 4.0,
        *,
        dilation: int = 1,
        act: Callable[[], nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = make_divisible(int(round(in_channels * expansion)), 8)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.hidden_channels = hidden if expansion != 1 else in_channels
        if expansion != 1:
            self.expand_1x1 = ConvBNAct(in_channels, hidden, 1, act=act)
        else:
            self.expand_1x1 = None
        self.conv_3x3 = ConvBNAct(
            self.hidden_channels, self.hidden_channels, 3, stride,
            groups=self.hidden_channels, dilation=dilation, act=act,
        )
        self.reduce_1x1 = ConvBNAct(self.hidden_channels, out_channels, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand_1x1 is not None:
            y = self.expand_1x1(y)  # [B, C_in, H, W] -> [B, t*C_in, H, W]
        y = self.conv_3x3(y)  # [B, t*C_in, H, W] -> [B, t*C_in, H/s, W/s] (one filter per channel)
        y = self.reduce_1x1(y)  # [B, t*C_in, H/s, W/s] -> [B, C_out, H/s, W/s] (linear)
        return x + y if self.use_residual else y
