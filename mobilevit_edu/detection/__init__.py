"""Object detection with SSDLite on a MobileViT backbone (paper §4.2.1, Table 1).

MobileViT, pre-trained on ImageNet, is fine-tuned on MS-COCO inside SSDLite, the light-weight
single-shot detector of MobileNetV2 (separable 3 x 3 convolutions in the heads). Input
320 x 320; MobileViT-XS gets 24.8 mAP with 2.7 M parameters and MobileViT-S 27.7 mAP with 5.7 M
(Table 1a). Everything follows the official code and config (apple/ml-cvnets v0.1,
``config/detection/ssd_mobilevit_*_320.yaml``). One module per concern:

    config        SSDConfig: every knob of the detector (the official yaml's defaults)
    anchors       the six feature-map sizes, SSD's anchors (6, 6, 6, 6, 6, 4 per location)
    boxes         corner / centre form, IoU, SSD's offset encoding (variances 0.1 / 0.2), flips
    ssdlite       the network: extra layers and separable heads on the backbone; create_ssdlite
    matching      anchors to objects (IoU >= 0.5, plus each object's best anchor)
    loss          smooth-L1 + cross-entropy with 3:1 hard-negative mining, per positive
    postprocess   softmax, thresholds, per-class NMS in plain torch; POSTPROCESS "v0.1" / "main"
    coco          COCO JSON and the COCO evaluator (pycocotools); evaluate_detector (the shapes)
    datasets      samples and batches, COCO's detection JSON, the book's shapes (transform=)
    checkpoints   SSDLite weights in cvnets' layout (the released detectors), in and out
    evaluate      load_detector, evaluate_coco: Table 1's mAP as cvnets measures it
    train         train_detector: the one training loop (mobilevit_edu.train.loop) with SSD's step

Only ``train`` imports the training loop; importing the network or the evaluator does not (the
name ``train_detector`` is loaded from ``detection.train`` on first use). The figures of chapter
12 are in :mod:`mobilevit_edu.plots.detection`.

Boxes are ``(x0, y0, x1, y1)`` ("corner form") everywhere in the public API unless a name says
``cxcywh``; anchors are ``(cx, cy, w, h)`` relative to the image (0..1), as in the official code.
Label 0 is the background; object classes are 1..K.
"""

from __future__ import annotations

from typing import Any

from mobilevit_edu.detection.anchors import (
    MIN_IMAGE_SIZE, AnchorGenerator, ssd_anchors, ssd_feature_sizes,
)
from mobilevit_edu.detection.boxes import (
    box_iou, check_boxes, cxcywh_to_xyxy, decode_boxes, encode_boxes, hflip_boxes, xyxy_to_cxcywh,
)
from mobilevit_edu.detection.coco import (
    COCO_STAT_NAMES, coco_detections, coco_evaluate, coco_ground_truth, evaluate_detector,
)
from mobilevit_edu.detection.config import SSDConfig
from mobilevit_edu.detection.checkpoints import (
    SSDLITE_LAYOUTS, detect_ssdlite_layout, load_ssdlite_checkpoint, ssdlite_from_ours,
    ssdlite_key_map, ssdlite_to_ours,
)
from mobilevit_edu.detection.datasets import (
    CocoDetection, DetectionBatch, DetectionSample, DetectionTransform, ShapesDetection,
    detection_collate, resize_with_boxes,
)
from mobilevit_edu.detection.evaluate import (
    ORIGIN_PREPROCESS, evaluate_coco, load_detector, read_detection_image,
)
from mobilevit_edu.detection.loss import SSDLossOutput, hard_negative_mining, ssd_loss
from mobilevit_edu.detection.matching import encode_targets, match_anchors
from mobilevit_edu.detection.postprocess import (
    POSTPROCESS, Detections, PostprocessConfig, batched_nms, nms, postprocess, postprocess_settings,
)
from mobilevit_edu.detection.ssdlite import (
    SeparableConv, SSDHead, SSDLite, SSDOutput, create_ssdlite, ssdlite_param_table,
)

__all__ = [
    "SSDConfig",
    "SeparableConv",
    "SSDHead",
    "SSDLite",
    "SSDOutput",
    "Detections",
    "create_ssdlite",
    "MIN_IMAGE_SIZE",
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
    "hflip_boxes",
    "match_anchors",
    "encode_targets",
    "hard_negative_mining",
    "ssd_loss",
    "SSDLossOutput",
    "nms",
    "batched_nms",
    "postprocess",
    "POSTPROCESS",
    "PostprocessConfig",
    "postprocess_settings",
    "COCO_STAT_NAMES",
    "coco_ground_truth",
    "coco_detections",
    "coco_evaluate",
    "evaluate_detector",
    "evaluate_coco",
    "load_detector",
    "read_detection_image",
    "ORIGIN_PREPROCESS",
    "SSDLITE_LAYOUTS",
    "ssdlite_key_map",
    "detect_ssdlite_layout",
    "ssdlite_to_ours",
    "ssdlite_from_ours",
    "load_ssdlite_checkpoint",
    "DetectionSample",
    "DetectionBatch",
    "CocoDetection",
    "ShapesDetection",
    "detection_collate",
    "DetectionTransform",
    "resize_with_boxes",
    "detection_task",
    "train_detector",
]

# Loaded on first use, so that building or evaluating a detector never imports the training loop.
_FROM_TRAIN = ("detection_task", "train_detector")


def __getattr__(name: str) -> Any:
    if name in _FROM_TRAIN:
        from mobilevit_edu.detection import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_TRAIN))
