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


# --- figures (chapter 02) ----------------------------------------------------------------------
def plot_receptive_windows(
    photo: torch.Tensor,
    windows: dict[str, tuple[int, int, int, int]],
    *,
    zoom: int = 24,
    name: str = "02_conv_receptive_windows",
) -> "matplotlib.figure.Figure":
    """Draw receptive windows on a photograph and save the figure as ``figures/<name>.png``.

    ``photo`` is ``[3, H, W]`` in [0, 1]; ``windows`` maps a label to the window of input pixels
    ``(top, left, bottom, right)`` (inclusive) that one output pixel depends on, smallest first.
    The left panel shows the whole photo, the right one a crop of ``zoom`` pixels around the
    largest window. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from mobilevit_edu.plots.save import save_figure

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
    fig.tight_layout()
    save_figure(fig, name)
    return fig
