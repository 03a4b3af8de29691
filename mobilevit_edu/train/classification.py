"""Image classification with the paper's recipe (§4.1): the task the one loop runs for
chapters 10 and 11, its evaluation (top-1 and cross-entropy, at any resolution), and
``train`` / ``train_model``, the entry points the chapters and the command line use.

The loss is label-smoothed cross-entropy (``config.label_smoothing``, the paper's 0.1); a batch
is ``(images [B, 3, H, W], labels [B])``, at one resolution per batch (the multi-scale sampler
of §3.3 changes it from batch to batch).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilevit_edu.data.sampler import collate
from mobilevit_edu.models.registry import create_model
from mobilevit_edu.nn.layers import to_pair
from mobilevit_edu.train.loop import StepOutput, Task, amp_context, fit
from mobilevit_edu.train.recipe import History, TrainConfig

__all__ = ["AtResolution", "evaluate", "classification_task", "train", "train_model"]


class AtResolution(Dataset):
    """A dataset seen at one resolution through the multi-scale format ``ds[(h, w, i)]``."""

    def __init__(self, dataset: Dataset, size: int | tuple[int, int]) -> None:
        self.dataset = dataset
        self.h, self.w = to_pair(size, "image_size")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[(self.h, self.w, i)]


def _as_loader(data: Dataset | DataLoader | Iterable, batch_size: int, workers: int = 0,
               rank: int = 0, world: int = 1) -> Iterable:
    """A DataLoader over this rank's share of ``data`` in order (data loaders pass through)."""
    if not isinstance(data, Dataset):
        return data
    indices = list(range(rank, len(data), world))
    return DataLoader(torch.utils.data.Subset(data, indices) if world > 1 else data,
                      batch_size=batch_size, shuffle=False, num_workers=workers)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader | Iterable,
    *,
    image_size: int | tuple[int, int] | None = None,
    batch_size: int = 100,
    device: str | torch.device | None = None,
    amp: str = "off",
    workers: int = 0,
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` (in eval mode) on ``data``.

    ``data`` is a data loader (or any iterable of ``(images, labels)``) or a dataset; with
    ``image_size`` a dataset is read at that resolution through ``ds[(h, w, i)]`` (the format of
    the book's data and the multi-scale sampler). Under DDP every rank scores its share and the
    sums are added up, so all ranks return the same numbers. Returns
    ``{"loss", "acc", "n"}`` (accuracy as a fraction).
    """
    in_pg = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if in_pg \
        else (0, 1)
    if image_size is not None:
        if not isinstance(data, Dataset):
            raise TypeError("image_size= needs a dataset that accepts ds[(h, w, i)]")
        data = AtResolution(data, image_size)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    try:
        for images, labels in _as_loader(data, batch_size, workers, rank, world):
            images, labels = images.to(dev), torch.as_tensor(labels).to(dev)
            with amp_context(dev, amp):
                logits = model(images)
            logits = logits.float()
            totals[0] += F.cross_entropy(logits, labels, reduction="sum").item()
            totals[1] += (logits.argmax(1) == labels).sum().item()
            totals[2] += labels.numel()
    finally:
        model.train(was_training)
    if world > 1:
        t = totals.to(dev) if dev.type == "cuda" else totals
        torch.distributed.all_reduce(t)
        totals = t.cpu()
    n = max(totals[2].item(), 1.0)
    return {"loss": totals[0].item() / n, "acc": totals[1].item() / n, "n": int(totals[2].item())}


def classification_task(label_smoothing: float = 0.1) -> Task:
    """The classification :class:`~mobilevit_edu.train.loop.Task`: label-smoothed cross-entropy;
    rows ``train_loss``/``train_acc`` (per image) and ``val_loss``/``val_acc`` (and ``ema_``)."""
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def step(net: nn.Module, batch: Any, device: torch.device) -> StepOutput:
        images, labels = batch
        images = images.to(device, non_blocking=True)
        labels = torch.as_tensor(labels).to(device, non_blocking=True)
        logits = net(images)
        loss = criterion(logits, labels)
        n = labels.numel()
        correct = (logits.argmax(1) == labels).sum().item()
        return StepOutput(loss, {"train_loss": loss.item() * n, "train_acc": correct}, n,
                          size=(images.shape[-2], images.shape[-1]))

    def score(model: nn.Module, val_data: Any, config: TrainConfig,
              device: torch.device) -> dict[str, float]:
        amp = config.amp if device.type == "cuda" else "off"
        m = evaluate(model, val_data, batch_size=config.val_batch_size, device=device, amp=amp,
                     workers=config.workers)
        return {"val_loss": m["loss"], "val_acc": m["acc"]}

    return Task("classification", step, score, collate=collate, smooths_labels=True)


def train(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    val_data: Dataset | DataLoader | None,
    config: TrainConfig,
    *,
    sampler: torch.utils.data.Sampler | None = None,
    resume: str | os.PathLike | None = None,
) -> History:
    """Train a classifier with the paper's recipe (:func:`~mobilevit_edu.train.loop.fit` with
    :func:`classification_task`) and return the per-epoch :class:`History`.

    ``train_data`` is a dataset (batched by ``sampler``, e.g. ``MultiScaleSampler`` or
    ``StandardSampler``, or else by an ``EpochBatchSampler`` of ``config.batch_size``) or a
    ready ``DataLoader``; ``val_data`` (dataset or loader, may be ``None``) is scored after every
    epoch with the model and with its EMA. The model is trained in place; ``history.ema`` is the
    EMA copy (``None`` without EMA)."""
    return fit(model, train_data, val_data, config, classification_task(config.label_smoothing),
               sampler=sampler, resume=resume)


def train_model(
    name: str,
    train_data: Dataset | DataLoader,
    val_data: Dataset | DataLoader | None,
    config: TrainConfig,
    *,
    sampler: torch.utils.data.Sampler | None = None,
    **model_kwargs: Any,
) -> tuple[nn.Module, History]:
    """Build ``create_model(name, config.num_classes, **model_kwargs)`` from ``config.seed`` (the
    same initial weights for the same seed) and :func:`train` it; returns ``(model, history)``."""
    torch.manual_seed(config.seed)
    model = create_model(name, num_classes=config.num_classes, **model_kwargs)
    config = copy.copy(config)
    config.model = name
    return model, train(model, train_data, val_data, config, sampler=sampler)
