"""Convolution building blocks: conv -> BatchNorm -> activation, and ``make_divisible``.

Paper: §3.1 and Fig. 1b use "n x n convolution" and "point-wise (1 x 1) convolution" layers;
the official code (apple/ml-cvnets, ``ConvLayer``) always follows a convolution with BatchNorm
(momentum 0.1, eps 1e-5) and, where asked, the Swish activation (``nn.SiLU``). Convolutions that
are followed by a norm carry no bias, because BatchNorm's shift would absorb it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Callable

import torch
from torch import nn

__all__ = ["make_divisible", "ConvBNAct", "conv_out_size", "to_pair"]


def to_pair(value: int | Sequence[int], what: str = "size") -> tuple[int, int]:
    """``(h, w)`` from one int (a square) or a pair; ``what`` names the value in the error.

    The one place the library turns a size, a kernel, a patch or a stride into two integers.
    Raises ``ValueError`` for anything but one or two positive integers.
    """
    if isinstance(value, numbers.Integral):
        h = w = int(value)
    else:
        try:
            h, w = (int(v) for v in value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{what} must be an int or a pair (h, w), got {value!r}") from err
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be positive, got {(h, w)}")
    return h, w


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never dropping more than 10 %.

    This is the channel-rounding rule of MobileNetV2 that the official MobileViT code uses for
    the hidden width of every inverted residual (hidden = make_divisible(round(C_in * t), 8)).
    """
    if divisor <= 0:
        raise ValueError(f"divisor must be positive, got {divisor}")
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:  # do not round down by more than 10 %
        new_value += divisor
    return new_value


def conv_out_size(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> int:
    """Output length of a 'same'-padded convolution (padding = dilation * (kernel - 1) // 2)."""
    padding = dilation * (kernel - 1) // 2
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class ConvBNAct(nn.Sequential):
    """``conv (k x k, stride, dilation, groups) -> BatchNorm2d -> activation``.

    Padding keeps the spatial size at stride 1 ("same" padding, ``dilation * (k - 1) // 2``).
    ``norm=False`` gives a plain convolution with a bias; ``act=None`` leaves the activation out
    (the linear bottleneck of MobileNetV2 does that).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        dilation: int = 1,
        norm: bool = True,
        act: Callable[[], nn.Module] | None = nn.SiLU,
    ) -> None:
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                f"divisible by groups ({groups})"
            )
        padding = dilation * (kernel_size - 1) // 2
        layers: dict[str, nn.Module] = {
            "conv": nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding,
                dilation=dilation, groups=groups, bias=not norm,
            )
        }
        if norm:
            layers["bn"] = nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.1)
        if act is not None:
            layers["act"] = act()
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, H, W] -> [B, C_out, H/s, W/s]
        return super().forward(x)
