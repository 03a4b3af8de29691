"""Object detection with SSDLite on a MobileViT backbone.

Paper: §4.2.1 and Table 1. MobileViT, pre-trained on ImageNet, is fine-tuned on MS-COCO inside
SSDLite, the light-weight single-shot detector of MobileNetV2: SSD whose prediction heads use
*separable* 3 x 3 convolutions instead of standard ones. Input 320 x 320; MobileViT-XS gets
24.8 mAP with 2.7 M parameters and MobileViT-S 27.7 mAP with 5.7 M (Table 1a).

Everything below follows the official code and config (apple/ml-cvnets v0.1,
``config/detection/ssd_mobilevit_*_320.yaml``, ``cvnets/models/detection/ssd.py``,
``cvnets/modules/ssd.py``, ``cvnets/misc/anchor_generator.py``; the matcher, loss and NMS
follow ``misc/third_party/ssd_utils.py`` and ``loss_fn/detection_loss_fns/ssd_multibox_loss.py``):

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
* Anchors (SSD, Liu et al. 2016): per location a small square of side ``s_k``, a larger one of
  side ``sqrt(s_k s_{k+1})``, and for every aspect ratio ``r`` two boxes ``s_k sqrt(r) x
  s_k / sqrt(r)`` and its transpose; ``s = linspace(0.1, 1.05, 7)``; aspect ratios ``{2, 3}``
  (``{2}`` on the global map), so 6, 6, 6, 6, 6 and 4 anchors per location. Clipped to [0, 1].
* Matching: every anchor takes the ground-truth box it overlaps most if the IoU is at least 0.5,
  and every ground-truth box claims its best anchor regardless of the IoU. Box offsets are
  encoded with centre / size variances 0.1 / 0.2.
* Loss: smooth-L1 on the positives' offsets plus cross-entropy on the positives and on the
  hardest negatives, three negatives per positive; both sums divided by the number of positives.
* Post-processing: softmax, confidence > 0.01, the 400 best boxes per class, per-class NMS at
  IoU 0.5, the 200 best boxes per image. mAP@[.5:.95] with the standard COCO evaluator
  (``pycocotools``) on COCO-format JSON.

Boxes are ``(x0, y0, x1, y1)`` ("corner form") everywhere in the public API unless a name says
``cxcywh``; anchors are ``(cx, cy, w, h)`` relative to the image (0..1), as in the official code.
Label 0 is the background; object classes are 1..K.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilevit_edu.data import _resize, load_rgb
from mobilevit_edu.nn.layers import ConvBNAct
from mobilevit_edu.models.mobilevit import CONFIGS, MobileViT, check_image_batch
from mobilevit_edu.train import (
    EMA, EpochBatchSampler, History, TrainConfig, build_optimizer, lr_at, optimizer_step,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "SSDConfig",
    "SeparableConv",
    "SSDHead",
    "SSDLite",
    "SSDOutput",
    "Detections",
    "create_ssdlite",
    "ssd_feature_sizes",
    "ssdlite_param_table",
    "AnchorGenerator",
    "ssd_anchors",
    "xyxy_to_cxcywh",
    "cxcywh_to_xyxy",
    "check_boxes",
    "box_iou",
    "encode_boxes",
    "decode_boxes",
    "match_anchors",
    "encode_targets",
    "hard_negative_mining",
    "ssd_loss",
    "SSDLossOutput",
    "nms",
    "batched_nms",
    "postprocess",
    "coco_ground_truth",
    "coco_detections",
    "coco_evaluate",
    "DetectionSample",
    "DetectionBatch",
    "CocoDetection",
    "ShapesDetection",
    "detection_collate",
    "hflip_boxes",
    "train_detector",
    "evaluate_detector",
    "plot_anchors",
    "plot_detections",
    "plot_detector_training",
]


# ---------------------------------------------------------------------------------------------
# 1. The configuration of the official SSDLite
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SSDConfig:
    """The SSDLite knobs; the defaults are ``ssd_mobilevit_*_320.yaml`` of apple/ml-cvnets v0.1."""

    output_strides: tuple[int, ...] = (16, 32, 64, 128, 256, -1)  # -1: the global 1 x 1 map
    proj_channels: tuple[int, ...] = (512, 256, 256, 128, 128, 64)
    aspect_ratios: tuple[tuple[int, ...], ...] = ((2, 3),) * 5 + ((2,),)
    min_scale: float = 0.1
    max_scale: float = 1.05
    clip_anchors: bool = True
    center_variance: float = 0.1
    size_variance: float = 0.2
    iou_threshold: float = 0.5  # matching
    neg_pos_ratio: int = 3  # hard-negative mining
    conf_threshold: float = 0.01  # post-processing (0.01 for COCO evaluation)
    nms_iou_threshold: float = 0.5
    pre_nms_top_k: int = 400  # best boxes per class that enter NMS
    max_detections: int = 200  # boxes kept per image after NMS

    def __post_init__(self) -> None:
        n = len(self.output_strides)
        if len(self.proj_channels) != n or len(self.aspect_ratios) != n:
            raise ValueError(
                f"output_strides ({n}), proj_channels ({len(self.proj_channels)}) and "
                f"aspect_ratios ({len(self.aspect_ratios)}) need one entry per feature map"
            )
        if tuple(self.output_strides[:2]) != (16, 32):
            raise ValueError("the first two maps are the backbone's OS 16 and 32 outputs")
        for a, b in zip(self.output_strides[2:], self.output_strides[3:]):
            if b != -1 and b != 2 * a:
                raise ValueError(f"each extra map halves the previous one; got OS {a} then {b}")

    @property
    def anchors_per_location(self) -> list[int]:
        """2 squares + 2 boxes per aspect ratio: ``[6, 6, 6, 6, 6, 4]`` for the defaults."""
        return [2 + 2 * len(ar) for ar in self.aspect_ratios]


# The smallest side for which every extra stride-2 layer halves a map larger than 1 x 1.
MIN_IMAGE_SIZE = 129


def _halve(n: int, times: int) -> int:
    """Size after ``times`` stride-2 'same'-padded 3 x 3 convs: ceil(n / 2) each time."""
    for _ in range(times):
        n = (n - 1) // 2 + 1
    return n


def ssd_feature_sizes(image_size: int | Sequence[int],
                      output_strides: Sequence[int] = SSDConfig.output_strides
                      ) -> list[tuple[int, int]]:
    """The ``(h, w)`` of the six feature maps for an input of ``image_size``.

    ``320 -> [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]``. Raises a ``ValueError`` when
    the image is too small for six distinct maps: the OS-128 map must be at least 2 x 2 so that
    the OS-256 layer still down-samples something (each side > 128 px).
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if min(h, w) < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image size {h} x {w} is too small for SSDLite's six feature maps (OS 16 ... 256 and "
            f"global): each side must be at least {MIN_IMAGE_SIZE} px so that the OS-128 map is "
            "larger than 1 x 1 (the paper uses 320 x 320)"
        )
    sizes = []
    for os_ in output_strides:
        if os_ == -1:
            sizes.append((1, 1))
        else:
            k = int(round(math.log2(os_)))
            sizes.append((_halve(h, k), _halve(w, k)))
    return sizes


