"""Top-1 and top-5 accuracy of a classifier on an image-folder validation tree: the ImageNet-1k
numbers of paper §4.1 (Fig. 8) for the released weights, read in any of their layouts.

The data is a :class:`mobilevit_edu.data.readers.ImageFolder` tree ``root/<class>/<image>``;
classes are the *sorted* folder names. ImageNet's validation set arranged in synset folders
(``val/n01440764/ILSVRC2012_val_00000293.JPEG``, ..., e.g. by the usual ``valprep.sh``) therefore
gives the 1000 classes in sorted WordNet-id order, n01440764 = 0 ... n15075141 = 999: the label
order of every released ImageNet-1k head (cvnets, timm, Hugging Face's ``id2label``). The flat
folder of 50,000 files as downloaded carries no labels; a folder with another set of classes
does not match a 1000-class head and is refused.

Each image is prepared as the weights' origin prepared it (:mod:`mobilevit_edu.evaluate.origins`),
batched by a ``DataLoader`` and scored under ``torch.no_grad`` in eval mode, as cvnets'
``main_eval.py`` and timm's ``validate.py`` do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from mobilevit_edu.data.readers import ImageFolder
from mobilevit_edu.evaluate.origins import Preprocessing, preprocessing_for
from mobilevit_edu.models.checkpoints import (
    CheckpointError,
    detect_layout,
    key_map,
    read_state_dict,
    to_ours,
)
from mobilevit_edu.models.mobilevit import CONFIGS
from mobilevit_edu.models.registry import create_model, list_models

__all__ = ["SIZES", "ClassCountError", "load_classifier", "evaluate_imagenet", "topk_hits",
           "spread_indices", "resolve_device"]

SIZES = ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s")


class ClassCountError(ValueError):
    """The data's classes do not match the model's head (reported in one line by the CLI)."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``: CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# [d, C, 1, 1] of layer5's MobileViT block: its (d, C) differs between XXS, XS and S
_FINGERPRINT = "layer5.1.conv_1x1.weight"


def _read_file_shape(state: Mapping[str, torch.Tensor], layout: str,
                     path: Any) -> tuple[int, list[str]]:
    """(classes of the checkpoint's classifier, the MobileViT sizes its layer5 widths allow),
    read under the layout's names for our keys (the same names for every size)."""
    names = key_map(create_model("mobilevit_xxs", num_classes=1), layout)
    head = names["classifier.weight"][0]
    if head not in state:
        raise CheckpointError(
            f"{path} ({layout} layout) has no classifier ({head!r} is missing): it is not an "
            "ImageNet classification checkpoint. Fix: pass the classification weights "
            "(detection and segmentation checkpoints go to the detect and segment commands)")
    theirs = names[_FINGERPRINT][0]
    if theirs not in state:
        return int(state[head].shape[0]), list(SIZES)
    widths = tuple(state[theirs].shape[:2])  # [d, C, 1, 1] -> (d, C)
    configs = {n: CONFIGS[n.removeprefix("mobilevit_")] for n in SIZES}
    sizes = [n for n, c in configs.items() if widths == (c.transformer_dims[-1], c.channels[-1])]
    return int(state[head].shape[0]), sizes


