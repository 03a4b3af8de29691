"""The baselines the paper compares MobileViT with, built from the same library parts.

Paper: Fig. 8 (light-weight CNNs, MobileNetV2 among them), Fig. 9 and Table 3 (DeiT, a ViT
trained with basic or advanced augmentation), Table 5 (MobileNetV2-1.0 with the multi-scale
sampler).

* ``MobileNetV2`` (Sandler et al., 2018): a 3 x 3 stem, 17 inverted residuals
  (``mv2.InvertedResidual``) in seven groups (t, c, n, s), a 1 x 1 conv to 1280 channels,
  global pooling and a linear classifier; ``width`` scales every channel count (rounded with
  ``make_divisible``). ReLU6 as in the original paper; 3,504,872 parameters at width 1.0.
* ``ViT`` (Dosovitskiy et al., 2021; DeiT-Tiny of Touvron et al., 2021 at its defaults): a
  patch-embedding conv, a class token, learned position embeddings (bilinearly resized for other
  input sizes), ``depth`` pre-norm encoder layers (``transformer.TransformerEncoderLayer`` with
  GELU and FFN ratio 4), a final LayerNorm and a linear head on the class token;
  5,717,416 parameters at the DeiT-Tiny defaults.

Both follow the library's feature contract (see ``models.mobilevit``): ``forward_intermediates``
(MobileNetV2: the last block at each output stride 2..32; ViT: the token grid after each encoder
layer, all at the patch stride), ``feature_info``, ``forward_features``, ``forward_head``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mobilevit_edu.nn.layers import ConvBNAct, make_divisible
from mobilevit_edu.models.mobilevit import check_image_batch, init_weights
from mobilevit_edu.nn.mv2 import InvertedResidual
from mobilevit_edu.nn.transformer import TransformerEncoderLayer

__all__ = ["MobileNetV2", "ViT", "MOBILENETV2_SETTINGS"]

# (expansion t, output channels c, repeats n, first stride s), Table 2 of the MobileNetV2 paper
MOBILENETV2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2 at a width multiplier, from ``InvertedResidual`` blocks.

    ``output_stride`` 16 (or 8) trades the stride of the last (two) down-sampling stages for
    dilation, as DeepLabv3 does with this network (the first block of a dilated stage keeps the
    previous rate, the others double it); ``expand_output=False`` leaves the 1 x 1 conv to
    1280 channels out (a detection or segmentation backbone reads the stages, not the head).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width: float = 1.0,
        *,
        in_channels: int = 3,
        dropout: float = 0.2,
        act: Callable[[], nn.Module] = nn.ReLU6,
        output_stride: int = 32,
        expand_output: bool = True,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.in_channels, self.num_classes, self.width = in_channels, num_classes, width
        self.output_stride = output_stride
        stem_ch = make_divisible(32 * width, 8)
        self.stem = ConvBNAct(in_channels, stem_ch, 3, stride=2, act=act)
        blocks: list[nn.Module] = []
        last: dict[int, dict] = {}  # nominal output stride -> the last block of that stage
        c_in, nominal, actual, dilation = stem_ch, 2, 2, 1
        for t, c, n, s in MOBILENETV2_SETTINGS:
            c_out = make_divisible(c * width, 8)
            first_dilation = dilation
            if s == 2 and nominal * 2 > output_stride:  # keep the resolution, dilate instead
                dilation *= 2
                s_eff = 1
            else:
                s_eff = s
            for i in range(n):
                blocks.append(InvertedResidual(c_in, c_out, s_eff if i == 0 else 1, t, act=act,
                                               dilation=first_dilation if i == 0 else dilation))
                c_in = c_out
            nominal, actual = nominal * s, actual * s_eff
            last[nominal] = {"name": f"blocks.{len(blocks) - 1}", "channels": c_out,
                             "stride": actual}
        self.blocks = nn.Sequential(*blocks)
        # one stage per nominal output stride (2, 4, 8, 16, 32): blocks 0, 2, 5, 12, 16
        self.feature_info: list[dict] = list(last.values())
        self._stage_ends = [int(info["name"].split(".")[1]) for info in self.feature_info]
        self.num_features = make_divisible(1280 * max(1.0, width), 8) if expand_output else c_in
        self.conv_1x1_exp = ConvBNAct(c_in, self.num_features, 1, act=act) if expand_output \
            else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else None
        init_weights(self)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of the last block at each output stride 2, 4, 8, 16, 32: one
        ``[B, C_i, H/s_i, W/s_i]`` map per entry of ``feature_info``."""
        check_image_batch(x, self.in_channels)
        x = self.stem(x)  # [B, 3, H, W] -> [B, 32 w, H/2, W/2]
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._stage_ends:
                features.append(x)
        return features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last map before pooling: ``[B, 3, H, W] -> [B, 320 w, H/32, W/32]``."""
        check_image_batch(x, self.in_channels)
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """1x1 conv to 1280 channels (unless ``expand_output=False``), global pool, dropout,
        linear (the pooled vector without a classifier)."""
        if self.conv_1x1_exp is not None:
            x = self.conv_1x1_exp(x)  # [B, 320 w, h, w] -> [B, 1280, h, w]
        x = x.mean(dim=(-2, -1))  # [B, 1280, h, w] -> [B, 1280]
        return x if self.classifier is None else self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class ViT(nn.Module):
    """A DeiT/ViT-style vision transformer (class token, learned position embeddings)."""

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        image_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        ffn_ratio: float = 4.0,
        in_channels: int = 3,
        dropout: float = 0.0,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.patch_size, self.image_size, self.embed_dim = patch_size, image_size, embed_dim
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        grid = image_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.blocks = nn.Sequential(
            *[
                TransformerEncoderLayer(
                    embed_dim, num_heads, ffn_ratio, dropout=dropout, act=nn.GELU,
                    fused_attention=fused_attention,
                )
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.num_features = embed_dim
        # every encoder layer is a stage: the token grid at the patch stride
        self.feature_info = [{"name": f"blocks.{i}", "channels": embed_dim, "stride": patch_size}
                             for i in range(depth)]
        self.classifier = nn.Linear(embed_dim, num_classes) if num_classes > 0 else None
        init_weights(self)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.kaiming_normal_(self.patch_embed.weight, mode="fan_in")

    def position_embedding(self, gh: int, gw: int) -> torch.Tensor:
        """The learned position embeddings for a ``gh x gw`` token grid, ``[1, 1 + gh*gw, D]``
        (class token first): the stored ``image_size / patch_size`` grid, resized bilinearly
        when the grid differs."""
        cls_pos, grid_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        g = self.image_size // self.patch_size
        if (gh, gw) == (g, g):
            return self.pos_embed
        grid_pos = grid_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)  # [1, g*g, D] -> [1, D, g, g]
        grid_pos = F.interpolate(grid_pos, size=(gh, gw), mode="bilinear", align_corners=False)
        grid_pos = grid_pos.flatten(2).transpose(1, 2)  # [1, D, gh, gw] -> [1, gh*gw, D]
        return torch.cat((cls_pos, grid_pos), dim=1)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Images -> the token sequence the encoder layers read, ``[B, 1 + N, D]`` (class token
        first, position embeddings added), and the token grid ``(gh, gw)``."""
        check_image_batch(x, self.in_channels, min_size=self.patch_size)
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(
                f"ViT input {tuple(x.shape[-2:])} must be a multiple of the patch size "
                f"{self.patch_size} on each side; resize or crop the images"
            )
        x = self.patch_embed(x)  # [B, 3, H, W] -> [B, D, H/p, W/p]
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # [B, D, gh, gw] -> [B, gh*gw, D]
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # [1, 1, D] -> [B, 1, D]
        x = torch.cat((cls, x), dim=1) + self.position_embedding(gh, gw)  # [B, 1+N, D]
        return x, (gh, gw)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The token grid after every encoder layer (before the final norm), class token
        dropped: one ``[B, D, H/p, W/p]`` map per layer, all at stride p (``feature_info``)."""
        x, (gh, gw) = self.embed(x)
        features = []
        for block in self.blocks:
            x = block(x)
            # [B, 1+N, D] -> [B, N, D] -> [B, D, N] -> [B, D, gh, gw]
            features.append(x[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, gh, gw))
        return features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised tokens before the head picks the class token: ``[B, 1 + N, D]``
        (as timm's ViT; a ViT has no map before pooling, its "pooling" is the class token)."""
        x, _ = self.embed(x)
        return self.norm(self.blocks(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """The class token of ``forward_features`` -> logits (the token itself without a
        classifier)."""
        x = x[:, 0]  # the class token: [B, 1+N, D] -> [B, D]
        return x if self.classifier is None else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
