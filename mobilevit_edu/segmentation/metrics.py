"""The segmentation loss and the mIoU metric (paper §4.2.2, Table 2: "mIOU" on PASCAL VOC val).

The loss: the logits, at 1/16 of the image, are upsampled bilinearly to the mask size and scored
by cross-entropy over every pixel that is not the ignore label 255. The metric: the mean
intersection over union of a confusion matrix accumulated over the whole validation set
(:class:`ConfusionMatrix` states the definition), with :func:`evaluate_segmentation` scoring a
model on a data set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilevit_edu.segmentation.deeplabv3 import IGNORE_INDEX, upsample_logits

__all__ = [
    "check_target",
    "segmentation_loss",
    "ConfusionMatrix",
    "mean_iou",
    "evaluate_segmentation",
]


def check_target(target: torch.Tensor, num_classes: int, ignore_index: int, what: str) -> None:
    """Raise if the label map ``target`` is not integer, or holds a value outside
    ``[0, num_classes)`` that is not ``ignore_index`` (``what`` names it in the message)."""
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"{what} must hold integer class indices, got {target.dtype}")
    valid = target[target != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        bad = torch.unique(valid[(valid < 0) | (valid >= num_classes)])[:8].tolist()
        raise ValueError(
            f"{what} holds values {bad} outside [0, {num_classes}) that are not the ignore index "
            f"{ignore_index}; check num_classes, or map such pixels to {ignore_index}"
        )


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean cross-entropy over the pixels of ``target`` ``[B, H, W]`` that are not
    ``ignore_index``, the logits ``[B, K, h, w]`` upsampled bilinearly to ``H x W`` first.

    A batch whose pixels are all ignored gives a zero loss (still connected to the graph) rather
    than the NaN of an empty mean."""
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0]:
        raise ValueError(f"expected logits [B, K, h, w] and target [B, H, W], got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    check_target(target, logits.shape[1], ignore_index, "target")
    logits = upsample_logits(logits, target.shape[-2:])  # [B, K, h, w] -> [B, K, H, W]
    if not (target != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target.long(), ignore_index=ignore_index)


class ConfusionMatrix:
    """Pixel counts ``matrix[t, p]``: pixels of ground-truth class ``t`` predicted as ``p``,
    accumulated over a data set (pixels labelled ``ignore_index`` are left out).

    The IoU of class ``c`` is ``TP / (TP + FP + FN)`` = ``matrix[c, c] / (row c + column c -
    matrix[c, c])``. A class that appears neither in the ground truth nor in the predictions has
    ``0 / 0``: its IoU is NaN and the mean IoU leaves it out (a class that is predicted but absent
    from the ground truth has IoU 0 and counts). This is the usual definition (e.g. mmsegmentation);
    on PASCAL VOC val every class is present, so it is the plain mean over the 21 classes.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> "ConfusionMatrix":
        """Add a batch: ``prediction`` is a label map of ``target``'s shape, or logits with one
        more (class) dimension ``[B, K, h, w]``, upsampled to the mask size and argmaxed."""
        if prediction.dim() == target.dim() + 1:
            if target.dim() == 2:
                prediction, target = prediction[None], target[None]  # [K, h, w] -> [1, K, h, w]
            prediction = upsample_logits(prediction.float(), target.shape[-2:]).argmax(1)
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target "
                             f"{tuple(target.shape)} must have the same shape")
        check_target(target, self.num_classes, self.ignore_index, "target")
        keep = target != self.ignore_index
        t, p = target[keep].long().cpu(), prediction[keep].long().cpu()
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= self.num_classes):
            raise ValueError(f"predictions must be in [0, {self.num_classes}), got "
                             f"[{int(p.min())}, {int(p.max())}]")
        k = self.num_classes
        self.matrix += torch.bincount(t * k + p, minlength=k * k).reshape(k, k)  # [K*K] -> [K, K]
        return self

    def iou(self) -> torch.Tensor:
        """Per-class IoU ``[K]`` (float64), NaN for classes absent from both sides."""
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def mean_iou(self) -> float:
        """The mean of :meth:`iou` over the classes where it is defined (NaN if none is)."""
        iou = self.iou()
        defined = ~iou.isnan()
        return float(iou[defined].mean()) if defined.any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = int(self.matrix.sum())
        return float(self.matrix.diag().sum()) / total if total else float("nan")

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.matrix.sum())}, "
                f"mIoU={self.mean_iou():.4f})")


def mean_iou(
    prediction: torch.Tensor, target: torch.Tensor, num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> float:
    """mIoU of one set of label maps (see :class:`ConfusionMatrix` for the definition)."""
    return ConfusionMatrix(num_classes, ignore_index).update(prediction, target).mean_iou()


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    data: Dataset | DataLoader | Iterable,
    *,
    num_classes: int | None = None,
    batch_size: int = 16,
    ignore_index: int = IGNORE_INDEX,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Score ``model`` (eval mode) on ``(image, mask)`` pairs as the data set gives them: the logits
    are upsampled bilinearly to each batch's mask size, so the score is at the data set's size
    (the book's rendered shapes, or the validation loss during training). Returns ``{"miou",
    "pixel_acc", "loss", "iou" (list, NaN for absent classes), "confusion"}``.

    For PASCAL VOC use :func:`~mobilevit_edu.segmentation.evaluate.evaluate_voc`: it resizes only
    the network's input and scores against each *original* mask, as the paper's code does; a data
    set of resized masks gives a different (not comparable) number."""
    k = num_classes or model.num_classes
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    loader = (DataLoader(data, batch_size=batch_size, shuffle=False)
              if isinstance(data, Dataset) else data)
    cm = ConfusionMatrix(k, ignore_index)
    loss_sum, pixels = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for images, masks in loader:
            images, masks = images.to(dev), masks.to(dev)
            logits = upsample_logits(model(images), masks.shape[-2:])  # [B, K, H, W]
            n = int((masks != ignore_index).sum())
            if n:
                loss_sum += float(segmentation_loss(logits, masks, ignore_index)) * n
                pixels += n
            cm.update(logits.argmax(1), masks)
    finally:
        model.train(was_training)
    return {"miou": cm.mean_iou(), "pixel_acc": cm.pixel_accuracy(),
            "loss": loss_sum / max(pixels, 1), "iou": cm.iou().tolist(), "confusion": cm}
