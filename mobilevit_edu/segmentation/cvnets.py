"""Segmentation checkpoints in every layout: ours, Hugging Face's and apple/ml-cvnets' (paper §4.2.2).

The released DeepLabv3-MobileViT weights (cvnets v0.1 README, ``deeplabv3_mobilevit_{xxs,xs,s}.pt``)
are state dicts of cvnets' ``SegEncoderDecoder`` (``cvnets/models/segmentation/enc_dec.py``): the
backbone under ``encoder.`` in cvnets' *classification* layout, with ``conv_1x1_exp`` and the
classifier set to None (so absent), and the head under ``seg_head.``
(``cvnets/models/segmentation/heads/deeplabv3.py``, ``cvnets/modules/aspp_block.py``)::

    seg_head.aspp.aspp_layer.convs.0.block.{conv,norm}.*            1x1 branch (ConvLayer)
    seg_head.aspp.aspp_layer.convs.{1,2,3}.block.{conv,norm}.*      3x3 dilated (ASPPConv)
    seg_head.aspp.aspp_layer.convs.4.aspp_pool.conv_1x1.block.*     image pooling (ASPPPooling)
    seg_head.aspp.aspp_layer.project.block.{conv,norm}.*            1x1 projection
    seg_head.classifier.classifier.block.conv.{weight,bias}         1x1 classifier (no norm)

(``seg_head.aspp`` is an ``nn.Sequential`` holding ``aspp_layer``; ``seg_head.classifier`` one
holding ``classifier_dropout``, ``classifier`` and ``up_16``; a ConvLayer keeps its conv and norm in
``block``.) Hugging Face converted exactly these files (transformers'
``convert_mlcvnets_to_pytorch.py`` strips ``encoder.``, ``.aspp_layer.`` and ``.aspp_pool.``).

This module maps our names to cvnets' by rules (the backbone's through
:func:`mobilevit_edu.models.checkpoints.key_map`), tells the three layouts apart by their key
names (:func:`detect_segmentation_layout`), loads any of them strictly
(:func:`load_segmentation_state_dict`: every missing, unexpected or mis-shaped tensor is listed in
a ``CheckpointError``) and exports back (:func:`to_cvnets_segmentation_state_dict`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import torch

from mobilevit_edu.models.checkpoints import (
    CheckpointError, detect_layout, from_ours, key_map, remap_state_dict,
)
from mobilevit_edu.segmentation.deeplabv3 import DeepLabV3
from mobilevit_edu.segmentation.hf import (
    hf_head_key, load_hf_segmentation_state_dict, to_hf_segmentation_state_dict,
)

__all__ = [
    "SegmentationLayout",
    "SEGMENTATION_LAYOUTS",
    "CVNETS_HEAD_RULES",
    "cvnets_head_key",
    "cvnets_segmentation_key_map",
    "segmentation_head_key",
    "detect_segmentation_layout",
    "load_cvnets_segmentation_state_dict",
    "load_segmentation_state_dict",
    "to_cvnets_segmentation_state_dict",
    "segmentation_state_dict",
]

SegmentationLayout = Literal["ours", "hf", "cvnets"]
SEGMENTATION_LAYOUTS: tuple[str, ...] = ("ours", "hf", "cvnets")

# our head key -> cvnets' (run in order on the whole key; the backbone's keys come from
# mobilevit_edu.models.checkpoints with the prefix "encoder.")
CVNETS_HEAD_RULES: tuple[tuple[str, str], ...] = (
    (r"^aspp\.branches\.(\d+)\.conv_1x1\.", r"seg_head.aspp.aspp_layer.convs.\1.aspp_pool.conv_1x1."),
    (r"^aspp\.branches\.", "seg_head.aspp.aspp_layer.convs."),
    (r"^aspp\.project\.", "seg_head.aspp.aspp_layer.project."),
    (r"\.conv\.(weight|bias)$", r".block.conv.\1"),
    (r"\.bn\.", ".block.norm."),
    (r"^classifier\.(weight|bias)$", r"seg_head.classifier.classifier.block.conv.\1"),
)


def cvnets_head_key(key: str) -> str:
    """cvnets' name of one of our head tensors (``aspp.*``, ``classifier.*``)."""
    for pattern, repl in CVNETS_HEAD_RULES:
        key = re.sub(pattern, repl, key)
    return key


def segmentation_head_key(key: str, layout: str) -> str:
    """The name of our head tensor ``key`` in ``layout`` ("ours", "hf" or "cvnets")."""
    if layout == "ours":
        return key
    if layout == "hf":
        return hf_head_key(key)
    if layout == "cvnets":
        return cvnets_head_key(key)
    raise ValueError(f"unknown segmentation layout {layout!r}; known: {SEGMENTATION_LAYOUTS}")


def cvnets_segmentation_key_map(model: DeepLabV3) -> dict[str, list[str]]:
    """For every tensor of ``model.state_dict()``: our key -> its key in cvnets' DeepLabv3
    (a one-element list, as :func:`mobilevit_edu.models.checkpoints.key_map`; cvnets stores the
    attention's qkv stacked, as we do)."""
    out = {f"backbone.{k}": [f"encoder.{t}" for t in v]
           for k, v in key_map(model.backbone, "cvnets").items()}
    for key in model.state_dict():
        if not key.startswith("backbone."):
            out[key] = [cvnets_head_key(key)]
    return out


