"""One classification run of the protocol: a model of the book trained with the paper's recipe
(§4.1) on the rendered shapes, scored on a validation split (for choosing settings) and a test
split (for reporting), each rendered from its own seed so that no scene is shared.

:func:`run_classification` is the ``run`` function of the classification experiments
(Fig. 8b, Fig. 9b, Table 5, Table 7, Fig. 13, Fig. 14): ``config`` says everything that differs
between arms, ``seed`` fixes the initial weights, the data order, dropout and augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from mobilevit_edu.data.sampler import MultiScaleSampler
from mobilevit_edu.data.shapes import ShapesDataset
from mobilevit_edu.models.batchnorm import calibrate_batchnorm
from mobilevit_edu.models.registry import create_model
from mobilevit_edu.train.classification import evaluate, train
from mobilevit_edu.train.recipe import TrainConfig

__all__ = ["DATA_SEEDS", "DEFAULTS", "shapes_splits", "run_classification"]

DATA_SEEDS = {"train": 0, "val": 10_000, "test": 20_000}  # three disjoint sets of scenes
DEFAULTS: dict[str, Any] = {
    "model": "mobilevit_xxs", "overrides": {}, "task": "shape", "image_size": 32,
    "n_train": 2400, "n_val": 500, "n_test": 1000, "epochs": 10, "batch_size": 64,
    "lr": 0.002, "weight_decay": 0.01, "label_smoothing": 0.1, "ema": True,
    "sampler": "standard", "threads": 1, "test_sizes": (),
}


def shapes_splits(task: str, image_size: int, n_train: int, n_val: int,
                  n_test: int) -> tuple[ShapesDataset, ShapesDataset, ShapesDataset]:
    """The train, validation and test sets of ``task`` (cached renders)."""
    return tuple(ShapesDataset(n, task=task, image_size=image_size, seed=DATA_SEEDS[split],
                               cache=True)
                 for split, n in (("train", n_train), ("val", n_val), ("test", n_test)))


def run_classification(config: Mapping[str, Any], seed: int) -> dict[str, float]:
    """Train ``config["model"]`` with the recipe and return its accuracies (fractions).

    Training runs in NHWC memory order with a fused AdamW (``channels_last``, ``fused_adamw``:
    the same recipe, about 1.5x the images per second on a CPU, results equal to float rounding;
    ``benchmarks/train_throughput.py`` measures it). The recipe's clocks are scaled to the run as
    chapter 10 explains: one epoch of linear
    warm-up from lr/10, a cosine to lr/10, an EMA spanning two epochs. With ``ema`` the EMA
    model is also scored after re-estimating its BatchNorm statistics on training batches.
    Returns ``val_acc``, ``test_acc`` (the trained weights), ``ema_val_acc``, ``ema_test_acc``
    (if ``ema``), ``train_loss`` (last epoch) and ``updates``; for every size ``s`` in
    ``test_sizes`` also ``test_acc@s``: the same test scenes rendered natively at ``s x s``
    (Fig. 7's accuracy across resolutions)."""
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **config}
    torch.set_num_threads(int(c["threads"]))
    tr, va, te = shapes_splits(c["task"], c["image_size"], c["n_train"], c["n_val"], c["n_test"])
    iters = math.ceil(c["n_train"] / c["batch_size"])
    sampler = None
    if c["sampler"] == "multiscale":
        base = c["image_size"]
        sampler = MultiScaleSampler(len(tr), base_size=base, base_batch=c["batch_size"],
                                    min_size=max(16, int(base * 0.625)),
                                    max_size=int(base * 1.25), divisor=8 if base < 128 else 32,
                                    seed=seed)
        iters = len(sampler)
    elif c["sampler"] != "standard":
        raise ValueError(f"sampler must be 'standard' or 'multiscale', got {c['sampler']!r}")
    recipe = TrainConfig(
        num_classes=tr.num_classes, epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
        min_lr=c["lr"] / 10, warmup_lr=c["lr"] / 10, warmup_iters=iters,
        weight_decay=c["weight_decay"], label_smoothing=c["label_smoothing"],
        ema_momentum=1 / (2 * iters) if c["ema"] else None, seed=seed, verbose=False,
        progress=False, device="cpu", channels_last=True, fused_adamw=True)
    torch.manual_seed(seed)
    model = create_model(c["model"], num_classes=tr.num_classes, **dict(c["overrides"]))
    history = train(model, tr, va, recipe, sampler=sampler)
    out = {"val_acc": evaluate(model, va)["acc"], "test_acc": evaluate(model, te)["acc"],
           "train_loss": history[-1]["train_loss"], "updates": float(history[-1]["iteration"])}
    for size in c["test_sizes"]:
        out[f"test_acc@{int(size)}"] = evaluate(model, te, image_size=int(size))["acc"]
    if history.ema is not None:
        batches = [torch.stack([tr[i][0] for i in range(k, min(k + 64, len(tr)))])
                   for k in range(0, min(len(tr), 512), 64)]  # [64, 3, H, W] each
        ema = calibrate_batchnorm(history.ema, batches)
        out.update(ema_val_acc=evaluate(ema, va)["acc"], ema_test_acc=evaluate(ema, te)["acc"])
    return out
