"""Training DeepLabv3 with the official recipe (paper §4.2.2 and Appendix D; book chapter 13).

The recipe is cvnets v0.1's ``deeplabv3_mobilevit_*.yaml`` as a
:class:`~mobilevit_edu.train.recipe.TrainConfig`; the head (ASPP + classifier) learns 10 x faster
than the ImageNet-initialised backbone. The loop is the library's one training loop,
:func:`mobilevit_edu.train.loop.fit`, given a segmentation :class:`~mobilevit_edu.train.loop.Task`
(:func:`segmentation_task`): one forward + :func:`segmentation_loss` per batch, and the
validation loss, mIoU and pixel accuracy per epoch. This is the only module of the segmentation
package that imports :mod:`mobilevit_edu.train`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mobilevit_edu.segmentation.deeplabv3 import IGNORE_INDEX, DeepLabV3
from mobilevit_edu.segmentation.metrics import evaluate_segmentation, segmentation_loss
from mobilevit_edu.train.loop import StepOutput, Task, fit
from mobilevit_edu.train.recipe import History, TrainConfig, build_optimizer

__all__ = [
    "deeplabv3_recipe",
    "build_segmentation_optimizer",
    "segmentation_task",
    "train_segmenter",
]


def deeplabv3_recipe(**changes: Any) -> TrainConfig:
    """The official DeepLabv3 recipe (cvnets v0.1 ``deeplabv3_mobilevit_*.yaml``, paper App. D) as
    a :class:`~mobilevit_edu.train.recipe.TrainConfig`: 50 epochs, AdamW with weight decay 0.01,
    linear warm-up over 500 iterations from 0.00009 to 0.0009, cosine down to 1e-6, plain
    cross-entropy (no label smoothing), EMA 0.0005, 32 images per GPU on 4 GPUs (512 x 512 crops).
    The head's learning rate is 10 x (``head_lr_multiplier`` of :func:`train_segmenter`)."""
    base: dict[str, Any] = dict(
        model="deeplabv3_mobilevit_xxs", num_classes=21, epochs=50, lr=0.0009, min_lr=1e-6,
        warmup_lr=0.00009, warmup_iters=500, weight_decay=0.01, label_smoothing=0.0,
        ema_momentum=0.0005, batch_size=32, val_batch_size=16,
    )
    base.update(changes)
    return TrainConfig(**base)


def build_segmentation_optimizer(
    model: DeepLabV3, config: TrainConfig, head_lr_multiplier: float = 10.0
) -> torch.optim.Optimizer:
    """AdamW (:func:`~mobilevit_edu.train.recipe.build_optimizer`: weight decay on every
    parameter) with two groups, each with an ``lr_multiplier``: the backbone (1) and ASPP +
    classifier (``head_lr_multiplier``, the official recipe's 10). The loop sets
    ``group["lr"] = lr * group["lr_multiplier"]`` at every step."""
    optimizer = build_optimizer(model.backbone, config)
    optimizer.param_groups[0]["lr_multiplier"] = 1.0
    head = [p for n, p in model.named_parameters()
            if not n.startswith("backbone.") and p.requires_grad]
    optimizer.add_param_group({"params": head, "lr_multiplier": head_lr_multiplier,
                               "lr": config.warmup_lr * head_lr_multiplier})
    return optimizer


def segmentation_task(
    *,
    num_classes: int | None = None,
    head_lr_multiplier: float = 10.0,
    ignore_index: int = IGNORE_INDEX,
) -> Task:
    """The segmentation :class:`~mobilevit_edu.train.loop.Task` for :func:`fit`.

    step: ``(images [B, 3, H, W], masks [B, H, W])`` -> :func:`segmentation_loss`; a batch of a
    single image is skipped (ASPP's pooling branch has a BatchNorm over one value per image,
    which needs two). The epoch row's ``train_loss`` is the mean of the per-batch losses.
    evaluate: ``val_loss``, ``val_miou``, ``val_pixel_acc`` (:func:`evaluate_segmentation`), also
    for the EMA model (``ema_`` keys). Optimizer: :func:`build_segmentation_optimizer`."""

    def step(model: nn.Module, batch: Any, device: torch.device) -> StepOutput | None:
        images, masks = batch
        if images.shape[0] < 2:
            return None
        images, masks = images.to(device), masks.to(device)
        loss = segmentation_loss(model(images), masks, ignore_index)
        return StepOutput(loss, {"train_loss": float(loss.detach())}, 1,
                          size=tuple(images.shape[-2:]), images=images.shape[0])

    def evaluate(model: nn.Module, val_data: Any, config: TrainConfig,
                 device: torch.device) -> dict[str, float]:
        m = evaluate_segmentation(model, val_data, num_classes=num_classes,
                                  batch_size=config.val_batch_size, ignore_index=ignore_index,
                                  device=device)
        return {"val_loss": m["loss"], "val_miou": m["miou"], "val_pixel_acc": m["pixel_acc"]}

    def optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
        return build_segmentation_optimizer(model, config, head_lr_multiplier)

    return Task(name="segmentation", step=step, evaluate=evaluate, evaluate_ema=True,
                build_optimizer=optimizer)


def train_segmenter(
    model: DeepLabV3,
    train_data: Dataset,
    val_data: Dataset | None,
    config: TrainConfig,
    *,
    head_lr_multiplier: float = 10.0,
    ignore_index: int = IGNORE_INDEX,
    resume: str | os.PathLike | None = None,
) -> History:
    """Train ``model`` on ``(image, mask)`` pairs with ``config`` and return the per-epoch
    :class:`~mobilevit_edu.train.recipe.History` (``train_loss``, ``val_loss``, ``val_miou``,
    ``val_pixel_acc``, and the same with ``ema_`` when ``config.ema_momentum``).

    A thin wrapper over :func:`mobilevit_edu.train.loop.fit` with :func:`segmentation_task`, so
    every :class:`TrainConfig` field holds as for classification (device, AMP, ``out_dir`` with
    metrics and ``last.pt`` every ``checkpoint_every`` epochs, ``log_format``, EMA, DDP) and
    ``resume=`` continues a run exactly. AdamW with two groups: the backbone at the scheduled
    rate, ASPP + classifier at ``head_lr_multiplier`` times it, as the official ``lr_multiplier``.
    """
    task = segmentation_task(num_classes=model.num_classes,
                             head_lr_multiplier=head_lr_multiplier, ignore_index=ignore_index)
    return fit(model, train_data, val_data, config, task, resume=resume)