# ---------------------------------------------------------------------------------------------
# 2. Boxes: formats, IoU, encoding
# ---------------------------------------------------------------------------------------------


def check_boxes(boxes: torch.Tensor, name: str = "boxes") -> None:
    """Raise a ``ValueError`` unless ``boxes`` is ``[..., 4]`` in corner form (x1 >= x0, y1 >= y0)."""
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dim() < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [..., 4] (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    if boxes.numel() and ((boxes[..., 2] < boxes[..., 0]).any() or (boxes[..., 3] < boxes[..., 1]).any()):
        raise ValueError(
            f"{name} must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0; some are not. "
            "Convert (x, y, w, h) boxes (COCO's format) with x1 = x + w, y1 = y + h first"
        )


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(x0, y0, x1, y1) -> (cx, cy, w, h)``, over the last dimension."""
    xy0, xy1 = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(xy0 + xy1) / 2, xy1 - xy0], dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(cx, cy, w, h) -> (x0, y0, x1, y1)``, over the last dimension."""
    c, wh = boxes[..., :2], boxes[..., 2:]
    return torch.cat([c - wh / 2, c + wh / 2], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Intersection over union of every box of ``a [N, 4]`` with every box of ``b [M, 4]``
    (corner form): ``[N, M]``. ``eps`` keeps empty boxes finite, as in the official code."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])  # [N, M, 2]
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # [N, M, 2]
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)  # [N, M]
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)  # [N]
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)  # [M]
    return inter / (area_a[:, None] + area_b[None, :] - inter + eps)


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor, center_variance: float = 0.1,
                 size_variance: float = 0.2) -> torch.Tensor:
    """SSD's regression targets (Liu et al. 2016, Eq. 2) for corner-form ``boxes [..., N, 4]``
    against anchors ``[N, 4]`` in ``(cx, cy, w, h)``:

        t_cx = (cx - a_cx) / (a_w * 0.1)        t_w = log(w / a_w) / 0.2
        t_cy = (cy - a_cy) / (a_h * 0.1)        t_h = log(h / a_h) / 0.2

    The variances scale the targets to about unit size, which suits the smooth-L1 loss."""
    check_boxes(boxes)
    c = xyxy_to_cxcywh(boxes)
    centre = (c[..., :2] - anchors[..., :2]) / (anchors[..., 2:] * center_variance)
    size = torch.log(c[..., 2:] / anchors[..., 2:]) / size_variance
    return torch.cat([centre, size], dim=-1)


def decode_boxes(locations: torch.Tensor, anchors: torch.Tensor, center_variance: float = 0.1,
                 size_variance: float = 0.2) -> torch.Tensor:
    """The inverse of :func:`encode_boxes`: predicted offsets ``[..., N, 4]`` -> corner boxes."""
    centre = locations[..., :2] * center_variance * anchors[..., 2:] + anchors[..., :2]
    size = torch.exp(locations[..., 2:] * size_variance) * anchors[..., 2:]
    return cxcywh_to_xyxy(torch.cat([centre, size], dim=-1))


# ---------------------------------------------------------------------------------------------
# 3. Anchors
# ---------------------------------------------------------------------------------------------


def ssd_anchors(feature_sizes: Sequence[tuple[int, int]], aspect_ratios: Sequence[Sequence[float]],
                min_scale: float = 0.1, max_scale: float = 1.05, clip: bool = True) -> torch.Tensor:
    """All anchors of all feature maps, ``[N, 4]`` in ``(cx, cy, w, h)`` relative to the image.

    Map ``k`` (of ``K``) uses the scales ``s = linspace(min_scale, max_scale, K + 1)``: a square
    of side ``s_k``, a square of side ``sqrt(s_k s_{k+1})``, and for each aspect ratio ``r`` the
    boxes ``(s_k sqrt(r), s_k / sqrt(r))`` and ``(s_k / sqrt(r), s_k sqrt(r))``. The order is
    map by map, then row by row, column by column, then anchor by anchor: the order in which
    the heads emit their predictions."""
    if len(feature_sizes) != len(aspect_ratios):
        raise ValueError("need one list of aspect ratios per feature map")
    scales = np.linspace(min_scale, max_scale, len(feature_sizes) + 1)
    out = []
    for k, ((h, w), ratios) in enumerate(zip(feature_sizes, aspect_ratios)):
        s, s_big = float(scales[k]), math.sqrt(scales[k] * scales[k + 1])
        shapes = [(s, s), (s_big, s_big)]
        for r in ratios:
            q = math.sqrt(r)
            shapes += [(s * q, s / q), (s / q, s * q)]
        wh = torch.tensor(shapes, dtype=torch.float32)  # [A, 2]
        cy, cx = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w,
                                indexing="ij")  # [h, w] each
        centres = torch.stack([cx, cy], -1).reshape(-1, 1, 2)  # [h*w, 1, 2]
        a = torch.cat([centres.expand(-1, len(shapes), 2),
                       wh[None].expand(h * w, -1, 2)], dim=-1)  # [h*w, A, 4]
        out.append(a.reshape(-1, 4))  # [h*w*A, 4]
    anchors = torch.cat(out)
    return anchors.clamp(0.0, 1.0) if clip else anchors