def load_classifier(weights: str | os.PathLike | Mapping[str, torch.Tensor], name: str | None = None,
                    num_classes: int | None = None) -> tuple[nn.Module, str]:
    """``(model in eval mode, layout)`` for a classification checkpoint of any layout (``"ours"``,
    ``"hf"``, ``"timm"``, ``"cvnets"``, detected from the key names).

    The MobileViT size is found from the tensors' shapes (layer5's widths pick the candidates,
    then the one size all tensors fit) unless ``name`` says it; the number of classes from the
    classifier unless ``num_classes`` says it. A file that fits no size, or several, raises
    :class:`CheckpointError` naming the fix.
    """
    state = read_state_dict(weights) if isinstance(weights, (str, os.PathLike)) else dict(weights)
    where = weights if isinstance(weights, (str, os.PathLike)) else "the state dict"
    layout = detect_layout(state)
    if name is not None and name not in list_models():
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    classes, sizes = _read_file_shape(state, layout, where)
    num_classes = classes if num_classes is None else num_classes
    fits: list[tuple[str, nn.Module]] = []
    for candidate in [name] if name else sizes:
        model = create_model(candidate, num_classes=num_classes)
        try:
            converted = to_ours(state, model, layout)
        except CheckpointError as err:
            if name:  # the user chose the size: say exactly what does not fit
                raise CheckpointError(f"{where} does not fit --model {name}: {err}") from err
            continue
        model.load_state_dict(converted)
        fits.append((candidate, model))
    if not fits:
        raise CheckpointError(
            f"{where} ({layout} layout, {num_classes} classes) fits none of {', '.join(SIZES)}: "
            "its tensor shapes match no MobileViT size. Fix: pass MobileViT classification "
            "weights, or --model NAME to list the tensors that do not fit")
    if len(fits) > 1:
        raise CheckpointError(f"{where} fits several sizes ({', '.join(n for n, _ in fits)}); "
                              "Fix: choose one with --model")
    return fits[0][1].eval(), layout


def spread_indices(n: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(n)`` (all of them when ``limit`` is None or
    not smaller): a ``--limit`` subset then still covers every class of a sorted folder."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return [(k * n) // limit for k in range(limit)]


def topk_hits(logits: torch.Tensor, targets: torch.Tensor, k: int = 5) -> tuple[int, int]:
    """``(top-1 hits, top-k hits)`` of ``logits [B, C]`` against ``targets [B]``; ``k`` is capped
    at the number of classes."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices  # [B, C] -> [B, k]
    hits = top == targets.to(top.device)[:, None]  # [B, k]
    return int(hits[:, 0].sum()), int(hits.any(dim=1).sum())


def evaluate_imagenet(
    model: nn.Module,
    data: str | os.PathLike | ImageFolder,
    *,
    preprocessing: Preprocessing | str,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    limit: int | None = None,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Top-1 and top-5 accuracy (fractions in [0, 1]) of ``model`` on the image folder ``data``.

    Every image goes through ``preprocessing`` (the weights' origin: a :class:`Preprocessing`, or
    a checkpoint layout name for its default, see :func:`preprocessing_for`); ``limit`` scores
    that many images spread evenly over the sorted folder (a quick check, not the paper's number).
    Returns
    ``{"top1", "top5", "top5_k" (5, or the number of classes if fewer), "images", "classes"}``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(preprocessing, str):
        preprocessing = preprocessing_for(preprocessing)
    dataset = data if isinstance(data, ImageFolder) else ImageFolder(
        Path(data), image_size=preprocessing.crop, transform=preprocessing)
    heads = getattr(model, "num_classes", None)
    if heads is not None and heads != dataset.num_classes:
        raise ClassCountError(
            f"{dataset.root} has {dataset.num_classes} class folders but the model predicts "
            f"{heads} classes. Fix: point at the whole validation tree (ImageNet: the 1000 synset "
            "folders n01440764 ... n15075141, whose sorted order is the weights' class order)")
    device = resolve_device(device)
    indices = spread_indices(len(dataset), limit)
    subset = dataset if len(indices) == len(dataset) else Subset(dataset, indices)
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    model = model.eval().to(device)
    top1 = topk = seen = 0
    k = min(5, dataset.num_classes)
    from tqdm.auto import tqdm

    bar = tqdm(loader, desc="classify", unit="batch", file=sys.stderr, disable=not progress)
    with torch.no_grad():
        for images, targets in bar:
            logits = model(images.to(device, non_blocking=True))  # [B, 3, h, w] -> [B, classes]
            hit1, hitk = topk_hits(logits, targets, k)
            top1, topk, seen = top1 + hit1, topk + hitk, seen + len(targets)
            bar.set_postfix(top1=f"{100 * top1 / seen:.2f}%", top5=f"{100 * topk / seen:.2f}%")
    bar.close()
    return {"top1": top1 / seen, "top5": topk / seen, "top5_k": k, "images": seen,
            "classes": dataset.num_classes}
