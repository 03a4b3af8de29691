"""From SSD's raw output to detections: decoding, thresholds and NMS in plain torch (paper §4.2.1).

The official code changed its post-processing between the release that goes with the paper and
today's ``main``; both are here, named after their source (:data:`POSTPROCESS`), and the default
is the paper's, ``"v0.1"``. Every number below was read in apple/ml-cvnets:

``"v0.1"`` (tag cvnets-v0.1, ``cvnets/models/detection/ssd.py``, ``SingleShotDetector.predict``
and ``nms``): softmax; per object class the anchors with probability ``> conf_threshold``; NMS
(``torchvision.ops.nms``) at ``nms_iou_threshold``; the first ``top_k`` boxes of each class after
NMS; no cap per image. ``conf_threshold`` is the argparse default of
``--model.detection.ssd.conf-threshold``, **0.05** (the yaml sets none and the README's
``cvnets-eval-det`` command passes none; the flag's help text suggests 0.01 for COCO mAP);
``top_k`` is ``--model.detection.ssd.num-objects-per-class``, **200**; ``nms_iou_threshold`` is
**0.5** from ``config/detection/ssd_mobilevit_*_320.yaml`` (the argparse default is 0.3).

``"main"`` (``cvnets/models/detection/ssd.py``, ``SingleShotDetector.postprocess_detections``):
softmax; per class the anchors with probability ``> 0.01`` (``--model.detection.ssd.conf-
threshold``), at most the **400** most probable (``--model.detection.ssd.top-k``, taken
*before* NMS); ``torchvision.ops.batched_nms`` at **0.5** (``--model.detection.ssd.nms-iou-
threshold``, also in ``config/detection/ssd_coco/mobilevit.yaml``); the **200** best boxes of the
image (``--model.detection.ssd.objects-per-image``).

Nothing is clipped here. Neither version clips the decoded boxes before NMS; both evaluation
scripts (``engine/eval_detection.py``, ``predict_and_save``) clip *after* NMS, once the boxes are
scaled to the original image: ``x`` to ``[0, width]``, ``y`` to ``[0, height]``, as
:func:`~mobilevit_edu.detection.evaluate.evaluate_coco` and
:func:`~mobilevit_edu.detection.coco.evaluate_detector` do. Note that COCO's evaluator keeps at
most 100 detections per image *and class* (``COCOeval.evaluateImg``), so a per-image cap of 200
and a per-class cap of 200 can give different mAPs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from mobilevit_edu.detection.boxes import box_iou, check_boxes, decode_boxes

if TYPE_CHECKING:
    from mobilevit_edu.detection.ssdlite import SSDOutput

__all__ = ["Detections", "PostprocessConfig", "POSTPROCESS", "postprocess_settings", "nms",
           "batched_nms", "postprocess"]


class Detections(NamedTuple):
    """Post-processed detections of one image: ``boxes [M, 4]`` (corner form), ``scores [M]``,
    ``labels [M]`` (1..K-1; 0 is the background)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class PostprocessConfig:
    """One post-processing recipe. ``None`` means "no cap".

    ``conf_threshold``: a class's probability must exceed it; ``nms_iou_threshold``: NMS drops a
    box of the same class overlapping a better one by more than this IoU; ``pre_nms_top_k``: the
    most probable boxes per class that enter NMS; ``per_class_top_k``: boxes kept per class after
    NMS; ``max_detections``: boxes kept per image after NMS; ``source``: where the numbers come
    from."""

    conf_threshold: float
    nms_iou_threshold: float = 0.5
    pre_nms_top_k: int | None = None
    per_class_top_k: int | None = None
    max_detections: int | None = None
    source: str = ""


POSTPROCESS: dict[str, PostprocessConfig] = {
    "v0.1": PostprocessConfig(
        conf_threshold=0.05, nms_iou_threshold=0.5, pre_nms_top_k=None, per_class_top_k=200,
        max_detections=None,
        source="apple/ml-cvnets cvnets-v0.1: SingleShotDetector.predict (conf-threshold "
               "default 0.05, num-objects-per-class 200), ssd_mobilevit_*_320.yaml "
               "(nms_iou_threshold 0.5)"),
    "main": PostprocessConfig(
        conf_threshold=0.01, nms_iou_threshold=0.5, pre_nms_top_k=400, per_class_top_k=None,
        max_detections=200,
        source="apple/ml-cvnets main: SingleShotDetector.postprocess_detections (conf-threshold "
               "0.01, top-k 400, objects-per-image 200, nms-iou-threshold 0.5)"),
}


