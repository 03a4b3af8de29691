"""The DeepLabv3 network on a MobileViT backbone (paper §4.2.2, Table 2).

Paper §4.2.2: MobileViT is the backbone of DeepLabv3 (Chen et al., 2017). The details are those of
the official config, apple/ml-cvnets v0.1 ``config/segmentation/deeplabv3_mobilevit_*.yaml`` with
``cvnets/models/segmentation/heads/deeplabv3.py`` and ``cvnets/modules/aspp_block.py``:

    image [B, 3, H, W]
    backbone   MobileViT at output stride 16: layer5's down-sampling MV2 gets stride 1 (dilation),
               no conv 1x1 expansion, no classifier                   -> [B, C5, H/16, W/16]
    ASPP       five parallel branches, each conv -> BN -> ReLU with 256 channels:
                 1x1 conv | 3x3 conv dilation 6 | dilation 12 | dilation 18 |
                 image pooling (global average -> 1x1 conv -> copied back to every pixel)
               concat (5 x 256 = 1280) -> 1x1 projection to 256 (BN, ReLU) -> Dropout(0.1)
    classifier Dropout2d(0.1) -> 1x1 conv (with bias) to the classes  -> [B, K, H/16, W/16]

With 21 classes (PASCAL VOC) the networks have 1,854,853 / 2,944,069 / 6,357,941 parameters.
Also here: :func:`load_backbone` (ImageNet classification weights into the backbone, as the
paper fine-tunes them) and the geometry of the dilated taps (:func:`aspp_sampling_points`,
:func:`aspp_valid_taps`) that chapter 13 draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mobilevit_edu.models.checkpoints import detect_layout, key_map, to_ours
from mobilevit_edu.models.mobilevit import CONFIGS, MobileViT, init_weights
from mobilevit_edu.nn.layers import ConvBNAct

__all__ = [
    "IGNORE_INDEX",
    "ATROUS_RATES",
    "ASPPPooling",
    "ASPP",
    "DeepLabV3",
    "upsample_logits",
    "mobilevit_size",
    "create_deeplabv3",
    "load_backbone",
    "aspp_sampling_points",
    "aspp_valid_taps",
]

IGNORE_INDEX = 255  # PASCAL VOC marks object boundaries and "difficult" pixels with 255
ATROUS_RATES: tuple[int, int, int] = (6, 12, 18)  # the official ASPP rates at output stride 16


class ASPPPooling(nn.Module):
    """The image-pooling branch of ASPP: one global average per channel, a 1x1 conv -> BN -> ReLU,
    and that vector copied back to every position (bilinear upsampling of a 1 x 1 map is a copy).

    The BatchNorm sees a single value per channel and image, so training needs batches of at
    least two images (as PyTorch says: "Expected more than 1 value per channel when training")."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_1x1 = ConvBNAct(in_channels, out_channels, 1, act=nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled = x.mean(dim=(-2, -1), keepdim=True)  # [B, C, h, w] -> [B, C, 1, 1]
        y = self.conv_1x1(pooled)  # [B, C, 1, 1] -> [B, 256, 1, 1]
        return y.expand(-1, -1, h, w)  # [B, 256, 1, 1] -> [B, 256, h, w]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3): a 1x1 branch, one 3x3 branch per atrous rate,
    an image-pooling branch, all with ``out_channels`` (256) channels and ReLU; the branches are
    concatenated and projected back to ``out_channels`` by a 1x1 conv, then dropout.

    A 3x3 conv with dilation ``r`` samples the 9 positions ``(i + r a, j + r b)``, ``a, b`` in
    ``{-1, 0, 1}``: the same 9 weights see a window of ``2r + 1`` pixels, zero-padded at borders.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = ATROUS_RATES,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not rates or any(int(r) < 1 for r in rates):
            raise ValueError(f"atrous rates must be positive integers, got {tuple(rates)}")
        self.rates = tuple(int(r) for r in rates)
        self.in_channels, self.out_channels = in_channels, out_channels
        branches: list[nn.Module] = [ConvBNAct(in_channels, out_channels, 1, act=nn.ReLU)]
        branches += [ConvBNAct(in_channels, out_channels, 3, dilation=r, act=nn.ReLU)
                     for r in self.rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = ConvBNAct(len(branches) * out_channels, out_channels, 1, act=nn.ReLU)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # each branch: [B, C_in, h, w] -> [B, 256, h, w]; concatenated: [B, 5 * 256, h, w]
        pyramid = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.dropout(self.project(pyramid))  # [B, 1280, h, w] -> [B, 256, h, w]


class DeepLabV3(nn.Module):
    """DeepLabv3: a MobileViT (or MobileNetV2) backbone at output stride 16, ASPP, and a 1x1
    classifier.

    ``forward(x)`` returns logits at the backbone's resolution, ``[B, K, ceil(H/16), ceil(W/16)]``
    (as Hugging Face's model does); the loss and the metric upsample them bilinearly to the mask
    size, and :meth:`predict` returns a label map at the input size.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 21,
        *,
        aspp_channels: int = 256,
        atrous_rates: Sequence[int] = ATROUS_RATES,
        aspp_dropout: float = 0.1,
        classifier_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if (getattr(backbone, "conv_1x1_exp", None) is not None
                or getattr(backbone, "classifier", None) is not None):
            raise ValueError(
                "the DeepLabv3 backbone has no conv_1x1_exp and no classifier: build it with "
                "MobileViT(config, num_classes=0, output_stride=16, expand_output=False) or use "
                "create_deeplabv3(...)"
            )
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + a class), got {num_classes}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.aspp = ASPP(backbone.num_features, aspp_channels, atrous_rates, aspp_dropout)
        self.dropout = nn.Dropout2d(classifier_dropout)
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)  # with a bias, no norm
        init_weights(self.aspp)
        init_weights(self.classifier)

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_intermediates(x)[-1]  # layer5: [B, C5, H/16, W/16]
        y = self.aspp(features)  # [B, C5, h, w] -> [B, 256, h, w]
        return self.classifier(self.dropout(y))  # [B, 256, h, w] -> [B, K, h, w]

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Label maps ``[B, H, W]`` (int64) at the input size, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            logits = upsample_logits(self(x), x.shape[-2:])  # [B, K, h, w] -> [B, K, H, W]
        finally:
            self.train(was_training)
        return logits.argmax(1)  # [B, K, H, W] -> [B, H, W]


def upsample_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear upsampling (``align_corners=False``, as the official code and Hugging Face) of
    ``[B, K, h, w]`` logits to ``size = (H, W)``; a no-op if they are already that size."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def mobilevit_size(name: str) -> str:
    """The MobileViT size ("xxs", "xs", "s") named by ``name``: the size itself,
    ``mobilevit_xxs`` or ``deeplabv3_mobilevit_xxs``; anything else raises a ``ValueError``."""
    size = name.removeprefix("deeplabv3_").removeprefix("mobilevit_")
    if size not in CONFIGS:
        raise ValueError(f"unknown MobileViT size {name!r}; use one of "
                         f"{', '.join(CONFIGS)} (or mobilevit_xxs, ...)")
    return size


def create_deeplabv3(
    name: str = "mobilevit_xxs",
    num_classes: int = 21,
    *,
    output_stride: int = 16,
    atrous_rates: Sequence[int] = ATROUS_RATES,
    aspp_channels: int = 256,
    aspp_dropout: float = 0.1,
    classifier_dropout: float = 0.1,
    **backbone_overrides: Any,
) -> DeepLabV3:
    """DeepLabv3 on MobileViT ``name`` ("xxs", "xs", "s" or "mobilevit_xxs", ...), the official
    segmentation network: output stride 16, ASPP with 256 channels and rates 6 / 12 / 18; or on
    MobileNetV2 (``"mobilenetv2_100"`` or another width), the backbone Table 2 compares with,
    dilated the same way.

    ``backbone_overrides`` go to :func:`mobilevit_edu.create_model` (e.g. ``patch_sizes=...``).
    """
    from mobilevit_edu.models.registry import create_model

    model = name if name.startswith("mobilenetv2_") else f"mobilevit_{mobilevit_size(name)}"
    backbone = create_model(model, num_classes=0, output_stride=output_stride,
                            expand_output=False, **backbone_overrides)
    return DeepLabV3(backbone, num_classes, aspp_channels=aspp_channels,
                     atrous_rates=atrous_rates, aspp_dropout=aspp_dropout,
                     classifier_dropout=classifier_dropout)


def load_backbone(
    model: DeepLabV3, state_dict: Mapping[str, torch.Tensor], layout: str | None = None
) -> DeepLabV3:
    """Initialise ``model.backbone`` from a *classification* checkpoint of the same size (any
    layout of :mod:`mobilevit_edu.models.checkpoints`: ours, hf, timm, cvnets), as the paper
    fine-tunes ImageNet weights. Exactly the tensors a segmentation backbone does not have (conv
    1x1 expansion and classifier) are dropped; anything else that does not fit raises."""
    layout = layout or detect_layout(state_dict)
    # the names of conv_1x1_exp and the classifier in that layout, read off a classifier network
    full = MobileViT(model.backbone.config, num_classes=1)
    dropped = {name for key, names in key_map(full, layout).items()
               if key.startswith(("conv_1x1_exp.", "classifier.")) for name in names}
    kept = {k: v for k, v in state_dict.items() if k not in dropped}
    model.backbone.load_state_dict(to_ours(kept, model.backbone, layout), strict=True)
    return model


# --- where a dilated 3x3 conv reads (drawn by mobilevit_edu.plots.segmentation) ---------------


def aspp_sampling_points(
    centre: tuple[int, int], rate: int, size: int
) -> list[tuple[int, int, bool]]:
    """The 9 positions ``(row, col, inside)`` a 3x3 conv with dilation ``rate`` reads for the
    output pixel ``centre`` of a ``size x size`` map; ``inside`` is False where it reads padding."""
    i, j = centre
    return [(i + rate * a, j + rate * b, 0 <= i + rate * a < size and 0 <= j + rate * b < size)
            for a in (-1, 0, 1) for b in (-1, 0, 1)]


def aspp_valid_taps(size: int, rate: int) -> float:
    """The share of a dilated 3x3 conv's taps that land inside a ``size x size`` map, averaged
    over all output pixels (1.0: every weight sees features; 1/9: only the centre one does)."""
    inside_1d = np.array([sum(0 <= i + rate * a < size for a in (-1, 0, 1)) for i in range(size)])
    return float((inside_1d.mean() ** 2) / 9)  # rows and columns are independent
