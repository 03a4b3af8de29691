"""SSDLite on a MobileViT backbone: the network of paper §4.2.1 and Table 1.

MobileViT, pre-trained on ImageNet, is fine-tuned on MS-COCO inside SSDLite, the light-weight
single-shot detector of MobileNetV2: SSD whose prediction heads use *separable* 3 x 3 convolutions
instead of standard ones. Input 320 x 320; MobileViT-XS gets 24.8 mAP with 2.7 M parameters and
MobileViT-S 27.7 mAP with 5.7 M (Table 1a). As the official code (apple/ml-cvnets v0.1,
``cvnets/models/detection/ssd.py``, ``cvnets/modules/ssd.py``):

    output stride   where it comes from                      320 x 320   channels  head proj  anchors
    16              backbone layer4                           20 x 20     C4        512        6
    32              backbone layer5 (no conv_1x1_exp)         10 x 10     C5        256        6
    64              separable conv 3x3 s2 (C5 -> 256)          5 x 5      256       -          6
    128             separable conv 3x3 s2 (256 -> 128)         3 x 3      128       -          6
    256             separable conv 3x3 s2 (128 -> 128)         2 x 2      128       -          6
    -1 (global)     global average pool + conv 1x1 (-> 64)     1 x 1       64       -          4

* A *separable conv* is a depth-wise 3 x 3 conv + BatchNorm, then a point-wise 1 x 1 conv
  (+ BatchNorm + ReLU in the extra layers; + bias only in the heads).
* Each head: a 1 x 1 projection (BatchNorm + ReLU) where the channels differ from ``proj``,
  then a separable 3 x 3 conv (a plain 1 x 1 conv on the global map) predicting, per location,
  ``anchors x (4 + classes)`` numbers. Heads and extra layers use ReLU; the backbone keeps Swish.

The backbone's per-stage maps come from its feature contract, ``forward_intermediates`` and
``feature_info`` (the maps at output stride 16 and 32), so the same detector runs on the
MobileNetV2 backbone Table 1 compares with (``create_ssdlite("mobilenetv2_100")``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from mobilevit_edu.detection.anchors import AnchorGenerator, ssd_feature_sizes
from mobilevit_edu.detection.config import SSDConfig
from mobilevit_edu.detection.postprocess import Detections, PostprocessConfig, postprocess
from mobilevit_edu.models.mobilevit import CONFIGS, MobileViT, check_image_batch, config_with
from mobilevit_edu.nn.layers import ConvBNAct, to_pair

__all__ = [
    "SeparableConv",
    "SSDHead",
    "SSDOutput",
    "SSDLite",
    "create_ssdlite",
    "ssdlite_param_table",
]


class SeparableConv(nn.Sequential):
    """Depth-wise 3 x 3 conv + BatchNorm, then point-wise 1 x 1 conv (cvnets ``SeparableConv``).

    ``norm=True``: the point-wise conv is followed by BatchNorm + ReLU (the extra layers);
    ``norm=False``: it has a bias and nothing after it (the prediction heads)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 norm: bool = True) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, act=None)
        self.pw = ConvBNAct(in_channels, out_channels, 1, norm=norm,
                            act=nn.ReLU if norm else None)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride


class SSDHead(nn.Module):
    """One prediction head: optional 1 x 1 projection, then per location and anchor 4 box
    offsets and ``num_classes`` class scores (cvnets ``SSDHead``)."""

    def __init__(self, in_channels: int, proj_channels: int, num_anchors: int, num_classes: int,
                 kernel_size: int = 3) -> None:
        super().__init__()
        self.num_anchors, self.num_classes = num_anchors, num_classes
        self.proj = None
        if proj_channels != in_channels and kernel_size > 1:
            self.proj = ConvBNAct(in_channels, proj_channels, 1, act=nn.ReLU)
            in_channels = proj_channels
        out = num_anchors * (4 + num_classes)
        self.loc_cls = (SeparableConv(in_channels, out, norm=False) if kernel_size > 1
                        else nn.Conv2d(in_channels, out, 1, bias=True))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        if self.proj is not None:
            x = self.proj(x)  # [B, C_in, h, w] -> [B, C_proj, h, w]
        x = self.loc_cls(x)  # -> [B, A * (4 + K), h, w]
        x = x.permute(0, 2, 3, 1)  # -> [B, h, w, A * (4 + K)]
        x = x.reshape(b, -1, 4 + self.num_classes)  # -> [B, h * w * A, 4 + K]
        locations, scores = x.split([4, self.num_classes], dim=-1)  # [B, hwA, 4], [B, hwA, K]
        return locations, scores


