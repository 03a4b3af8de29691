"""Hugging Face's MobileViTForSemanticSegmentation layout (paper §4.2.2, Table 2).

Hugging Face ports the official DeepLabv3-MobileViT checkpoints (``apple/deeplabv3-mobilevit-
xx-small``, ``-x-small``, ``-small``) as ``MobileViTForSemanticSegmentation``: the same network
as :class:`~mobilevit_edu.segmentation.deeplabv3.DeepLabV3`, with other tensor names. This module
maps the names both ways (the backbone's through :mod:`mobilevit_edu.models.checkpoints`, the
head's by the rules below) and builds the matching ``transformers`` config, so that the book can
show its logits equal Hugging Face's and load the published weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from mobilevit_edu.models.checkpoints import (
    CheckpointError, from_ours, key_map, remap_state_dict, to_ours,
)
from mobilevit_edu.segmentation.deeplabv3 import DeepLabV3, mobilevit_size

__all__ = [
    "HF_SIZES",
    "HF_HEAD_RULES",
    "hf_segmentation_config",
    "hf_head_key",
    "hf_segmentation_key_map",
    "load_hf_segmentation_state_dict",
    "to_hf_segmentation_state_dict",
]

HF_SIZES: dict[str, dict[str, Any]] = {  # transformers' convert_mlcvnets_to_pytorch.py
    "xxs": dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320],
                expand_ratio=2.0, hidden_dropout_prob=0.05),
    "xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
    "s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
}

# our head key -> Hugging Face's (the backbone's keys come from mobilevit_edu.models.checkpoints)
HF_HEAD_RULES: tuple[tuple[str, str], ...] = (
    (r"^aspp\.branches\.", "segmentation_head.aspp.convs."),
    (r"^aspp\.project\.", "segmentation_head.aspp.project."),
    (r"^classifier\.", "segmentation_head.classifier.convolution."),
    (r"\.conv\.", ".convolution."),
    (r"\.bn\.", ".normalization."),
)


def hf_segmentation_config(name: str = "xxs", num_classes: int = 21, **changes: Any):
    """The ``transformers.MobileViTConfig`` of ``apple/deeplabv3-mobilevit-{xx-small, ...}``:
    the size's widths, ``output_stride=16``, 512 x 512 images, ``num_labels=num_classes``."""
    try:
        from transformers import MobileViTConfig as HFConfig
    except ImportError as err:  # pragma: no cover - transformers is in the [book] extra
        raise ImportError("hf_segmentation_config needs transformers: "
                          "pip install transformers") from err
    kwargs = dict(HF_SIZES[mobilevit_size(name)], output_stride=16, image_size=512,
                  num_labels=num_classes)
    kwargs.update(changes)
    return HFConfig(**kwargs)


def hf_head_key(key: str) -> str:
    """Hugging Face's name of one of our head tensors (``aspp.*``, ``classifier.*``)."""
    for pattern, repl in HF_HEAD_RULES:
        key = re.sub(pattern, repl, key)
    return key


def hf_segmentation_key_map(model: DeepLabV3) -> dict[str, list[str]]:
    """For every tensor of ``model.state_dict()``: our key -> its key(s) in Hugging Face's
    ``MobileViTForSemanticSegmentation`` (three for a stacked qkv, as in
    :func:`mobilevit_edu.models.checkpoints.key_map`)."""
    out = {f"backbone.{k}": v for k, v in key_map(model.backbone, "hf").items()}
    for key in model.state_dict():
        if not key.startswith("backbone."):
            out[key] = [hf_head_key(key)]
    return out


def load_hf_segmentation_state_dict(
    model: DeepLabV3, state_dict: Mapping[str, torch.Tensor]
) -> DeepLabV3:
    """Load a Hugging Face ``MobileViTForSemanticSegmentation`` state dict into ``model``
    (strictly: each missing, unexpected or mis-shaped tensor is listed in a ``CheckpointError``)."""
    sd = dict(state_dict)
    backbone_sd = {k: v for k, v in sd.items() if k.startswith("mobilevit.")}
    head_sd = {k: v for k, v in sd.items() if not k.startswith("mobilevit.")}
    problems: list[str] = []
    converted: dict[str, torch.Tensor] = {}
    try:
        converted.update({f"backbone.{k}": v
                          for k, v in to_ours(backbone_sd, model.backbone, "hf").items()})
    except CheckpointError as err:
        problems.append(f"backbone: {err}")
    ours = model.state_dict()
    head = {key: [hf_head_key(key)] for key in ours if not key.startswith("backbone.")}
    head_converted, head_problems = remap_state_dict(head_sd, ours, head)
    converted.update(head_converted)
    problems += [f"head: {p}" for p in head_problems]
    if problems:
        raise CheckpointError("checkpoint does not fit DeepLabV3: " + " | ".join(problems)
                              + ". Fix: check the size (xxs/xs/s), num_classes and the atrous "
                              "rates; a classification checkpoint goes in with load_backbone()")
    model.load_state_dict(converted, strict=True)
    return model


def to_hf_segmentation_state_dict(model: DeepLabV3) -> dict[str, torch.Tensor]:
    """Export ``model``'s weights with Hugging Face's key names (to load into transformers)."""
    out = from_ours(model.backbone, "hf")
    for key, tensor in model.state_dict().items():
        if not key.startswith("backbone."):
            out[hf_head_key(key)] = tensor.detach().clone()
    return out
