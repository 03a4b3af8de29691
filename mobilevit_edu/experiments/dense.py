"""Detection and segmentation runs of the protocol: Tables 1 and 2 as comparisons of backbones.

Paper §4.2: SSDLite (Table 1) and DeepLabv3 (Table 2) on MobileViT are more accurate than on
MobileNetV2 with fewer parameters (MobileViT-XS 24.8 mAP, 2.7 M against MobileNetV2 22.1 mAP,
4.3 M; mIoU 77.1 %, 2.9 M against 75.7 %, 4.5 M). The book trains both backbones from scratch
with the same recipe on the rendered scenes (chapters 12 and 13 at their scale), scores them on
a validation split (for choosing settings) and a test split (for reporting), each rendered from
its own seed.

:func:`run_detection` and :func:`run_segmentation` are the ``run`` functions of the
``detection`` and ``segmentation`` experiments: ``config`` says what differs between arms
(``backbone`` above all), ``seed`` fixes the initial weights, the data order and augmentation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mobilevit_edu.data.segmentation_transforms import deeplab_train_transform
from mobilevit_edu.detection import ShapesDetection, create_ssdlite, evaluate_detector
from mobilevit_edu.detection.train import train_detector
from mobilevit_edu.experiments.classification import DATA_SEEDS
from mobilevit_edu.segmentation import (
    ShapesSegmentation, create_deeplabv3, deeplabv3_recipe, evaluate_segmentation,
)
from mobilevit_edu.segmentation.train import train_segmenter
from mobilevit_edu.train.recipe import TrainConfig

__all__ = ["DETECTION_DEFAULTS", "SEGMENTATION_DEFAULTS", "run_detection", "run_segmentation"]

DETECTION_DEFAULTS: dict[str, Any] = {  # chapter 12's scale
    "backbone": "mobilevit_xxs", "image_size": 160, "n_train": 800, "n_val": 100,
    "n_test": 200, "epochs": 5, "batch_size": 4, "lr": 0.002, "weight_decay": 0.01,
    "threads": 1,
}
SEGMENTATION_DEFAULTS: dict[str, Any] = {  # chapter 13's scale, with the official augmentation
    "backbone": "mobilevit_xxs", "image_size": 128, "n_train": 1200, "n_val": 100,
    "n_test": 200, "epochs": 4, "batch_size": 8, "lr": 0.0009, "weight_decay": 0.01,
    "threads": 1,
}


def _settings(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(config) - set(defaults)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(defaults)}")
    c = {**defaults, **config}
    torch.set_num_threads(int(c["threads"]))
    return c


def run_detection(config: Mapping[str, Any], seed: int) -> dict[str, float]:
    """Train SSDLite on ``config["backbone"]`` from scratch (chapter 12's recipe: linear warm-up
    over one epoch from lr/10, cosine to lr/100, AdamW, random flips) and return COCO's
    ``val_map``, ``test_map``, ``test_ap50`` (fractions) and ``updates``."""
    c = _settings(config, DETECTION_DEFAULTS)
    train = ShapesDetection(c["n_train"], image_size=c["image_size"], seed=DATA_SEEDS["train"])
    val = ShapesDetection(c["n_val"], image_size=c["image_size"], seed=DATA_SEEDS["val"])
    test = ShapesDetection(c["n_test"], image_size=c["image_size"], seed=DATA_SEEDS["test"])
    iters = -(-c["n_train"] // c["batch_size"])
    recipe = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
                         warmup_lr=c["lr"] / 10, min_lr=c["lr"] / 100, warmup_iters=iters,
                         weight_decay=c["weight_decay"], label_smoothing=0.0, ema_momentum=None,
                         seed=seed, verbose=False, progress=False, device="cpu",
                         channels_last=True, fused_adamw=True)
    torch.manual_seed(seed)
    model = create_ssdlite(c["backbone"], num_classes=len(train.categories) + 1,
                           image_size=c["image_size"])
    history = train_detector(model, train, recipe, hflip=True)
    v, t = evaluate_detector(model, val, batch_size=50), evaluate_detector(model, test,
                                                                           batch_size=50)
    return {"val_map": v["mAP"], "test_map": t["mAP"], "test_ap50": t["AP50"],
            "updates": float(history[-1]["iteration"])}


def run_segmentation(config: Mapping[str, Any], seed: int) -> dict[str, float]:
    """Train DeepLabv3 on ``config["backbone"]`` from scratch (chapter 13's recipe: the official
    one scaled down, the head at 10x the rate, the official augmentation scaled to the image
    size) and return ``val_miou``, ``test_miou``, ``test_pixel_acc`` (fractions) and
    ``updates``."""
    c = _settings(config, SEGMENTATION_DEFAULTS)
    size = c["image_size"]
    augment = deeplab_train_transform(crop=size, min_size=size // 2, max_size=2 * size)
    train = ShapesSegmentation(c["n_train"], image_size=size, seed=DATA_SEEDS["train"],
                               transform=augment)
    val = ShapesSegmentation(c["n_val"], image_size=size, seed=DATA_SEEDS["val"])
    test = ShapesSegmentation(c["n_test"], image_size=size, seed=DATA_SEEDS["test"])
    iters = c["n_train"] // c["batch_size"]
    recipe = deeplabv3_recipe(num_classes=train.num_classes, epochs=c["epochs"],
                              batch_size=c["batch_size"], lr=c["lr"], warmup_lr=c["lr"] / 10,
                              warmup_iters=iters, weight_decay=c["weight_decay"],
                              ema_momentum=None, seed=seed, verbose=False, progress=False,
                              device="cpu", channels_last=True, fused_adamw=True)
    torch.manual_seed(seed)
    model = create_deeplabv3(c["backbone"], num_classes=train.num_classes)
    history = train_segmenter(model, train, None, recipe)
    v = evaluate_segmentation(model, val, batch_size=20)
    t = evaluate_segmentation(model, test, batch_size=20)
    return {"val_miou": v["miou"], "test_miou": t["miou"], "test_pixel_acc": t["pixel_acc"],
            "updates": float(len(history) * iters)}
