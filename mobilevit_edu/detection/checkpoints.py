"""SSDLite weights in cvnets' layout: the released detectors of paper §4.2.1 / Table 1, in and out.

The detection weights Apple released with the paper (apple/ml-cvnets v0.1, e.g.
``ssd_mobilevit_s_320.pt``) are a state dict of cvnets' ``SingleShotDetector``. Its names come
from ``cvnets/models/detection/ssd.py``, ``cvnets/modules/ssd.py`` (``SSDHead``) and
``cvnets/layers/{conv_layer,sep_conv_layer}.py`` (``ConvLayer`` keeps its conv and BatchNorm in a
``block`` Sequential as ``conv`` and ``norm``; ``SeparableConv`` holds two of them, ``dw_conv``
and ``pw_conv``). One to one, by name:

    ours                                       cvnets
    backbone.<key>                             encoder.<the classification cvnets key>
    extra_layers.os_64.dw.conv.weight          extra_layers.os_64.dw_conv.block.conv.weight
    extra_layers.os_64.pw.bn.running_mean      extra_layers.os_64.pw_conv.block.norm.running_mean
    extra_layers.os_global.1.weight            extra_layers.os_-1.1.block.conv.weight
    heads.0.proj.bn.weight                     ssd_heads.0.proj_layer.block.norm.weight
    heads.0.loc_cls.dw.conv.weight             ssd_heads.0.loc_cls_layer.dw_conv.block.conv.weight
    heads.0.loc_cls.pw.conv.bias               ssd_heads.0.loc_cls_layer.pw_conv.block.conv.bias
    heads.5.loc_cls.weight                     ssd_heads.5.loc_cls_layer.block.conv.weight

The backbone's keys follow :func:`mobilevit_edu.models.checkpoints.key_map` (layout
``"cvnets"``); cvnets deletes the encoder's ``classifier`` and ``conv_1x1_exp`` (set to
``None``), so neither has keys, as in our backbone. Every key of the file must find its place and
every tensor of the model must be in the file (BatchNorm's ``num_batches_tracked`` counters
excepted, as for classification); otherwise :class:`~mobilevit_edu.models.checkpoints.
CheckpointError` lists the missing, unexpected and mis-shaped keys.

The released weights expect what cvnets v0.1 fed them: images read by OpenCV (**BGR**), resized
to 320 x 320, divided by 255 (see :mod:`mobilevit_edu.detection.evaluate`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Literal

import torch

from mobilevit_edu.detection.ssdlite import SSDLite
from mobilevit_edu.models.checkpoints import (
    CheckpointError, key_map, read_state_dict, remap_state_dict,
)

__all__ = [
    "SSDLITE_LAYOUTS",
    "ssdlite_key_map",
    "detect_ssdlite_layout",
    "ssdlite_to_ours",
    "ssdlite_from_ours",
    "load_ssdlite_checkpoint",
]

DetectorLayout = Literal["ours", "cvnets"]
SSDLITE_LAYOUTS: tuple[str, ...] = ("ours", "cvnets")


def _conv_bn(parts: Sequence[str]) -> str:
    """Our ``ConvBNAct`` tail (``conv.weight``, ``bn.running_var``) -> cvnets' ``ConvLayer``
    (``block.conv.weight``, ``block.norm.running_var``)."""
    module, name = parts
    return "block." + {"conv": "conv", "bn": "norm"}[module] + "." + name


def _separable(parts: Sequence[str]) -> str:
    """``dw.conv.weight`` -> ``dw_conv.block.conv.weight`` (our SeparableConv -> cvnets')."""
    return f"{parts[0]}_conv." + _conv_bn(parts[1:])


def _head_key(key: str) -> str:
    """One key of the extra layers or heads in cvnets' names."""
    parts = key.split(".")
    if parts[0] == "extra_layers":
        if parts[1] == "os_global":  # Sequential(AdaptiveAvgPool2d, ConvLayer without norm)
            return f"extra_layers.os_-1.{parts[2]}.block.conv.{parts[3]}"
        return f"extra_layers.{parts[1]}." + _separable(parts[2:])
    if parts[0] == "heads":
        head = f"ssd_heads.{parts[1]}."
        if parts[2] == "proj":
            return head + "proj_layer." + _conv_bn(parts[3:])
        if parts[2] == "loc_cls" and parts[3] in ("dw", "pw"):
            return head + "loc_cls_layer." + _separable(parts[3:])
        if parts[2] == "loc_cls":  # the global map's head: one 1 x 1 ConvLayer with a bias
            return head + f"loc_cls_layer.block.conv.{parts[3]}"
    raise ValueError(f"no cvnets name for SSDLite key {key!r}")


def ssdlite_key_map(model: SSDLite, layout: DetectorLayout = "cvnets") -> dict[str, str]:
    """For every tensor in ``model.state_dict()``: our key -> its key in ``layout``."""
    if layout not in SSDLITE_LAYOUTS:
        raise ValueError(f"unknown SSDLite checkpoint layout {layout!r}; known: {SSDLITE_LAYOUTS}")
    keys = list(model.state_dict())
    if layout == "ours":
        return {k: k for k in keys}
    backbone = {f"backbone.{k}": "encoder." + v[0]
                for k, v in key_map(model.backbone, "cvnets").items()}
    return {k: backbone[k] if k in backbone else _head_key(k) for k in keys}


def detect_ssdlite_layout(state_dict: Mapping[str, torch.Tensor]) -> DetectorLayout:
    """``"cvnets"`` for ``encoder.*`` / ``ssd_heads.*`` keys, ``"ours"`` for ``backbone.*`` /
    ``heads.*``; a classification checkpoint or anything else raises a CheckpointError."""
    keys = list(state_dict)
    if (any(k.startswith("ssd_heads.") for k in keys)
            and any(k.startswith("encoder.") for k in keys)):
        return "cvnets"
    if any(k.startswith("heads.") for k in keys) and any(k.startswith("backbone.") for k in keys):
        return "ours"
    if any(k.startswith(("conv_1.", "layer_1.", "stem.", "layer1.", "mobilevit.", "stages."))
           for k in keys):
        raise CheckpointError(
            "this is a classification checkpoint (a MobileViT without detection heads), not an "
            "SSDLite detector. Fix: pass the detector's weights (cvnets' ssd_mobilevit_*_320.pt or "
            "a file saved from our SSDLite), or load these into model.backbone with "
            "mobilevit_edu.models.checkpoints.load_checkpoint(..., ignore=('classifier', "
            "'conv_1x1_exp'))")
    seg = any(k.startswith(("seg_head.", "segmentation_head.", "aspp.")) for k in keys)
    raise CheckpointError(
        f"cannot tell the detector checkpoint's layout from its keys (first keys: {keys[:5]})"
        + ("; it looks like a segmentation model" if seg else "")
        + f". Fix: pass an SSDLite checkpoint in one of the layouts {SSDLITE_LAYOUTS}")


def ssdlite_to_ours(state_dict: Mapping[str, torch.Tensor], model: SSDLite,
                    layout: DetectorLayout | None = None) -> dict[str, torch.Tensor]:
    """A checkpoint in ``layout`` (detected from the names if ``None``) -> ``model``'s own keys,
    matched by name. Raises CheckpointError listing every missing, unexpected and mis-shaped
    key (in the file's names)."""
    layout = layout or detect_ssdlite_layout(state_dict)
    mapping = {ours: [theirs] for ours, theirs in ssdlite_key_map(model, layout).items()}
    converted, problems = remap_state_dict(state_dict, model.state_dict(), mapping)
    if problems:
        raise CheckpointError(
            f"checkpoint does not fit SSDLite-{model.backbone.config.name} with "
            f"{model.num_classes} classes (layout {layout!r}): " + " | ".join(problems)
            + ". Fix: check the backbone size (xxs/xs/s), num_classes (81 for COCO: 80 + the "
            "background) and the SSD config, or let load_detector infer them from the file")
    return converted


def ssdlite_from_ours(model: SSDLite, layout: DetectorLayout = "cvnets") -> dict[str, torch.Tensor]:
    """``model``'s weights under ``layout``'s names (cvnets': loadable by cvnets'
    ``SingleShotDetector.load_state_dict``)."""
    sd = model.state_dict()
    return {theirs: sd[key].detach().clone()
            for key, theirs in ssdlite_key_map(model, layout).items()}


def load_ssdlite_checkpoint(model: SSDLite,
                            source: str | os.PathLike | Mapping[str, torch.Tensor],
                            layout: DetectorLayout | None = None) -> SSDLite:
    """Load a detector checkpoint file (read safely with ``read_state_dict``) or state dict of
    either layout into ``model``, strictly."""
    sd = read_state_dict(source) if isinstance(source, (str, os.PathLike)) else dict(source)
    model.load_state_dict(ssdlite_to_ours(sd, model, layout))
    return model
