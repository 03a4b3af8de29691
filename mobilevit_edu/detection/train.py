"""Training SSDLite (paper §4.2.1): SSD's step for the book's one training loop.

The detection recipe (``ssd_mobilevit_*_320.yaml`` of apple/ml-cvnets v0.1) is the classification
recipe of §4.1 with other numbers, so :func:`train_detector` is the loop of
:mod:`mobilevit_edu.train.loop` with a detection :class:`~mobilevit_edu.train.loop.Task`: a random
horizontal flip (the official crop and colour augmentation are data-set transforms), the
anchors matched and encoded per batch, and :func:`ssd_loss`; scored after each epoch by the COCO
evaluator (:func:`evaluate_detector`, post-processing ``"v0.1"``). This is the only module of the
detection package that imports the training loop.
"""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn
from torch.utils.data import Dataset

from mobilevit_edu.detection.boxes import hflip_boxes
from mobilevit_edu.detection.coco import evaluate_detector
from mobilevit_edu.detection.config import SSDConfig
from mobilevit_edu.detection.datasets import DetectionBatch, detection_collate
from mobilevit_edu.detection.loss import ssd_loss
from mobilevit_edu.detection.matching import encode_targets
from mobilevit_edu.detection.ssdlite import SSDLite
from mobilevit_edu.train.loop import StepOutput, Task, fit
from mobilevit_edu.train.recipe import History, TrainConfig

__all__ = ["detection_task", "train_detector"]


def detection_task(config: SSDConfig = SSDConfig(), *, hflip: bool = True) -> Task:
    """The :class:`~mobilevit_edu.train.loop.Task` of SSD training for :func:`~mobilevit_edu.
    train.loop.fit`.

    ``step``: move a :class:`DetectionBatch` to the device; with ``hflip`` flip each image (and
    its boxes) with probability 1/2, drawn from the global torch RNG (which the loop seeds and
    checkpoints); match and encode the boxes against the anchors of this batch's size; return
    :func:`ssd_loss` (``loss``, ``loc_loss``, ``cls_loss``, each a per-batch mean: count 1).
    ``evaluate``: the COCO ``mAP``, ``AP50`` and ``AP75`` of the model on the validation set, in
    batches of ``val_batch_size`` (the EMA model is not scored, as before)."""

    def step(model: nn.Module, batch: DetectionBatch, device: torch.device) -> StepOutput:
        images, boxes = batch.images.to(device), list(batch.boxes)
        h, w = images.shape[-2:]
        if hflip:
            flip = torch.rand(len(boxes)) < 0.5  # [B], from the global RNG
            images = torch.where(flip[:, None, None, None].to(device), images.flip(-1), images)
            boxes = [hflip_boxes(b, w) if f else b for b, f in zip(boxes, flip.tolist())]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        out = model(images)
        gt_locs, gt_labels = encode_targets([b / scale for b in boxes], batch.labels,
                                            out.anchors, config)
        loss = ssd_loss(out.scores, out.locations, gt_labels, gt_locs, config.neg_pos_ratio)
        sums = {"loss": loss.total.item(), "loc_loss": loss.loc.item(), "cls_loss": loss.cls.item()}
        return StepOutput(loss.total, sums, 1, size=(int(h), int(w)), images=len(boxes))

    def evaluate(model: nn.Module, val_data: Dataset, train_config: TrainConfig,
                 device: torch.device) -> dict[str, float]:
        m = evaluate_detector(model, val_data, batch_size=train_config.val_batch_size,
                              device=device)
        return {"mAP": m["mAP"], "AP50": m["AP50"], "AP75": m["AP75"]}

    return Task("detection", step, evaluate, evaluate_ema=False, collate=detection_collate)


def train_detector(model: SSDLite, dataset: Dataset, config: TrainConfig, *,
                   val_data: Dataset | None = None, hflip: bool = True,
                   device: str | torch.device | None = None,
                   resume: str | os.PathLike | None = None) -> History:
    """Train an SSDLite with the official detection recipe, scaled by ``config``.

    The recipe (``ssd_mobilevit_*_320.yaml``) is the classification one of chapter 10 with other
    numbers: AdamW (weight decay 0.01 on every parameter), a linear warm-up per iteration from
    ``config.warmup_lr`` to ``config.lr`` (official: 0.00009 -> 0.0009 over 500 iterations),
    then a cosine per epoch down to ``config.min_lr`` (official: 1e-6), EMA if
    ``config.ema_momentum``; the loss is :func:`ssd_loss`. Augmentation here: a random
    horizontal flip (``hflip``). The rest of the official augmentation (SSD random crop,
    photometric distortion, flip, resize: ``ssd_train_transform`` of
    ``mobilevit_edu.data.detection_transforms``) belongs to the data set (``transform=`` of
    ``CocoDetection`` / ``ShapesDetection``); it flips already, so pass
    ``hflip=False`` with it. The run is a function of ``config.seed`` (data order, flips,
    dropout, and the data set's transforms, which draw from torch's RNG).

    It is :func:`~mobilevit_edu.train.loop.fit` with :func:`detection_task`, so every
    ``TrainConfig`` field holds: ``device`` (``device=`` overrides it; ``None``: the loop's
    default, a GPU if there is one), ``amp``, ``out_dir`` (``metrics.csv``/``.json`` and
    ``last.pt``), ``checkpoint_every``, ``log_format``, and ``resume=`` (a ``last.pt``) continues
    a run. Returns a ``History`` with one row per epoch (``loss``, ``loc_loss``, ``cls_loss``,
    ``lr``, ``seconds``, ``updates``, ``iteration``, ``images``; with ``val_data`` also the COCO
    ``mAP``, ``AP50`` and ``AP75`` of the model after the epoch) and the per-step losses as
    ``history.steps``; ``history.ema`` is the EMA model (or ``None``)."""
    if device is not None:
        config = dataclasses.replace(config, device=str(device))
    task = detection_task(model.config, hflip=hflip)
    return fit(model, dataset, val_data, config, task, resume=resume)
