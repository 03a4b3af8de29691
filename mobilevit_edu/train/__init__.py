"""Training MobileViT the way the paper did: the recipe of §4.1 as a reusable loop and a CLI.

Paper §4.1 (and the official config of apple/ml-cvnets v0.1, ``mobilevit_*small.yaml``):

* **AdamW** with L2 weight decay 0.01 on *every* parameter (the yaml's
  ``no_decay_bn_filter_bias: false``: BatchNorm scales and biases decay too), betas (0.9, 0.999).
* **Learning rate** (:func:`lr_at`): linear warm-up *per iteration* from 0.0002 to 0.002 over the
  first 3,000 iterations, then a cosine *per epoch* from 0.002 down to 0.0002 over 300 epochs.
* **Label-smoothing** cross-entropy, factor 0.1.
* **EMA** of the weights (:class:`EMA`), momentum 0.0005, over the whole state dict (BatchNorm
  running statistics included); the paper reports the EMA model.
* Mixed precision on a GPU (here: bf16 autocast, or fp16 with a ``GradScaler``); optional
  gradient clipping.
* Batches from the multi-scale sampler (:mod:`mobilevit_edu.data.sampler`), or any batch sampler.

Tools around the loop: a tqdm bar; metrics per epoch in ``metrics.csv`` and ``metrics.json``; a
checkpoint (``last.pt``) written atomically after every epoch with the model, the EMA, the
optimizer, the counters and every random-number state, readable with ``weights_only=True``; and
``resume=`` which continues bit-exactly (on the CPU) where the checkpoint stopped. Launched with
``torchrun`` it runs data-parallel (DDP): every rank draws its own shard of each epoch's indices,
all ranks step in lockstep, and only rank 0 writes files or prints.

Command line: ``python -m mobilevit_edu.train --help``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilevit_edu.models.checkpoints import save_checkpoint

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "TrainConfig",
    "History",
    "EMA",
    "EpochBatchSampler",
    "lr_at",
    "schedule",
    "build_optimizer",
    "train",
    "train_model",
    "evaluate",
    "calibrate_batchnorm",
    "distributed_context",
    "rng_state",
    "set_rng_state",
    "main",
    "plot_lr_schedule",
    "plot_training_curves",
    "plot_ablation",
    "plot_accuracy_vs_resolution",
]


# --------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------


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

    def __post_init__(self) -> None:
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {self.amp!r}")
        if self.log_format not in ("csv", "json", "both"):
            raise ValueError(f"log_format must be 'csv', 'json' or 'both', got {self.log_format!r}")
        if self.epochs < 1 or self.warmup_iters < 0:
            raise ValueError("epochs must be >= 1 and warmup_iters >= 0")
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
                             weight_decay=config.weight_decay)


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
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = _unwrap(model).state_dict()
        for key, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(1 - self.momentum).add_(current[key].detach(), alpha=self.momentum)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)


def optimizer_step(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
                   config: TrainConfig, ema: EMA | None = None) -> None:
    """One update without a grad scaler (the detection and segmentation loops): backward,
    optional gradient clipping (``config.grad_clip``), the optimizer step, then the EMA."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    if ema is not None:
        ema.update(model)


class History(list):  # noqa: FURB189 (a list with a few helpers)
    """The per-epoch metrics of a run: a list of dicts with the keys ``epoch``, ``train_loss``,
    ``train_acc``, ``val_loss``, ``val_acc``, ``ema_val_loss``, ``ema_val_acc``, ``lr``,
    ``seconds`` (training time of the epoch), ``updates`` (optimizer steps in the epoch),
    ``iteration`` (steps so far) and ``images`` (training images seen by all ranks)."""

    ema: nn.Module | None = None  # the EMA model of the run, set by train()

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


