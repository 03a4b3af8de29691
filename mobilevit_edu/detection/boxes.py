"""Boxes for SSD (paper §4.2.1): formats, IoU, SSD's offset encoding, the horizontal flip.

Boxes are ``(x0, y0, x1, y1)`` ("corner form") everywhere in the public API unless a name says
``cxcywh``; anchors are ``(cx, cy, w, h)`` relative to the image (0..1), as in the official code
(apple/ml-cvnets v0.1, ``misc/third_party/ssd_utils.py``). Box offsets are encoded against the
anchors with centre / size variances 0.1 / 0.2 (SSD, Liu et al. 2016, Eq. 2).
"""

from __future__ import annotations

import torch

__all__ = [
    "check_boxes",
    "xyxy_to_cxcywh",
    "cxcywh_to_xyxy",
    "box_iou",
    "encode_boxes",
    "decode_boxes",
    "hflip_boxes",
]


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


def hflip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """Corner boxes of an image of ``width`` after a horizontal flip."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([width - x1, y0, width - x0, y1], dim=-1)
