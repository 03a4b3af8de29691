"""Semantic segmentation: DeepLabv3 with a MobileViT backbone (paper §4.2.2, Table 2).

Paper §4.2.2: MobileViT is the backbone of DeepLabv3 (Chen et al., 2017), fine-tuned on PASCAL
VOC 2012 (with extra annotations and COCO data) and evaluated by mean intersection over union
(mIOU) on its val split; Table 2 gives 1.9 M / 73.6, 2.9 M / 77.1 and 6.4 M / 79.1 for XXS, XS, S.
The details are those of the official config (apple/ml-cvnets v0.1); Hugging Face's
``MobileViTForSemanticSegmentation`` is the same network.

The package, one concern per module:

* :mod:`~mobilevit_edu.segmentation.deeplabv3`: the network (ASPP, :class:`DeepLabV3`,
  :func:`create_deeplabv3`), :func:`load_backbone` and the geometry of the dilated taps;
* :mod:`~mobilevit_edu.segmentation.metrics`: :func:`segmentation_loss`,
  :class:`ConfusionMatrix`, :func:`mean_iou`, :func:`evaluate_segmentation`;
* :mod:`~mobilevit_edu.segmentation.datasets`: :class:`VOCSegmentation` (with its palette and
  mask format) and :class:`ShapesSegmentation`, the book's shapes;
* :mod:`~mobilevit_edu.segmentation.hf`: Hugging Face's checkpoint layout and config;
* :mod:`~mobilevit_edu.segmentation.cvnets`: apple/ml-cvnets' checkpoint layout (the released
  ``deeplabv3_mobilevit_*.pt``), and loading / exporting any of the three layouts;
* :mod:`~mobilevit_edu.segmentation.evaluate`: :func:`load_segmenter` and :func:`evaluate_voc`,
  the official PASCAL VOC val protocol (BGR for released weights, input resized to 512 x 512,
  logits scored against each original mask);
* :mod:`~mobilevit_edu.segmentation.train`: the official recipe and :func:`train_segmenter`, the
  only module here that imports the training loop (loaded when first used, so that building a
  network never imports :mod:`mobilevit_edu.train`).

The figures of chapter 13 are in :mod:`mobilevit_edu.plots.segmentation`.
"""

from __future__ import annotations

import importlib
from typing import Any

from mobilevit_edu.segmentation.cvnets import (
    SEGMENTATION_LAYOUTS, cvnets_segmentation_key_map, detect_segmentation_layout,
    load_cvnets_segmentation_state_dict, load_segmentation_state_dict, segmentation_state_dict,
    to_cvnets_segmentation_state_dict,
)
from mobilevit_edu.segmentation.datasets import (
    VOC_CLASSES, ShapesSegmentation, VOCSegmentation, save_voc_mask, voc_palette,
)
from mobilevit_edu.segmentation.deeplabv3 import (
    ASPP, ATROUS_RATES, IGNORE_INDEX, ASPPPooling, DeepLabV3, aspp_sampling_points,
    aspp_valid_taps, create_deeplabv3, load_backbone, upsample_logits,
)
from mobilevit_edu.segmentation.evaluate import (
    channel_order, evaluate_voc, load_segmenter, voc_eval_input,
)
from mobilevit_edu.segmentation.hf import (
    HF_SIZES, hf_segmentation_config, hf_segmentation_key_map, load_hf_segmentation_state_dict,
    to_hf_segmentation_state_dict,
)
from mobilevit_edu.segmentation.metrics import (
    ConfusionMatrix, evaluate_segmentation, mean_iou, segmentation_loss,
)

# the training names, imported from .train on first use (PEP 562): importing the network must
# not import the training loop
_TRAINING = ("deeplabv3_recipe", "build_segmentation_optimizer", "segmentation_task",
             "train_segmenter")

__all__ = [
    "IGNORE_INDEX",
    "ATROUS_RATES",
    "VOC_CLASSES",
    "HF_SIZES",
    "ASPPPooling",
    "ASPP",
    "DeepLabV3",
    "create_deeplabv3",
    "upsample_logits",
    "segmentation_loss",
    "ConfusionMatrix",
    "mean_iou",
    "evaluate_segmentation",
    "voc_palette",
    "save_voc_mask",
    "VOCSegmentation",
    "ShapesSegmentation",
    *_TRAINING,
    "hf_segmentation_config",
    "hf_segmentation_key_map",
    "load_hf_segmentation_state_dict",
    "to_hf_segmentation_state_dict",
    "load_backbone",
    "SEGMENTATION_LAYOUTS",
    "cvnets_segmentation_key_map",
    "detect_segmentation_layout",
    "load_cvnets_segmentation_state_dict",
    "load_segmentation_state_dict",
    "to_cvnets_segmentation_state_dict",
    "segmentation_state_dict",
    "load_segmenter",
    "evaluate_voc",
    "voc_eval_input",
    "channel_order",
    "aspp_sampling_points",
    "aspp_valid_taps",
]


def __getattr__(name: str) -> Any:
    if name in _TRAINING:
        return getattr(importlib.import_module("mobilevit_edu.segmentation.train"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
