"""The paper's training recipe (§4.1) as data and small pieces: the config, the schedule, AdamW,
the EMA of the weights and the per-epoch history.

Paper §4.1 (and the official config of apple/ml-cvnets v0.1, ``mobilevit_*small.yaml``):

* **AdamW** with L2 weight decay 0.01 on *every* parameter (the yaml's
  ``no_decay_bn_filter_bias: false``: BatchNorm scales and biases decay too), betas (0.9, 0.999).
* **Learning rate** (:func:`lr_at`): linear warm-up *per iteration* from 0.0002 to 0.002 over the
  first 3,000 iterations, then a cosine *per epoch* from 0.002 down to 0.0002 over 300 epochs.
* **Label-smoothing** cross-entropy, factor 0.1.
* **EMA** of the weights (:class:`EMA`), momentum 0.0005, over the whole state dict (BatchNorm
  running statistics included); the paper reports the EMA model.

The loop that uses them is :mod:`mobilevit_edu.train.loop`.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["TrainConfig", "lr_at", "schedule", "build_optimizer", "EMA", "History", "unwrap"]

AMP_MODES = ("auto", "bf16", "fp16", "off")
LOG_FORMATS = ("csv", "json", "both")


@dataclass
class TrainConfig:
    """Every knob of a training run. The defaults are the paper's ImageNet recipe (§4.1)."""

    model: str = "mobilevit_xxs"
    num_classes: int = 1000
    epochs: int = 300
    lr: float = 0.002  # the peak ("max_lr")
    min_lr: float = 0.0002  # the end of the cosine
    warmup_lr: float = 0.0002  # where the warm-up starts ("warmup_init_lr")
    warmup_iters: int = 3000
    weight_decay: float = 0.01  # on all parameters, BN and biases included
    betas: tuple[float, float] = (0.9, 0.999)
    label_smoothing: float = 0.1
    ema_momentum: float | None = 0.0005  # None: no EMA
    grad_clip: float | None = None  # max global gradient norm; None: no clipping
    amp: str = "auto"  # "auto" (bf16 if supported, else fp16; CUDA only), "bf16", "fp16", "off"
    seed: int = 0
    out_dir: str | None = None  # None: write nothing
    workers: int = 0  # DataLoader worker processes
    batch_size: int = 128  # per rank, when train() builds the batch sampler itself
    val_batch_size: int = 100
    log_format: str = "both"  # "csv", "json" or "both"
    progress: bool | None = None  # tqdm bar; None: only when stderr is a terminal
    verbose: bool = True  # one line per epoch on stdout (rank 0)
    device: str | None = None  # None: cuda if available (this rank's LOCAL_RANK), else cpu
    checkpoint_every: int = 1  # epochs between checkpoints (when out_dir is set)
    # Speed without changing the recipe (same results to float rounding; the experiments use both):
    channels_last: bool = False  # NHWC weights and image batches: faster convolutions on CPUs
    fused_adamw: bool = False  # AdamW as one fused kernel per step instead of a loop over tensors

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {self.amp!r}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be 'csv', 'json' or 'both', got {self.log_format!r}")
        if self.epochs < 1 or self.warmup_iters < 0:
            raise ValueError("epochs must be >= 1 and warmup_iters >= 0")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 epoch, got {self.checkpoint_every}")
        if self.batch_size < 1 or self.val_batch_size < 1:
            raise ValueError("batch_size and val_batch_size must be >= 1")
        self.betas = tuple(self.betas)  # a list after a JSON round trip


def lr_at(config: TrainConfig, iteration: int, epoch: int) -> float:
    """The learning rate of the official cosine scheduler at one optimizer step.

    During the first ``warmup_iters`` iterations (counted over the whole run, from 0) it rises
    linearly from ``warmup_lr`` towards ``lr``; afterwards it follows a cosine over *epochs*,
    ``min_lr + (lr - min_lr) * (1 + cos(pi * epoch / epochs)) / 2``, constant within an epoch.
    """
    if iteration < config.warmup_iters:
        step = (config.lr - config.warmup_lr) / config.warmup_iters
        return config.warmup_lr + iteration * step
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (
        1 + math.cos(math.pi * epoch / config.epochs)
    )


def schedule(config: TrainConfig, iters_per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole run's learning rate, one value per iteration: ``(epoch as a float, lr)``."""
    its = np.arange(config.epochs * iters_per_epoch)
    lrs = np.array([lr_at(config, int(i), int(i) // iters_per_epoch) for i in its])
    return its / iters_per_epoch, lrs


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with one parameter group: weight decay on every parameter, as the official yaml."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=config.warmup_lr, betas=config.betas,
                             weight_decay=config.weight_decay,
                             fused=True if config.fused_adamw else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class EMA:
    """An exponential moving average of a model's whole state dict (the official ``EMA``).

    After every optimizer step: ``ema = ema * (1 - m) + m * model`` for every floating-point
    tensor of ``state_dict()``, BatchNorm running means and variances included; integer buffers
    (``num_batches_tracked``) keep their first value. ``m = 0.0005`` means the average spans about
    ``1 / m = 2000`` steps.
    """

    def __init__(self, model: nn.Module, momentum: float = 0.0005) -> None:
        if not 0 < momentum <= 1:
            raise ValueError(f"EMA momentum must be in (0, 1], got {momentum}")
        self.momentum = momentum
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = unwrap(model).state_dict()
        for key, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(1 - self.momentum).add_(current[key].detach(), alpha=self.momentum)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)


class History(list):  # noqa: FURB189 (a list with a few helpers)
    """The per-epoch metrics of a run: a list of dicts, one per epoch, with ``epoch``, the task's
    training metrics (classification: ``train_loss``, ``train_acc``), its validation metrics
    (``val_loss``, ``val_acc``, and ``ema_``-prefixed ones for the EMA model), ``lr``,
    ``seconds`` (training time of the epoch), ``updates`` (optimizer steps in the epoch),
    ``iteration`` (steps so far) and ``images`` (training images seen by all ranks).

    ``steps`` holds one row per update (``iteration``, ``lr`` and the task's metrics of that
    batch) and ``ema`` the EMA model of the run (``None`` without EMA); :func:`fit` sets both.
    """

    def __init__(self, rows=()) -> None:
        super().__init__(rows)
        self.steps: list[dict] = []
        self.ema: nn.Module | None = None

    def column(self, key: str) -> list:
        """One metric over the epochs, e.g. ``history.column("val_acc")``."""
        return [row.get(key) for row in self]

    @property
    def last(self) -> dict:
        return self[-1]

    def to_csv(self, path: str | os.PathLike) -> None:
        keys = list(dict.fromkeys(k for row in self for k in row))
        tmp = Path(f"{path}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self)
        os.replace(tmp, path)

    def to_json(self, path: str | os.PathLike) -> None:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(list(self), indent=1))
        os.replace(tmp, path)