class AnchorGenerator:
    """SSD's anchors for a config, cached per set of feature-map sizes."""

    def __init__(self, config: SSDConfig = SSDConfig()) -> None:
        self.config = config
        self._cache: dict[tuple, torch.Tensor] = {}

    @property
    def scales(self) -> list[float]:
        """``linspace(min_scale, max_scale, maps + 1)``: 0.1, 0.2583, ..., 1.05 by default."""
        c = self.config
        return [float(v) for v in np.linspace(c.min_scale, c.max_scale, len(c.output_strides) + 1)]

    @property
    def anchors_per_location(self) -> list[int]:
        return self.config.anchors_per_location

    def num_anchors(self, feature_sizes: Sequence[tuple[int, int]]) -> int:
        return sum(h * w * a for (h, w), a in zip(feature_sizes, self.anchors_per_location))

    def __call__(self, feature_sizes: Sequence[tuple[int, int]],
                 device: torch.device | str = "cpu") -> torch.Tensor:
        key = (tuple(tuple(s) for s in feature_sizes), str(device))
        if key not in self._cache:
            c = self.config
            self._cache[key] = ssd_anchors(feature_sizes, c.aspect_ratios, c.min_scale,
                                           c.max_scale, c.clip_anchors).to(device)
        return self._cache[key]


# ---------------------------------------------------------------------------------------------
# 4. The network: extra layers and heads on the MobileViT backbone
# ---------------------------------------------------------------------------------------------


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


class Detections(NamedTuple):
    """Post-processed detections of one image: ``boxes [M, 4]`` (corner form), ``scores [M]``,
    ``labels [M]`` (1..K-1; 0 is the background)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def _xavier_init(module: nn.Module) -> None:
    """The official init of the SSD extra layers and heads: Xavier-uniform convs, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SSDLite(nn.Module):
    """SSDLite on a MobileViT backbone (paper §4.2.1).

    ``backbone`` must be a ``MobileViT`` built with ``num_classes=0, expand_output=False`` (the
    official detector drops the classifier and the 1 x 1 expansion conv). ``num_classes``
    counts the background: 81 for COCO's 80 classes.
    """

    def __init__(self, backbone: MobileViT, num_classes: int, config: SSDConfig = SSDConfig(),
                 image_size: int | tuple[int, int] = 320) -> None:
        super().__init__()
        if backbone.classifier is not None or backbone.conv_1x1_exp is not None:
            raise ValueError("build the backbone with num_classes=0 and expand_output=False")
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        self.backbone, self.num_classes, self.config = backbone, num_classes, config
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        ssd_feature_sizes(self.image_size, config.output_strides)  # validates the size
        c4, c5 = backbone.config.channels[4], backbone.config.channels[5]

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
        feats = self.backbone.forward_features(x)  # layer1..layer5
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
    def predict(self, images: torch.Tensor, *, conf_threshold: float | None = None,
                nms_iou_threshold: float | None = None) -> list[Detections]:
        """Detections per image, boxes in pixels of ``images``; the model is run in eval mode."""
        was_training = self.training
        self.eval()
        try:
            out = self(images)
        finally:
            self.train(was_training)
        c = self.config
        dets = postprocess(out, conf_threshold=c.conf_threshold if conf_threshold is None
                           else conf_threshold,
                           nms_iou_threshold=c.nms_iou_threshold if nms_iou_threshold is None
                           else nms_iou_threshold,
                           pre_nms_top_k=c.pre_nms_top_k, max_detections=c.max_detections,
                           center_variance=c.center_variance, size_variance=c.size_variance)
        h, w = images.shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=images.device)
        return [Detections(d.boxes * scale, d.scores, d.labels) for d in dets]


_NAMES = {"xxs": "xxs", "xs": "xs", "s": "s", "mobilevit_xxs": "xxs", "mobilevit_xs": "xs",
          "mobilevit_s": "s"}


def create_ssdlite(name: str = "mobilevit_xxs", num_classes: int = 81,
                   image_size: int | tuple[int, int] = 320, config: SSDConfig = SSDConfig(),
                   **backbone_overrides: Any) -> SSDLite:
    """SSDLite-MobileViT by backbone name (``"mobilevit_xxs"``/``"xxs"``, ``xs``, ``s``).

    ``num_classes`` includes the background (COCO: 80 + 1 = 81). ``backbone_overrides`` go to
    :class:`~mobilevit_edu.models.mobilevit.MobileViT` or its config (e.g. ``fused_attention=False``)."""
    key = _NAMES.get(name)
    if key is None:
        raise ValueError(f"unknown SSDLite backbone {name!r}; known: mobilevit_xxs, mobilevit_xs, "
                         "mobilevit_s (or xxs, xs, s)")
    from mobilevit_edu.models.mobilevit import config_with

    fields = {k: v for k, v in backbone_overrides.items() if hasattr(CONFIGS[key], k)}
    rest = {k: v for k, v in backbone_overrides.items() if k not in fields}
    backbone = MobileViT(config_with(CONFIGS[key], **fields), num_classes=0, expand_output=False,
                         **rest)
    return SSDLite(backbone, num_classes, config, image_size)


def _count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def ssdlite_param_table(names: Sequence[str] = ("xxs", "xs", "s"), num_classes: int = 81,
                        image_size: int = 320) -> list[dict[str, Any]]:
    """Parameters of SSDLite-MobileViT per part: backbone, extra layers, heads, total."""
    rows = []
    for name in names:
        m = create_ssdlite(name, num_classes, image_size)
        rows.append({"model": f"MobileViT-{_NAMES[name].upper()}", "backbone": _count(m.backbone),
                     "extra": _count(m.extra_layers), "heads": _count(m.heads), "total": _count(m)})
    return rows


# ---------------------------------------------------------------------------------------------
# 5. Matching and the loss
# ---------------------------------------------------------------------------------------------