class SSDOutput(NamedTuple):
    """Raw network output: class logits ``[B, N, K]``, box offsets ``[B, N, 4]`` and the
    anchors ``[N, 4]`` (cx, cy, w, h) they refer to."""

    scores: torch.Tensor
    locations: torch.Tensor
    anchors: torch.Tensor


def _xavier_init(module: nn.Module) -> None:
    """The official init of the SSD extra layers and heads: Xavier-uniform convs, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SSDLite(nn.Module):
    """SSDLite on a MobileViT backbone (paper §4.2.1), or on any backbone of the feature
    contract whose fourth and fifth stages are at output stride 16 and 32 (MobileNetV2).

    ``backbone`` must be built with ``num_classes=0, expand_output=False`` (the official
    detector drops the classifier and the 1 x 1 expansion conv). ``num_classes`` counts the
    background: 81 for COCO's 80 classes.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, config: SSDConfig = SSDConfig(),
                 image_size: int | tuple[int, int] = 320) -> None:
        super().__init__()
        if (getattr(backbone, "classifier", None) is not None
                or getattr(backbone, "conv_1x1_exp", None) is not None):
            raise ValueError("build the backbone with num_classes=0 and expand_output=False")
        strides = [info["stride"] for info in getattr(backbone, "feature_info", [])]
        if strides[3:5] != [16, 32]:
            raise ValueError(f"SSDLite reads the backbone's stages at output stride 16 and 32; "
                             f"this backbone's stages are at {strides}")
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        self.backbone, self.num_classes, self.config = backbone, num_classes, config
        self.image_size = to_pair(image_size, "image_size")
        ssd_feature_sizes(self.image_size, config.output_strides)  # validates the size
        c4, c5 = (info["channels"] for info in backbone.feature_info[3:5])

        extra: dict[str, nn.Module] = {}
        in_ch, map_channels = c5, [c4, c5]
        for os_, ch in zip(config.output_strides[2:], config.proj_channels[2:]):
            if os_ == -1:  # global average pool + 1 x 1 conv (no norm, no bias) + ReLU
                extra["os_global"] = nn.Sequential(
                    nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch, ch, 1, bias=False), nn.ReLU())
            else:
                extra[f"os_{os_}"] = SeparableConv(in_ch, ch, stride=2)
            map_channels.append(ch)
            in_ch = ch
        self.extra_layers = nn.ModuleDict(extra)
        self.heads = nn.ModuleList(
            SSDHead(c_in, proj, a, num_classes, kernel_size=1 if os_ == -1 else 3)
            for c_in, proj, a, os_ in zip(map_channels, config.proj_channels,
                                         config.anchors_per_location, config.output_strides)
        )
        self.anchor_generator = AnchorGenerator(config)
        _xavier_init(self.extra_layers)
        _xavier_init(self.heads)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six maps the heads look at (OS 16, 32, 64, 128, 256, global)."""
        check_image_batch(x, self.backbone.in_channels)
        ssd_feature_sizes(tuple(x.shape[-2:]), self.config.output_strides)  # large enough?
        feats = self.backbone.forward_intermediates(x)  # layer1..layer5
        maps = [feats[3], feats[4]]  # layer4 [B, C4, H/16, W/16], layer5 [B, C5, H/32, W/32]
        y = feats[4]
        for layer in self.extra_layers.values():
            y = layer(y)  # halves the map (or pools it to 1 x 1)
            maps.append(y)
        return maps

    def forward(self, x: torch.Tensor) -> SSDOutput:
        maps = self.feature_maps(x)
        locs, scores = zip(*(head(m) for head, m in zip(self.heads, maps)))
        anchors = self.anchor_generator([tuple(m.shape[-2:]) for m in maps], device=x.device)
        return SSDOutput(torch.cat(scores, 1), torch.cat(locs, 1), anchors)  # [B, N, K], [B, N, 4]

    def num_anchors(self, image_size: int | tuple[int, int] | None = None) -> int:
        sizes = ssd_feature_sizes(image_size or self.image_size, self.config.output_strides)
        return self.anchor_generator.num_anchors(sizes)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, *, settings: str | PostprocessConfig = "v0.1",
                conf_threshold: float | None = None,
                nms_iou_threshold: float | None = None) -> list[Detections]:
        """Detections per image, boxes in pixels of ``images``, not clipped to the image (as the
        official ``predict``); the model is run in eval mode. ``settings`` names the official
        post-processing (``"v0.1"``, the paper's, or ``"main"``; see :data:`~mobilevit_edu.
        detection.postprocess.POSTPROCESS`); the two thresholds override its own."""
        was_training = self.training
        self.eval()
        try:
            out = self(images)
        finally:
            self.train(was_training)
        c = self.config
        dets = postprocess(out, settings, conf_threshold=conf_threshold,
                           nms_iou_threshold=nms_iou_threshold,
                           center_variance=c.center_variance, size_variance=c.size_variance)
        h, w = images.shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=images.device)
        return [Detections(d.boxes * scale, d.scores, d.labels) for d in dets]


_NAMES = {"xxs": "xxs", "xs": "xs", "s": "s", "mobilevit_xxs": "xxs", "mobilevit_xs": "xs",
          "mobilevit_s": "s"}


def create_ssdlite(name: str = "mobilevit_xxs", num_classes: int = 81,
                   image_size: int | tuple[int, int] = 320, config: SSDConfig = SSDConfig(),
                   **backbone_overrides: Any) -> SSDLite:
    """SSDLite-MobileViT by backbone name (``"mobilevit_xxs"``/``"xxs"``, ``xs``, ``s``), or
    SSDLite on MobileNetV2 (``"mobilenetv2_100"`` and the other widths of the registry).

    ``num_classes`` includes the background (COCO: 80 + 1 = 81). ``backbone_overrides`` go to
    :class:`~mobilevit_edu.models.mobilevit.MobileViT` or its config (e.g. ``fused_attention=False``)."""
    if name.startswith("mobilenetv2_"):
        from mobilevit_edu.models.registry import create_model

        backbone = create_model(name, num_classes=0, expand_output=False, **backbone_overrides)
        return SSDLite(backbone, num_classes, config, image_size)
    key = _NAMES.get(name)
    if key is None:
        raise ValueError(f"unknown SSDLite backbone {name!r}; known: mobilevit_xxs, mobilevit_xs, "
                         "mobilevit_s (or xxs, xs, s), mobilenetv2_100 (or another width)")
    fields = {k: v for k, v in backbone_overrides.items() if hasattr(CONFIGS[key], k)}
    rest = {k: v for k, v in backbone_overrides.items() if k not in fields}
    backbone = MobileViT(config_with(CONFIGS[key], **fields), num_classes=0, expand_output=False,
                         **rest)
    return SSDLite(backbone, num_classes, config, image_size)


def _count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def ssdlite_param_table(names: Sequence[str] = ("xxs", "xs", "s"), num_classes: int = 81,
                        image_size: int = 320) -> list[dict[str, Any]]:
    """Parameters of SSDLite-MobileViT per part (Table 1): backbone, extra layers, heads, total."""
    rows = []
    for name in names:
        m = create_ssdlite(name, num_classes, image_size)
        rows.append({"model": f"MobileViT-{_NAMES[name].upper()}", "backbone": _count(m.backbone),
                     "extra": _count(m.extra_layers), "heads": _count(m.heads), "total": _count(m)})
    return rows