def postprocess_settings(settings: str | PostprocessConfig = "v0.1", *,
                         conf_threshold: float | None = None,
                         nms_iou_threshold: float | None = None) -> PostprocessConfig:
    """The :class:`PostprocessConfig` named ``settings`` (a key of :data:`POSTPROCESS`, or a
    config itself), with the two thresholds overridden where given."""
    if isinstance(settings, str):
        if settings not in POSTPROCESS:
            raise ValueError(f"unknown post-processing settings {settings!r}; known: "
                             f"{sorted(POSTPROCESS)} (or pass a PostprocessConfig)")
        settings = POSTPROCESS[settings]
    elif not isinstance(settings, PostprocessConfig):
        raise TypeError(f"settings must be a name in {sorted(POSTPROCESS)} or a PostprocessConfig, "
                        f"got {type(settings).__name__}")
    changes = {k: v for k, v in (("conf_threshold", conf_threshold),
                                 ("nms_iou_threshold", nms_iou_threshold)) if v is not None}
    return dataclasses.replace(settings, **changes) if changes else settings


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
                iou_threshold: float = 0.5, per_label_top_k: int | None = None) -> torch.Tensor:
    """NMS within each label separately (boxes of different labels never suppress each other),
    keeping at most ``per_label_top_k`` boxes per label; the kept indices of all labels, sorted
    by score."""
    keep = [idx[nms(boxes[idx], scores[idx], iou_threshold, per_label_top_k)]
            for idx in (torch.nonzero(labels == c).flatten()  # [M_c, 1] -> [M_c]
                        for c in labels.unique())]
    if not keep:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    keep_t = torch.cat(keep)
    return keep_t[scores[keep_t].argsort(descending=True, stable=True)]


def postprocess(output: SSDOutput, settings: str | PostprocessConfig = "v0.1", *,
                conf_threshold: float | None = None, nms_iou_threshold: float | None = None,
                center_variance: float = 0.1, size_variance: float = 0.2) -> list[Detections]:
    """Network output -> detections per image, boxes relative to the image (0..1), **not
    clipped**: a box may reach past the border, as in the official code (see the module's
    docstring for where the official evaluation clips).

    Softmax over the classes; decode the boxes against the anchors; for each object class keep
    the anchors whose probability exceeds ``conf_threshold`` (at most ``pre_nms_top_k``); NMS per
    class (at most ``per_class_top_k`` kept per class); then at most ``max_detections`` boxes per
    image, best first. ``settings`` names the recipe (:data:`POSTPROCESS`: ``"v0.1"``, the
    paper's, or ``"main"``) or is a :class:`PostprocessConfig`; ``conf_threshold`` and
    ``nms_iou_threshold`` override its thresholds."""
    s = postprocess_settings(settings, conf_threshold=conf_threshold,
                             nms_iou_threshold=nms_iou_threshold)
    probs = output.scores.softmax(dim=-1)  # [B, N, K]
    boxes = decode_boxes(output.locations, output.anchors, center_variance,
                         size_variance)  # [B, N, 4], not clipped
    results = []
    for b in range(probs.shape[0]):
        cand_boxes, cand_scores, cand_labels = [], [], []
        for k in range(1, probs.shape[-1]):  # class 0 is the background
            p = probs[b, :, k]  # [N]
            idx = torch.nonzero(p > s.conf_threshold).flatten()  # [N_k, 1] -> [N_k]
            if s.pre_nms_top_k is not None and idx.numel() > s.pre_nms_top_k:
                idx = idx[p[idx].topk(s.pre_nms_top_k).indices]
            cand_boxes.append(boxes[b, idx])
            cand_scores.append(p[idx])
            cand_labels.append(torch.full_like(idx, k))
        cb, cs, cl = torch.cat(cand_boxes), torch.cat(cand_scores), torch.cat(cand_labels)
        keep = batched_nms(cb, cs, cl, s.nms_iou_threshold, s.per_class_top_k)
        if s.max_detections is not None:
            keep = keep[: s.max_detections]
        results.append(Detections(cb[keep], cs[keep], cl[keep]))
    return results
