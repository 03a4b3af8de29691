"""From SSD's raw output to detections: decoding, thresholds and NMS in plain torch (paper §4.2.1).

As the official ``postprocess_detections`` (apple/ml-cvnets v0.1, ``cvnets/models/detection/
ssd.py``): softmax, confidence > 0.01, the 400 best boxes per class, per-class NMS at IoU 0.5,
the 200 best boxes per image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from mobilevit_edu.detection.boxes import box_iou, check_boxes, decode_boxes

if TYPE_CHECKING:
    from mobilevit_edu.detection.ssdlite import SSDOutput

__all__ = ["Detections", "nms", "batched_nms", "postprocess"]


class Detections(NamedTuple):
    """Post-processed detections of one image: ``boxes [M, 4]`` (corner form), ``scores [M]``,
    ``labels [M]`` (1..K-1; 0 is the background)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


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
            for idx in (torch.nonzero(labels == c).flatten()  # [M_c, 1] -> [M_c]
                        for c in labels.unique())]
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
            idx = torch.nonzero(p > conf_threshold).flatten()  # [N_k, 1] -> [N_k]
            if idx.numel() > pre_nms_top_k:
                idx = idx[p[idx].topk(pre_nms_top_k).indices]
            cand_boxes.append(boxes[b, idx])
            cand_scores.append(p[idx])
            cand_labels.append(torch.full_like(idx, k))
        cb, cs, cl = torch.cat(cand_boxes), torch.cat(cand_scores), torch.cat(cand_labels)
        keep = batched_nms(cb, cs, cl, nms_iou_threshold)[:max_detections]
        results.append(Detections(cb[keep], cs[keep], cl[keep]))
    return results