# --------------------------------------------------------------------------------------------
# Batches: a plain epoch-seeded, sharded batch sampler
# --------------------------------------------------------------------------------------------


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of plain integer indices: shuffled from ``seed + epoch``, padded to a multiple of
    ``num_replicas`` (from the start of the shuffled list, as the official samplers do) and
    sharded ``indices[rank::num_replicas]``, so every rank runs the same number of batches.
    Used by :func:`train` when no sampler is given; ``set_epoch`` as in ``DistributedSampler``."""

    def __init__(self, dataset_size: int, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        if dataset_size < 1 or batch_size < 1:
            raise ValueError("dataset_size and batch_size must be >= 1")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.dataset_size, self.batch_size, self.shuffle = dataset_size, batch_size, shuffle
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=g).tolist()
        else:
            order = list(range(self.dataset_size))
        per_rank = math.ceil(self.dataset_size / self.num_replicas)
        order += order[: per_rank * self.num_replicas - len(order)]  # pad: equal shards
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        idx = self._indices()
        for i in range(0, len(idx), self.batch_size):
            yield idx[i : i + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.dataset_size / self.num_replicas) / self.batch_size)


# --------------------------------------------------------------------------------------------
# Distributed data parallel (torchrun) and random-number states
# --------------------------------------------------------------------------------------------


def distributed_context() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` without)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return rank, world, int(os.environ.get("LOCAL_RANK", 0))


def _init_distributed(device: torch.device) -> bool:
    """Join the process group torchrun prepared (gloo on CPU, nccl on CUDA); True if joined now."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or torch.distributed.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend=backend, init_method="env://")
    return True


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def _average_buffers(module: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over the ranks.

    DDP keeps the parameters identical (all-reduced gradients) and copies rank 0's buffers into
    every rank at each forward, but the last batch of an epoch still updates each rank's running
    statistics from its own shard; averaging them at the end of each epoch makes every rank hold
    the same model (what timm calls ``distribute_bn(reduce=True)``)."""
    world = torch.distributed.get_world_size()
    for buf in module.buffers():
        if buf.dtype.is_floating_point:
            torch.distributed.all_reduce(buf)
            buf.div_(world)


def rng_state() -> dict[str, Any]:
    """The python, NumPy and torch (CPU and CUDA) random states as tensors and plain python
    types, so that a checkpoint holding them loads with ``torch.load(weights_only=True)``."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in mt.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


class _AtResolution(Dataset):
    """A dataset seen at one resolution through the multi-scale format ``ds[(h, w, i)]``."""

    def __init__(self, dataset: Dataset, size: int | tuple[int, int]) -> None:
        self.dataset = dataset
        self.h, self.w = (size, size) if isinstance(size, int) else size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[(self.h, self.w, i)]


def _amp_context(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "off":
        return nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    if amp == "auto" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast("cuda", dtype=dtype)


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
        data = _AtResolution(data, image_size)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    try:
        for images, labels in _as_loader(data, batch_size, workers, rank, world):
            images, labels = images.to(dev), torch.as_tensor(labels).to(dev)
            with _amp_context(dev, amp):
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


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Iterable) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance from ``batches`` (images, or
    ``(images, labels)`` pairs) as a plain average over them, e.g. at a new test resolution.
    The model's parameters do not change; it is returned in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    dev = next(model.parameters()).device
    for batch in batches:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        model(images.to(dev))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    return model.eval()


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------


def _set_epoch(obj: Any, epoch: int) -> None:
    for target in (obj, getattr(obj, "batch_sampler", None), getattr(obj, "sampler", None)):
        if target is not None and hasattr(target, "set_epoch"):
            target.set_epoch(epoch)


def _collate_fn(sampler: Any):
    """The sampler module's ``collate`` for multi-scale batches if present, else the default."""
    try:
        from mobilevit_edu.data.sampler import collate
    except ImportError:  # pragma: no cover - the sampler module is optional for plain data
        return None
    return collate


def train(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    val_data: Dataset | DataLoader | None,
    config: TrainConfig,
    *,
    sampler: torch.utils.data.Sampler | None = None,
    resume: str | os.PathLike | None = None,
) -> History:
    """Train ``model`` with the paper's recipe and return the per-epoch :class:`History`.

    ``train_data`` is a dataset (batched by ``sampler``, a batch sampler such as
    ``MultiScaleSampler``/``StandardSampler``, or else by an :class:`EpochBatchSampler` of
    ``config.batch_size``) or a ready ``DataLoader``. ``val_data`` (dataset or loader, may be
    ``None``) is scored after every epoch with the model and with its EMA.

    With ``config.out_dir`` set, rank 0 writes ``metrics.csv``/``metrics.json`` and
    ``last.pt`` after every epoch. ``resume`` (a ``last.pt``) restores model, EMA, optimizer,
    scaler, counters, history and random states and continues with the next epoch.
    Under torchrun (``WORLD_SIZE`` > 1) the model is wrapped in DDP and the batch sampler must be
    sharded by rank (built here when ``sampler`` is None). The model is trained in place; the
    returned history carries the EMA copy as ``history.ema`` (``None`` without EMA).
    """
    rank, world, local_rank = distributed_context()
    if config.device is not None:
        device = torch.device(config.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    started_pg = _init_distributed(device)
    rank, world, _ = distributed_context()
    is_main = rank == 0
    amp = config.amp if device.type == "cuda" else "off"

    # --- data ---------------------------------------------------------------------------------
    if isinstance(train_data, DataLoader):
        loader = train_data
    else:
        if sampler is None:
            sampler = EpochBatchSampler(len(train_data), config.batch_size, seed=config.seed,
                                        num_replicas=world, rank=rank)
        collate = _collate_fn(sampler) if not isinstance(sampler, EpochBatchSampler) else None
        loader = DataLoader(train_data, batch_sampler=sampler, num_workers=config.workers,
                            collate_fn=collate, pin_memory=device.type == "cuda",
                            persistent_workers=False)
    val_loader = (_as_loader(val_data, config.val_batch_size, config.workers, rank, world)
                  if val_data is not None else None)

    # --- model, optimizer, EMA, loss ----------------------------------------------------------
    _seed_everything(config.seed + rank)
    model.to(device).train()
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, config)
    ema = EMA(model, config.ema_momentum) if config.ema_momentum else None
    scaler = torch.amp.GradScaler("cuda", enabled=(amp == "fp16" or (
        amp == "auto" and device.type == "cuda" and not torch.cuda.is_bf16_supported())))
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    history, start_epoch, iteration = History(), 0, 0
    if resume is not None:
        ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, iteration = int(ckpt["epoch"]), int(ckpt["iteration"])
        history = History(ckpt.get("history", []))
        states = ckpt["rng"]
        set_rng_state(states[rank] if rank < len(states) else states[0])

    out_dir = Path(config.out_dir) if config.out_dir else None
    if out_dir is not None and is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=1))

    show_bar = is_main and (config.progress if config.progress is not None
                            else sys.stderr.isatty())
    try:
        for epoch in range(start_epoch, config.epochs):
            _set_epoch(loader, epoch)
            net.train()
            sums = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, images
            updates, t0 = 0, time.perf_counter()
            batches: Iterable = loader
            if show_bar:
                from tqdm.auto import tqdm

                batches = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
            for images, labels in batches:
                images = images.to(device, non_blocking=True)
                labels = torch.as_tensor(labels).to(device, non_blocking=True)
                lr = lr_at(config, iteration, epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with _amp_context(device, amp):
                    logits = net(images)
                    loss = criterion(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(model)
                iteration += 1
                updates += 1
                n = labels.numel()
                sums += torch.tensor([loss.item() * n,
                                      (logits.argmax(1) == labels).sum().item(), n],
                                     dtype=torch.float64)
                if show_bar:
                    batches.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}",
                                        size=f"{images.shape[-2]}x{images.shape[-1]}")
            seconds = time.perf_counter() - t0
            if world > 1:
                t = sums.to(device) if device.type == "cuda" else sums
                torch.distributed.all_reduce(t)
                sums = t.cpu()
                _average_buffers(model)
                if ema is not None:
                    _average_buffers(ema.module)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": sums[0].item() / max(sums[2].item(), 1),
                "train_acc": sums[1].item() / max(sums[2].item(), 1),
            }
            if val_loader is not None:
                m = evaluate(model, val_loader, device=device, amp=amp)
                row.update(val_loss=m["loss"], val_acc=m["acc"])
                if ema is not None:
                    e = evaluate(ema.module, val_loader, device=device, amp=amp)
                    row.update(ema_val_loss=e["loss"], ema_val_acc=e["acc"])
            row.update(lr=lr_at(config, max(iteration - 1, 0), epoch), seconds=seconds,
                       updates=updates, iteration=iteration, images=int(sums[2].item()))
            history.append(row)
            if is_main and config.verbose:
                shown = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in row.items() if k not in ("iteration", "images"))
                print(shown, flush=True)
            _write_epoch(out_dir, config, history, model, ema, optimizer, scaler, epoch,
                         iteration, rank, world, is_main)
    finally:
        if started_pg:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    history.ema = ema.module if ema is not None else None
    return history


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
    from mobilevit_edu.models.registry import create_model

    torch.manual_seed(config.seed)
    model = create_model(name, num_classes=config.num_classes, **model_kwargs)
    config = copy.copy(config)
    config.model = name
    return model, train(model, train_data, val_data, config, sampler=sampler)


