"""Matching anchors to objects (paper §4.2.1; SSD, Liu et al. 2016).

As the official matcher (apple/ml-cvnets v0.1, ``misc/third_party/ssd_utils.py``): every anchor
takes the ground-truth box it overlaps most if the IoU is at least 0.5, and every ground-truth box
claims its best anchor regardless of the IoU. The matched boxes are then encoded as SSD offsets
(:func:`~mobilevit_edu.detection.boxes.encode_boxes`): the regression targets of the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mobilevit_edu.detection.boxes import box_iou, check_boxes, cxcywh_to_xyxy, encode_boxes
from mobilevit_edu.detection.config import SSDConfig

__all__ = ["match_anchors", "encode_targets"]


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