def detect_segmentation_layout(state_dict: Mapping[str, torch.Tensor]) -> SegmentationLayout:
    """Tell the layout of a DeepLabv3 state dict from its key names: Hugging Face
    (``segmentation_head.*``), cvnets (``seg_head.*``) or ours (``aspp.*``). A classification
    checkpoint, a backbone without a head or anything else raises a :class:`CheckpointError`
    saying what the file holds and what to do with it."""
    keys = list(_without_ddp_prefix(state_dict))
    if any(k.startswith("segmentation_head.") for k in keys):
        return "hf"
    if any(k.startswith("seg_head.") for k in keys):
        return "cvnets"
    if any(k.startswith("aspp.") for k in keys):
        return "ours"
    if keys and all(k.startswith(("encoder.", "backbone.")) for k in keys):
        raise CheckpointError(
            "the checkpoint holds a backbone (encoder./backbone.) but no segmentation head "
            "(seg_head., segmentation_head. or aspp.). Fix: load it with "
            "load_backbone(create_deeplabv3(size), state_dict) and train the head"
        )
    try:
        layout = detect_layout(state_dict)
    except CheckpointError:
        layout = None
    if layout is not None:
        raise CheckpointError(
            f"this is a MobileViT classification checkpoint ({layout} layout), not a DeepLabv3 "
            "segmenter: it has no segmentation head. Fix: fine-tune from it with "
            "load_backbone(create_deeplabv3(size), state_dict), or pass a DeepLabv3 checkpoint"
        )
    raise CheckpointError(
        f"cannot tell a DeepLabv3 layout from the keys (first keys: {keys[:5]}): expected "
        "seg_head.* (apple/ml-cvnets), segmentation_head.* (Hugging Face) or aspp.* (ours)"
    )


def _without_ddp_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` without the ``module.`` prefix DistributedDataParallel adds to every key."""
    sd = dict(state_dict)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _load_by_map(model: DeepLabV3, state_dict: Mapping[str, torch.Tensor],
                 mapping: Mapping[str, list[str]], what: str) -> DeepLabV3:
    """Load ``state_dict`` into ``model`` through ``mapping`` (our key -> [their key]), strictly."""
    sd = _without_ddp_prefix(state_dict)
    converted, problems = remap_state_dict(sd, model.state_dict(), mapping)
    if problems:
        raise CheckpointError(
            f"{what} checkpoint does not fit DeepLabV3: " + " | ".join(problems) + ". Fix: check "
            "the size (xxs/xs/s), num_classes and the atrous rates; a checkpoint trained with "
            "an auxiliary head or use_level5_exp is not the paper's DeepLabv3"
        )
    model.load_state_dict(converted, strict=True)
    return model


def load_cvnets_segmentation_state_dict(
    model: DeepLabV3, state_dict: Mapping[str, torch.Tensor]
) -> DeepLabV3:
    """Load a cvnets DeepLabv3 state dict (``encoder.*``, ``seg_head.*``) into ``model``, strictly:
    each missing, unexpected or mis-shaped tensor is listed in a :class:`CheckpointError`
    (BatchNorm's ``num_batches_tracked`` may be absent, as PyTorch allows)."""
    return _load_by_map(model, state_dict, cvnets_segmentation_key_map(model), "cvnets")


def load_segmentation_state_dict(
    model: DeepLabV3,
    state_dict: Mapping[str, torch.Tensor],
    layout: SegmentationLayout | None = None,
) -> SegmentationLayout:
    """Load a DeepLabv3 state dict of any layout (detected from the keys if ``layout`` is None)
    into ``model`` strictly, and return the layout it had."""
    state_dict = _without_ddp_prefix(state_dict)
    layout = layout or detect_segmentation_layout(state_dict)
    if layout == "hf":
        load_hf_segmentation_state_dict(model, state_dict)
    elif layout == "cvnets":
        load_cvnets_segmentation_state_dict(model, state_dict)
    elif layout == "ours":
        _load_by_map(model, state_dict, {k: [k] for k in model.state_dict()}, "ours")
    else:
        raise ValueError(f"unknown segmentation layout {layout!r}; known: {SEGMENTATION_LAYOUTS}")
    return layout


def to_cvnets_segmentation_state_dict(model: DeepLabV3) -> dict[str, torch.Tensor]:
    """Export ``model``'s weights with cvnets' DeepLabv3 key names (``encoder.*``, ``seg_head.*``),
    the layout of the released ``deeplabv3_mobilevit_*.pt`` files."""
    out = {f"encoder.{k}": v for k, v in from_ours(model.backbone, "cvnets").items()}
    for key, tensor in model.state_dict().items():
        if not key.startswith("backbone."):
            out[cvnets_head_key(key)] = tensor.detach().clone()
    return out


def segmentation_state_dict(model: DeepLabV3, layout: SegmentationLayout) -> dict[str, torch.Tensor]:
    """``model``'s weights in ``layout``: "ours" (its own state dict), "hf" or "cvnets"."""
    if layout == "ours":
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    if layout == "hf":
        return to_hf_segmentation_state_dict(model)
    if layout == "cvnets":
        return to_cvnets_segmentation_state_dict(model)
    raise ValueError(f"unknown segmentation layout {layout!r}; known: {SEGMENTATION_LAYOUTS}")