def match_anchors(gt_boxes: torch.Tensor, gt_labels: torch.Tensor, anchors: torch.Tensor,
                  iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign one ground-truth box (or the background) to every anchor.

    ``gt_boxes [K, 4]`` corner form, relative to the image; ``gt_labels [K]`` in 1..; anchors
    ``[N, 4]`` (cx, cy, w, h). Every anchor takes the box it overlaps most; every box then claims
    its own best anchor (so no object is left without one, even at low IoU); anchors whose IoU
    stays below ``iou_threshold`` become background (label 0). Returns the matched boxes
    ``[N, 4]`` (the anchor itself for background anchors, so their offsets are 0) and labels
    ``[N]``."""
    check_boxes(gt_boxes, "gt_boxes")
    anchors_xyxy = cxcywh_to_xyxy(anchors)
    if gt_boxes.shape[0] == 0:
        return anchors_xyxy.clone(), torch.zeros(anchors.shape[0], dtype=torch.long,
                                                 device=anchors.device)
    iou = box_iou(anchors_xyxy, gt_boxes)  # [N, K]
    best_iou, best_gt = iou.max(dim=1)  # per anchor: [N], [N]
    best_anchor = iou.argmax(dim=0)  # per ground-truth box: [K]
    best_gt[best_anchor] = torch.arange(gt_boxes.shape[0], device=gt_boxes.device)
    best_iou[best_anchor] = 2.0  # above any threshold
    labels = gt_labels[best_gt].clone()
    labels[best_iou < iou_threshold] = 0
    boxes = gt_boxes[best_gt].clone()
    background = labels == 0
    boxes[background] = anchors_xyxy[background]
    return boxes, labels


def encode_targets(gt_boxes: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor],
                   anchors: torch.Tensor, config: SSDConfig = SSDConfig()
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Match and encode a batch: per image ``gt_boxes [K_i, 4]`` (relative corner form) and
    ``gt_labels [K_i]`` -> regression targets ``[B, N, 4]`` and anchor labels ``[B, N]``."""
    locs, labels = [], []
    for boxes, lab in zip(gt_boxes, gt_labels):
        matched, lab_n = match_anchors(boxes.to(anchors), lab.to(anchors.device), anchors,
                                       config.iou_threshold)
        locs.append(encode_boxes(matched, anchors, config.center_variance, config.size_variance))
        labels.append(lab_n)
    return torch.stack(locs), torch.stack(labels)


def hard_negative_mining(loss: torch.Tensor, labels: torch.Tensor, neg_pos_ratio: int = 3
                         ) -> torch.Tensor:
    """The anchors the classification loss sees: every positive, plus per image the
    ``neg_pos_ratio x (its positives)`` negatives with the highest background loss.

    ``loss [B, N]`` (e.g. ``-log p(background)``), ``labels [B, N]`` -> mask ``[B, N]``. An image
    without positives contributes no negatives (as in the official code)."""
    pos = labels > 0
    num_neg = pos.sum(dim=1, keepdim=True) * neg_pos_ratio  # [B, 1]
    loss = loss.masked_fill(pos, -math.inf)  # positives sort last
    order = loss.argsort(dim=1, descending=True)  # [B, N]: anchor indices, hardest first
    rank = order.argsort(dim=1)  # [B, N]: each anchor's place in that order
    return pos | (rank < num_neg)


class SSDLossOutput(NamedTuple):
    total: torch.Tensor
    loc: torch.Tensor
    cls: torch.Tensor
    num_pos: int


def ssd_loss(scores: torch.Tensor, locations: torch.Tensor, gt_labels: torch.Tensor,
             gt_locations: torch.Tensor, neg_pos_ratio: int = 3) -> SSDLossOutput:
    """SSD's multibox loss: (smooth-L1 over the positives' offsets + cross-entropy over the
    positives and the mined negatives) / number of positives.

    ``scores [B, N, K]`` logits, ``locations [B, N, 4]``, ``gt_labels [B, N]``,
    ``gt_locations [B, N, 4]`` (from :func:`encode_targets`)."""
    k = scores.shape[-1]
    pos = gt_labels > 0
    num_pos = int(pos.sum())
    loc = F.smooth_l1_loss(locations[pos], gt_locations[pos], reduction="sum")  # [P, 4] pairs
    with torch.no_grad():
        background_loss = -F.log_softmax(scores, dim=2)[:, :, 0]  # [B, N]
        mask = hard_negative_mining(background_loss, gt_labels, neg_pos_ratio)
    cls = F.cross_entropy(scores[mask].reshape(-1, k), gt_labels[mask], reduction="sum")
    n = max(1, num_pos)
    return SSDLossOutput((loc + cls) / n, loc / n, cls / n, num_pos)


# ---------------------------------------------------------------------------------------------
# 6. Post-processing: NMS in plain torch
# ---------------------------------------------------------------------------------------------


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5,
        top_k: int | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, highest score first.

    Take the best-scoring box, drop every remaining box whose IoU with it exceeds
    ``iou_threshold``, repeat; stop after ``top_k`` kept boxes if given. The IoUs of all pairs
    are computed at once (``[M, M]``, in blocks of 1024 rows); only the greedy walk through the
    sorted boxes is a Python loop."""
    check_boxes(boxes)
    order = scores.argsort(descending=True)
    b = boxes[order]  # sorted, best first
    m = b.shape[0]
    over = torch.cat([box_iou(b[i : i + 1024], b) > iou_threshold for i in range(0, m, 1024)]
                     ) if m else torch.zeros(0, 0, dtype=torch.bool)  # [M, M]
    over_np = over.cpu().numpy()
    suppressed = np.zeros(m, dtype=bool)
    keep: list[int] = []
    for i in range(m):
        if suppressed[i]:
            continue
        keep.append(i)
        if top_k is not None and len(keep) >= top_k:
            break
        suppressed |= over_np[i]  # everything box i overlaps too much (itself included)
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                iou_threshold: float = 0.5) -> torch.Tensor:
    """NMS within each label separately (boxes of different labels never suppress each other);
    the kept indices of all labels, sorted by score."""
    keep = [idx[nms(boxes[idx], scores[idx], iou_threshold)]
            for idx in (torch.nonzero(labels == c).flatten() for c in labels.unique())]
    if not keep:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    keep_t = torch.cat(keep)
    return keep_t[scores[keep_t].argsort(descending=True)]


def postprocess(output: SSDOutput, conf_threshold: float = 0.01, nms_iou_threshold: float = 0.5,
                pre_nms_top_k: int = 400, max_detections: int = 200,
                center_variance: float = 0.1, size_variance: float = 0.2) -> list[Detections]:
    """Network output -> detections per image (boxes relative to the image, clipped to [0, 1]).

    As the official ``postprocess_detections``: softmax over the classes; decode the boxes; for
    each object class keep the anchors whose probability exceeds ``conf_threshold``, at most the
    ``pre_nms_top_k`` best; NMS per class; then the ``max_detections`` best boxes of the image.
    (cvnets v0.1 capped each class at 200 boxes after NMS instead; COCO's evaluator reads at
    most 100 boxes per image either way.)"""
    probs = output.scores.softmax(dim=-1)  # [B, N, K]
    boxes = decode_boxes(output.locations, output.anchors, center_variance,
                         size_variance).clamp(0, 1)  # [B, N, 4]
    results = []
    for b in range(probs.shape[0]):
        cand_boxes, cand_scores, cand_labels = [], [], []
        for k in range(1, probs.shape[-1]):  # class 0 is the background
            p = probs[b, :, k]  # [N]
            idx = torch.nonzero(p > conf_threshold).flatten()
            if idx.numel() > pre_nms_top_k:
                idx = idx[p[idx].topk(pre_nms_top_k).indices]
            cand_boxes.append(boxes[b, idx])
            cand_scores.append(p[idx])
            cand_labels.append(torch.full_like(idx, k))
        cb, cs, cl = torch.cat(cand_boxes), torch.cat(cand_scores), torch.cat(cand_labels)
        keep = batched_nms(cb, cs, cl, nms_iou_threshold)[:max_detections]
        results.append(Detections(cb[keep], cs[keep], cl[keep]))
    return results


# ---------------------------------------------------------------------------------------------
# 7. COCO-format JSON and the COCO evaluator
# ---------------------------------------------------------------------------------------------


def _xywh(box: Sequence[float]) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def coco_ground_truth(samples: Iterable[DetectionSample], categories: Sequence[str],
                      category_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """A COCO ``instances`` dict (images, annotations, categories) from detection samples.

    Label ``l`` (1..K) maps to ``category_ids[l - 1]`` (default: ``l``). Boxes are written as
    COCO's ``[x, y, w, h]``; ``area`` is the box area; annotation ids start at 1 (COCOeval
    treats an id of 0 as "unmatched")."""
    cat_ids = list(category_ids) if category_ids is not None else list(range(1, len(categories) + 1))
    images, anns = [], []
    for s in samples:
        h, w = s.image.shape[-2:]
        images.append({"id": int(s.image_id), "width": int(w), "height": int(h)})
        for box, label in zip(s.boxes.tolist(), s.labels.tolist()):
            bbox = _xywh(box)
            anns.append({"id": len(anns) + 1, "image_id": int(s.image_id),
                         "category_id": cat_ids[int(label) - 1], "bbox": bbox,
                         "area": bbox[2] * bbox[3], "iscrowd": 0})
    cats = [{"id": i, "name": n} for i, n in zip(cat_ids, categories)]
    return {"images": images, "annotations": anns, "categories": cats}


def coco_detections(detections: Sequence[Detections], image_ids: Sequence[int],
                    category_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """COCO's results format: one ``{image_id, category_id, bbox [x, y, w, h], score}`` per box
    (boxes in pixels)."""
    out = []
    for det, img_id in zip(detections, image_ids):
        for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
            cat = category_ids[int(label) - 1] if category_ids is not None else int(label)
            out.append({"image_id": int(img_id), "category_id": int(cat), "bbox": _xywh(box),
                        "score": float(score)})
    return out


COCO_STAT_NAMES = ("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                   "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


def coco_evaluate(ground_truth: Mapping[str, Any] | str | Path,
                  detections: Sequence[Mapping[str, Any]] | str | Path,
                  *, verbose: bool = False) -> dict[str, Any]:
    """mAP@[.5:.95], AP50, AP75, ... with the standard COCO evaluator (``pycocotools``).

    ``ground_truth``: a COCO ``instances`` dict or the path of its JSON file; ``detections``: a
    list in COCO's results format or the path of its JSON file. Returns the twelve numbers of
    ``COCOeval.summarize()`` by name (``"mAP"``, ``"AP50"``, ``"AP75"``, ...) and as ``"stats"``.
    With no detections at all every AP is 0. ``verbose=True`` shows pycocotools' printout."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(ground_truth, (str, Path)):
        ground_truth = json.loads(Path(ground_truth).read_text())
    if isinstance(detections, (str, Path)):
        detections = json.loads(Path(detections).read_text())
    for key in ("images", "annotations", "categories"):
        if key not in ground_truth:
            raise ValueError(f"ground truth has no {key!r}: not a COCO instances dict")
    detections = list(detections)
    if not detections:
        stats = [0.0] * 12
        return {**dict(zip(COCO_STAT_NAMES, stats)), "stats": stats}
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        gt = COCO()
        gt.dataset = json.loads(json.dumps(ground_truth))  # a private copy pycocotools may edit
        gt.createIndex()
        dt = gt.loadRes(json.loads(json.dumps(detections)))
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(v) for v in ev.stats]
    return {**dict(zip(COCO_STAT_NAMES, stats)), "stats": stats}