def _write_epoch(out_dir, config, history, model, ema, optimizer, scaler, epoch, iteration,
                 rank, world, is_main) -> None:
    """Metrics and an atomic checkpoint after an epoch (rank 0 writes; all ranks give RNG)."""
    if out_dir is None:
        return
    due = (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs
    states = [rng_state()]
    if world > 1 and due:
        states = [None] * world
        torch.distributed.all_gather_object(states, rng_state())
    if not is_main:
        return
    if config.log_format in ("csv", "both"):
        history.to_csv(out_dir / "metrics.csv")
    if config.log_format in ("json", "both"):
        history.to_json(out_dir / "metrics.json")
    if due:
        save_checkpoint({
            "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "epoch": epoch + 1,  # epochs completed
            "iteration": iteration,
            "sampler_epoch": epoch + 1,  # the epoch the sampler is set to when resuming
            "history": list(history),
            "rng": states,  # one entry per rank
            "config": asdict(config),
        }, out_dir / "last.pt")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

_EPILOG = """\
data:
  shapes:TASK    the book's rendered shapes (TASK: shape, same_colour, ...), rendered at
                 --image-size (or at each multi-scale resolution); --train-size/--val-size images
  cifar10:PATH   a folder with CIFAR-10's python batches (data_batch_1..5, test_batch)
  folder:PATH    an ImageFolder tree PATH/train/<class>/*.jpg and PATH/val/<class>/*.jpg

examples:
  python -m mobilevit_edu.train --model mobilevit_xxs --data shapes:shape --image-size 64 \\
      --epochs 3 --batch-size 32 --out runs/x
  python -m mobilevit_edu.train ... --multi-scale          # the paper's multi-scale sampler
  python -m mobilevit_edu.train ... --resume runs/x/last.pt  # continue a run

many GPUs or machines (DDP; each rank reads its shard, only rank 0 writes):
  torchrun --nproc_per_node 8 -m mobilevit_edu.train --model mobilevit_s \\
      --data folder:/data/imagenet --image-size 256 --epochs 300 --batch-size 128 \\
      --multi-scale --out runs/imagenet
  torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 \\
      --nproc_per_node 8 -m mobilevit_edu.train ...          (and --node_rank 1 on the other)
  --batch-size is per process: the paper's 1024 = 8 GPUs x 128.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mobilevit_edu.train",
        description="Train a model of the book with the MobileViT recipe (paper §4.1).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = TrainConfig()
    p.add_argument("--model", default="mobilevit_xxs", help="a name from create_model")
    p.add_argument("--data", default="shapes:shape", help="shapes:TASK, cifar10:PATH, folder:PATH")
    p.add_argument("--image-size", type=int, default=64, help="training (base) resolution")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32, help="per process (base batch)")
    p.add_argument("--val-batch-size", type=int, default=100)
    p.add_argument("--train-size", type=int, default=2000, help="shapes: training images")
    p.add_argument("--val-size", type=int, default=500, help="shapes: validation images")
    p.add_argument("--multi-scale", action="store_true", help="the multi-scale sampler")
    p.add_argument("--min-size", type=int, default=None, help="multi-scale: smallest (0.625x)")
    p.add_argument("--max-size", type=int, default=None, help="multi-scale: largest (1.25x)")
    p.add_argument("--n-scales", type=int, default=5)
    p.add_argument("--divisor", type=int, default=None,
                   help="multi-scale sizes are multiples of this (default 32, or 8 below 128 px)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--min-lr", type=float, default=d.min_lr)
    p.add_argument("--warmup-lr", type=float, default=d.warmup_lr)
    p.add_argument("--warmup-iters", type=int, default=None,
                   help="default: one epoch's iterations (the paper: 3000)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--ema-momentum", type=float, default=d.ema_momentum, help="0 turns EMA off")
    p.add_argument("--grad-clip", type=float, default=None)
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto",
                   help="mixed precision (CUDA only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="runs/train", help="output folder (metrics, last.pt)")
    p.add_argument("--resume", default=None, help="a last.pt to continue from")
    p.add_argument("--log-format", choices=["csv", "json", "both"], default="both")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return p


def _build_data(spec: str, image_size: int, args: argparse.Namespace):
    """(train dataset, val dataset, number of classes) for a ``--data`` spec. Readers' data get
    the paper's augmentation (random resized crop + flip) for training and resize + centre crop
    for validation; the shapes are rendered natively at every resolution (cached in memory)."""
    kind, _, arg = spec.partition(":")
    if kind not in ("shapes", "cifar10", "folder") or (kind != "shapes" and not arg):
        raise SystemExit(f"--data {spec!r}: expected shapes:TASK, cifar10:PATH or folder:PATH")
    from mobilevit_edu import data as D

    if kind == "shapes":
        task = arg or "shape"
        tr = D.ShapesDataset(args.train_size, task=task, image_size=image_size, seed=args.seed,
                             cache=True)
        va = D.ShapesDataset(args.val_size, task=task, image_size=image_size,
                             seed=args.seed + 10_000, cache=True)
        return tr, va, tr.num_classes
    if kind == "cifar10":
        tr = D.CIFAR10(arg, train=True, transform=D.train_transform(image_size),
                       image_size=image_size)
        va = D.CIFAR10(arg, train=False, image_size=image_size)
        return tr, va, tr.num_classes
    root = Path(arg)
    tr_root = root / "train" if (root / "train").is_dir() else root
    va_root = next((root / v for v in ("val", "validation", "test") if (root / v).is_dir()), None)
    tr = D.ImageFolder(tr_root, image_size=image_size, transform=D.train_transform(image_size))
    va = (D.ImageFolder(va_root, image_size=image_size, transform=D.eval_transform(image_size))
          if va_root is not None else None)
    return tr, va, tr.num_classes


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from mobilevit_edu.models.registry import create_model

    rank, world, _ = distributed_context()
    train_ds, val_ds, num_classes = _build_data(args.data, args.image_size, args)
    if args.multi_scale:
        from mobilevit_edu.data.sampler import MultiScaleSampler

        base = args.image_size
        sampler = MultiScaleSampler(
            len(train_ds), base_size=base, base_batch=args.batch_size,
            min_size=args.min_size or max(32, int(base * 0.625)),
            max_size=args.max_size or int(base * 1.25), n_scales=args.n_scales,
            divisor=args.divisor or (32 if base >= 128 else 8),
            num_replicas=world, rank=rank, seed=args.seed)
    else:
        from mobilevit_edu.data.sampler import StandardSampler

        sampler = StandardSampler(len(train_ds), args.image_size, args.batch_size,
                                  num_replicas=world, rank=rank, seed=args.seed)
    iters = len(sampler)
    config = TrainConfig(
        model=args.model, num_classes=num_classes, epochs=args.epochs, lr=args.lr,
        min_lr=args.min_lr, warmup_lr=args.warmup_lr,
        warmup_iters=args.warmup_iters if args.warmup_iters is not None else iters,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
        ema_momentum=args.ema_momentum or None, grad_clip=args.grad_clip, amp=args.amp,
        seed=args.seed, out_dir=args.out, workers=args.workers, batch_size=args.batch_size,
        val_batch_size=args.val_batch_size, log_format=args.log_format,
        progress=False if args.no_progress else None, device=args.device)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    extra = {"image_size": args.image_size} if args.model.startswith("vit") else {}
    model = create_model(args.model, num_classes=num_classes, **extra)
    if rank == 0:
        n = sum(p.numel() for p in model.parameters())
        print(f"{args.model}: {n:,} parameters, {num_classes} classes, {len(train_ds)} training "
              f"images, {world} process(es), {iters} batches per epoch per process", flush=True)
    history = train(model, train_ds, val_ds, config, sampler=sampler, resume=args.resume)
    if rank == 0 and history:
        last = history[-1]
        print(f"done: val_acc={last.get('val_acc', float('nan')):.4f} "
              f"ema_val_acc={last.get('ema_val_acc', float('nan')):.4f} -> {args.out}")
    return 0


# --------------------------------------------------------------------------------------------
# Plots (chapters 10 and 11)
# --------------------------------------------------------------------------------------------


def plot_lr_schedule(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                     name: str = "10_lr_schedule") -> "Figure":
    """One panel per schedule: learning rate against epochs (``{title: (epochs, lrs)}``)."""
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 3.4), squeeze=False)
    for ax, (title, (x, y)) in zip(axes[0], curves.items()):
        ax.plot(x, y, color="#0072B2")
        ax.set(title=title, xlabel="epoch", ylabel="learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, -3))
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, float]]],
                         name: str = "10_training_curves", title: str | None = None,
                         chance: float | None = None) -> "Figure":
    """Fig. 3 style: training loss (left) and validation accuracy (right, dashed: the EMA)
    against epochs, one colour per run (``{label: history}``)."""
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10.5, 3.6))
    for label, hist in histories.items():
        ep = [r["epoch"] for r in hist]
        (line,) = ax_l.plot(ep, [r["train_loss"] for r in hist], label=f"{label} (train)")
        ax_l.plot(ep, [r["val_loss"] for r in hist], color=line.get_color(), ls=":",
                  label=f"{label} (val)")
        ax_a.plot(ep, [100 * r["val_acc"] for r in hist], color=line.get_color(), label=label)
        if all("ema_val_acc" in r for r in hist):
            ax_a.plot(ep, [100 * r["ema_val_acc"] for r in hist], color=line.get_color(),
                      ls="--", alpha=0.7)
    if chance is not None:
        ax_a.axhline(100 * chance, color="0.5", lw=1, ls="-.", label="chance")
    ax_l.set(xlabel="epoch", ylabel="loss (label-smoothed CE)", title="loss: train (—), val (⋯)")
    ax_a.set(xlabel="epoch", ylabel="validation top-1 (%)", title="accuracy (dashed: EMA)")
    ax_a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_ablation(ours: Mapping[str, float], paper: Mapping[str, float],
                  name: str = "10_ls_ema_ablation") -> "Figure":
    """Table 7 side by side: the paper's ImageNet top-1 (left) and ours (right) per setting."""
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
    for ax, (title, vals, color) in zip(axes, [
        ("paper (Table 7), MobileViT-S, ImageNet", paper, "#D55E00"),
        ("this book, MobileViT-XXS, shapes", ours, "#0072B2"),
    ]):
        keys = list(vals)
        bars = ax.bar(keys, [vals[k] for k in keys], color=color, width=0.55)
        lo, hi = min(vals.values()), max(vals.values())
        pad = max(0.5, (hi - lo) * 0.8)
        ax.set(ylim=(lo - pad, hi + pad), ylabel="top-1 (%)", title=title)
        ax.bar_label(bars, fmt="%.1f", fontsize=9)
        ax.title.set_fontsize(10)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_accuracy_vs_resolution(results: Mapping[str, Mapping[int, float]], train_size: int,
                                name: str = "11_accuracy_vs_resolution",
                                train_range: tuple[int, int] | None = None) -> "Figure":
    """Validation accuracy (%) against test resolution, one line per model; the training
    resolution (and the multi-scale range, shaded) marked."""
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if train_range is not None:
        ax.axvspan(*train_range, color="#009E73", alpha=0.1, label="multi-scale training range")
    ax.axvline(train_size, color="0.5", lw=1, ls="--", label=f"standard: trained at {train_size}")
    for label, accs in results.items():
        sizes = sorted(accs)
        ax.plot(sizes, [100 * accs[s] for s in sizes], marker="o", label=label)
    ax.set(xlabel="test resolution (px)", ylabel="validation top-1 (%)",
           title="accuracy away from the training resolution")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


