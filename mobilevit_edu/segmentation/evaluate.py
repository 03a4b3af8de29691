"""Scoring DeepLabv3 on PASCAL VOC 2012 val the way the paper's code does (paper §4.2.2, Table 2).

The protocol is cvnets v0.1's ``cvnets-eval-seg --evaluation.segmentation.mode validation_set
--evaluation.segmentation.resize-input-images`` (the command of its ``examples/README-mobilevit.md``
that produced 72.8 / 77.1 / 79.3 mIoU for the released XXS / XS / S weights):

1. ``PascalVOCDataset.evaluation_transforms`` (``data/datasets/segmentation/pascal_voc.py``):
   the image, read by ``cv2.imread`` (**BGR**, uint8), is resized to the sampler's 512 x 512
   (``tf.Resize``: ``cv2.resize`` bilinear), divided by 255 (``NumpyToTensor``, no mean/std);
   the mask is **not** resized ("for evaluation purposes, resize only the input and not mask").
2. ``engine/eval_segmentation.py`` ``predict_and_save``: the network's output, already upsampled
   bilinearly x16 to 512 x 512 by the classifier's ``UpSample`` (``heads/deeplabv3.py``), is resized
   with ``mode="nearest"`` to the original ``(im_height, im_width)`` and argmaxed; one confusion
   matrix over the whole split, ground truth outside ``[0, 21)`` (the 255 boundary) left out;
   mIoU = mean of the 21 IoUs. Without ``resize-input-images`` each image keeps its size, cut
   down to a multiple of the output stride (``image_size=None`` here).

Hugging Face's port reads the same BGR input: its ``MobileViTImageProcessor`` has
``do_flip_channel_order=True`` ("flip the color channels from RGB to BGR") and the
``apple/deeplabv3-mobilevit-*`` ``preprocessor_config.json`` adds rescale 1/255, shortest edge 544
and a 512 centre crop (a crop cannot be scored against the whole mask, so evaluation here uses the
cvnets protocol for both); its ``post_process_semantic_segmentation`` upsamples the low-resolution
logits bilinearly straight to the target size (``upsample="bilinear"`` here). Weights trained by
this book read RGB. :func:`load_segmenter` reads any of the three layouts and says which it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilevit_edu.models.checkpoints import CheckpointError, read_state_dict
from mobilevit_edu.models.mobilevit import CONFIGS
from mobilevit_edu.nn.layers import to_pair
from mobilevit_edu.segmentation.cvnets import (
    SEGMENTATION_LAYOUTS, detect_segmentation_layout, load_segmentation_state_dict,
    segmentation_head_key,
)
from mobilevit_edu.segmentation.datasets import VOCSegmentation
from mobilevit_edu.segmentation.deeplabv3 import (
    IGNORE_INDEX, DeepLabV3, create_deeplabv3, mobilevit_size, upsample_logits,
)
from mobilevit_edu.segmentation.metrics import ConfusionMatrix

__all__ = [
    "ORIGINS",
    "BGR_ORIGINS",
    "UPSAMPLE_MODES",
    "channel_order",
    "infer_segmenter_shape",
    "load_segmenter",
    "voc_eval_input",
    "VOCEvalInputs",
    "collate_inputs_and_masks",
    "labels_at_mask_size",
    "evaluate_voc",
]

ORIGINS: tuple[str, ...] = SEGMENTATION_LAYOUTS  # "ours", "hf", "cvnets"
BGR_ORIGINS: tuple[str, ...] = ("cvnets", "hf")  # the released weights learnt BGR (cv2.imread)
UPSAMPLE_MODES: tuple[str, ...] = ("cvnets", "bilinear")
# ASPP's input width (layer5's channels) names the backbone: 80 xxs, 96 xs, 160 s
_SIZE_BY_WIDTH = {config.channels[-1]: size for size, config in CONFIGS.items()}


def channel_order(origin: str) -> str:
    """"BGR" for weights released by Apple (cvnets, and Hugging Face's port of them), "RGB" for
    weights trained by this book; anything else raises a ``ValueError``."""
    if origin not in ORIGINS:
        raise ValueError(f"unknown weights origin {origin!r}; use one of {ORIGINS} "
                         "(load_segmenter returns it)")
    return "BGR" if origin in BGR_ORIGINS else "RGB"


def infer_segmenter_shape(state_dict: dict[str, torch.Tensor], layout: str) -> tuple[str, int]:
    """``(size, num_classes)`` of a DeepLabv3 state dict in ``layout``, read off two shapes: the
    ASPP 1x1 branch ``[256, C5, 1, 1]`` (C5 = 80 / 96 / 160 for xxs / xs / s) and the classifier
    ``[K, 256, 1, 1]``. Raises a :class:`CheckpointError` if either is missing or unknown."""
    aspp = segmentation_head_key("aspp.branches.0.conv.weight", layout)
    classifier = segmentation_head_key("classifier.weight", layout)
    for key in (aspp, classifier):
        if key not in state_dict:
            raise CheckpointError(f"no {key} in the checkpoint ({layout} layout), so its size "
                                  "cannot be read. Fix: pass a complete DeepLabv3 checkpoint")
    width = int(state_dict[aspp].shape[1])
    if width not in _SIZE_BY_WIDTH:
        raise CheckpointError(
            f"{aspp} reads {width} channels; MobileViT's layer5 has "
            f"{', '.join(f'{w} ({s})' for w, s in _SIZE_BY_WIDTH.items())}. Fix: this is not a "
            "DeepLabv3-MobileViT checkpoint of a known size")
    return _SIZE_BY_WIDTH[width], int(state_dict[classifier].shape[0])


def load_segmenter(
    weights: str | os.PathLike, name: str | None = None, num_classes: int | None = 21
) -> tuple[DeepLabV3, str]:
    """A DeepLabv3-MobileViT built and loaded from the file ``weights`` in any layout (apple/
    ml-cvnets' released ``deeplabv3_mobilevit_*.pt``, Hugging Face's ``apple/deeplabv3-mobilevit-*``
    weights, or ours), in eval mode, with its origin ("cvnets", "hf" or "ours": what
    :func:`evaluate_voc` needs to feed it BGR or RGB).

    ``weights`` may also be a Hugging Face model folder (its ``model.safetensors`` or
    ``pytorch_model.bin`` is read). The size is read off the tensors' shapes; ``name`` ("xxs", "xs", "s"), if given, and
    ``num_classes`` (None: whatever the file has) are checked against them. Every problem (no such
    file, not a checkpoint, a classification checkpoint, another size or class count, a missing,
    extra or mis-shaped tensor) raises a :class:`CheckpointError` that names the file."""
    path = Path(weights)
    if path.is_dir():  # a Hugging Face snapshot: config.json + the weights file
        path = next((path / f for f in ("model.safetensors", "pytorch_model.bin")
                     if (path / f).is_file()), path)
    state_dict = read_state_dict(path)  # a CheckpointError naming the file if unreadable
    try:
        origin = detect_segmentation_layout(state_dict)
        size, classes = infer_segmenter_shape(state_dict, origin)
        if name is not None:
            if mobilevit_size(name) != size:
                raise CheckpointError(
                    f"it holds a DeepLabv3-MobileViT-{size.upper()}, not {name!r}. Fix: pass "
                    f"name={size!r} or name=None (the size is read from the file)")
        if num_classes is not None and num_classes != classes:
            raise CheckpointError(
                f"its classifier predicts {classes} classes, not num_classes={num_classes}. "
                f"Fix: pass num_classes={classes} (or None) and score it on a data set of "
                f"{classes} classes")
        model = create_deeplabv3(size, num_classes=classes)
        load_segmentation_state_dict(model, state_dict, origin)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return model.eval(), origin


def voc_eval_input(
    image: torch.Tensor,
    *,
    origin: str,
    image_size: int | tuple[int, int] | None = 512,
    output_stride: int = 16,
) -> torch.Tensor:
    """The network input ``[3, h, w]`` for one RGB image ``[3, H, W]`` in [0, 1], as cvnets' eval:
    channels flipped to BGR for released weights (:func:`channel_order`), resized bilinearly
    (no anti-aliasing, as ``cv2.resize``) to ``image_size``, or with ``image_size=None`` to the
    largest multiple of ``output_stride`` on each side, and rounded to the 256 levels of the uint8
    image ``cv2.resize`` returns; no mean/std."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image [3, H, W], got {tuple(image.shape)}")
    if channel_order(origin) == "BGR":
        image = image.flip(0)  # [3, H, W]: RGB -> BGR
    h, w = image.shape[-2:]
    size = (to_pair(image_size, "image_size") if image_size is not None else
            (max(output_stride, h // output_stride * output_stride),
             max(output_stride, w // output_stride * output_stride)))
    if tuple(size) == (h, w):
        return image
    out = F.interpolate(image[None] * 255.0, size=size, mode="bilinear",  # [1, 3, h, w]
                        align_corners=False, antialias=False)[0]  # -> [3, h, w]
    return out.round().clamp(0, 255) / 255.0


class VOCEvalInputs(Dataset):
    """``(network input [3, h, w], original mask [H, W])`` for each image of a
    :class:`VOCSegmentation` read at its own size (see :func:`voc_eval_input`)."""

    def __init__(self, voc: VOCSegmentation, *, origin: str,
                 image_size: int | tuple[int, int] | None = 512, output_stride: int = 16) -> None:
        if voc.image_size is not None or voc.transform is not None:
            raise ValueError("evaluation reads the original images and masks: build the "
                             "VOCSegmentation with image_size=None and no transform")
        channel_order(origin)  # checks it
        self.voc, self.origin = voc, origin
        self.image_size, self.output_stride = image_size, output_stride

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.voc[index]
        return voc_eval_input(image, origin=self.origin, image_size=self.image_size,
                              output_stride=self.output_stride), mask


def collate_inputs_and_masks(
    batch: list[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stack the network inputs (all one size) and keep the masks (each its own size) in a list."""
    return torch.stack([x for x, _ in batch]), [m for _, m in batch]


def labels_at_mask_size(
    logits: torch.Tensor, input_size: tuple[int, int], mask_size: tuple[int, int],
    upsample: str = "cvnets",
) -> torch.Tensor:
    """The label map ``[H, W]`` (int64) of one image's logits ``[K, h, w]`` at its mask's size.

    ``upsample="cvnets"``: bilinear to the network input size (the official classifier's
    ``UpSample`` x output stride), argmax, then nearest to ``mask_size`` (``predict_and_save``;
    nearest resizing commutes with the argmax). ``"bilinear"``: the low-resolution logits bilinearly
    straight to ``mask_size``, then argmax (Hugging Face's post-processing)."""
    if upsample == "cvnets":
        labels = upsample_logits(logits[None].float(), input_size).argmax(1)  # [1, K, h, w] -> [1, h, w]
        if tuple(labels.shape[-2:]) != tuple(mask_size):
            labels = F.interpolate(labels[None].float(), size=tuple(mask_size),  # [1, 1, h, w]
                                   mode="nearest")[0].long()  # -> [1, H, W]
        return labels[0]  # [1, H, W] -> [H, W]
    if upsample == "bilinear":
        return upsample_logits(logits[None].float(), mask_size).argmax(1)[0]  # [1, K, H, W] -> [H, W]
    raise ValueError(f"unknown upsample {upsample!r}; use one of {UPSAMPLE_MODES}")


@torch.no_grad()
def evaluate_voc(
    model: nn.Module,
    voc_root: str | os.PathLike,
    *,
    origin: str,
    split: str = "val",
    image_size: int | tuple[int, int] | None = 512,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    limit: int | None = None,
    progress: bool = True,
    upsample: str = "cvnets",
    num_workers: int = 0,
) -> dict[str, Any]:
    """mIoU of ``model`` on PASCAL VOC 2012 ``split`` with the official protocol (module docstring):
    each image read at its size, BGR for ``origin`` "cvnets"/"hf", resized to ``image_size`` for
    the network; the logits brought back to the **original** mask's size (``upsample``), never the
    mask resized; one confusion matrix over the split, 255 pixels left out.

    ``limit`` scores the first ``limit`` images only (a quick check, not the paper's number);
    ``image_size=None`` feeds each image at its own size (one at a time). Returns ``{"miou",
    "pixel_acc", "per_class_iou" (class -> IoU, NaN if absent from both sides), "images",
    "pixels" (scored), "confusion" (K x K list), "origin", "image_size", "upsample"}``. The mean
    leaves out classes absent from both sides (cvnets averages all 21; the same on the full val
    split, where every class occurs)."""
    voc = VOCSegmentation(voc_root, split)
    classes = getattr(model, "num_classes", voc.num_classes)
    if classes != voc.num_classes:
        raise ValueError(f"the model predicts {classes} classes, PASCAL VOC has "
                         f"{voc.num_classes}. Fix: load a 21-class segmenter")
    stride = int(getattr(model, "output_stride", 16))
    inputs = VOCEvalInputs(voc, origin=origin, image_size=image_size, output_stride=stride)
    n = len(inputs) if limit is None else max(0, min(int(limit), len(inputs)))
    loader = DataLoader(torch.utils.data.Subset(inputs, range(n)), shuffle=False,
                        batch_size=batch_size if image_size is not None else 1,
                        collate_fn=collate_inputs_and_masks, num_workers=num_workers)
    dev = (torch.device(device) if device is not None
           else next(model.parameters(), torch.empty(0)).device)
    cm = ConfusionMatrix(voc.num_classes, IGNORE_INDEX)
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc=f"VOC {split} mIoU", unit="image", disable=not progress)
    was_training = model.training
    model.eval()
    try:
        for images, masks in loader:
            out = model(images.to(dev))
            logits = getattr(out, "logits", out)  # a Hugging Face model returns an output object
            logits = logits[0] if isinstance(logits, (tuple, list)) else logits
            for one, mask in zip(logits, masks):  # [K, h, w], [H, W]
                labels = labels_at_mask_size(one, tuple(images.shape[-2:]), tuple(mask.shape),
                                             upsample)
                cm.update(labels.cpu(), mask)
            bar.update(len(masks))
            bar.set_postfix(miou=f"{cm.mean_iou():.4f}")
    finally:
        bar.close()
        model.train(was_training)
    iou = cm.iou().tolist()
    return {"miou": cm.mean_iou(), "pixel_acc": cm.pixel_accuracy(),
            "per_class_iou": dict(zip(voc.classes, iou)), "images": n,
            "pixels": int(cm.matrix.sum()), "confusion": cm.matrix.tolist(), "origin": origin,
            "image_size": image_size, "upsample": upsample}