# ---------------------------------------------------------------------------------------------
# 8. Data: samples, COCO detection JSON, the book's shapes, collate
# ---------------------------------------------------------------------------------------------


class DetectionSample(NamedTuple):
    """One image and its objects: ``image [3, H, W]`` in [0, 1], ``boxes [K, 4]`` corner form in
    pixels, ``labels [K]`` in 1..K (0 is the background), and an integer ``image_id``."""

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    image_id: int


class DetectionBatch(NamedTuple):
    """A batch: ``images [B, 3, H, W]`` and per image its boxes, labels and id."""

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    image_ids: list[int]


def detection_collate(samples: Sequence[DetectionSample]) -> DetectionBatch:
    """Stack the images (all of one size) and keep the per-image boxes and labels as lists."""
    sizes = {tuple(s.image.shape) for s in samples}
    if len(sizes) != 1:
        raise ValueError(f"images of one batch must share a size, got {sorted(sizes)}; "
                         "give the data set an image_size")
    return DetectionBatch(torch.stack([s.image for s in samples]), [s.boxes for s in samples],
                          [s.labels for s in samples], [int(s.image_id) for s in samples])


def hflip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """Corner boxes of an image of ``width`` after a horizontal flip."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([width - x1, y0, width - x0, y1], dim=-1)


class CocoDetection(Dataset):
    """A COCO detection set: ``instances_*.json`` plus a folder of images (read with PIL).

    ``ds[i]`` is a :class:`DetectionSample`; with ``image_size`` every image is resized to it
    (SSD's square resize, boxes scaled along). COCO category ids (1..90 with gaps) map to
    contiguous labels 1..K in increasing id order; ``ds.categories`` names them and
    ``ds.category_ids[label - 1]`` maps back. Crowd annotations are skipped, as in training."""

    def __init__(self, image_dir: str | Path, annotation_file: str | Path,
                 image_size: int | tuple[int, int] | None = None, skip_crowd: bool = True) -> None:
        self.image_dir, path = Path(image_dir), Path(annotation_file)
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {path}")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"COCO image folder not found: {self.image_dir}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object with images/annotations/categories")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"{path}: no {key!r} list; is this a COCO instances_*.json?")
        self.image_size = ((image_size, image_size) if isinstance(image_size, int) else
                           tuple(image_size) if image_size is not None else None)
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids: list[int] = [int(c["id"]) for c in cats]
        self.categories: list[str] = [str(c.get("name", c["id"])) for c in cats]
        label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.images = [img for img in data["images"]]
        for img in self.images:
            if not {"id", "file_name"} <= set(img):
                raise ValueError(f"{path}: image entry without 'id' or 'file_name': {img}")
        index = {int(img["id"]): i for i, img in enumerate(self.images)}
        self._objects: list[list[tuple[list[float], int]]] = [[] for _ in self.images]
        for ann in data["annotations"]:
            if skip_crowd and ann.get("iscrowd", 0):
                continue
            img_id, cat = int(ann.get("image_id", -1)), int(ann.get("category_id", -1))
            if img_id not in index:
                raise ValueError(f"{path}: annotation {ann.get('id')} refers to unknown image {img_id}")
            if cat not in label_of:
                raise ValueError(f"{path}: annotation {ann.get('id')} has unknown category {cat}")
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4):
                raise ValueError(f"{path}: annotation {ann.get('id')} needs bbox [x, y, w, h], got {bbox}")
            x, y, w, h = (float(v) for v in bbox)
            if w < 0 or h < 0:
                raise ValueError(f"{path}: annotation {ann.get('id')} has a negative box size {bbox}")
            if w > 0 and h > 0:  # COCO has a few degenerate boxes; they cannot be matched
                self._objects[index[img_id]].append(([x, y, x + w, y + h], label_of[cat]))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> DetectionSample:
        info = self.images[i]
        file = self.image_dir / info["file_name"]
        if not file.is_file():
            raise FileNotFoundError(f"image {info['file_name']!r} (id {info['id']}) not found in "
                                    f"{self.image_dir}")
        image = load_rgb(file)  # [3, H0, W0]
        h0, w0 = image.shape[-2:]
        if self.image_size is not None:
            image = _resize(image, self.image_size).clamp(0, 1)  # [3, H0, W0] -> [3, h, w]
        objs = self._objects[i]
        boxes = torch.tensor([b for b, _ in objs], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([lab for _, lab in objs], dtype=torch.long)
        if self.image_size is not None:
            h, w = self.image_size
            boxes = boxes * torch.tensor([w / w0, h / h0, w / w0, h / h0])
        return DetectionSample(image, boxes, labels, int(info["id"]))


class ShapesDetection(Dataset):
    """The book's rendered shapes as a detection set: every visible object of a scene (the large
    shape and its small distractors) is a box, labelled with its shape (1..5; 0 is the
    background).

    ``ShapesDetection(size, image_size=160, seed=0)``; scenes come from
    ``ShapesDataset(task="shape")``, so the same seed gives the same scenes. The distractors are
    drawn *under* the large shape, and some end up hidden by it; an object of which less than
    ``min_visible`` of its pixels can be seen gets no box (nobody could detect it)."""

    def __init__(self, size: int, image_size: int = 160, seed: int = 0, min_visible: float = 0.5,
                 cache: bool = True) -> None:
        from mobilevit_edu.data import SHAPES, ShapesDataset

        self.shapes = ShapesDataset(size, task="shape", image_size=image_size, seed=seed)
        self.image_size = (image_size, image_size)
        self.min_visible = min_visible
        self.categories: list[str] = list(SHAPES)
        self.category_ids: list[int] = list(range(1, len(SHAPES) + 1))
        self._cache: dict[int, DetectionSample] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.shapes)

    def visible_fraction(self, i: int) -> list[float]:
        """Per object of scene ``i``: the fraction of its pixels not covered by later objects."""
        import dataclasses

        from mobilevit_edu.data import render_scene

        scene, (h, w) = self.shapes.scene(i), self.image_size
        out = []
        for k, obj in enumerate(scene.objects):
            if k == len(scene.objects) - 1:  # nothing is drawn over the last object
                out.append(1.0)
                continue
            own = render_scene(dataclasses.replace(scene, objects=(obj,)), h, w).mask > 0
            above = render_scene(dataclasses.replace(scene, objects=scene.objects[k + 1 :]),
                                 h, w).mask > 0
            out.append(float((own & ~above).sum()) / max(1, int(own.sum())))
        return out

    def __getitem__(self, i: int) -> DetectionSample:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        s = self.shapes.render(i, *self.image_size)
        keep = torch.tensor([v >= self.min_visible for v in self.visible_fraction(i)])
        sample = DetectionSample(s.image, s.boxes[keep], s.box_labels[keep] + 1, int(i))
        if self._cache is not None:
            self._cache[i] = sample
        return sample


# ---------------------------------------------------------------------------------------------
# 9. Training and evaluation
# ---------------------------------------------------------------------------------------------


def train_detector(model: SSDLite, dataset: Dataset, config: TrainConfig, *,
                   val_data: Dataset | None = None, hflip: bool = True,
                   device: str | torch.device | None = None) -> History:
    """Train an SSDLite with the official detection recipe, scaled by ``config``.

    The recipe (``ssd_mobilevit_*_320.yaml``) is the classification one of chapter 10 with other
    numbers: AdamW (weight decay 0.01 on every parameter), a linear warm-up per iteration from
    ``config.warmup_lr`` to ``config.lr`` (official: 0.00009 -> 0.0009 over 500 iterations),
    then a cosine per epoch down to ``config.min_lr`` (official: 1e-6), EMA if
    ``config.ema_momentum``; the loss is :func:`ssd_loss`. Augmentation: a random horizontal
    flip. The run is a function of ``config.seed`` (data order, flips, dropout). Returns a
    ``History`` with one row per epoch (``loss``, ``loc_loss``, ``cls_loss``,
    ``lr``, ``seconds``, ``iteration``; with ``val_data`` also the COCO ``mAP``, ``AP50`` and
    ``AP75`` of the model after the epoch) and the per-step losses as ``history.steps``;
    ``history.ema`` is the EMA model (or ``None``)."""
    dev = torch.device(device or config.device or "cpu")
    torch.manual_seed(config.seed)  # dropout masks: the same run whatever ran before
    model.to(dev).train()
    sampler = EpochBatchSampler(len(dataset), config.batch_size, seed=config.seed)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=detection_collate,
                        num_workers=config.workers,
                        generator=torch.Generator().manual_seed(config.seed))
    optimizer = build_optimizer(model, config)
    ema = EMA(model, config.ema_momentum) if config.ema_momentum else None
    flips = torch.Generator().manual_seed(config.seed)
    history, steps, iteration = History(), [], 0
    show_bar = config.progress if config.progress is not None else sys.stderr.isatty()
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        sums, t0, n = torch.zeros(3, dtype=torch.float64), time.perf_counter(), 0
        batches: Iterable = loader
        if show_bar:
            from tqdm.auto import tqdm

            batches = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        for batch in batches:
            images, boxes = batch.images.to(dev), list(batch.boxes)
            h, w = images.shape[-2:]
            if hflip:
                flip = torch.rand(len(boxes), generator=flips) < 0.5
                images = torch.where(flip[:, None, None, None].to(dev), images.flip(-1), images)
                boxes = [hflip_boxes(b, w) if f else b for b, f in zip(boxes, flip.tolist())]
            scale = torch.tensor([w, h, w, h], dtype=torch.float32)
            lr = lr_at(config, iteration, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            out = model(images)
            gt_locs, gt_labels = encode_targets([b / scale for b in boxes], batch.labels,
                                                out.anchors, model.config)
            loss = ssd_loss(out.scores, out.locations, gt_labels, gt_locs,
                            model.config.neg_pos_ratio)
            optimizer_step(loss.total, model, optimizer, config, ema)
            iteration += 1
            n += 1
            vals = [loss.total.item(), loss.loc.item(), loss.cls.item()]
            sums += torch.tensor(vals, dtype=torch.float64)
            steps.append({"iteration": iteration, "loss": vals[0], "loc_loss": vals[1],
                          "cls_loss": vals[2], "lr": lr})
            if show_bar:
                batches.set_postfix(loss=f"{vals[0]:.3f}", lr=f"{lr:.2e}")
        row = {"epoch": epoch + 1, "loss": sums[0].item() / max(n, 1),
               "loc_loss": sums[1].item() / max(n, 1), "cls_loss": sums[2].item() / max(n, 1),
               "lr": lr_at(config, max(iteration - 1, 0), epoch),
               "seconds": time.perf_counter() - t0, "updates": n, "iteration": iteration}
        if val_data is not None:
            m = evaluate_detector(model, val_data, batch_size=config.val_batch_size, device=dev)
            row.update(mAP=m["mAP"], AP50=m["AP50"], AP75=m["AP75"])
            model.train()
        history.append(row)
        if config.verbose:
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row.items()), flush=True)
    history.steps = steps
    history.ema = ema.module if ema is not None else None
    return history


@torch.no_grad()
def evaluate_detector(model: SSDLite, dataset: Dataset, *, batch_size: int = 16,
                      conf_threshold: float | None = None, device: str | torch.device | None = None,
                      return_detections: bool = False) -> dict[str, Any]:
    """COCO mAP of ``model`` on ``dataset`` (samples as :class:`DetectionSample`).

    Ground truth and detections are both converted to COCO JSON (boxes in the pixels of the
    images the model sees) and scored by :func:`coco_evaluate`. The data set's
    ``categories``/``category_ids`` name the classes. With ``return_detections`` the result
    also holds ``"detections"`` (one :class:`Detections` per image)."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=detection_collate,
                        generator=torch.Generator())  # leaves the global random state alone
    dets: list[Detections] = []
    ids: list[int] = []
    for batch in loader:
        dets += [Detections(*(t.cpu() for t in d))
                 for d in model.predict(batch.images.to(dev), conf_threshold=conf_threshold)]
        ids += batch.image_ids
    cats = getattr(dataset, "categories", None) or [str(i) for i in range(1, model.num_classes)]
    cat_ids = getattr(dataset, "category_ids", None)
    gt = coco_ground_truth((dataset[i] for i in range(len(dataset))), cats, cat_ids)
    result = coco_evaluate(gt, coco_detections(dets, ids, cat_ids))
    if return_detections:
        result["detections"] = dets
    return result


# ---------------------------------------------------------------------------------------------
# 10. Figures (chapter 12)
# ---------------------------------------------------------------------------------------------

_OS_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]


def _show(ax, image: torch.Tensor) -> None:
    ax.imshow(image.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy())  # [3, H, W] -> [H, W, 3]
    ax.set_xticks([])
    ax.set_yticks([])


def plot_anchors(image: torch.Tensor, gt_boxes: torch.Tensor, config: SSDConfig = SSDConfig(),
                 *, name: str = "12_anchors") -> "Figure":
    """SSD's anchors on an image of the book's data set.

    Six small panels, one per feature map: the map's cell centres (dots) and the anchors of the
    cell nearest the image centre. One large panel: the ground-truth boxes (white, dashed) and
    the anchors that :func:`match_anchors` makes positive for them (IoU >= threshold, plus each
    box's best), coloured by their map. ``image [3, H, W]``, ``gt_boxes [K, 4]`` in pixels.
    Saved as ``figures/<name>.png``."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from mobilevit_edu.plots.save import save_figure

    check_boxes(gt_boxes, "gt_boxes")
    h, w = image.shape[-2:]
    sizes = ssd_feature_sizes((h, w), config.output_strides)
    gen = AnchorGenerator(config)
    anchors = gen(sizes)
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    per_map = [fh * fw * a for (fh, fw), a in zip(sizes, gen.anchors_per_location)]
    starts = np.concatenate([[0], np.cumsum(per_map)])

    fig = plt.figure(figsize=(12.0, 5.4))
    grid = fig.add_gridspec(2, 5, width_ratios=[1, 1, 1, 0.15, 2.05], wspace=0.08, hspace=0.3)

    def frame(ax) -> None:
        _show(ax, image)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)

    def rect(ax, box, **kw) -> None:
        ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, **kw))

    for k, ((fh, fw), a, os_) in enumerate(zip(sizes, gen.anchors_per_location,
                                              config.output_strides)):
        ax = fig.add_subplot(grid[k // 3, k % 3])
        frame(ax)
        colour = _OS_COLOURS[k % len(_OS_COLOURS)]
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) / fh * h, (np.arange(fw) + 0.5) / fw * w,
                             indexing="ij")
        ax.scatter(cx.ravel() - 0.5, cy.ravel() - 0.5, s=3 if fh * fw > 50 else 8, color="white",
                   alpha=0.7, linewidths=0)
        r, c = (fh - 1) // 2, (fw - 1) // 2  # the cell at (or just before) the centre
        first = int(starts[k]) + (r * fw + c) * a
        for box in (cxcywh_to_xyxy(anchors[first : first + a]) * scale).tolist():
            rect(ax, box, edgecolor=colour, linewidth=1.4)
        label = "global" if os_ == -1 else f"OS {os_}"
        ax.set_title(f"{label}: {fh} x {fw} map\n{a} anchors per cell", fontsize=9, color=colour)

    ax = fig.add_subplot(grid[:, 4])
    frame(ax)
    matched, labels = match_anchors(gt_boxes / scale, torch.ones(len(gt_boxes), dtype=torch.long),
                                    anchors, config.iou_threshold)
    pos = torch.nonzero(labels > 0).flatten().tolist()
    for idx in pos:
        k = int(np.searchsorted(starts, idx, side="right")) - 1  # which map the anchor is on
        rect(ax, (cxcywh_to_xyxy(anchors[idx]) * scale).tolist(),
             edgecolor=_OS_COLOURS[k % len(_OS_COLOURS)], linewidth=1.2)
    for box in gt_boxes.tolist():
        rect(ax, box, edgecolor="white", linestyle="--", linewidth=2.0)
    ax.set_title(f"{len(pos)} positive anchors for {len(gt_boxes)} objects\n"
                 f"(IoU >= {config.iou_threshold}, or an object's best; {len(anchors):,} anchors "
                 "in all)", fontsize=9.5)
    save_figure(fig, name)
    return fig


def plot_detections(images: Sequence[torch.Tensor], detections: Sequence[Detections],
                    targets: Sequence[DetectionSample] | None = None,
                    categories: Sequence[str] | None = None, *, score_threshold: float = 0.3,
                    max_per_image: int | None = None, titles: Sequence[str] | None = None,
                    name: str = "12_predictions") -> "Figure":
    """Predicted boxes (solid, coloured by class, with label and score) over images, and the
    ground truth (white, dashed) if ``targets`` are given. Only boxes scoring at least
    ``score_threshold`` are drawn, at most the ``max_per_image`` best of each image.
    Saved as ``figures/<name>.png``."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from mobilevit_edu.plots.save import save_figure

    n = len(images)
    if n == 0 or len(detections) != n:
        raise ValueError("need one Detections per image (and at least one image)")
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.15 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for i, (ax, image, det) in enumerate(zip(axes.flat, images, detections)):
        _show(ax, image)
        if targets is not None:
            for box in targets[i].boxes.tolist():
                ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1],
                                       fill=False, edgecolor="white", linestyle="--", linewidth=1.2))
        shown = 0
        order = det.scores.argsort(descending=True).tolist()
        for j in order:
            box, score, label = det.boxes[j].tolist(), float(det.scores[j]), int(det.labels[j])
            if score < score_threshold or (max_per_image is not None and shown >= max_per_image):
                break
            colour = _OS_COLOURS[(int(label) - 1) % len(_OS_COLOURS)]
            ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1],
                                   fill=False, edgecolor=colour, linewidth=2.0))
            text = categories[int(label) - 1] if categories else str(int(label))
            above = shown % 2 == 0  # alternate above / below the box so labels do not collide
            ax.text(box[0], box[1] if above else box[3], f"{text} {score:.2f}", color="white",
                    fontsize=7, va="bottom" if above else "top",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.0})
            shown += 1
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_detector_training(history: History, evals: Mapping[str, Mapping[int, float]] | None = None,
                           *, name: str = "12_training") -> "Figure":
    """Left: the SSD loss per step (total, smooth-L1 and cross-entropy parts, smoothed).
    Right (if ``evals``): COCO AP against optimizer steps, ``{"mAP": {step: value}, ...}``.
    Saved as ``figures/<name>.png``."""
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    steps = getattr(history, "steps", None)
    if not steps:
        raise ValueError("history has no per-step losses (train it with train_detector)")
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(10.5 if evals else 5.5, 3.6),
                             squeeze=False)
    ax = axes[0][0]
    it = np.array([s["iteration"] for s in steps])
    win = max(1, len(steps) // 25)
    for key, label in (("loss", "total"), ("loc_loss", "box (smooth-L1)"),
                       ("cls_loss", "class (cross-entropy)")):
        v = np.array([s[key] for s in steps])
        smooth = np.convolve(v, np.ones(win) / win, mode="valid")
        line, = ax.plot(it, v, alpha=0.2)
        ax.plot(it[win - 1 :], smooth, color=line.get_color(), label=label)
    ax.set(xlabel="optimizer step", ylabel="loss per positive anchor", title="SSD loss")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    if evals:
        ax = axes[0][1]
        for key, points in evals.items():
            xs = sorted(points)
            ax.plot(xs, [100 * points[x] for x in xs], marker="o", label=key)
        ax.set(xlabel="optimizer step", ylabel="AP (%)", title="validation AP (pycocotools)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, name)
    return fig
